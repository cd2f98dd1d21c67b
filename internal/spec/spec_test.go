package spec_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/spec"
)

// catalog is a small action catalog, so these tests do not depend on the
// built-in actions.
type catalog map[string]spec.ActionInfo

func (c catalog) LookupAction(uses string) (spec.ActionInfo, bool) { a, ok := c[uses]; return a, ok }
func (c catalog) ActionNames() []string {
	var n []string
	for k := range c {
		n = append(n, k)
	}
	return n
}

var testCatalog = catalog{
	"actions/git-checkout@v1": {Uses: "actions/git-checkout@v1", Inputs: []spec.ActionInput{{Name: "repo"}, {Name: "ref"}, {Name: "depth"}, {Name: "path"}}},
	"actions/go-build@v1": {Uses: "actions/go-build@v1", Inputs: []spec.ActionInput{{Name: "packages"}, {Name: "go_version"}},
		Actions: []string{"build", "test"}, DefaultAction: "build"},
	"actions/shell@v1": {Uses: "actions/shell@v1", Inputs: []spec.ActionInput{{Name: "script", Required: true, Description: "the script"}, {Name: "shell"}}},
}

func parse(t *testing.T, src string) (*spec.Pipeline, spec.ErrorList) {
	t.Helper()
	p, err := spec.Parse([]byte(src), spec.Options{File: "p.yaml", Catalog: testCatalog})
	if err == nil {
		return p, nil
	}
	var list spec.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error is %T, want ErrorList: %v", err, err)
	}
	return nil, list
}

func TestParseBothForms(t *testing.T) {
	stages := `
namespace: demo.pipeline
version: v1
stages:
  - name: build
    jobs:
      - name: build-go
        steps:
          - name: checkout
            uses: actions/git-checkout@v1
            args:
              ref: ${{ trigger.ref }}
          - name: compile
            uses: actions/go-build@v1
            args:
              go_version: "1.25"
`
	p, errs := parse(t, stages)
	if errs != nil {
		t.Fatal(errs)
	}
	if got := p.EffectiveStages(); len(got) != 1 || got[0].Name != "build" || got[0].Jobs[0].Steps[1].Args["go_version"] != "1.25" {
		t.Fatalf("unexpected stages: %+v", got)
	}
	short := `
namespace: demo.pipeline
version: v1
jobs:
  - name: build
    steps:
      - name: compile
        uses: actions/go-build@v1
        args:
          go_version: "1.25"
`
	p, errs = parse(t, short)
	if errs != nil {
		t.Fatal(errs)
	}
	st := p.EffectiveStages()
	if len(st) != 1 || st[0].Name != "default" || st[0].Jobs[0].Name != "build" {
		t.Fatalf("jobs shorthand not wrapped in stage default: %+v", st)
	}
}

func TestParseJSON(t *testing.T) {
	src := `{"namespace":"demo","version":"v1","jobs":[{"name":"build","steps":[{"name":"compile","run":"echo hi"}]}]}`
	p, errs := parse(t, src)
	if errs != nil {
		t.Fatal(errs)
	}
	if p.Jobs[0].Steps[0].Run != "echo hi" {
		t.Fatalf("got %+v", p.Jobs[0])
	}
	_, errs = parse(t, "{\"namespace\":\"demo\",\n \"jobs\":[{\"name\":\"b\",\"stepz\":[]}]}")
	assertErrors(t, errs, `p.yaml:2:22: jobs[0].stepz: unknown field "stepz" (did you mean "steps"?)`, `job "b" has no steps`)
}

