package expr

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel"
)

func testEnv() *Env {
	return &Env{
		Trigger:   runnel.Trigger{Type: "event", Ref: "refs/heads/main", Branch: "main", Commit: "abc123", Event: "push", Actor: "ada"},
		Variables: map[string]string{"region": "eu-west-1", "count": "3", "empty": ""},
		Env:       map[string]string{"HOME": "/home/ci"},
		Matrix:    map[string]any{"os": "linux", "go": 1.26, "n": 3, "list": []any{"a", "b"}},
		Pipeline:  Pipeline{ID: "p1", Name: "build", Namespace: "team"},
		Run:       Run{ID: "r1", Number: 42},
		Job:       Job{Name: "test", Stage: "ci", Attempt: 1, Status: "success"},
		Steps: map[string]StepResult{
			"go-build": {Outputs: map[string]string{"bin": "/out/app", "json": `{"a":[1,2],"b":"x"}`}, Outcome: "success"},
			"lint":     {Outcome: "failed"},
		},
		Needs: map[string]NeedResult{
			"unit-tests": {Outputs: map[string]string{"coverage": "81"}, Result: "success"},
		},
		Secrets: map[string]string{"TOKEN": "s3cr3t"},
	}
}

// offsetOf returns the offset of the first occurrence of at in src (or of
// its index-th occurrence when at has the form "n:text").
func offsetOf(t *testing.T, src, at string) int {
	t.Helper()
	i := strings.Index(src, at)
	if i < 0 {
		t.Fatalf("test bug: %q not in %q", at, src)
	}
	return i
}

