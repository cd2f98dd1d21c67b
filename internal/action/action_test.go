package action

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel/internal/backend"
	"github.com/runnel-ci/runnel/internal/backend/local"
	"github.com/runnel-ci/runnel/internal/spec"
)

// requireTool fails (not skips) the test when a tool is missing: CI has git and
// go, so a missing one is a broken machine, not a reason to pass silently.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required by this test and not installed: %v", name, err)
	}
	return p
}

// testEnv is the base environment of the test backend: ours, with git isolated
// from the user's and the machine's configuration.
func testEnv(t *testing.T) []string {
	env := os.Environ()
	filtered := env[:0]
	for _, kv := range env {
		// The engine's variables must come from each test, not from a CI run
		// that happens to execute these tests inside runnel.
		if !strings.HasPrefix(kv, "RUNNEL_") && !strings.HasPrefix(kv, "GIT_") {
			filtered = append(filtered, kv)
		}
	}
	return append(filtered,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+filepath.Join(t.TempDir(), "gitconfig"),
		"GIT_AUTHOR_NAME=Runnel Test", "GIT_AUTHOR_EMAIL=test@runnel.invalid",
		"GIT_COMMITTER_NAME=Runnel Test", "GIT_COMMITTER_EMAIL=test@runnel.invalid",
	)
}

// runner runs action Execs through a real local backend, one job per test.
type runner struct {
	t   *testing.T
	b   *local.Backend
	job *backend.Job
	ws  string
	n   int
}

func newRunner(t *testing.T) *runner {
	t.Helper()
	b, err := local.New(local.Options{Root: t.TempDir(), BaseEnv: testEnv(t)})
	if err != nil {
		t.Fatal(err)
	}
	job := &backend.Job{ID: "job"}
	ws, err := b.SetupJob(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.DestroyJob(context.Background(), job) })
	return &runner{t: t, b: b, job: job, ws: ws.Path}
}

// run prepares call with a and runs it with extra environment on top of the
// Exec's own. It returns the result and the step's output.
func (r *runner) run(a Action, args map[string]any, extra map[string]string) (backend.Result, string) {
	r.t.Helper()
	return r.runCall(a, Call{Args: args}, extra)
}

// runCall is run with a whole call (an action selected).
func (r *runner) runCall(a Action, call Call, extra map[string]string) (backend.Result, string) {
	r.t.Helper()
	ex, err := a.Prepare(call)
	if err != nil {
		r.t.Fatalf("Prepare(%+v): %v", call, err)
	}
	return r.runExec(ex, extra)
}

func (r *runner) runExec(ex Exec, extra map[string]string) (backend.Result, string) {
	r.t.Helper()
	env := map[string]string{}
	for k, v := range ex.Env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	r.n++
	var out bytes.Buffer
	res, err := r.b.RunStep(context.Background(), r.job, &backend.Step{
		ID: "s" + strings.Repeat("x", r.n), Shell: ex.Shell, Script: ex.Script, Env: env, WorkingDir: ex.WorkingDir,
	}, &out)
	if err != nil {
		r.t.Fatalf("RunStep: %v\n%s", err, out.String())
	}
	return res, out.String()
}

func TestBuiltins(t *testing.T) {
	r := Builtins()
	want := []string{"actions/artifact-download@v1", "actions/artifact-upload@v1", "actions/cache@v1", "actions/docker-build@v1", "actions/git-checkout@v1", "actions/go-build@v1", "actions/shell@v1"}
	if got := r.ActionNames(); !reflect.DeepEqual(got, want) {
		t.Fatalf("ActionNames() = %v, want %v", got, want)
	}
	for _, name := range want {
		info, ok := r.LookupAction(name)
		if !ok || info.Uses != name || info.Description == "" {
			t.Errorf("%s: %+v", name, info)
		}
		for _, in := range info.Inputs {
			if in.Name == "" || in.Description == "" {
				t.Errorf("%s: input %+v lacks a name or description", name, in)
			}
		}
		// Every built-in offers at least its default operation, so that a
		// step may name it in `action`.
		if len(info.Actions) == 0 || !slices.Contains(info.Actions, info.DefaultAction) {
			t.Errorf("%s: actions %v, default %q: the default must be one of them", name, info.Actions, info.DefaultAction)
		}
	}
	if info, _ := r.LookupAction("actions/go-build@v1"); !reflect.DeepEqual(info.Actions, []string{"build", "test"}) || info.DefaultAction != "build" {
		t.Errorf("actions/go-build@v1 offers %v (default %q), want build (default), test", info.Actions, info.DefaultAction)
	}
	// Registries are independent.
	if err := Builtins().Register(Shell{}); err == nil {
		t.Error("registering actions/shell@v1 twice succeeded")
	}
	if _, ok := Builtins().Lookup("actions/shell@v1"); !ok {
		t.Error("a fresh Builtins() lost actions/shell@v1")
	}
}