func TestFullDefinitionRoundTrip(t *testing.T) {
	src := `
namespace: demo
variables:
  env: staging
  region: {default: eu, options: [eu, us], description: where}
env: {GREETING: hello, COUNT: 3}
source: {repoUrl: https://example.com/org/repo.git, branch: main}
approval: {approvers: [alice], message: ship it?, timeout: 1h}
target: {environment: production, url: https://example.com}
notify:
  - on: [failure, partial]
    webhook: {url: https://hooks.example.com/x, secret: "${{ secrets.HOOK }}"}
triggers:
  - type: cron
    cron: "0 4 * * *"
    timezone: Asia/Hong_Kong
    variables: {env: prod}
  - type: event
    events: [push, tag]
    branches: [main, "release/*"]
    tags: {include: ["v*"], exclude: ["regex:^v0\\."]}
jobs:
  - name: test
    runsOn: {pool: a, os: linux}
    matrix:
      go: ["1.24", "1.25"]
      os: [linux, darwin]
      exclude: [{go: "1.24", os: darwin}]
      include: [{go: "1.26", os: linux, experimental: true}]
    timeout: 10m
    retry: {max: 2, delay: 5s}
    continueOnError: true
    image: golang:1.25
    services: [{name: db, image: postgres:16, env: {POSTGRES_PASSWORD: x}}]
    outputs: {bin: "${{ steps.build.outputs.bin }}"}
    steps:
      - name: build
        run: echo "bin=x" >> $RUNNEL_OUTPUT
        shell: bash
        env: {MODE: "${{ matrix.go }}"}
        timeout: 1m
        workingDirectory: src
      - name: report
        if: ${{ always() }}
        uses: actions/shell@v1
        args: {script: "echo ${{ steps.build.outputs.bin }}"}
        continueOnError: true
  - name: deploy
    needs: test
    runsOn: ["pool=a", "os in (linux,darwin)", "!gpu"]
    if: ${{ variables.env == 'prod' && needs.test.outputs.bin != '' }}
    steps: [{run: ./deploy.sh}]
`
	p, errs := parse(t, src)
	if errs != nil {
		t.Fatal(errs)
	}
	if len(p.Variables) != 2 || p.Variables[1].Default != "eu" || p.Env["COUNT"] != "3" {
		t.Fatalf("variables/env: %+v %+v", p.Variables, p.Env)
	}
	j := p.Jobs[0]
	if j.Timeout.D() != 10*time.Minute || j.Retry.Max != 2 || j.Retry.Delay.D() != 5*time.Second || j.RunsOn.Labels["pool"] != "a" {
		t.Fatalf("job fields: %+v", j)
	}
	if got := len(spec.ExpandMatrix(j.Matrix, 256)); got != 4 {
		t.Fatalf("matrix combinations = %d, want 4", got)
	}
	if p.Jobs[1].Steps[0].Name != "step-1" || p.Jobs[1].Needs[0] != "test" || len(p.Jobs[1].RunsOn.Selectors) != 3 {
		t.Fatalf("deploy: %+v", p.Jobs[1])
	}
	// The JSON form parses back to the same definition.
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	p2, errs := parse(t, string(b))
	if errs != nil {
		t.Fatalf("JSON form does not parse back: %v\n%s", errs, b)
	}
	b2, _ := json.Marshal(p2)
	if string(b) != string(b2) {
		t.Fatalf("round trip differs:\n%s\n%s", b, b2)
	}
}

