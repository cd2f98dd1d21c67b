package spec_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel/internal/spec"
)

// bigDefinition has n jobs, each with a matrix, env and an expression, like the
// 1,000-job file the validate benchmark in docs/benchmarks.md uses.
func bigDefinition(n int) []byte {
	var b strings.Builder
	b.WriteString("namespace: bench\nversion: v1\nvariables: {v: a}\njobs:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - name: job-%d\n    env: {A: '%d'}\n    matrix: {x: [1, 2]}\n    steps:\n      - name: s\n        run: echo ${{ matrix.x }} ${{ variables.v }}\n", i, i)
	}
	return []byte(b.String())
}

func BenchmarkParse1000Jobs(b *testing.B) {
	data := bigDefinition(1000)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := spec.Parse(data, spec.Options{Catalog: testCatalog}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSmall(b *testing.B) {
	data := []byte("namespace: bench\njobs:\n  - name: j\n    steps:\n      - run: echo hi\n")
	for b.Loop() {
		if _, err := spec.Parse(data, spec.Options{Catalog: testCatalog}); err != nil {
			b.Fatal(err)
		}
	}
}