func TestPrepareValidation(t *testing.T) {
	tests := []struct {
		action Action
		call   Call
		err    string // "" means success
	}{
		{Shell{}, Call{Args: map[string]any{"script": "echo"}}, ""},
		{Shell{}, Call{Args: map[string]any{}}, "args.script: required by actions/shell@v1"},
		{Shell{}, Call{Args: map[string]any{"script": "  "}}, `args.script: must be a non-empty script, got "  "`},
		{Shell{}, Call{Args: map[string]any{"script": 1.0}}, "args.script: must be a string (quote it in YAML), got number 1"},
		{Shell{}, Call{Args: map[string]any{"script": "x", "shel": "sh"}}, "args.shel: unknown argument of actions/shell@v1 (accepted: script, shell)"},
		{Shell{}, Call{Args: map[string]any{"script": "x", "shell": " "}}, `args.shell: must be "bash", "sh" or a command template such as "python3 {0}", got " "`},
		{Shell{}, Call{Action: "run", Args: map[string]any{"script": "x"}}, ""},
		{Shell{}, Call{Action: "build", Args: map[string]any{"script": "x"}}, `action: actions/shell@v1 has no action "build" (accepted: run (default))`},

		{GitCheckout{}, Call{}, ""},
		{GitCheckout{}, Call{Args: map[string]any{"depth": "abc"}}, `args.depth: must be a non-negative integer, got "abc"`},
		{GitCheckout{}, Call{Args: map[string]any{"depth": -1}}, `args.depth: must be a non-negative integer, got number -1`},
		{GitCheckout{}, Call{Args: map[string]any{"depth": 1.5}}, `args.depth: must be a non-negative integer, got number 1.5`},
		{GitCheckout{}, Call{Args: map[string]any{"depth": true}}, `args.depth: must be a non-negative integer, got boolean true`},
		{GitCheckout{}, Call{Args: map[string]any{"depth": "0"}}, ""},
		{GitCheckout{}, Call{Args: map[string]any{"depth": float64(3)}}, ""},
		{GitCheckout{}, Call{Args: map[string]any{"path": "/etc"}}, `args.path: must be a relative directory inside the workspace, got "/etc"`},
		{GitCheckout{}, Call{Args: map[string]any{"path": "../x"}}, `args.path: must be a relative directory inside the workspace, got "../x"`},
		{GitCheckout{}, Call{Args: map[string]any{"path": "a/../../x"}}, `args.path: must be a relative directory inside the workspace, got "a/../../x"`},
		{GitCheckout{}, Call{Args: map[string]any{"path": "a/../b"}}, ""},
		{GitCheckout{}, Call{Args: map[string]any{"ref": "--upload-pack=evil"}}, `args.ref: must be a branch, tag, full ref or commit ID (no spaces or control characters, not starting with '-'), got "--upload-pack=evil"`},
		{GitCheckout{}, Call{Args: map[string]any{"ref": "a b"}}, `args.ref: must be a branch`},
		{GitCheckout{}, Call{Args: map[string]any{"ref": 1.1}}, `args.ref: must be a string (quote it in YAML), got number 1.1`},
		{GitCheckout{}, Call{Args: map[string]any{"repo": "-oProxyCommand=x"}}, `args.repo: must be a repository URL or path, got "-oProxyCommand=x"`},
		{GitCheckout{}, Call{Args: map[string]any{"repo": ""}}, `args.repo: must be a repository URL or path, got "" (omit it to use the pipeline's source repository)`},
		{GitCheckout{}, Call{Args: map[string]any{"repo": []any{"x"}}}, `args.repo: must be a string (quote it in YAML), got a list`},

		{GoBuild{}, Call{}, ""},
		{GoBuild{}, Call{Args: map[string]any{"packages": []any{"./a", "./b"}}}, ""},
		{GoBuild{}, Call{Args: map[string]any{"packages": []string{"./a"}}}, ""},
		{GoBuild{}, Call{Args: map[string]any{"packages": []any{"./a", 2}}}, "args.packages[1]: must be a string, got number 2"},
		{GoBuild{}, Call{Args: map[string]any{"packages": []any{"./a b"}}}, `args.packages[0]: must be a non-empty string without whitespace, got "./a b"`},
		{GoBuild{}, Call{Args: map[string]any{"packages": []any{}}}, "args.packages: must not be an empty list"},
		{GoBuild{}, Call{Args: map[string]any{"packages": " "}}, "args.packages: must not be empty"},
		{GoBuild{}, Call{Args: map[string]any{"packages": map[string]any{}}}, "args.packages: must be a string or a list of strings, got a map"},
		{GoBuild{}, Call{Args: map[string]any{"packages": "-toolexec=evil ./..."}}, `args.packages[0]: must be a package pattern, not a flag, got "-toolexec=evil"`},
		{GoBuild{}, Call{Args: map[string]any{"goos": "Linux"}}, `args.goos: must be a Go target name of lowercase letters and digits (see ` + "`go tool dist list`" + `), got "Linux"`},
		{GoBuild{}, Call{Args: map[string]any{"goarch": "amd64; rm"}}, `args.goarch: must be a Go target name`},
		{GoBuild{}, Call{Args: map[string]any{"go_version": 1.2}}, "args.go_version: must be a string (quote it in YAML), got number 1.2 (a YAML number loses digits: 1.20 reads as 1.2)"},
		{GoBuild{}, Call{Args: map[string]any{"go_version": "1.x"}}, `args.go_version: must be a Go version such as "1.25" or "1.25.3", got "1.x"`},
		{GoBuild{}, Call{Args: map[string]any{"go_version": "go1.25.3"}}, ""},
		{GoBuild{}, Call{Args: map[string]any{"go_version": "1.26rc1"}}, ""},
		{GoBuild{}, Call{Args: map[string]any{"ldflags": []any{"-s"}}}, "args.ldflags: must be a string (quote it in YAML), got a list"},
		{GoBuild{}, Call{Action: "build"}, ""},
		{GoBuild{}, Call{Action: "test", Args: map[string]any{"packages": "./...", "ldflags": "-X main.v=1"}}, ""},
		{GoBuild{}, Call{Action: "lint"}, `action: actions/go-build@v1 has no action "lint" (accepted: build (default), test)`},
		{GoBuild{}, Call{Action: "test", Args: map[string]any{"output": "bin/"}}, `args.output: applies to action build only (go test writes no binary), got "bin/" with action test`},

		{GitCheckout{}, Call{Action: "checkout"}, ""},
		{GitCheckout{}, Call{Action: "test"}, `action: actions/git-checkout@v1 has no action "test" (accepted: checkout (default))`},
	}
	for _, tc := range tests {
		_, err := tc.action.Prepare(tc.call)
		name := tc.action.Info().Uses
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s %v: unexpected error %v", name, tc.call, err)
		case tc.err != "" && err == nil:
			t.Errorf("%s %v: no error, want %q", name, tc.call, tc.err)
		case tc.err != "" && !strings.HasPrefix(err.Error(), tc.err):
			t.Errorf("%s %v:\n got %q\nwant %q", name, tc.call, err, tc.err)
		}
	}
}