func TestTemplateEval(t *testing.T) {
	tests := []struct {
		src   string
		want  string
		value any // EvalValue; nil means "same as want"
	}{
		// literal text, escapes, whitespace
		{src: "", want: ""},
		{src: "plain text", want: "plain text"},
		{src: "a } b }} c {{ d", want: "a } b }} c {{ d"},
		{src: "$${{ trigger.branch }}", want: "${{ trigger.branch }}"},
		{src: "x $${{ y }} ${{ trigger.branch }}", want: "x ${{ y }} main"},
		{src: "$$${{ 1 }}", want: "$${{ 1 }}"},
		{src: "$ ${{ 1 }}", want: "$ 1"},
		{src: "cost: $5", want: "cost: $5"},
		// one segment, mixed, whitespace
		{src: "${{ trigger.branch }}", want: "main"},
		{src: "${{trigger.branch}}", want: "main"},
		{src: "  ${{ run.number }}\n", want: "  42\n", value: int64(42)},
		{src: "${{\n  trigger.branch\n}}", want: "main"},
		{src: "build-${{ trigger.branch }}-${{ run.number }}", want: "build-main-42"},
		{src: "${{ trigger.branch }}${{ run.number }}", want: "main42"},
		{src: "ü${{ 'é' }}ü", want: "üéü"},
		// "}}" inside string literals and map literals does not end a segment
		{src: "${{ format('{0}}}', 'a') }}", want: "a}"},
		{src: `${{ "}}" }}`, want: "}}"},
		{src: "${{ `a\n}}` }}", want: "a\n}}"},
		{src: "${{ '}}' + `}}` }}!", want: "}}}}!"},
		{src: `${{ 'it\'s }}' }}`, want: "it's }}"},
		{src: `${{ {"a": {"b": 1}} }}`, want: `{"a":{"b":1}}`, value: map[string]any{"a": map[string]any{"b": 1}}},
		{src: `${{ {"a": 1}.a }}`, want: "1", value: 1},
		{src: "${{ if run.number > 1 { 'big' } else { 'small' } }}", want: "big"},
		// contexts
		{src: "${{ trigger.ref }} ${{ trigger.commit }} ${{ trigger.event }} ${{ trigger.actor }} ${{ trigger.type }}", want: "refs/heads/main abc123 push ada event"},
		{src: "${{ pipeline.id }}/${{ pipeline.name }}/${{ pipeline.namespace }}", want: "p1/build/team"},
		{src: "${{ run.id }}#${{ run.number }}", want: "r1#42"},
		{src: "${{ job.name }}:${{ job.stage }}:${{ job.attempt }}:${{ job.status }}", want: "test:ci:1:success"},
		{src: "${{ variables.region }}", want: "eu-west-1"},
		{src: "${{ env.HOME }}", want: "/home/ci"},
		{src: "${{ secrets.TOKEN }}", want: "s3cr3t"},
		{src: "${{ matrix.os }}-${{ matrix.go }}", want: "linux-1.26"},
		{src: "${{ needs.unit-tests.outputs.coverage }}", want: "81"},
		{src: "${{ needs.unit-tests.result }}", want: "success"},
		{src: "${{ steps.lint.outcome }}", want: "failed"},
		// dashed names
		{src: "${{ steps.go-build.outputs.bin }}", want: "/out/app"},
		{src: "${{ steps.go-build.outcome == 'success' }}", want: "true", value: true},
		{src: "${{ steps['go-build'].outputs.bin }}", want: "/out/app"},
		{src: "${{ steps?.go-build?.outputs?.bin }}", want: "/out/app"},
		{src: "${{ steps.go-build .outputs.bin }}", want: "/out/app"},
		{src: "${{ run.number - 2 }}", want: "40", value: 40},
		{src: "${{ run.number -2 }}", want: "40", value: 40},
		{src: "${{ job.attempt- 1 }}", want: "0", value: 0},
		{src: "${{ 'steps.go-build' }}", want: "steps.go-build"},
		// missing keys are empty, not errors
		{src: "[${{ steps.x.outputs.missing }}]", want: "[]"},
		{src: "[${{ steps.go-build.outputs.missing }}]", want: "[]"},
		{src: "${{ steps.x.outputs.missing }}", want: "", value: ""},
		{src: "${{ steps.x.outputs.missing + '!' }}", want: "!"},
		{src: "${{ matrix.missing }}", want: "", value: nil},
		{src: "${{ matrix.missing.deeper.still }}", want: "", value: nil},
		{src: "${{ needs.none.result }}", want: "", value: ""},
		{src: "${{ variables.nope }}", want: "", value: ""},
		{src: "${{ fromJSON(steps.go-build.outputs.json).nope.x }}", want: "", value: nil},
		// string forms and EvalValue types
		{src: "${{ true }}", want: "true", value: true},
		{src: "${{ 1 == 2 }}", want: "false", value: false},
		{src: "${{ 7 }}", want: "7", value: 7},
		{src: "${{ 1.5 }}", want: "1.5", value: 1.5},
		{src: "${{ 3.0 }}", want: "3", value: 3.0},
		{src: "${{ 10 / 4 }}", want: "2.5", value: 2.5},
		{src: "${{ 1e21 }}", want: "1000000000000000000000", value: 1e21},
		{src: "${{ nil }}", want: "", value: nil},
		{src: "${{ '' }}", want: "", value: ""},
		{src: "${{ [1, 'a', true, nil] }}", want: `[1,"a",true,null]`, value: []any{1, "a", true, nil}},
		{src: "${{ matrix.list }}", want: `["a","b"]`, value: []any{"a", "b"}},
		{src: "${{ {'k': '<&>'} }}", want: `{"k":"<&>"}`, value: map[string]any{"k": "<&>"}},
		{src: "${{ needs.unit-tests }}", want: `{"outputs":{"coverage":"81"},"result":"success"}`},
		{src: "${{ trigger.tag }}", want: "", value: ""},
		{src: "x${{ nil }}y", want: "xy"},
		// expr-lang builtins stay available
		{src: "${{ upper(trigger.branch) }} ${{ lower('AB') }} ${{ len(matrix.list) }}", want: "MAIN ab 2"},
		{src: "${{ split(variables.region, '-')[0] }}", want: "eu"},
		{src: "${{ trigger.branch in ['main', 'dev'] }}", want: "true", value: true},
		{src: "${{ trigger.ref matches '^refs/heads/' }}", want: "true", value: true},
		{src: "${{ 'x' + variables.count }}", want: "x3"},
		{src: "${{ int(variables.count) * 2 }}", want: "6", value: 6},
		{src: "${{ variables.empty ?? 'dflt' }}", want: ""},
		{src: "${{ matrix.missing ?? 'dflt' }}", want: "dflt"},
		{src: "${{ let x = run.number; x + 1 }}", want: "43", value: 43},
		{src: "${{ filter(matrix.list, # != 'a') }}", want: `["b"]`},
		{src: "${{ map([{'n': 1}], .n) }}", want: `[1]`},
		{src: "${{ 'abc' // a comment }} \n }}", want: "abc \n }}"}, // a comment ends with the segment,
	}
	env := testEnv()
	for _, tt := range tests {
		tp, err := ParseTemplate(tt.src)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tt.src, err)
			continue
		}
		if tp.String() != tt.src {
			t.Errorf("String() = %q, want %q", tp.String(), tt.src)
		}
		got, err := tp.Eval(env)
		if err != nil {
			t.Errorf("Eval(%q): %v", tt.src, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Eval(%q) = %q, want %q", tt.src, got, tt.want)
		}
		v, err := tp.EvalValue(env)
		switch {
		case err != nil:
			t.Errorf("EvalValue(%q): %v", tt.src, err)
		case !isSingle(tt.src):
			if v != tt.want {
				t.Errorf("EvalValue(%q) = %#v, want the string %q", tt.src, v, tt.want)
			}
		case tt.value != nil:
			if !reflect.DeepEqual(v, tt.value) {
				t.Errorf("EvalValue(%q) = %#v (%T), want %#v (%T)", tt.src, v, v, tt.value, tt.value)
			}
		default:
			if s, _ := toString(v); s != tt.want {
				t.Errorf("EvalValue(%q) = %#v, whose string form is not %q", tt.src, v, tt.want)
			}
		}
	}
}

func isSingle(src string) bool {
	s := strings.TrimSpace(src)
	return strings.HasPrefix(s, "${{") && strings.HasSuffix(s, "}}") && strings.Count(s, "${{") == 1 && !strings.HasPrefix(s, "$$")
}

func TestEvalValueNil(t *testing.T) {
	for _, src := range []string{"${{ nil }}", " ${{ matrix.missing }} "} {
		tp, err := ParseTemplate(src)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tp.EvalValue(testEnv())
		if err != nil || v != nil {
			t.Errorf("EvalValue(%q) = %#v, %v; want nil", src, v, err)
		}
	}
	tp, _ := ParseTemplate("a${{ 1 }}")
	if v, _ := tp.EvalValue(nil); v != "a1" {
		t.Errorf("mixed template EvalValue = %#v, want string", v)
	}
}

func TestIsLiteral(t *testing.T) {
	for src, want := range map[string]bool{
		"": true, "abc": true, "$${{ x }}": true, "${{ 1 }}": false, "a ${{ 1 }} b": false,
	} {
		tp, err := ParseTemplate(src)
		if err != nil {
			t.Fatal(err)
		}
		if tp.IsLiteral() != want {
			t.Errorf("IsLiteral(%q) = %v", src, !want)
		}
	}
}

