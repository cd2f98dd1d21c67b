package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binary is the runnel binary built once for the tests that need a real
// process (signals, exit codes).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "runnel-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "runnel")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, nil, &out, &errb)
	return out.String(), errb.String(), code
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExamples runs every example and checks the result its header promises.
func TestExamples(t *testing.T) {
	want := map[string]string{
		"hello.yaml":            "success",
		"stages.yaml":           "success",
		"matrix.yaml":           "success",
		"conditions.yaml":       "success",
		"outputs.yaml":          "success",
		"retry.yaml":            "success",
		"failure-handling.yaml": "partial",
		"go-build.yaml":         "success",
	}
	files, _ := filepath.Glob("../../examples/*.yaml")
	if len(files) != len(want) {
		t.Fatalf("examples %v; the test knows %d", files, len(want))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			if name == "go-build.yaml" && testing.Short() {
				t.Skip("builds runnel itself; skipped with -short")
			}
			t.Parallel()
			stdout, stderr, code := runCLI(t, "exec", "-f", f, "--json")
			sum := summary(t, stdout)
			if sum.Status != want[name] {
				t.Fatalf("status %s, want %s\nstderr: %s\nstdout: %s", sum.Status, want[name], stderr, tail(stdout, 3000))
			}
			if code != exitOK {
				t.Fatalf("exit code %d for %s", code, sum.Status)
			}
		})
	}
}

type runSummary struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Jobs   []struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		Attempts int    `json:"attempts"`
		Steps    []struct {
			Name     string `json:"name"`
			Status   string `json:"status"`
			ExitCode *int   `json:"exitCode"`
		} `json:"steps"`
	} `json:"jobs"`
}

func summary(t *testing.T, out string) runSummary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("not one JSON object per line: %q", l)
		}
	}
	var s runSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil || s.Type != "summary" {
		t.Fatalf("last line is not a summary: %q (%v)", lines[len(lines)-1], err)
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestExecExitCodes(t *testing.T) {
	ok := writeFile(t, "ok.yaml", "namespace: t\njobs: [{name: a, steps: [{run: 'echo fine'}]}]\n")
	bad := writeFile(t, "bad.yaml", "namespace: t\njobs: [{name: a, steps: [{run: 'exit 3'}]}]\n")
	partial := writeFile(t, "partial.yaml", "namespace: t\njobs: [{name: a, steps: [{run: 'exit 3', continueOnError: true}]}]\n")
	invalid := writeFile(t, "invalid.yaml", "namespace: t\njobs: [{name: a, stepz: []}]\n")
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"exec", "-f", ok}, exitOK, "run SUCCESS"},
		{[]string{"exec", "-f", bad}, exitFailed, "run FAILED"},
		{[]string{"exec", "-f", partial}, exitOK, "run PARTIAL"},
		{[]string{"exec", "-f", invalid}, exitInvalid, `unknown field "stepz"`},
		{[]string{"exec", "-f", filepath.Join(t.TempDir(), "missing.yaml")}, exitInvalid, "no such file or directory"},
		{[]string{"exec", "-f", ok, "--var", "nope=1"}, exitInvalid, `variable "nope" is not declared`},
		{[]string{"exec", "-f", ok, "--var", "novalue"}, exitInvalid, "expected --var KEY=VALUE"},
		{[]string{"exec", "-f", ok, "--env", "1BAD=x"}, exitInvalid, "invalid variable name"},
		{[]string{"exec", "--bogus"}, exitInvalid, "flag provided but not defined"},
		{[]string{"exec", "-f", ok, "extra"}, exitInvalid, "unexpected argument"},
		{[]string{"nonsense"}, exitInvalid, "unknown command"},
		{[]string{}, exitInvalid, "Usage"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout+stderr, tt.out) {
				t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", tt.out, stdout, stderr)
			}
		})
	}
}