// TestScriptsAreFixed checks that argument values only ever travel in the
// environment: the script text is the same whatever the arguments.
func TestScriptsAreFixed(t *testing.T) {
	evil := "$(touch pwned)`touch pwned`'\";touch pwned"
	for _, tc := range []struct {
		a    Action
		args map[string]any
	}{
		{GitCheckout{}, map[string]any{"repo": evil, "ref": "$(touch${IFS}pwned)", "path": evil}},
		{GoBuild{}, map[string]any{"packages": "$(touch${IFS}pwned)", "output": evil, "ldflags": evil}},
	} {
		plain, err := tc.a.Prepare(Call{})
		if err != nil {
			t.Fatal(err)
		}
		ex, err := tc.a.Prepare(Call{Args: tc.args})
		if err != nil {
			t.Fatalf("%s: %v", tc.a.Info().Uses, err)
		}
		if ex.Script != plain.Script || strings.Contains(ex.Script, "pwned") {
			t.Errorf("%s: script text depends on the arguments", tc.a.Info().Uses)
		}
	}
}

func TestShellAction(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	res, out := r.run(Shell{}, map[string]any{"script": "echo \"hello $0\" | tr a-z A-Z\necho x=1 >> \"$RUNNEL_OUTPUT\""}, nil)
	if res.ExitCode != 0 || !strings.HasPrefix(out, "HELLO ") || res.Outputs["x"] != "1" {
		t.Errorf("default shell: %d %q %v", res.ExitCode, out, res.Outputs)
	}
	res, out = r.run(Shell{}, map[string]any{"script": "echo \"${BASH_VERSION:-plain sh}\"\nexit 3", "shell": "sh"}, nil)
	if res.ExitCode != 3 || out != "plain sh\n" {
		t.Errorf("sh: %d %q", res.ExitCode, out)
	}
	res, out = r.run(Shell{}, map[string]any{"script": "echo templated", "shell": "sh -x {0}"}, nil)
	if res.ExitCode != 0 || out != "+ echo templated\ntemplated\n" {
		t.Errorf("template: %d %q", res.ExitCode, out)
	}
}

