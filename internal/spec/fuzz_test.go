package spec_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel/internal/spec"
)

// FuzzParse feeds arbitrary bytes to the parser: it must never panic or hang,
// and every error must carry a message. The seed corpus (the examples, the
// scenario definitions and hostile snippets) runs in every `go test`.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"../../examples/*.yaml", "testdata/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				f.Add(b)
			}
		}
	}
	for _, s := range []string{
		"", "namespace: a", "{}", "[]", "null", "namespace: &a *a", "a: !!binary AAA", "? [a]\n: b",
		"namespace: a\njobs: [{name: a, steps: [{run: '${{ x }}'}]}]",
		"namespace: a\njobs: [{name: a, matrix: {x: [1]}, steps: [{run: '${{ matrix.x }}'}]}]",
		"namespace: a\njobs:\n  - name: a\n    steps:\n      - run: |\n          ${{ ",
		"namespace: a\nenv: &e {A: 1}\njobs: [{name: a, env: {<<: *e}, steps: [{run: x}]}]",
		"namespace: a\njobs: [{name: a, needs: [a, b, a], steps: [{run: x}]}]",
		"\xef\xbb\xbfnamespace: a", "namespace: \"\\x00\"", strings.Repeat("[", 70), strings.Repeat("- ", 200),
		`{"namespace":"a","jobs":[{"name":"a","steps":[{"uses":"actions/shell@v1","args":{"script":"x"}}]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := spec.Parse(data, spec.Options{File: "fuzz.yaml", Catalog: testCatalog})
		if err != nil {
			list, ok := err.(spec.ErrorList)
			if !ok || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %T %v", err, err)
			}
			for _, e := range list {
				if e.Msg == "" {
					t.Fatalf("error without message: %+v", e)
				}
			}
			return
		}
		if p.Namespace == "" {
			t.Fatal("valid definition without namespace")
		}
		_ = p.EffectiveStages()
	})
}
