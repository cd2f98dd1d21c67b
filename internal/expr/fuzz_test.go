package expr

import (
	"errors"
	"testing"
)

var fuzzSeeds = []string{
	"",
	"plain",
	"${{ trigger.branch }}",
	"a-${{ run.number }}-b",
	"$${{ x }}",
	"$$${{ 1 }}",
	"${{ format('{0}}}', 'a') }}",
	"${{ format('{0}-{1}', trigger.ref, run.number) }}",
	"${{ contains('abc', 'b') && 'abc' contains 'b' }}",
	"${{ not contains(matrix.list, 1) }}",
	"${{ startsWith(trigger.ref, 'refs/') || endsWith(trigger.ref, 'x') }}",
	"${{ steps.go-build.outputs.bin }}",
	"${{ steps?.go-build?.outputs }}",
	"${{ needs.unit-tests.result == 'success' }}",
	"${{ join(matrix.list, ' ') }} ${{ toJSON(steps) }} ${{ fromJSON('[1]')[0] }}",
	"${{ success() && failure() || always() && !cancelled() }}",
	"${{ {'a': {'b': 1}} }}",
	"${{ if true { 1 } else { 2 } }}",
	"${{ let x = 1; x }}",
	"${{ filter([1, 2], # > 1) }}",
	"${{ map([{'a-b': 1}], .a-b) }}",
	"${{ 'unterminated }}",
	"${{ 'a\n' }}",
	"${{ 1 + }}",
	"${{ }}",
	"${{",
	"}}",
	"${{ /* }} */ }}",
	"${{ // x }}",
	"${{ `raw }} string` }}",
	"${{ b'bytes' }}",
	"${{ x.a-b-c.1-2 }}",
	"${{ run.number-1 }}",
	"${{ matrix.a.b.c[0] }}",
	"${{ $env }}",
	"${{ __contains(1, 2) }}",
	"${{ 'é' + trigge }}",
	"ü${{ \xff }}",
	"${{ 0x1e+5 }}",
	"${{ 1..3 }}",
	"${{ .5 }}",
	"${{ #.a }}",
	"${{ a not in b }}",
	"${{ matrix?.[ 'x' ] }}",
	"${{ 'a' | contains('a') }}",
	"${{ format('{', 1) }}",
	"${{ format(matrix.f, matrix.a) }}",
	"${{ success(1) }}",
	"${{ trigger() }}",
	"${{ contains }}",
	"${{ contains( }}",
	"${{ x.contains( }}",
	"${{ steps.a- }}",
	"${{ steps.-a }}",
	"${{ steps. }}",
	"${{ ?. }}",
	"${{ matrix.x?.y?.[0]?.z }}",
	"${{ fromJSON(toJSON({'a': nil})).a.b }}",
	"${{ len(matrix) > 0 ? matrix.x : 'none' }}",
	"${{ 1 / 0 }}",
	"${{ toJSON(1/0) }}",
	"${{ repeat('a', 10) }}",
	"${{ sortBy([3, 1], #) }}",
	"${{ now() }}",
	"${{ duration('1h') }}",
}

func fuzzEnv() *Env {
	e := testEnv()
	e.Matrix["f"] = "{0}{1}"
	e.Matrix["a"] = []any{1, "x", map[string]any{"k": nil}}
	return e
}

func checkOffset(t *testing.T, src string, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%q: error %v (%T) is not an *Error", src, err, err)
	}
	if e.Offset < 0 || e.Offset > len(src) {
		t.Fatalf("%q: offset %d out of range [0, %d]: %s", src, e.Offset, len(src), e.Msg)
	}
}

func FuzzParseTemplate(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	scopes := []Scope{
		{},
		{Contexts: AllContexts(), StatusFunctions: true},
		{Contexts: []string{"trigger", "steps"}, Variables: []string{}, Steps: []string{"a"}, Needs: []string{"b"}, MatrixAxes: []string{"os"}},
	}
	f.Fuzz(func(t *testing.T, src string) {
		tp, err := ParseTemplate(src)
		if err != nil {
			checkOffset(t, src, err)
			return
		}
		for _, s := range scopes {
			for _, e := range tp.Check(s) {
				checkOffset(t, src, e)
			}
		}
		for _, env := range []*Env{nil, {}, fuzzEnv()} {
			if _, err := tp.Eval(env); err != nil {
				checkOffset(t, src, err)
			}
			if _, err := tp.EvalValue(env); err != nil {
				checkOffset(t, src, err)
			}
		}
		_ = tp.IsLiteral()
		if tp.String() != src {
			t.Fatalf("String() = %q, want %q", tp.String(), src)
		}
	})
}

func FuzzParseCondition(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	for _, s := range []string{
		"failure()", "always() && x", "${{ cancelled() }}", "  ${{ success() }}  ", "${{ a }} b",
		"trigger.branch == 'main'", "steps.go-build.outcome != 'success'", "0", "nil", "[]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := ParseCondition(src)
		if err != nil {
			checkOffset(t, src, err)
			return
		}
		for _, e := range c.Check(Scope{Contexts: AllContexts()}) {
			checkOffset(t, src, e)
		}
		for _, st := range []Status{{}, {Failed: true}, {Cancelled: true}} {
			env := fuzzEnv()
			env.Status = st
			if _, err := c.Eval(env); err != nil {
				checkOffset(t, src, err)
			}
		}
		if _, err := c.Eval(&Env{}); err != nil {
			checkOffset(t, src, err)
		}
		if c.RunsWhenCancelled() && !c.UsesStatusFunction() {
			t.Fatal("RunsWhenCancelled without a status function")
		}
		if c.String() != src {
			t.Fatalf("String() = %q", c.String())
		}
	})
}
