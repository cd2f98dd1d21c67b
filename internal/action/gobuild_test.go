package action

import (
	"debug/pe"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// writeModule writes a tiny main package into dir. It avoids fmt so that a
// cross build compiles little beyond the runtime.
func writeModule(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"go.mod":  "module example.com/hello\n\ngo 1.22\n",
		"main.go": "package main\n\nimport \"os\"\n\nvar msg = \"hello\"\n\nfunc main() { os.Stdout.WriteString(msg + \"\\n\") }\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// installedGo returns `go env GOVERSION` of the go in PATH, e.g. "go1.26.8".
func installedGo(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(requireTool(t, "go"), "env", "GOVERSION").Output()
	if err != nil {
		t.Fatalf("go env GOVERSION: %v", err)
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	return v
}

func TestGoBuild(t *testing.T) {
	t.Parallel()
	have := installedGo(t)
	r := newRunner(t)
	writeModule(t, r.ws)

	// The installed minor version, as "1.26", must be accepted.
	minor := strings.Join(strings.SplitN(strings.TrimPrefix(have, "go"), ".", 3)[:2], ".")
	res, out := r.run(GoBuild{}, map[string]any{
		"packages":   []any{"."},
		"output":     "bin/hello",
		"ldflags":    "-s -X main.msg=built-by-runnel",
		"go_version": minor,
	}, nil)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, out)
	}
	got, err := exec.Command(filepath.Join(r.ws, "bin", "hello")).Output()
	if err != nil || string(got) != "built-by-runnel\n" {
		t.Fatalf("built binary printed %q (%v); build output:\n%s", got, err, out)
	}
	if !strings.Contains(out, "+ go build -o bin/hello -ldflags=-s -X main.msg=built-by-runnel .") {
		t.Errorf("command line not shown:\n%s", out)
	}

	// Defaults: go build ./...
	res, out = r.run(GoBuild{}, nil, nil)
	if res.ExitCode != 0 || !strings.Contains(out, "+ go build ./...") {
		t.Errorf("defaults: exit %d:\n%s", res.ExitCode, out)
	}

	// The exact installed version is accepted too.
	res, out = r.run(GoBuild{}, map[string]any{"go_version": strings.TrimPrefix(have, "go"), "output": "bin/"}, nil)
	if res.ExitCode != 0 {
		t.Errorf("exact go_version: exit %d:\n%s", res.ExitCode, out)
	}

	// A compile error fails the step with the compiler's message.
	if err := os.WriteFile(filepath.Join(r.ws, "broken.go"), []byte("package main\n\nvar x int = \"s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, out = r.run(GoBuild{}, map[string]any{"packages": "."}, nil)
	if res.ExitCode == 0 || !strings.Contains(out, "broken.go:3") {
		t.Errorf("compile error: exit %d:\n%s", res.ExitCode, out)
	}
}

func TestGoBuildVersionMismatch(t *testing.T) {
	t.Parallel()
	have := installedGo(t)
	r := newRunner(t)
	writeModule(t, r.ws)
	for _, want := range []string{"1.1", "1.2", strings.TrimPrefix(have, "go") + "9", "1.26rc1"} {
		if "go"+want == have {
			continue
		}
		res, out := r.run(GoBuild{}, map[string]any{"go_version": want}, nil)
		msg := "actions/go-build@v1: go_version " + want + " was requested but " + have +
			" is installed; runnel downloads nothing: install Go " + want + " or change go_version\n"
		if res.ExitCode == 0 || out != msg {
			t.Errorf("go_version %s: exit %d, output %q, want %q", want, res.ExitCode, out, msg)
		}
	}
}

// TestGoBuildCross builds for another OS and architecture at once (one target
// only: each new target compiles the runtime, which takes seconds).
func TestGoBuildCross(t *testing.T) {
	t.Parallel()
	requireTool(t, "go")
	r := newRunner(t)
	writeModule(t, r.ws)

	goarch := "arm64"
	if runtime.GOARCH == "arm64" {
		goarch = "amd64"
	}
	res, out := r.run(GoBuild{}, map[string]any{"goos": "windows", "goarch": goarch, "output": "hello.exe"}, nil)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, out)
	}
	if !strings.Contains(out, "for windows/"+goarch) {
		t.Errorf("target not shown:\n%s", out)
	}
	data, err := os.ReadFile(filepath.Join(r.ws, "hello.exe"))
	if err != nil || len(data) < 2 || string(data[:2]) != "MZ" {
		t.Fatalf("hello.exe is not a PE file (%v)", err)
	}
	f, err := pe.Open(filepath.Join(r.ws, "hello.exe"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantMachine := map[string]uint16{"arm64": pe.IMAGE_FILE_MACHINE_ARM64, "amd64": pe.IMAGE_FILE_MACHINE_AMD64}[goarch]
	if f.Machine != wantMachine {
		t.Errorf("PE machine %#x, want %#x", f.Machine, wantMachine)
	}
}

func TestGoBuildWithoutGo(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	bin := t.TempDir()
	if err := os.Symlink(requireTool(t, "sh"), filepath.Join(bin, "sh")); err != nil {
		t.Fatal(err)
	}
	res, out := r.run(GoBuild{}, nil, map[string]string{"PATH": bin})
	if res.ExitCode == 0 || !strings.HasPrefix(out, "actions/go-build@v1: go is not installed") {
		t.Errorf("exit %d:\n%s", res.ExitCode, out)
	}
}

// TestGoBuildTest runs actions/go-build@v1 with action test: `go test` on
// the packages, passing and failing with the test's own report.
func TestGoBuildTest(t *testing.T) {
	t.Parallel()
	requireTool(t, "go")
	r := newRunner(t)
	writeModule(t, r.ws)
	test := "package main\n\nimport \"testing\"\n\nfunc TestMsg(t *testing.T) {\n\tif msg != \"hello\" {\n\t\tt.Fatalf(\"msg is %q\", msg)\n\t}\n}\n"
	if err := os.WriteFile(filepath.Join(r.ws, "main_test.go"), []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	res, out := r.runCall(GoBuild{}, Call{Action: "test", Args: map[string]any{"packages": "."}}, nil)
	if res.ExitCode != 0 || !strings.Contains(out, "+ go test .\n") || !strings.Contains(out, "ok  \texample.com/hello") {
		t.Fatalf("passing tests: exit %d:\n%s", res.ExitCode, out)
	}
	// ldflags reach the test binary (the package under test is linked under
	// its import path, not as main): the test now fails, and so does the step.
	res, out = r.runCall(GoBuild{}, Call{Action: "test", Args: map[string]any{"packages": ".", "ldflags": "-X example.com/hello.msg=changed"}}, nil)
	if res.ExitCode == 0 || !strings.Contains(out, "--- FAIL: TestMsg") || !strings.Contains(out, `msg is "changed"`) {
		t.Errorf("failing test: exit %d:\n%s", res.ExitCode, out)
	}
	// The default action still builds, and writes no test binary.
	res, out = r.runCall(GoBuild{}, Call{Args: map[string]any{"packages": "."}}, nil)
	if res.ExitCode != 0 || !strings.Contains(out, "+ go build .\n") {
		t.Errorf("default action: exit %d:\n%s", res.ExitCode, out)
	}
}