// TestStepActionValidation: definitions validated against the built-in
// actions accept the operations each offers in a step's `action` (go-build's
// test, every action's default) and refuse others, listing the choices.
func TestStepActionValidation(t *testing.T) {
	tests := []struct {
		step string
		err  string // "" means valid
	}{
		{"{uses: actions/go-build@v1, action: test}", ""},
		{"{uses: actions/go-build@v1, action: build}", ""},
		{"{uses: actions/go-build@v1}", ""},
		{"{uses: actions/git-checkout@v1, action: checkout}", ""},
		{"{uses: actions/shell@v1, action: run, args: {script: x}}", ""},
		{"{uses: actions/docker-build@v1, action: build, args: {tags: app}}", ""},
		{"{uses: actions/artifact-upload@v1, action: upload, args: {name: a, paths: dist}}", ""},
		{"{uses: actions/artifact-download@v1, action: download, args: {name: a}}", ""},
		{"{uses: actions/cache@v1, action: cache, args: {key: k, paths: p}}", ""},
		{"{uses: actions/go-build@v1, action: tests}", `p.yaml:2:62: jobs[0].steps[0].action: unknown action "tests" for actions/go-build@v1 (did you mean "test"?); accepted: build (default), test`},
		{"{uses: actions/git-checkout@v1, action: build}", `unknown action "build" for actions/git-checkout@v1; accepted: checkout (default)`},
		{"{uses: actions/cache@v1, action: save, args: {key: k, paths: p}}", `unknown action "save" for actions/cache@v1; accepted: cache (default)`},
	}
	for _, tt := range tests {
		src := "namespace: a\njobs: [{name: a, steps: [" + tt.step + "]}]\n"
		_, err := spec.Parse([]byte(src), spec.Options{File: "p.yaml", Catalog: Builtins()})
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.step, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.step, err, tt.err)
		}
	}
}

// TestNativeActionsCheckTheAction: native actions refuse an operation they
// do not offer before touching anything.
func TestNativeActionsCheckTheAction(t *testing.T) {
	for _, a := range []Native{ArtifactUpload{}, ArtifactDownload{}, Cache{}, DockerBuild{}} {
		_, err := a.Run(context.Background(), Call{Action: "nope"}, &Runtime{})
		want := `action: ` + a.Info().Uses + ` has no action "nope"`
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want %q", a.Info().Uses, err, want)
		}
	}
}