func assertErrors(t *testing.T, errs spec.ErrorList, want ...string) {
	t.Helper()
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("missing error %q in:\n%s", w, all)
		}
	}
	if len(want) > 0 && len(errs) != len(want) && !t.Failed() {
		t.Errorf("got %d errors, want %d:\n%s", len(errs), len(want), all)
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"namespace missing", "jobs: [{name: a, steps: [{run: x}]}]", []string{"namespace is required"}},
		{"namespace invalid", "namespace: a/b\njobs: [{name: a, steps: [{run: x}]}]", []string{`p.yaml:1:12: namespace: invalid namespace "a/b"`}},
		{"version", "namespace: a\nversion: v2\njobs: [{name: a, steps: [{run: x}]}]", []string{`2:10: version: unsupported version "v2"`}},
		{"no jobs", "namespace: a", []string{"a pipeline needs jobs"}},
		{"both forms", "namespace: a\nstages: [{name: s, jobs: [{name: a, steps: [{run: x}]}]}]\njobs: [{name: b, steps: [{run: x}]}]", []string{"use either stages or the jobs shorthand"}},
		{"unknown field with suggestion", "namespace: a\njobs:\n  - name: a\n    stpes: []\n    steps: [{run: x}]", []string{`p.yaml:4:5: jobs[0].stpes: unknown field "stpes" (did you mean "steps"?)`}},
		{"several errors collected", "namespace: a\njobs:\n  - name: a\n    timeout: 10 minutes\n    steps:\n      - run: x\n        uses: actions/shell@v1\n  - name: a\n    steps: [{run: y}]",
			[]string{`4:14: jobs[0].timeout: invalid duration "10 minutes"`, "6:9: jobs[0].steps[0]: a step has either run", `8:11: jobs[1].name: duplicate job name "a"`}},
		{"duration without unit", "namespace: a\njobs: [{name: a, timeout: 30, steps: [{run: x}]}]", []string{"invalid duration 30: add a unit"}},
		{"step needs run or uses", "namespace: a\njobs: [{name: a, steps: [{name: x}]}]", []string{"a step needs run (a shell script) or uses"}},
		{"needs unknown", "namespace: a\njobs:\n  - name: build\n    steps: [{run: x}]\n  - name: test\n    needs: [biuld]\n    steps: [{run: x}]", []string{`6:13: jobs[1].needs[0]: needs "biuld": no job of that name in this stage (did you mean "build"?)`}},
		{"needs cycle", "namespace: a\njobs:\n  - {name: a, needs: c, steps: [{run: x}]}\n  - {name: b, needs: a, steps: [{run: x}]}\n  - {name: c, needs: b, steps: [{run: x}]}", []string{"needs form a cycle: a → c → b → a"}},
		{"needs self", "namespace: a\njobs: [{name: a, needs: a, steps: [{run: x}]}]", []string{`job "a" needs itself`}},
		{"unknown action", "namespace: a\njobs: [{name: a, steps: [{uses: actions/git-chekout@v1}]}]", []string{`unknown action "actions/git-chekout@v1" (did you mean "actions/git-checkout@v1"?)`}},
		{"unknown action version", "namespace: a\njobs: [{name: a, steps: [{uses: actions/shell@v9, args: {script: x}}]}]", []string{`unknown version of actions/shell: "actions/shell@v9" is not available`}},
		{"unknown arg", "namespace: a\njobs: [{name: a, steps: [{uses: actions/git-checkout@v1, args: {rev: main}}]}]", []string{`has no argument "rev" (did you mean "ref"?)`}},
		{"missing required arg", "namespace: a\njobs: [{name: a, steps: [{uses: actions/shell@v1}]}]", []string{"actions/shell@v1 needs args.script"}},
		{"bad cron", "namespace: a\ntriggers: [{type: cron, cron: '61 * * * *'}]\njobs: [{name: a, steps: [{run: x}]}]", []string{`2:31: triggers[0].cron: invalid cron expression "61 * * * *"`}},
		{"bad timezone", "namespace: a\ntriggers: [{type: cron, cron: '@daily', timezone: Mars/Base}]\njobs: [{name: a, steps: [{run: x}]}]", []string{`unknown time zone "Mars/Base"`}},
		{"bad trigger type", "namespace: a\ntriggers: [{type: crom}]\njobs: [{name: a, steps: [{run: x}]}]", []string{`unknown trigger type "crom" (did you mean "cron"?)`}},
		{"matrix too large", "namespace: a\njobs:\n  - name: a\n    matrix: {x: [1,2,3,4,5,6,7], y: [1,2,3,4,5,6,7], z: [1,2,3,4,5,6]}\n    steps: [{run: x}]", []string{"the matrix expands to more than 256 combinations"}},
		{"matrix exclude unknown axis", "namespace: a\njobs:\n  - name: a\n    matrix: {go: [1], exclude: [{og: 1}]}\n    steps: [{run: x}]", []string{`exclude names "og", which is not an axis (did you mean "go"?)`}},
		{"expression unknown context", "namespace: a\njobs:\n  - name: a\n    steps:\n      - run: echo ${{ trigge.ref }}", []string{`5:23: jobs[0].steps[0].run: unknown name "trigge"`}},
		{"expression syntax error", "namespace: a\njobs:\n  - name: a\n    steps:\n      - run: echo ${{ trigger.ref ==  }}", []string{"jobs[0].steps[0].run:"}},
		{"expression in block scalar", "namespace: a\njobs:\n  - name: a\n    steps:\n      - run: |\n          echo one\n          echo ${{ nope }}\n", []string{`7:20: jobs[0].steps[0].run: unknown name "nope"`}},
		{"undeclared variable", "namespace: a\nvariables: {env: dev}\njobs: [{name: a, steps: [{run: 'echo ${{ variables.evn }}'}]}]", []string{"variables.evn"}},
		{"later step output", "namespace: a\njobs:\n  - name: a\n    steps:\n      - {name: one, run: 'echo ${{ steps.two.outputs.x }}'}\n      - {name: two, run: x}", []string{"jobs[0].steps[0].run:"}},
		{"status function outside if", "namespace: a\njobs: [{name: a, steps: [{run: 'echo ${{ success() }}'}]}]", []string{"jobs[0].steps[0].run:"}},
		{"duplicate step", "namespace: a\njobs: [{name: a, steps: [{name: x, run: a}, {name: x, run: b}]}]", []string{`duplicate step name "x"`}},
		{"bad selector", "namespace: a\njobs: [{name: a, runsOn: ['pool in a,b'], steps: [{run: x}]}]", []string{`invalid selector "pool in a,b"`}},
		{"retry too many", "namespace: a\njobs: [{name: a, retry: {max: 50}, steps: [{run: x}]}]", []string{"retry.max must be between 0 and 10"}},
		{"wrong type", "namespace: a\njobs: [{name: a, continueOnError: yes, steps: [{run: x}]}]", []string{`expected true or false, got a string "yes"`}},
		{"not a mapping", "- a\n- b", []string{"a definition is a mapping"}},
		{"empty", "  \n\n", []string{"the definition is empty"}},
		{"binary", "namespace: a\x00\x01\x02", []string{"p.yaml:1:13: binary data"}},
		{"invalid utf8", "namespace: a\njobs: \xff\xfe", []string{"p.yaml:2:7: invalid UTF-8"}},
		{"yaml syntax", "namespace: a\njobs: [{name: a\n", []string{"invalid YAML"}},
		{"two documents", "namespace: a\n---\nnamespace: b\n", []string{"one YAML document"}},
		{"alias to nothing", "namespace: *x\n", []string{"alias *x refers to no anchor"}},
		{"deep flow nesting", "namespace: a\nx: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000), []string{"nesting deeper than 64 levels"}},
		{"notify bad on", "namespace: a\nnotify: [{on: [failed], slack: {webhookUrl: 'https://x'}}]\njobs: [{name: a, steps: [{run: x}]}]", []string{`unknown result "failed"`}},
		{"env name", "namespace: a\nenv: {'A-B': x}\njobs: [{name: a, steps: [{run: x}]}]", []string{`invalid environment variable name "A-B"`}},
		{"variable option", "namespace: a\nvariables: {env: {default: x, options: [a, b]}}\njobs: [{name: a, steps: [{run: x}]}]", []string{`default "x" is not one of the options`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := parse(t, tt.src)
			if len(errs) == 0 {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, e := range errs {
				if e.Msg == "" {
					t.Errorf("error without a message: %+v", e)
				}
			}
			assertErrors(t, errs, tt.want...)
		})
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	src := `
namespace: a
x-defaults: &defaults
  timeout: 5m
jobs:
  - <<: *defaults
    name: a
    steps: [{run: x}]
`
	_, errs := parse(t, src)
	// x-defaults is not a field: anchors are written under a known key instead.
	assertErrors(t, errs, `unknown field "x-defaults"`)

	src = `
namespace: a
env: &e {A: "1"}
jobs:
  - name: a
    env:
      <<: *e
      B: "2"
    steps: [{run: x}]
`
	p, errs := parse(t, src)
	if errs != nil {
		t.Fatal(errs)
	}
	if p.Jobs[0].Env["A"] != "1" || p.Jobs[0].Env["B"] != "2" {
		t.Fatalf("merge key: %+v", p.Jobs[0].Env)
	}
}

func TestBillionLaughs(t *testing.T) {
	var b strings.Builder
	b.WriteString("namespace: a\nenv:\n  A0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 12; i++ {
		fmt.Fprintf(&b, "  A%d: &a%d [", i, i)
		for k := 0; k < 10; k++ {
			if k > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("jobs: [{name: a, steps: [{run: x}]}]\n")
	start := time.Now()
	_, errs := parse(t, b.String())
	if len(errs) == 0 {
		t.Fatal("expected an error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestLargeFiles(t *testing.T) {
	big := make([]byte, 50<<20)
	for i := range big {
		big[i] = 'a'
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(path, big, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := spec.ParseFile(path, testCatalog)
	if err == nil || !strings.Contains(err.Error(), "definitions are limited to 4 MiB") {
		t.Fatalf("50 MB file: %v", err)
	}
	_, err = spec.ParseFile(filepath.Join(dir, "missing.yaml"), testCatalog)
	if err == nil || !strings.Contains(err.Error(), "missing.yaml: cannot read the definition: no such file or directory") {
		t.Fatalf("missing file: %v", err)
	}
	_, err = spec.ParseFile(dir, testCatalog)
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("directory: %v", err)
	}
}

func TestDeepBlockNesting(t *testing.T) {
	var b strings.Builder
	b.WriteString("namespace: a\nenv:\n")
	for i := 0; i < 500; i++ {
		b.WriteString(strings.Repeat(" ", i+2))
		fmt.Fprintf(&b, "k%d:\n", i)
	}
	_, errs := parse(t, b.String())
	if len(errs) == 0 {
		t.Fatal("expected an error")
	}
}

func TestSelectors(t *testing.T) {
	labels := map[string]string{"pool": "a", "os": "linux"}
	tests := []struct {
		sel  string
		want bool
	}{
		{"pool=a", true}, {"pool==a", true}, {"pool=b", false}, {"pool!=b", true}, {"os in (linux,darwin)", true},
		{"os notin (linux)", false}, {"gpu", false}, {"!gpu", true}, {"pool", true}, {"os in (darwin)", false},
	}
	for _, tt := range tests {
		s, err := spec.ParseSelector(tt.sel)
		if err != nil {
			t.Fatalf("%s: %v", tt.sel, err)
		}
		if got := s.Matches(labels); got != tt.want {
			t.Errorf("%s matches = %v, want %v", tt.sel, got, tt.want)
		}
	}
	for _, bad := range []string{"", "=a", "a in ()", "a in (b", "a b"} {
		if _, err := spec.ParseSelector(bad); err == nil {
			t.Errorf("%q: expected an error", bad)
		}
	}
}

func TestExpandMatrix(t *testing.T) {
	m := &spec.Matrix{
		Axes:    []spec.MatrixAxis{{Name: "go", Values: []any{"1.24", "1.25"}}, {Name: "os", Values: []any{"linux", "darwin"}}},
		Exclude: []map[string]any{{"go": "1.24", "os": "darwin"}},
		Include: []map[string]any{{"go": "1.25", "os": "linux", "race": true}, {"go": "1.26", "os": "linux"}},
	}
	got := spec.ExpandMatrix(m, 256)
	var names []string
	for _, c := range got {
		var parts []string
		for _, k := range c.Keys {
			parts = append(parts, k+"="+spec.MatrixString(c.Values[k]))
		}
		names = append(names, strings.Join(parts, ","))
	}
	want := "go=1.24,os=linux|go=1.25,os=linux,race=true|go=1.25,os=darwin|go=1.26,os=linux"
	if strings.Join(names, "|") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(names, "|"), want)
	}
}

// TestSchemaInSync keeps docs/pipeline.schema.json equal to the schema generated
// from the types; regenerate with `go run ./cmd/runnel schema > docs/pipeline.schema.json`.
func TestSchemaInSync(t *testing.T) {
	got, err := spec.Schema()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../docs/pipeline.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != strings.TrimSpace(string(want)) {
		t.Fatal("docs/pipeline.schema.json is out of date: run `go run ./cmd/runnel schema > docs/pipeline.schema.json`")
	}
}

func TestMatrixContextWithoutMatrix(t *testing.T) {
	_, errs := parse(t, "namespace: a\njobs: [{name: a, steps: [{run: 'echo ${{ matrix.os }}'}]}]")
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "matrix") {
		t.Fatalf("got %v", errs)
	}
}

func TestExpandMatrixIncludeOnly(t *testing.T) {
	m := &spec.Matrix{Include: []map[string]any{{"os": "mac", "arch": "x64"}, {"os": "mac", "arch": "arm64"}, {"os": "linux"}}}
	if got := spec.ExpandMatrix(m, 256); len(got) != 3 {
		t.Fatalf("got %d combinations: %+v", len(got), got)
	}
	m = &spec.Matrix{Axes: []spec.MatrixAxis{{Name: "os", Values: []any{"linux"}}}, Include: []map[string]any{{"os": "mac", "arch": "x64"}, {"os": "mac", "arch": "arm64"}}}
	if got := spec.ExpandMatrix(m, 256); len(got) != 3 {
		t.Fatalf("got %d combinations: %+v", len(got), got)
	}
}

// TestStepAction: a step's `action` selects one of the operations its `uses`
// action offers; omitted, the action's default applies. Any other value is an
// error at the field's position listing the choices.
func TestStepAction(t *testing.T) {
	step := func(fields string) string {
		return "namespace: a\njobs:\n  - name: a\n    steps:\n      - uses: actions/go-build@v1\n" + fields
	}
	tests := []struct {
		name   string
		src    string
		action string // the parsed step's action, when valid
		errs   []string
	}{
		{"selected", step("        action: test\n"), "test", nil},
		{"default named", step("        action: build\n"), "build", nil},
		{"omitted: the default applies", step("        args: {packages: ./...}\n"), "", nil},
		{"unknown, with the choices", step("        action: tset\n"), "",
			[]string{`p.yaml:6:17: jobs[0].steps[0].action: unknown action "tset" for actions/go-build@v1 (did you mean "test"?); accepted: build (default), test`}},
		{"unknown, no suggestion", step("        action: deploy\n"), "",
			[]string{`6:17: jobs[0].steps[0].action: unknown action "deploy" for actions/go-build@v1; accepted: build (default), test`}},
		{"case matters", step("        action: Test\n"), "", []string{`unknown action "Test" for actions/go-build@v1`}},
		{"an action offering none", "namespace: a\njobs: [{name: a, steps: [{uses: actions/shell@v1, action: run, args: {script: x}}]}]", "",
			[]string{"jobs[0].steps[0].action: actions/shell@v1 takes no action field"}},
		{"a run step", "namespace: a\njobs: [{name: a, steps: [{run: x, action: test}]}]", "",
			[]string{"jobs[0].steps[0].action: action applies only to steps with uses"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, errs := parse(t, tt.src)
			if len(tt.errs) == 0 {
				if errs != nil {
					t.Fatalf("unexpected errors: %v", errs)
				}
				if got := p.Jobs[0].Steps[0].Action; got != tt.action {
					t.Errorf("action = %q, want %q", got, tt.action)
				}
				return
			}
			assertErrors(t, errs, tt.errs...)
		})
	}
	info := testCatalog["actions/go-build@v1"]
	if got := info.ActionChoices(); got != "build (default), test" {
		t.Errorf("ActionChoices() = %q", got)
	}
}