func TestFunctions(t *testing.T) {
	tests := []struct {
		expr string
		want any
		err  string
	}{
		// contains: call form and infix form
		{expr: "contains('abc', 'b')", want: true},
		{expr: "contains('abc', 'B')", want: false}, // case-sensitive
		{expr: "contains(['a', 'b'], 'b')", want: true},
		{expr: "contains(['a', 'b'], 'c')", want: false},
		{expr: "contains([1, 2], 2.0)", want: true},
		{expr: "contains(matrix.list, 'a')", want: true},
		{expr: "contains({'k': 1}, 'k')", want: true},
		{expr: "contains(env, 'HOME')", want: true},
		{expr: "contains(nil, 'x')", want: false},
		{expr: "contains(123, 2)", want: true},
		{expr: "contains(trigger.ref, 'heads')", want: true},
		{expr: "contains (trigger.ref, 'heads')", want: true},
		{expr: "'abc' contains 'b'", want: true},
		{expr: "'abc' contains ('b')", want: true},
		{expr: "'abc' not contains 'x'", want: true},
		{expr: "'abc' not contains('x')", want: true},
		{expr: "not contains('abc', 'x')", want: true},
		{expr: "!contains('abc', 'x')", want: true},
		{expr: "true && contains('abc', 'a') || false", want: true},
		{expr: "[contains('a', 'a'), (contains('a', 'b'))]", want: []any{true, false}},
		{expr: "'abc' | contains('c')", want: true},
		{expr: "{'x': contains('a', 'a')}.x", want: true},
		{expr: "contains('a', 'a') ? 'y' : 'n'", want: "y"},
		{expr: "'contains(' + 'x'", want: "contains(x"},
		// startsWith / endsWith
		{expr: "startsWith(trigger.ref, 'refs/heads/')", want: true},
		{expr: "startsWith(trigger.ref, 'REFS')", want: false},
		{expr: "endsWith(trigger.ref, 'main')", want: true},
		{expr: "endsWith(trigger.ref, 'Main')", want: false},
		{expr: "trigger.ref startsWith 'refs/'", want: true},
		{expr: "trigger.ref endsWith 'main'", want: true},
		{expr: "startsWith(run.number, 4)", want: true},
		{expr: "not startsWith('ab', 'b') and endsWith('ab', 'b')", want: true},
		// format
		{expr: "format('{0}-{1}', 'a', 'b')", want: "a-b"},
		{expr: "format('{1}{0}{1}', 'a', 'b')", want: "bab"},
		{expr: "format('{{0}} {0}', 1)", want: "{0} 1"},
		{expr: "format('{{}}')", want: "{}"},
		{expr: "format('{0}', 1.5)", want: "1.5"},
		{expr: "format('{0}', [1, 2])", want: "[1,2]"},
		{expr: "format('{0}', nil)", want: ""},
		{expr: "format('no args')", want: "no args"},
		{expr: "format(variables.region + '{0}', 1)", want: "eu-west-11"},
		{expr: "format('{2}', 'a', 'b')", err: "placeholder {2} is out of range: 2 argument(s)"},
		{expr: "format('{0', 'a')", err: `"{" at 0 is not closed`},
		{expr: "format('{x}', 'a')", err: "invalid placeholder {x}"},
		{expr: "format('a}b', 'a')", err: `"}" at 1 has no matching "{"`},
		{expr: "format(env.HOME + '{3}', 'a')", err: "placeholder {3} is out of range"},
		// join
		{expr: "join(['a', 'b'])", want: "a,b"},
		{expr: "join(['a', 'b'], ' ')", want: "a b"},
		{expr: "join([1, true, nil, 2.5], '|')", want: "1|true||2.5"},
		{expr: "join([])", want: ""},
		{expr: "join('abc', ',')", want: "abc"},
		{expr: "join(matrix.list, '+')", want: "a+b"},
		{expr: "join(nil)", want: ""},
		// toJSON / fromJSON
		{expr: "toJSON('a')", want: `"a"`},
		{expr: "toJSON({'b': [1, 2.5], 'a': nil})", want: `{"a":null,"b":[1,2.5]}`},
		{expr: "toJSON(steps.lint)", want: `{"outputs":null,"outcome":"failed"}`},
		{expr: "toJSON('<&>')", want: `"<&>"`},
		{expr: "fromJSON('[1, \"a\"]')", want: []any{1.0, "a"}},
		{expr: "fromJSON(steps.go-build.outputs.json).a[1]", want: 2.0},
		{expr: "fromJSON('true')", want: true},
		{expr: "fromJSON('{')", err: "fromJSON: \"{\" is not valid JSON"},
		{expr: "fromJSON(toJSON(matrix.list))", want: []any{"a", "b"}},
		// status functions read env.Status (here: nothing failed)
		{expr: "success()", want: true},
		{expr: "failure()", want: false},
		{expr: "always()", want: true},
		{expr: "cancelled()", want: false},
	}
	env := testEnv()
	for _, tt := range tests {
		tp, err := ParseTemplate("${{ " + tt.expr + " }}")
		if err != nil {
			t.Errorf("%s: parse: %v", tt.expr, err)
			continue
		}
		if errs := tp.Check(Scope{Contexts: AllContexts(), StatusFunctions: true}); tt.err == "" && len(errs) > 0 {
			t.Errorf("%s: Check: %v", tt.expr, errs)
		}
		got, err := tp.EvalValue(env)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.expr, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.expr, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.expr, got, tt.want)
		}
	}
}

