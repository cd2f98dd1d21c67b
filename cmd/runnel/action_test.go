package main

import (
	"strings"
	"testing"
)

// TestExecStepAction runs `runnel exec` on a definition whose steps select an
// operation of actions/go-build@v1 with `action`: test runs the module's
// tests (a failing one fails the run), the default builds; an operation the
// action does not offer is refused before anything runs, with the choices.
func TestExecStepAction(t *testing.T) {
	module := `
        - name: module
          run: |
            printf 'module example.com/m\n\ngo 1.22\n' > go.mod
            printf 'package m\n\nfunc Add(a, b int) int { return a + b }\n' > m.go
            printf 'package m\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 2) != %s {\n\t\tt.Fatal("Add(2, 2) is not %s")\n\t}\n}\n' > m_test.go
`
	def := func(want, action string) string {
		return "namespace: t\njobs:\n  - name: go\n    steps:\n" + strings.ReplaceAll(module, "%s", want) +
			"        - {name: check, uses: actions/go-build@v1" + action + "}\n"
	}
	pass := writeFile(t, "pass.yaml", def("4", ", action: test"))
	stdout, stderr, code := runCLI(t, "exec", "-f", pass)
	if code != exitOK || !strings.Contains(stdout, "[check] + go test ./...") || !strings.Contains(stdout, "[check] ok  \texample.com/m") {
		t.Fatalf("action test, passing: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	fail := writeFile(t, "fail.yaml", def("5", ", action: test"))
	stdout, stderr, code = runCLI(t, "exec", "-f", fail)
	if code != exitFailed || !strings.Contains(stdout, "--- FAIL: TestAdd") || !strings.Contains(stdout, "Add(2, 2) is not 5") {
		t.Fatalf("action test, failing: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	// Without action the step builds: the failing test does not run.
	build := writeFile(t, "build.yaml", def("5", ""))
	stdout, stderr, code = runCLI(t, "exec", "-f", build)
	if code != exitOK || !strings.Contains(stdout, "[check] + go build ./...") {
		t.Fatalf("default action: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	bad := writeFile(t, "bad.yaml", def("4", ", action: lint"))
	stdout, stderr, code = runCLI(t, "exec", "-f", bad)
	want := bad + `:11:60: jobs[0].steps[1].action: unknown action "lint" for actions/go-build@v1; accepted: build (default), test`
	if code != exitInvalid || !strings.Contains(stderr, want) {
		t.Fatalf("unknown action: exit %d, want the error %q\nstdout: %s\nstderr: %s", code, want, stdout, stderr)
	}
}