func TestExecEnvAndVars(t *testing.T) {
	f := writeFile(t, "p.yaml", `namespace: t
variables: {who: nobody}
env: {FROM_DEF: def}
jobs:
  - name: a
    steps:
      - run: echo "who=${{ variables.who }} extra=$EXTRA def=$FROM_DEF"
`)
	stdout, stderr, code := runCLI(t, "exec", "-f", f, "--var", "who=me", "--env", "EXTRA=yes")
	if code != exitOK || !strings.Contains(stdout, "who=me extra=yes def=def") {
		t.Fatalf("code %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestExecSummaryTable(t *testing.T) {
	f := writeFile(t, "p.yaml", "namespace: t\nstages:\n  - name: s1\n    jobs: [{name: a, steps: [{name: one, run: 'echo hi'}, {name: two, run: 'exit 1'}, {name: three, run: 'true'}]}]\n")
	stdout, _, code := runCLI(t, "exec", "-f", f)
	if code != exitFailed {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"[one] hi", "STAGE", "JOB", "STEP", "STATUS", "DURATION", "s1", "failed (exit 1)", "skipped", "run FAILED in"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestExecJSONEvents(t *testing.T) {
	f := writeFile(t, "p.yaml", "namespace: t\njobs: [{name: a, steps: [{name: s, run: 'echo hello'}]}]\n")
	stdout, _, code := runCLI(t, "exec", "-f", f, "--json")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var types []string
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var e struct {
			Type       string `json:"type"`
			RunStatus  string `json:"runStatus"`
			JobStatus  string `json:"jobStatus"`
			StepStatus string `json:"stepStatus"`
			Message    string `json:"message"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		types = append(types, e.Type+":"+e.RunStatus+e.JobStatus+e.StepStatus+e.Message)
	}
	want := "run:running job:queued job:running step:running log:hello step:success job:success run:success summary:"
	if got := strings.Join(types, " "); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
}

func TestValidateCommand(t *testing.T) {
	good := writeFile(t, "good.yaml", "namespace: t\njobs: [{name: a, steps: [{run: x}]}]\n")
	bad := writeFile(t, "bad.yaml", "namespace: t\njobs:\n  - name: a\n    timeout: soon\n    steps: [{run: 'echo ${{ trigger.reff }}'}]\n")
	stdout, stderr, code := runCLI(t, "validate", good, bad)
	if code != exitInvalid {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stdout, good+": ok") {
		t.Errorf("stdout: %s", stdout)
	}
	for _, want := range []string{bad + ":4:14: jobs[0].timeout: invalid duration", bad + ":5:37: jobs[0].steps[0].run: trigger has no field \"reff\""} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, _, code := runCLI(t, "validate", good); code != exitOK {
		t.Errorf("valid file: exit %d", code)
	}
	if _, _, code := runCLI(t, "validate"); code != exitInvalid {
		t.Errorf("no file: exit %d", code)
	}
}

func TestSchemaCommand(t *testing.T) {
	stdout, _, code := runCLI(t, "schema")
	if code != exitOK || !json.Valid([]byte(stdout)) || !strings.Contains(stdout, `"namespace"`) {
		t.Fatalf("exit %d: %.200s", code, stdout)
	}
}

// TestCtrlC sends SIGINT to a real `runnel exec` running a long step that also
// forks a background child: the run ends cancelled with exit 1 and no process of
// the run survives.
func TestCtrlC(t *testing.T) {
	marker := "runnel-ctrlc-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	f := writeFile(t, "p.yaml", `namespace: t
jobs:
  - name: a
    steps:
      - name: long
        run: |
          sleep 300 &
          echo started
          sleep 301
      - name: cleanup
        if: ${{ always() }}
        run: echo cleanup ran
`)
	cmd := exec.Command(binary, "exec", "-f", f, "--env", "MARKER="+marker)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var out strings.Builder
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "started") {
			break
		}
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	elapsed := time.Since(start)
	code := cmd.ProcessState.ExitCode()
	if code != exitFailed {
		t.Fatalf("exit %d (%v)\n%s\n%s", code, err, out.String(), stderr.String())
	}
	if elapsed > 15*time.Second {
		t.Errorf("cancellation took %s", elapsed)
	}
	for _, want := range []string{"cleanup ran", "run CANCELLED"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if pids := processesWithEnv("MARKER=" + marker); len(pids) > 0 {
		t.Fatalf("processes left behind: %v", pids)
	}
}

// processesWithEnv lists the PIDs whose environment contains kv.
func processesWithEnv(kv string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, v := range bytes.Split(b, []byte{0}) {
			if string(v) == kv {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func TestExecSecret(t *testing.T) {
	t.Setenv("RUNNEL_TEST_SECRET", "s3cr3t-v4lue")
	f := writeFile(t, "p.yaml", "namespace: t\njobs:\n  - name: a\n    env: {S: \"${{ secrets.RUNNEL_TEST_SECRET }}\"}\n    steps:\n      - run: echo \"value $S\"; printf '%s' \"${S:0:4}\"; sleep 0.1; echo \"${S:4}\"\n")
	out, errOut, code := runCLI(t, "exec", "-f", f, "--secret", "RUNNEL_TEST_SECRET", "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(out, "s3cr3t-v4lue") || strings.Contains(out, "v4lue") || strings.Count(out, "***") < 2 {
		t.Fatalf("the secret should be masked, also when split across writes:\n%s", out)
	}
	if _, errOut, code := runCLI(t, "exec", "-f", f, "--secret", "RUNNEL_TEST_UNSET_VAR"); code != exitInvalid || !strings.Contains(errOut, "not set") {
		t.Fatalf("unset secret: %d %s", code, errOut)
	}
	// secrets cannot be used in a script's text.
	g := writeFile(t, "q.yaml", "namespace: t\njobs:\n  - name: a\n    steps:\n      - run: echo ${{ secrets.X }}\n")
	if _, errOut, code := runCLI(t, "validate", g); code != exitInvalid || !strings.Contains(errOut, "secrets can only be used in env and args") {
		t.Fatalf("secrets in run: %d %s", code, errOut)
	}
}

// TestExecArtifactsAndCache: runnel exec passes artifacts between stages of
// one run, and, with a kept --workdir, restores a cache on the next run.
func TestExecArtifactsAndCache(t *testing.T) {
	f := writeFile(t, "p.yaml", `namespace: t
stages:
  - name: build
    jobs:
      - name: make
        steps:
          - run: echo v1 > lock; mkdir -p out; echo payload > out/file
          - name: cache
            uses: actions/cache@v1
            args: {key: "k-${{ hashFiles('lock') }}", paths: [.deps]}
          - run: if [ -f .deps/d ]; then echo "deps warm"; else mkdir -p .deps; echo x > .deps/d; echo "deps cold"; fi
          - uses: actions/artifact-upload@v1
            args: {name: out, paths: out}
  - name: use
    jobs:
      - name: read
        steps:
          - uses: actions/artifact-download@v1
            args: {name: out}
          - run: cat out/file
`)
	wd := t.TempDir()
	out, errOut, code := runCLI(t, "exec", "-f", f, "--workdir", wd)
	if code != exitOK || !strings.Contains(out, "payload") || !strings.Contains(out, "deps cold") || !strings.Contains(out, "saved cache k-") {
		t.Fatalf("first run: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, "exec", "-f", f, "--workdir", wd)
	if code != exitOK || !strings.Contains(out, "cache hit") || !strings.Contains(out, "deps warm") {
		t.Fatalf("second run: exit %d\n%s\n%s", code, out, errOut)
	}
}