func TestStatusFunctions(t *testing.T) {
	tests := []struct {
		st                                  Status
		success, failure, always, cancelled bool
	}{
		{Status{}, true, false, true, false},
		{Status{Failed: true}, false, true, true, false},
		{Status{Cancelled: true}, false, false, true, true},
		{Status{Failed: true, Cancelled: true}, false, true, true, true},
	}
	tp, err := ParseTemplate("${{ [success(), failure(), always(), cancelled()] }}")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		env := testEnv()
		env.Status = tt.st
		v, err := tp.EvalValue(env)
		if err != nil {
			t.Fatal(err)
		}
		want := []any{tt.success, tt.failure, tt.always, tt.cancelled}
		if !reflect.DeepEqual(v, want) {
			t.Errorf("status %+v: got %v, want %v", tt.st, v, want)
		}
	}
}

func TestRewrite(t *testing.T) {
	tests := []struct{ in, out string }{
		{"steps.go-build.outputs.bin", `steps["go-build"].outputs.bin`},
		{"steps.a-b-c.x-1", `steps["a-b-c"]["x-1"]`},
		{"steps.build-2x.outcome", `steps["build-2x"].outcome`},
		{"steps?.go-build", `steps?.["go-build"]`},
		{"needs.unit-tests.result", `needs["unit-tests"].result`},
		{"a - b", "a - b"},
		{"a-b", "a-b"},
		{"x.a - b", "x.a - b"},
		{"x.a -b", "x.a -b"},
		{"x.a- b", "x.a- b"},
		{"x.a--b", "x.a--b"},
		{"'steps.go-build'", "'steps.go-build'"},
		{`"x.a-b" + x.c-d`, `"x.a-b" + x["c-d"]`},
		{"`x.a-b`", "`x.a-b`"},
		{"f(x).a-b", `f(x)["a-b"]`},
		{"map(l, .a-b)", "map(l, .a-b)"},
		{"1.5-2", "1.5-2"},
		{"contains('abc', 'b')", "__contains('abc', 'b')"},
		{"contains ('abc', 'b')", "__contains ('abc', 'b')"},
		{"startsWith(a, b) && endsWith(a, b)", "__startsWith(a, b) && __endsWith(a, b)"},
		{"a contains b", "a contains b"},
		{"a contains (b)", "a contains (b)"},
		{"a not contains (b)", "a not contains (b)"},
		{"not contains(a, b)", "not __contains(a, b)"},
		{"x.contains(a)", "x.contains(a)"},
		{"'contains(a)'", "'contains(a)'"},
		{"[contains(a, b)]", "[__contains(a, b)]"},
		{"f(1, contains(a, b))", "f(1, __contains(a, b))"},
		{"a | contains(b)", "a | __contains(b)"},
		{"b'x' contains(y)", "b'x' contains(y)"},
		{"/* x.a-b */ y", "/* x.a-b */ y"},
	}
	for _, tt := range tests {
		got, _, err := rewriteExpr(tt.in)
		if err != nil {
			t.Errorf("rewriteExpr(%q): %v", tt.in, err)
			continue
		}
		if got != tt.out {
			t.Errorf("rewriteExpr(%q) = %q, want %q", tt.in, got, tt.out)
		}
	}
	if _, _, err := rewriteExpr("a + __contains(b, c)"); err == nil || err.Offset != 4 {
		t.Errorf("reserved name: got %v", err)
	}
}

func TestOffsetMap(t *testing.T) {
	src := "steps.go-build.outputs.zz + contains(a, b)"
	code, m, err := rewriteExpr(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ inCode, inSrc string }{
		{"steps", "steps"},
		{`"go-build"`, "go-build"},
		{"go-build", "go-build"},
		{"outputs", "outputs"},
		{"zz", "zz"},
		{"__contains", "contains"},
		{"contains", "contains"},
		{"a, b", "a, b"},
	} {
		got := m.orig(strings.Index(code, c.inCode))
		if want := strings.Index(src, c.inSrc); got != want {
			t.Errorf("orig(%q) = %d, want %d", c.inCode, got, want)
		}
	}
	if got := m.orig(len(code)); got != len(src) {
		t.Errorf("orig(end) = %d, want %d", got, len(src))
	}
}

func TestTemplateParseErrors(t *testing.T) {
	tests := []struct {
		src, at, msg string
	}{
		{src: "a ${{ trigger.branch", at: "${{", msg: `unterminated ${{ … }}: missing "}}"`},
		{src: "a ${{ trigger.branch }", at: "${{", msg: `missing "}}"`},
		{src: "ok ${{ 1 }} ${{ {'a': 1 }}", at: "${{ {", msg: `a "{" inside it is not closed`},
		{src: "${{ 'abc }} x", at: "'abc", msg: "this string literal is not closed"},
		{src: "${{ 'a\n' }}", at: "'a", msg: "string literal not terminated (a quoted string must end on the line it starts"},
		{src: "${{ 'a\n' + 'b' }}", at: "'a", msg: "syntax error: string literal not terminated"},
		{src: "x ${{ }}", at: "${{", msg: "empty expression"},
		{src: "x ${{ 1 + }}", at: " }}", msg: "syntax error: unexpected end of expression"},
		{src: "${{ trigger.branch = 'main' }}", at: "=", msg: "compare with =="},
		{src: "${{ 1 + 'a' }}", at: "+", msg: "mismatched types"},
		{src: "${{ variables.count == 3 }}", at: "==", msg: "mismatched types string and int); variables, env, secrets and outputs are strings"},
		{src: "${{ contains('a') }}", at: "contains", msg: "not enough arguments to call contains"},
		{src: "${{ startsWith('a', 'b', 'c') }}", at: "startsWith", msg: "too many arguments to call startsWith"},
		{src: "${{ join(['a'], 1) }}", at: "1", msg: "cannot use int as argument"},
		{src: "ü ${{ 'é' + __x }}", at: "__x", msg: `names starting with "__" are reserved`},
		{src: "${{ /* }} */ 'a' }}", at: "}} */", msg: "unclosed comment"},
		{src: "${{ trigger.branch.x }}", at: "x", msg: "has no field x"},
	}
	for _, tt := range tests {
		_, err := ParseTemplate(tt.src)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("ParseTemplate(%q) = %v, want *Error", tt.src, err)
			continue
		}
		if !strings.Contains(e.Msg, tt.msg) {
			t.Errorf("ParseTemplate(%q): message %q, want %q", tt.src, e.Msg, tt.msg)
		}
		if want := offsetOf(t, tt.src, tt.at); e.Offset != want {
			t.Errorf("ParseTemplate(%q): offset %d, want %d (%s)", tt.src, e.Offset, want, e.Msg)
		}
	}
}

func TestEvalErrors(t *testing.T) {
	tests := []struct {
		src, at, msg string
	}{
		{src: "x ${{ fromJSON('{') }}", at: "fromJSON", msg: "not valid JSON"},
		{src: "ü${{ format('{' + variables.region + '}', 1) }}", at: "format", msg: "invalid placeholder {eu-west-1}"},
		{src: "${{ matrix.list[5] }}", at: "[", msg: "index out of range"},
		{src: "${{ trigge.ref }}", at: "trigge", msg: `unknown name "trigge"`},
	}
	for _, tt := range tests {
		tp, err := ParseTemplate(tt.src)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tt.src, err)
			continue
		}
		_, err = tp.Eval(testEnv())
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("Eval(%q) = %v, want *Error", tt.src, err)
			continue
		}
		if !strings.Contains(e.Msg, tt.msg) {
			t.Errorf("Eval(%q): message %q, want %q", tt.src, e.Msg, tt.msg)
		}
		if want := offsetOf(t, tt.src, tt.at); e.Offset != want {
			t.Errorf("Eval(%q): offset %d, want %d (%s)", tt.src, e.Offset, want, e.Msg)
		}
	}
}

func TestCheck(t *testing.T) {
	all := Scope{Contexts: AllContexts()}
	scoped := Scope{
		Contexts:   []string{"trigger", "variables", "env", "matrix", "steps", "needs"},
		Variables:  []string{"env", "region"},
		MatrixAxes: []string{"os", "go"},
		Steps:      []string{"checkout", "go-build"},
		Needs:      []string{"unit-tests"},
	}
	type want struct{ at, msg string }
	tests := []struct {
		src   string
		scope Scope
		want  []want
	}{
		{src: "${{ trigger.branch }} ${{ secrets.ANY_NAME }}", scope: all},
		{src: "${{ trigge.ref }}", scope: all, want: []want{{"trigge", `unknown name "trigge"; expressions can use trigger, variables, env, matrix, pipeline, run, job, steps, needs, secrets`}}},
		{src: "${{ trigge.ref }}", scope: all, want: []want{{"trigge", `(did you mean "trigger"?)`}}},
		{src: "${{ main }}", scope: all, want: []want{{"main", `unknown name "main"`}}},
		{src: "${{ sucess() }}", scope: all, want: []want{{"sucess", `unknown function "sucess"; functions: success, failure, always, cancelled, contains`}}},
		{src: "${{ sucess() }}", scope: all, want: []want{{"sucess", `(did you mean "success"?)`}}},
		{src: "${{ success }}", scope: all, want: []want{{"success", "success is a function; call it as success(…)"}}},
		{src: "${{ trigger() }}", scope: all, want: []want{{"trigger", "trigger is a context, not a function"}}},
		{src: "${{ $env.secrets }}", scope: all, want: []want{{"$env", `unknown name "$env"`}}},
		{src: "${{ steps.build.outputs.x }}", scope: Scope{Contexts: []string{"trigger", "variables"}},
			want: []want{{"steps", "the steps context is not available here; available: trigger, variables"}}},
		{src: "${{ run.id }}", scope: Scope{}, want: []want{{"run", "the run context is not available here; no context can be used in this field"}}},
		{src: "${{ variables.foo }}", scope: scoped, want: []want{{"foo", "variables.foo is not declared (declared variables: env, region)"}}},
		{src: "${{ variables.regin }}", scope: scoped, want: []want{{"regin", `(did you mean "region"?)`}}},
		{src: "${{ variables['foo'] }}", scope: scoped, want: []want{{"'foo'", "variables.foo is not declared"}}},
		{src: "${{ variables.x }}", scope: Scope{Contexts: []string{"variables"}, Variables: []string{}}, want: []want{{"x", "variables.x is not declared (no variables are declared)"}}},
		{src: "${{ variables.anything }}", scope: Scope{Contexts: []string{"variables"}}},
		{src: "${{ variables[trigger.branch] }}", scope: scoped},
		{src: "${{ matrix.arch }}", scope: scoped, want: []want{{"arch", "matrix.arch is not a matrix axis of this job (axes: os, go)"}}},
		{src: "${{ matrix.os }}", scope: Scope{Contexts: []string{"matrix"}, MatrixAxes: []string{}}, want: []want{{"os", "this job has no matrix"}}},
		{src: "${{ steps.build.outputs.x }}", scope: scoped, want: []want{{"build", `steps.build: no step named "build" runs before this step (earlier steps: checkout, go-build)`}}},
		{src: "${{ steps.go-build.outputs.x }} ${{ steps['checkout'].outcome }}", scope: scoped},
		{src: "${{ steps.go-buld.outcome }}", scope: scoped, want: []want{{"go-buld", `steps.go-buld: no step named "go-buld" runs before this step (earlier steps: checkout, go-build) (did you mean "go-build"?)`}}},
		{src: "${{ steps['build'].outcome }}", scope: scoped, want: []want{{"'build'", `no step named "build"`}}},
		{src: "${{ steps.go-build.output.x }}", scope: scoped, want: []want{{"output", `steps.go-build.output: a step has only outputs and outcome (did you mean "outputs"?)`}}},
		{src: "${{ steps.go-build.result }}", scope: scoped, want: []want{{"result", "a step has only outputs and outcome"}}},
		{src: "${{ needs.lint.result }}", scope: scoped, want: []want{{"lint", `needs.lint: this job does not need a job named "lint"; add it to needs to use its results (needs: unit-tests)`}}},
		{src: "${{ needs.unit-tests.outcome }}", scope: scoped, want: []want{{"outcome", "a needed job has only outputs and result"}}},
		{src: "${{ trigger.foo }}", scope: all, want: []want{{"foo", `trigger has no field "foo"; fields: type, ref, branch, tag, commit, event, actor`}}},
		{src: "${{ trigger.branh }}", scope: all, want: []want{{"branh", `(did you mean "branch"?)`}}},
		{src: "${{ run.nubmer }}", scope: all, want: []want{{"nubmer", `run has no field "nubmer"; fields: id, number`}}},
		{src: "${{ job.foo }}", scope: all, want: []want{{"foo", `job has no field "foo"; fields: name, stage, attempt, status`}}},
		{src: "${{ pipeline.foo }}", scope: all, want: []want{{"foo", `pipeline has no field "foo"; fields: id, name, namespace`}}},
		{src: "${{ run.number-1 }}", scope: all, want: []want{{"number-1", `write "a - b" to subtract`}}},
		{src: "${{ success() }}", scope: all, want: []want{{"success", `success() can only be used in an "if" condition`}}},
		{src: "${{ always() || cancelled() }}", scope: all, want: []want{
			{"always", `always() can only be used in an "if" condition`},
			{"cancelled", `cancelled() can only be used in an "if" condition`}}},
		{src: "${{ failure() }}", scope: Scope{StatusFunctions: true}},
		{src: "${{ success(1) }}", scope: Scope{StatusFunctions: true}, want: []want{{"success", "success() takes no arguments"}}},
		{src: "${{ format('{1}', 'a') }}", scope: all, want: []want{{"'{1}'", "format: placeholder {1} is out of range: 1 argument(s)"}}},
		{src: "${{ let x = 1; x + trigger.foo }}", scope: all, want: []want{{"foo", `trigger has no field "foo"`}}},
		{src: "${{ let x = 1; x }}", scope: Scope{}},
		// several errors, several segments, original offsets
		{src: "a ${{ steps.nope.outcome }} b ${{ matrix.arch }} ${{ needs.x.result }}", scope: scoped, want: []want{
			{"nope", `no step named "nope"`}, {"arch", "matrix.arch is not a matrix axis"}, {"x.result", `does not need a job named "x"`}}},
		{src: "ü ${{ 'é' + trigge }}", scope: all, want: []want{{"trigge", `unknown name "trigge"`}}},
	}
	for _, tt := range tests {
		tp, err := ParseTemplate(tt.src)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tt.src, err)
			continue
		}
		errs := tp.Check(tt.scope)
		if len(errs) != len(tt.want) {
			t.Errorf("Check(%q) = %v, want %d errors", tt.src, errs, len(tt.want))
			continue
		}
		for i, w := range tt.want {
			var e *Error
			if !errors.As(errs[i], &e) {
				t.Errorf("Check(%q)[%d] = %T, want *Error", tt.src, i, errs[i])
				continue
			}
			if !strings.Contains(e.Msg, w.msg) {
				t.Errorf("Check(%q)[%d]: message %q, want %q", tt.src, i, e.Msg, w.msg)
			}
			if want := offsetOf(t, tt.src, w.at); e.Offset != want {
				t.Errorf("Check(%q)[%d]: offset %d, want %d (%s)", tt.src, i, e.Offset, want, e.Msg)
			}
		}
	}
}

func TestCondition(t *testing.T) {
	ok, failed, cancelled := Status{}, Status{Failed: true}, Status{Cancelled: true}
	tests := []struct {
		src                   string
		st                    Status
		want                  bool
		usesStatus, whenCancl bool
	}{
		// default
		{src: "", st: ok, want: true},
		{src: "  ", st: failed, want: false},
		{src: "", st: cancelled, want: false},
		// implicit success() &&
		{src: "trigger.branch == 'main'", st: ok, want: true},
		{src: "trigger.branch == 'main'", st: failed, want: false},
		{src: "trigger.branch == 'main'", st: cancelled, want: false},
		{src: "${{ trigger.branch == 'dev' }}", st: ok, want: false},
		{src: " ${{ trigger.branch == 'main' }} ", st: ok, want: true},
		{src: "${{ trigger.branch == 'main' }}", st: failed, want: false},
		{src: "fromJSON('{')", st: failed, want: false}, // not evaluated after a failure
		// explicit status functions
		{src: "success()", st: ok, want: true, usesStatus: true},
		{src: "success()", st: failed, want: false, usesStatus: true},
		{src: "failure()", st: failed, want: true, usesStatus: true},
		{src: "failure()", st: ok, want: false, usesStatus: true},
		{src: "${{ failure() && trigger.branch == 'main' }}", st: failed, want: true, usesStatus: true},
		{src: "always()", st: cancelled, want: true, usesStatus: true, whenCancl: true},
		{src: "always()", st: failed, want: true, usesStatus: true, whenCancl: true},
		{src: "cancelled()", st: cancelled, want: true, usesStatus: true, whenCancl: true},
		{src: "cancelled()", st: ok, want: false, usesStatus: true, whenCancl: true},
		{src: "!cancelled()", st: failed, want: true, usesStatus: true, whenCancl: true},
		{src: "${{ always() && steps.lint.outcome == 'failed' }}", st: failed, want: true, usesStatus: true, whenCancl: true},
		{src: "success() || failure()", st: cancelled, want: false, usesStatus: true},
		{src: "'success()'", st: failed, want: false},
		// truthiness
		{src: "variables.region", st: ok, want: true},
		{src: "variables.empty", st: ok, want: false},
		{src: "variables.missing", st: ok, want: false},
		{src: "matrix.missing", st: ok, want: false},
		{src: "0", st: ok, want: false},
		{src: "0.0", st: ok, want: false},
		{src: "1", st: ok, want: true},
		{src: "-2.5", st: ok, want: true},
		{src: "nil", st: ok, want: false},
		{src: "''", st: ok, want: false},
		{src: "'false'", st: ok, want: true},
		{src: "[]", st: ok, want: true},
		{src: "{}", st: ok, want: true},
		{src: "run.number", st: ok, want: true},
		{src: "job.attempt - 1", st: ok, want: false},
		// the call forms work in conditions too
		{src: "contains(trigger.ref, 'heads') && startsWith(trigger.ref, 'refs/')", st: ok, want: true},
		{src: "steps.go-build.outcome == 'success' && needs.unit-tests.result == 'success'", st: ok, want: true},
	}
	for _, tt := range tests {
		c, err := ParseCondition(tt.src)
		if err != nil {
			t.Errorf("ParseCondition(%q): %v", tt.src, err)
			continue
		}
		if c.String() != tt.src {
			t.Errorf("String() = %q, want %q", c.String(), tt.src)
		}
		if errs := c.Check(Scope{Contexts: AllContexts()}); len(errs) > 0 {
			t.Errorf("Check(%q): %v", tt.src, errs)
		}
		env := testEnv()
		env.Status = tt.st
		got, err := c.Eval(env)
		if err != nil {
			t.Errorf("Eval(%q): %v", tt.src, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Eval(%q) with %+v = %v, want %v", tt.src, tt.st, got, tt.want)
		}
		if c.UsesStatusFunction() != tt.usesStatus {
			t.Errorf("UsesStatusFunction(%q) = %v", tt.src, !tt.usesStatus)
		}
		if c.RunsWhenCancelled() != tt.whenCancl {
			t.Errorf("RunsWhenCancelled(%q) = %v", tt.src, !tt.whenCancl)
		}
	}
}

func TestConditionErrors(t *testing.T) {
	tests := []struct{ src, at, msg string }{
		{src: "${{ a }} && ${{ b }}", at: "&&", msg: `an "if" condition must be one expression`},
		{src: "a == 1 && ${{ b }}", at: "${{", msg: `an "if" condition must be one expression`},
		{src: "${{ success() }} extra", at: "extra", msg: `an "if" condition must be one expression`},
		{src: "  ${{ success()", at: "${{", msg: `unterminated ${{ … }}`},
		{src: "${{ }}", at: "${{", msg: "empty expression"},
		{src: "failure() || ]", at: "]", msg: "syntax error"},
		{src: "${{ 1 = 1 }}", at: "=", msg: "compare with =="},
	}
	for _, tt := range tests {
		_, err := ParseCondition(tt.src)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("ParseCondition(%q) = %v, want *Error", tt.src, err)
			continue
		}
		if !strings.Contains(e.Msg, tt.msg) {
			t.Errorf("ParseCondition(%q): %q, want %q", tt.src, e.Msg, tt.msg)
		}
		if want := offsetOf(t, tt.src, tt.at); e.Offset != want {
			t.Errorf("ParseCondition(%q): offset %d, want %d", tt.src, e.Offset, want)
		}
	}
	// Check: status functions are allowed, everything else is judged.
	c, err := ParseCondition("  failure() && trigge == 'x' && steps.nope.outcome == 'y'")
	if err != nil {
		t.Fatal(err)
	}
	errs := c.Check(Scope{Contexts: []string{"trigger", "steps"}, Steps: []string{"a"}})
	if len(errs) != 2 {
		t.Fatalf("Check = %v, want 2 errors", errs)
	}
	if e := errs[0].(*Error); e.Offset != 15 || !strings.Contains(e.Msg, `unknown name "trigge"`) {
		t.Errorf("errs[0] = %v", e)
	}
	if e := errs[1].(*Error); e.Offset != 38 || !strings.Contains(e.Msg, `no step named "nope"`) {
		t.Errorf("errs[1] = %v", e)
	}
	// Eval of a condition that failed Check returns the problem.
	if _, err := c.Eval(&Env{Status: Status{Failed: true}}); err == nil {
		t.Error("Eval of a condition with an unknown name: want error")
	}
}

func TestEvalAny(t *testing.T) {
	in := map[string]any{
		"ref":     "${{ trigger.ref }}",
		"count":   "${{ run.number }}",
		"flag":    " ${{ run.number > 1 }} ",
		"text":    "n=${{ run.number }}",
		"literal": "no expr",
		"escaped": "$${{ x }}",
		"num":     3,
		"nested": map[string]any{
			"list": []any{"${{ matrix.list }}", "${{ trigger.branch }}", 1, nil},
		},
		"typed": map[string]string{"a": "${{ trigger.branch }}"},
		"strs":  []string{"${{ run.id }}"},
	}
	got, err := EvalAny(in, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"ref":     "refs/heads/main",
		"count":   int64(42),
		"flag":    true,
		"text":    "n=42",
		"literal": "no expr",
		"escaped": "${{ x }}",
		"num":     3,
		"nested": map[string]any{
			"list": []any{[]any{"a", "b"}, "main", 1, nil},
		},
		"typed": map[string]any{"a": "main"},
		"strs":  []any{"r1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EvalAny = %#v\nwant %#v", got, want)
	}
	if in["ref"] != "${{ trigger.ref }}" {
		t.Error("EvalAny modified its input")
	}
	if v, err := EvalAny("${{ 1 + 1 }}", nil); err != nil || v != 2 {
		t.Errorf("EvalAny(string) = %#v, %v", v, err)
	}
	if v, err := EvalAny(nil, nil); err != nil || v != nil {
		t.Errorf("EvalAny(nil) = %#v, %v", v, err)
	}
	_, err = EvalAny(map[string]any{"a": []any{"x", "${{ fromJSON('{') }}"}}, testEnv())
	var pe *PathError
	if !errors.As(err, &pe) || pe.Path != "a[1]" || pe.Err.Offset != 4 {
		t.Errorf("EvalAny error = %#v", err)
	}
}

func TestCheckAny(t *testing.T) {
	v := map[string]any{
		"ref": "${{ trigge.ref }}",
		"ok":  "${{ trigger.ref }}",
		"list": []any{
			"fine",
			map[string]any{"deep": "x ${{ steps.nope.outcome }}"},
			"${{ 1 + }}",
		},
		"n": 1,
	}
	errs := CheckAny(v, Scope{Contexts: AllContexts(), Steps: []string{}})
	want := []struct {
		path   string
		offset int
		msg    string
	}{
		{"list[1].deep", 12, `no step named "nope"`},
		{"list[2]", 7, "syntax error"},
		{"ref", 4, `unknown name "trigge"`},
	}
	if len(errs) != len(want) {
		t.Fatalf("CheckAny = %v, want %d errors", errs, len(want))
	}
	for i, w := range want {
		if errs[i].Path != w.path || errs[i].Err.Offset != w.offset || !strings.Contains(errs[i].Err.Msg, w.msg) {
			t.Errorf("errs[%d] = %s %d %q, want %s %d %q", i, errs[i].Path, errs[i].Err.Offset, errs[i].Err.Msg, w.path, w.offset, w.msg)
		}
	}
	if errs := CheckAny("${{ trigger.branch }}", Scope{}); len(errs) != 1 || errs[0].Path != "" {
		t.Errorf("CheckAny(string) = %v", errs)
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Offset: 3, Msg: "boom"}
	if e.Error() != "offset 3: boom" {
		t.Errorf("Error() = %q", e.Error())
	}
	pe := PathError{Path: "a.b", Err: e}
	if pe.Error() != "a.b: offset 3: boom" {
		t.Errorf("PathError.Error() = %q", pe.Error())
	}
}

func TestConcurrentEval(t *testing.T) {
	tp, err := ParseTemplate("${{ trigger.branch }}-${{ format('{0}', run.number) }}")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCondition("failure() || contains(trigger.ref, 'main')")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			env := testEnv()
			for i := 0; i < 500; i++ {
				if s, err := tp.Eval(env); err != nil || s != "main-42" {
					t.Errorf("Eval = %q, %v", s, err)
					return
				}
				if ok, err := c.Eval(env); err != nil || !ok {
					t.Errorf("Condition.Eval = %v, %v", ok, err)
					return
				}
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
}

type hasherFunc func([]string) (string, error)

func (f hasherFunc) HashFiles(p []string) (string, error) { return f(p) }

func TestHashFiles(t *testing.T) {
	var got []string
	env := &Env{Files: hasherFunc(func(p []string) (string, error) { got = p; return "abc123", nil })}
	tpl, err := ParseTemplate("deps-${{ hashFiles('go.sum', '**/*.mod') }}")
	if err != nil {
		t.Fatal(err)
	}
	s, err := tpl.Eval(env)
	if err != nil || s != "deps-abc123" {
		t.Fatalf("got %q, %v", s, err)
	}
	if len(got) != 2 || got[0] != "go.sum" || got[1] != "**/*.mod" {
		t.Fatalf("patterns %q", got)
	}
	if _, err := tpl.Eval(&Env{}); err == nil || !strings.Contains(err.Error(), "hashFiles: only available") {
		t.Fatalf("without a workspace: %v", err)
	}
	// No pattern: an evaluation error that says what to write.
	empty, err := ParseTemplate("${{ hashFiles() }}")
	if err == nil {
		_, err = empty.Eval(env)
	}
	if err == nil || !strings.Contains(err.Error(), "hashFiles") {
		t.Fatalf("hashFiles() without a pattern: %v", err)
	}
}

func TestTriggerPullRequest(t *testing.T) {
	tpl, err := ParseTemplate("${{ trigger.pull_request.number }}:${{ trigger.pull_request.base }}:${{ trigger.before }}")
	if err != nil {
		t.Fatal(err)
	}
	s, err := tpl.Eval(&Env{Trigger: runnel.Trigger{Before: "abc", PullRequest: runnel.PullRequest{Number: 7, Base: "main"}}})
	if err != nil || s != "7:main:abc" {
		t.Fatalf("%q %v", s, err)
	}
	if s, err := tpl.Eval(&Env{}); err != nil || s != "0::" {
		t.Fatalf("no pull request: %q %v", s, err)
	}
}
