package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/backend"
)

// newBackend returns a Backend rooted in a temporary directory. Tests pass
// short grace periods so that nothing waits for the 10s default.
func newBackend(t *testing.T, opts Options) *Backend {
	t.Helper()
	if opts.Root == "" {
		opts.Root = t.TempDir()
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// setupJob sets up a job and registers its destruction.
func setupJob(t *testing.T, b *Backend, id string) (*backend.Job, string) {
	t.Helper()
	job := &backend.Job{ID: id, Name: "job " + id}
	ws, err := b.SetupJob(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.DestroyJob(context.Background(), job); err != nil {
			t.Errorf("DestroyJob: %v", err)
		}
	})
	return job, ws.Path
}

// runStep runs a script as step id and returns its result and output.
func runStep(t *testing.T, b *Backend, job *backend.Job, step *backend.Step) (backend.Result, string, error) {
	t.Helper()
	var out bytes.Buffer
	res, err := b.RunStep(context.Background(), job, step, &out)
	return res, out.String(), err
}

// mustRun runs a step that must not fail to run.
func mustRun(t *testing.T, b *Backend, job *backend.Job, step *backend.Step) (backend.Result, string) {
	t.Helper()
	res, out, err := runStep(t, b, job, step)
	if err != nil {
		t.Fatalf("RunStep: %v (output %q)", err, out)
	}
	return res, out
}

// gone reports whether pid no longer runs (absent, or a zombie nobody reaped).
func gone(pid int) bool {
	p, err := readStat(pid)
	return err != nil || p.zombie
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readPIDs waits for path to hold whitespace-separated PIDs and returns them.
func readPIDs(t *testing.T, path string, n int) []int {
	t.Helper()
	var pids []int
	ok := waitFor(5*time.Second, func() bool {
		data, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		fields := strings.Fields(string(data))
		if len(fields) < n {
			return false
		}
		pids = pids[:0]
		for _, f := range fields {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return false
			}
			pids = append(pids, pid)
		}
		return true
	})
	if !ok {
		t.Fatalf("%s never held %d PIDs", path, n)
	}
	return pids
}

// killOnCleanup makes sure a test that fails half-way leaves no sleeper behind.
func killOnCleanup(t *testing.T, pids ...int) {
	t.Cleanup(func() {
		for _, pid := range pids {
			if !gone(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

func TestExitCodes(t *testing.T) {
	b := newBackend(t, Options{})
	job, _ := setupJob(t, b, "exit")
	for _, code := range []int{0, 1, 42} {
		res, _ := mustRun(t, b, job, &backend.Step{ID: fmt.Sprintf("s%d", code), Script: fmt.Sprintf("echo hi\nexit %d\n", code)})
		if res.ExitCode != code {
			t.Errorf("exit %d: got ExitCode %d", code, res.ExitCode)
		}
	}
	// Killed by a signal: -1.
	res, _ := mustRun(t, b, job, &backend.Step{ID: "signal", Script: "kill -9 $$\n"})
	if res.ExitCode != -1 {
		t.Errorf("killed by SIGKILL: got ExitCode %d, want -1", res.ExitCode)
	}
}

func TestEnvAndWorkingDir(t *testing.T) {
	b := newBackend(t, Options{BaseEnv: []string{"PATH=" + os.Getenv("PATH"), "BASE=base", "OVER=base", "RUNNEL_LOCAL_JOB=outer", "CI=false"}})
	job, ws := setupJob(t, b, "env")
	if !filepath.IsAbs(ws) || filepath.Base(ws) != "workspace" {
		t.Fatalf("workspace %q", ws)
	}
	if err := os.Mkdir(filepath.Join(ws, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	res, out := mustRun(t, b, job, &backend.Step{
		ID:         "env",
		Script:     `echo "$BASE|$OVER|$STEP|$CI|$RUNNEL_LOCAL_JOB|$PWD|$RUNNEL_WORKSPACE|$RUNNEL_OUTPUT"; test ! -e "$RUNNEL_OUTPUT"`,
		Env:        map[string]string{"OVER": "step", "STEP": "with space 'and' \"quotes\""},
		WorkingDir: "sub",
	})
	want := fmt.Sprintf("base|step|with space 'and' \"quotes\"|true|%s|%s|%s|%s\n",
		filepath.Dir(ws), filepath.Join(ws, "sub"), ws, filepath.Join(filepath.Dir(ws), "tmp", "env.output"))
	if res.ExitCode != 0 || out != want {
		t.Fatalf("got %d %q, want %q", res.ExitCode, out, want)
	}

	// An absolute working directory is used as is.
	abs := t.TempDir()
	_, out = mustRun(t, b, job, &backend.Step{ID: "abs", Script: "pwd", WorkingDir: abs})
	if out != abs+"\n" {
		t.Errorf("absolute working dir: got %q", out)
	}

	// The script never touches the disk: it is read from an in-memory file.
	_, out = mustRun(t, b, job, &backend.Step{ID: "where", Script: "echo $0"})
	if out != "/dev/fd/3\n" {
		t.Errorf("script path: got %q", out)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(ws), "tmp", "step.sh")); !os.IsNotExist(err) {
		t.Errorf("a script file was written: %v", err)
	}

	_, _, err := runStep(t, b, job, &backend.Step{ID: "missing", Script: "true", WorkingDir: "nope"})
	if err == nil || !strings.Contains(err.Error(), `working directory "nope" does not exist`) {
		t.Errorf("missing working dir: %v", err)
	}
	_, _, err = runStep(t, b, job, &backend.Step{ID: "badenv", Script: "true", Env: map[string]string{"A=B": "x"}})
	if err == nil {
		t.Errorf("an env name with '=' must be rejected")
	}
}

func TestShells(t *testing.T) {
	b := newBackend(t, Options{})
	job, ws := setupJob(t, b, "shells")

	// Default: bash with -e and pipefail, no profile.
	res, out := mustRun(t, b, job, &backend.Step{ID: "pipefail", Script: "echo \"bash=${BASH_VERSION:+yes}\"\nfalse | true\necho after\n"})
	if res.ExitCode != 1 || out != "bash=yes\n" {
		t.Errorf("default shell: got %d %q, want exit 1 and no 'after'", res.ExitCode, out)
	}
	res, out = mustRun(t, b, job, &backend.Step{ID: "bash", Shell: "bash", Script: "false | true\necho after\n"})
	if res.ExitCode != 1 || out != "" {
		t.Errorf("bash: got %d %q", res.ExitCode, out)
	}

	// sh: -e stops at the first failure.
	res, out = mustRun(t, b, job, &backend.Step{ID: "sh", Shell: "sh", Script: "echo one\nfalse\necho two\n"})
	if res.ExitCode != 1 || out != "one\n" {
		t.Errorf("sh: got %d %q", res.ExitCode, out)
	}

	// Default falls back to sh when the step's PATH has no bash.
	shPath, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(ws, "bin")
	os.Mkdir(bin, 0o755)
	if err := os.Symlink(shPath, filepath.Join(bin, "sh")); err != nil {
		t.Fatal(err)
	}
	res, out = mustRun(t, b, job, &backend.Step{ID: "fallback", Script: "echo \"${BASH_VERSION:-no bash}\"\nfalse\necho unreachable\n", Env: map[string]string{"PATH": bin}})
	if res.ExitCode != 1 || out != "no bash\n" {
		t.Errorf("sh fallback: got %d %q", res.ExitCode, out)
	}
	_, _, err = runStep(t, b, job, &backend.Step{ID: "nobash", Shell: "bash", Script: "true", Env: map[string]string{"PATH": bin}})
	if err == nil || !strings.Contains(err.Error(), "bash: executable not found") {
		t.Errorf("explicit bash missing from PATH: %v", err)
	}

	// Command templates, with and without {0}, run without a shell.
	res, out = mustRun(t, b, job, &backend.Step{ID: "tmpl", Shell: "sh -u {0}", Script: "echo \"template $0\"\necho $UNSET_VAR\necho unreachable"})
	if want := "template /dev/fd/3\n"; res.ExitCode == 0 || !strings.HasPrefix(out, want) || strings.Contains(out, "unreachable") {
		t.Errorf("template {0}: got %d %q, want failure after %q", res.ExitCode, out, want)
	}
	_, out = mustRun(t, b, job, &backend.Step{ID: "append", Shell: "cat", Script: "not run, printed\n"})
	if out != "not run, printed\n" {
		t.Errorf("template without {0}: got %q", out)
	}
	_, _, err = runStep(t, b, job, &backend.Step{ID: "unknown", Shell: "no-such-interpreter {0}", Script: "true"})
	if err == nil || !strings.Contains(err.Error(), "no-such-interpreter") {
		t.Errorf("unknown interpreter: %v", err)
	}
}

func TestOutputs(t *testing.T) {
	b := newBackend(t, Options{})
	job, _ := setupJob(t, b, "outputs")
	res, out := mustRun(t, b, job, &backend.Step{ID: "out", Script: `
echo "version=1.2.3" >> "$RUNNEL_OUTPUT"
{
  echo "notes<<EOF"
  echo "line one"
  echo "line two"
  echo "EOF"
  echo "not an output"
  echo "empty="
} >> "$RUNNEL_OUTPUT"
echo done
`})
	want := map[string]string{"version": "1.2.3", "notes": "line one\nline two", "empty": ""}
	if res.ExitCode != 0 || fmt.Sprint(res.Outputs) != fmt.Sprint(want) {
		t.Errorf("outputs: got %q, want %q", res.Outputs, want)
	}
	if wantOut := "done\nrunnel: ignoring malformed line 6 in $RUNNEL_OUTPUT: expected KEY=VALUE or KEY<<DELIMITER, got \"not an output\"\n"; out != wantOut {
		t.Errorf("output: got %q, want %q", out, wantOut)
	}

	// Warnings start on a line of their own.
	_, out = mustRun(t, b, job, &backend.Step{ID: "noeol", Script: "echo junk >> \"$RUNNEL_OUTPUT\"; printf 'no newline'"})
	if want := "no newline\nrunnel: ignoring malformed line 1 in $RUNNEL_OUTPUT: expected KEY=VALUE or KEY<<DELIMITER, got \"junk\"\n"; out != want {
		t.Errorf("got %q, want %q", out, want)
	}

	// Each step starts with an empty output file, and a failing step still
	// reports what it wrote.
	res, _ = mustRun(t, b, job, &backend.Step{ID: "out2", Script: "echo a=1 >> \"$RUNNEL_OUTPUT\"; exit 3"})
	if res.ExitCode != 3 || len(res.Outputs) != 1 || res.Outputs["a"] != "1" {
		t.Errorf("second step: %+v", res)
	}
	// The output file does not exist until the step writes to it; a step
	// that writes nothing has no outputs and no warning.
	res, out = mustRun(t, b, job, &backend.Step{ID: "out3", Script: "test ! -e \"$RUNNEL_OUTPUT\" && echo absent"})
	if res.ExitCode != 0 || len(res.Outputs) != 0 || out != "absent\n" {
		t.Errorf("untouched output file: %+v %q", res, out)
	}
	// A step that writes it, then deletes it, has no outputs either.
	res, out = mustRun(t, b, job, &backend.Step{ID: "out4", Script: "echo a=1 >> \"$RUNNEL_OUTPUT\"; rm \"$RUNNEL_OUTPUT\""})
	if res.ExitCode != 0 || len(res.Outputs) != 0 {
		t.Errorf("deleted output file: %+v %q", res, out)
	}
}

func TestCancelKillsProcessGroup(t *testing.T) {
	const grace = 2 * time.Second
	b := newBackend(t, Options{GracePeriod: grace})
	job, ws := setupJob(t, b, "cancel")
	pidFile := filepath.Join(ws, "pids")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type result struct {
		res backend.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := b.RunStep(ctx, job, &backend.Step{ID: "s", Script: `
sh -c 'sleep 300' &
echo $! > "$RUNNEL_WORKSPACE/pids.tmp"
sleep 301 &
echo $! >> "$RUNNEL_WORKSPACE/pids.tmp"
mv "$RUNNEL_WORKSPACE/pids.tmp" "$RUNNEL_WORKSPACE/pids"
wait
`}, io.Discard)
		done <- result{res, err}
	}()
	pids := readPIDs(t, pidFile, 2)
	killOnCleanup(t, pids...)
	start := time.Now()
	cancel()
	r := <-done
	elapsed := time.Since(start)
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("RunStep error %v, want context.Canceled", r.err)
	}
	if r.res.ExitCode != -1 {
		t.Errorf("ExitCode %d, want -1", r.res.ExitCode)
	}
	if elapsed > grace {
		t.Errorf("RunStep took %v to return after cancel, grace period is %v", elapsed, grace)
	}
	for _, pid := range pids {
		if !waitFor(time.Second, func() bool { return gone(pid) }) {
			t.Errorf("process %d still runs after cancel", pid)
		}
	}
}

func TestCancelDeadline(t *testing.T) {
	b := newBackend(t, Options{GracePeriod: time.Second})
	job, _ := setupJob(t, b, "deadline")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := b.RunStep(ctx, job, &backend.Step{ID: "s", Script: "sleep 300"}, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	// Already cancelled: nothing starts.
	_, err = b.RunStep(ctx, job, &backend.Step{ID: "s2", Script: "touch \"$RUNNEL_WORKSPACE/ran\""}, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
}

func TestCancelIgnoringSIGTERMGetsSIGKILL(t *testing.T) {
	const grace = 300 * time.Millisecond
	b := newBackend(t, Options{GracePeriod: grace})
	job, ws := setupJob(t, b, "stubborn")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var res backend.Result
	go func() {
		var err error
		res, err = b.RunStep(ctx, job, &backend.Step{ID: "s", Script: `
trap '' TERM
sleep 300 &
echo "$$ $!" > "$RUNNEL_WORKSPACE/pids.tmp"
mv "$RUNNEL_WORKSPACE/pids.tmp" "$RUNNEL_WORKSPACE/pids"
wait
`}, io.Discard)
		done <- err
	}()
	pids := readPIDs(t, filepath.Join(ws, "pids"), 2)
	killOnCleanup(t, pids...)
	start := time.Now()
	cancel()
	err := <-done
	elapsed := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if elapsed < grace || elapsed > grace+2*time.Second {
		t.Errorf("returned %v after cancel, want just after the %v grace period", elapsed, grace)
	}
	if res.ExitCode != -1 {
		t.Errorf("ExitCode %d, want -1 (SIGKILL)", res.ExitCode)
	}
	for _, pid := range pids {
		if !waitFor(time.Second, func() bool { return gone(pid) }) {
			t.Errorf("process %d survived SIGKILL", pid)
		}
	}
}

func TestBackgroundChildDoesNotHangStep(t *testing.T) {
	b := newBackend(t, Options{})
	job, ws := setupJob(t, b, "bg")
	start := time.Now()
	res, out := mustRun(t, b, job, &backend.Step{ID: "s", Script: "sleep 300 &\necho $! > \"$RUNNEL_WORKSPACE/pid\"\necho started\n"})
	// OutputDrain is 250ms; the slack is for loaded CI machines, the child
	// would hold the pipe for 300s.
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("step with a background child took %v", elapsed)
	}
	if res.ExitCode != 0 || out != "started\n" {
		t.Errorf("got %d %q", res.ExitCode, out)
	}
	pid := readPIDs(t, filepath.Join(ws, "pid"), 1)[0]
	killOnCleanup(t, pid)
	if gone(pid) {
		t.Fatalf("background child %d must survive its step until DestroyJob", pid)
	}
	if err := b.DestroyJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) {
		t.Errorf("DestroyJob left background child %d running", pid)
	}
	if _, err := os.Stat(ws); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("workspace not removed: %v", err)
	}
}

func TestOutputOfBackgroundChildWithinDrain(t *testing.T) {
	b := newBackend(t, Options{OutputDrain: 5 * time.Second})
	job, _ := setupJob(t, b, "drain")
	start := time.Now()
	_, out := mustRun(t, b, job, &backend.Step{ID: "s", Script: "(sleep 0.1; echo late) &\necho early\n"})
	if out != "early\nlate\n" {
		t.Errorf("got %q", out)
	}
	// EOF ends the drain at once: no waiting for the full OutputDrain.
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("took %v", elapsed)
	}
}

func TestBackgroundServerKeepsRunningAndLogging(t *testing.T) {
	b := newBackend(t, Options{OutputDrain: 50 * time.Millisecond})
	job, ws := setupJob(t, b, "server")
	_, out := mustRun(t, b, job, &backend.Step{ID: "start", Script: `
(trap 'exit 0' TERM; while :; do echo tick; sleep 0.01; done) &
echo $! > "$RUNNEL_WORKSPACE/pid"
`})
	if !strings.HasPrefix(out, "tick\n") && out != "" {
		t.Errorf("output %q", out)
	}
	pid := readPIDs(t, filepath.Join(ws, "pid"), 1)[0]
	killOnCleanup(t, pid)
	// The server goes on printing after its step returned: it must neither
	// block on a full pipe nor die of SIGPIPE.
	time.Sleep(300 * time.Millisecond)
	if gone(pid) {
		t.Fatalf("background server %d died after its step returned", pid)
	}
	res, out := mustRun(t, b, job, &backend.Step{ID: "use", Script: "kill -0 $(cat \"$RUNNEL_WORKSPACE/pid\") && echo alive"})
	if res.ExitCode != 0 || out != "alive\n" {
		t.Errorf("next step: %d %q", res.ExitCode, out)
	}
	if err := b.DestroyJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) {
		t.Errorf("server %d survived DestroyJob", pid)
	}
}

func TestDestroyJobKillsSetsidDaemon(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Fatal("setsid(1) is required: install util-linux")
	}
	b := newBackend(t, Options{GracePeriod: time.Second})
	job, ws := setupJob(t, b, "daemon")
	_, out := mustRun(t, b, job, &backend.Step{ID: "s", Script: `
setsid sh -c 'trap "" TERM; echo $$ > "$RUNNEL_WORKSPACE/pid.tmp"; mv "$RUNNEL_WORKSPACE/pid.tmp" "$RUNNEL_WORKSPACE/pid"; exec sleep 300' >/dev/null 2>&1 < /dev/null &
echo $$ > "$RUNNEL_WORKSPACE/main"
`})
	_ = out
	pid := readPIDs(t, filepath.Join(ws, "pid"), 1)[0]
	mainPID := readPIDs(t, filepath.Join(ws, "main"), 1)[0]
	killOnCleanup(t, pid)
	if sid, _ := getsid(pid); sid != pid || sid == mainPID {
		t.Fatalf("daemon %d did not leave the step's session (sid %d)", pid, sid)
	}
	start := time.Now()
	if err := b.DestroyJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	// It ignores SIGTERM, so it takes the 2s of SIGTERM grace, then SIGKILL.
	if !gone(pid) {
		t.Errorf("setsid daemon %d survived DestroyJob", pid)
	}
	if elapsed := time.Since(start); elapsed > destroyGrace+3*time.Second {
		t.Errorf("DestroyJob took %v", elapsed)
	}
}

// getsid returns the session ID of pid.
func getsid(pid int) (int, error) {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(sid), nil
}

// countingWriter counts bytes and checks they are all 'x'.
type countingWriter struct {
	n     int
	other int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	c.other += len(p) - bytes.Count(p, []byte{'x'})
	return len(p), nil
}

func TestHugeOutputWithoutNewline(t *testing.T) {
	b := newBackend(t, Options{})
	job, _ := setupJob(t, b, "huge")
	var w countingWriter
	res, err := b.RunStep(context.Background(), job, &backend.Step{ID: "s", Script: "head -c 10485760 /dev/zero | tr '\\0' x"}, &w)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%v %d", err, res.ExitCode)
	}
	if w.n != 10<<20 || w.other != 0 {
		t.Errorf("got %d bytes (%d not 'x'), want %d", w.n, w.other, 10<<20)
	}
}

func TestNonUTF8OutputIsRaw(t *testing.T) {
	b := newBackend(t, Options{})
	job, _ := setupJob(t, b, "raw")
	_, out := mustRun(t, b, job, &backend.Step{ID: "s", Script: `printf 'a\377\376b\r\n\000c'; printf 'err\303' >&2`})
	if want := "a\xff\xfeb\r\n\x00cerr\xc3"; out != want {
		t.Errorf("got %q, want %q", out, want)
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write(p []byte) (int, error) { return 0, errors.New("log store down") }

func TestFailingWriterDoesNotBlockStep(t *testing.T) {
	b := newBackend(t, Options{})
	job, _ := setupJob(t, b, "failwriter")
	res, err := b.RunStep(context.Background(), job, &backend.Step{ID: "s", Script: "head -c 1000000 /dev/zero; exit 7"}, failingWriter{})
	if err != nil || res.ExitCode != 7 {
		t.Fatalf("got %v %d", err, res.ExitCode)
	}
}

func TestConcurrentJobs(t *testing.T) {
	b := newBackend(t, Options{})
	const jobs, steps = 6, 4
	var wg sync.WaitGroup
	errs := make(chan error, jobs*steps)
	for j := range jobs {
		wg.Go(func() {
			id := fmt.Sprintf("job%d", j)
			job := &backend.Job{ID: id}
			if _, err := b.SetupJob(context.Background(), job); err != nil {
				errs <- err
				return
			}
			defer func() {
				if err := b.DestroyJob(context.Background(), job); err != nil {
					errs <- err
				}
			}()
			for s := range steps {
				var out bytes.Buffer
				res, err := b.RunStep(context.Background(), job, &backend.Step{
					ID:     fmt.Sprintf("s%d", s),
					Script: `job=$(basename "$RUNNEL_LOCAL_JOB"); echo "$job $STEP" >> "$RUNNEL_WORKSPACE/log"; echo "job=$job" >> "$RUNNEL_OUTPUT"; cat "$RUNNEL_WORKSPACE/log"`,
					Env:    map[string]string{"STEP": strconv.Itoa(s)},
				}, &out)
				var want strings.Builder
				for i := 0; i <= s; i++ {
					fmt.Fprintf(&want, "%s %d\n", id, i)
				}
				switch {
				case err != nil:
					errs <- err
				case res.Outputs["job"] != id || out.String() != want.String():
					errs <- fmt.Errorf("%s step %d: outputs %q, output %q", id, s, res.Outputs, out.String())
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDestroyJobIdempotentAndAfterFailedSetup(t *testing.T) {
	root := t.TempDir()
	b := newBackend(t, Options{Root: root})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // cleanup works with a cancelled ctx

	job := &backend.Job{ID: "twice"}
	if _, err := b.SetupJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := b.DestroyJob(ctx, job); err != nil {
			t.Fatalf("DestroyJob #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "twice")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("job directory still there: %v", err)
	}

	// Never set up.
	if err := b.DestroyJob(ctx, &backend.Job{ID: "never"}); err != nil {
		t.Errorf("DestroyJob of an unknown job: %v", err)
	}

	// Invalid IDs fail SetupJob and RunStep and leave nothing to destroy.
	for _, id := range []string{"", ".", "..", "a/b", "../x", "a b"} {
		bad := &backend.Job{ID: id}
		if _, err := b.SetupJob(context.Background(), bad); err == nil {
			t.Errorf("SetupJob(%q) succeeded", id)
		}
		if _, err := b.RunStep(context.Background(), bad, &backend.Step{ID: "s", Script: "true"}, io.Discard); err == nil {
			t.Errorf("RunStep in job %q succeeded", id)
		}
		if err := b.DestroyJob(ctx, bad); err != nil {
			t.Errorf("DestroyJob(%q): %v", id, err)
		}
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatalf("root damaged: %v", err)
	}

	// Setup failing half-way (the job directory exists as a file).
	if err := os.WriteFile(filepath.Join(root, "clash"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	clash := &backend.Job{ID: "clash"}
	if _, err := b.SetupJob(context.Background(), clash); err == nil {
		t.Fatal("SetupJob over an existing path succeeded")
	}
	if _, err := b.RunStep(context.Background(), clash, &backend.Step{ID: "s", Script: "true"}, io.Discard); err == nil || !strings.Contains(err.Error(), "not set up") {
		t.Errorf("RunStep after failed setup: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := b.DestroyJob(ctx, clash); err != nil {
			t.Errorf("DestroyJob after failed setup #%d: %v", i+1, err)
		}
	}

	// Invalid step IDs.
	okJob, _ := setupJob(t, b, "steps")
	for _, id := range []string{"", "..", "a/b"} {
		if _, err := b.RunStep(context.Background(), okJob, &backend.Step{ID: id, Script: "true"}, io.Discard); err == nil {
			t.Errorf("RunStep with step ID %q succeeded", id)
		}
	}
}

func TestKeepWorkspaces(t *testing.T) {
	root := t.TempDir()
	b := newBackend(t, Options{Root: root, KeepWorkspaces: true})
	job := &backend.Job{ID: "keep"}
	if _, err := b.SetupJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(root, "keep", "workspace")
	_, out := mustRun(t, b, job, &backend.Step{ID: "s", Script: "echo data > file\nsleep 300 &\necho $! > pid\n"})
	_ = out
	pid := readPIDs(t, filepath.Join(ws, "pid"), 1)[0]
	killOnCleanup(t, pid)
	if err := b.DestroyJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(ws, "file")); err != nil || string(data) != "data\n" {
		t.Errorf("kept workspace: %q %v", data, err)
	}
	if !gone(pid) {
		t.Errorf("KeepWorkspaces must still kill processes")
	}
}

func TestDestroyJobRemovesReadOnlyTrees(t *testing.T) {
	root := t.TempDir()
	b := newBackend(t, Options{Root: root})
	job := &backend.Job{ID: "ro"}
	if _, err := b.SetupJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	mustRun(t, b, job, &backend.Step{ID: "s", Script: "mkdir -p a/b && touch a/b/f && chmod -R a-w a"})
	if err := b.DestroyJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "ro")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("job directory still there: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without Root succeeded")
	}
	if _, err := New(Options{Root: t.TempDir(), GracePeriod: -1}); err == nil {
		t.Error("negative GracePeriod accepted")
	}
	b, err := New(Options{Root: filepath.Join(t.TempDir(), "new", "root")})
	if err != nil {
		t.Fatal(err)
	}
	if b.grace != defaultGracePeriod || b.drain != defaultOutputDrain || b.baseEnv == nil {
		t.Errorf("defaults not applied: %v %v", b.grace, b.drain)
	}
}

func TestInterpreter(t *testing.T) {
	path := os.Getenv("PATH")
	tests := []struct {
		shell string
		want  []string // argv[1:]
	}{
		{"", []string{"--noprofile", "--norc", "-eo", "pipefail", "/s.sh"}},
		{"bash", []string{"--noprofile", "--norc", "-eo", "pipefail", "/s.sh"}},
		{"sh", []string{"-e", "/s.sh"}},
		{"sh -x", []string{"-x", "/s.sh"}},
		{"  sh   -c  '{0}'  ", []string{"-c", "'/s.sh'"}},
		{"sh {0} {0}", []string{"/s.sh", "/s.sh"}},
		{"sh --x={0}y", []string{"--x=/s.shy"}},
	}
	for _, tc := range tests {
		argv, err := interpreter(tc.shell, "/s.sh", path)
		if err != nil {
			t.Errorf("%q: %v", tc.shell, err)
			continue
		}
		if !filepath.IsAbs(argv[0]) || fmt.Sprint(argv[1:]) != fmt.Sprint(tc.want) {
			t.Errorf("%q: got %q, want [abs] + %q", tc.shell, argv, tc.want)
		}
	}
	if _, err := interpreter("   ", "/s.sh", path); err == nil {
		t.Error("blank template accepted")
	}
	if argv, err := interpreter("./run {0}", "/s.sh", path); err != nil || argv[0] != "./run" {
		t.Errorf("relative program: %q %v", argv, err)
	}
}

func TestStepEnv(t *testing.T) {
	env, err := stepEnv([]string{"A=1", "B=2", "A=3", "junk", "=x", "CI=0"}, map[string]string{"B": "b", "C": "c"}, map[string]string{"RUNNEL_X": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[A=3 B=b CI=true C=c RUNNEL_X=x]"; fmt.Sprint(env) != want {
		t.Errorf("got %v, want %v", env, want)
	}
	env, _ = stepEnv(nil, map[string]string{"CI": "false"}, nil)
	if fmt.Sprint(env) != "[CI=false]" {
		t.Errorf("a step may set CI itself: %v", env)
	}
	if _, err := stepEnv(nil, map[string]string{"A": "x\x00y"}, nil); err == nil {
		t.Error("NUL in value accepted")
	}
	if envPath([]string{"X=1"}) != defaultPath || envPath([]string{"PATH=/a", "PATH=/b"}) != "/b" {
		t.Error("envPath")
	}
}

// TestBackendsDoNotShareJobs checks that the marker separates two Backends that
// use the same job ID (two agents on one machine): destroying one job leaves
// the other's processes alone.
func TestBackendsDoNotShareJobs(t *testing.T) {
	b1, b2 := newBackend(t, Options{}), newBackend(t, Options{})
	job1, ws1 := setupJob(t, b1, "same")
	job2, ws2 := setupJob(t, b2, "same")
	mustRun(t, b1, job1, &backend.Step{ID: "s", Script: "sleep 300 >/dev/null 2>&1 &\necho $! > pid"})
	mustRun(t, b2, job2, &backend.Step{ID: "s", Script: "sleep 300 >/dev/null 2>&1 &\necho $! > pid"})
	pid1 := readPIDs(t, filepath.Join(ws1, "pid"), 1)[0]
	pid2 := readPIDs(t, filepath.Join(ws2, "pid"), 1)[0]
	killOnCleanup(t, pid1, pid2)
	if err := b1.DestroyJob(context.Background(), job1); err != nil {
		t.Fatal(err)
	}
	if !gone(pid1) {
		t.Errorf("DestroyJob left its own process %d", pid1)
	}
	if gone(pid2) {
		t.Errorf("DestroyJob of one backend killed process %d of another", pid2)
	}
}

// TestCleanupStale: a backend that starts on the Root of one that died (no
// DestroyJob) stops the processes its jobs left and removes their directories.
func TestCleanupStale(t *testing.T) {
	root := t.TempDir()
	dead, err := New(Options{Root: root, GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	job := &backend.Job{ID: "stale"}
	if _, err := dead.SetupJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	res, _, err := runStep(t, dead, job, &backend.Step{ID: "s", Script: "setsid sleep 300 >/dev/null 2>&1 & echo $! > \"$RUNNEL_WORKSPACE/pid\""})
	if err != nil || res.ExitCode != 0 {
		t.Fatal(res, err)
	}
	pidText, err := os.ReadFile(filepath.Join(root, "stale", "workspace", "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if gone(pid) {
		t.Fatalf("the daemon %d is not running", pid)
	}
	// A new backend on the same root (the server restarted) cleans up.
	fresh, err := New(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.CleanupStale(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d survived CleanupStale", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(root, "stale")); !os.IsNotExist(err) {
		t.Fatalf("job directory left: %v", err)
	}
	// Idempotent, and fine on a missing root.
	if err := fresh.CleanupStale(context.Background()); err != nil {
		t.Fatal(err)
	}
	gone, _ := New(Options{Root: filepath.Join(root, "missing")})
	if err := gone.CleanupStale(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestPIDWindow: a job's leftovers are looked for among the PIDs allocated
// since its setup when nothing else can be, and among all processes when the
// window cannot be trusted.
func TestPIDWindow(t *testing.T) {
	b := newBackend(t, Options{})
	w := newPIDWindow(b.self)
	if !w.ok {
		t.Fatal("no PID window: /proc/self, /proc/sys/kernel/ns_last_pid or /proc/stat unreadable")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid

	pids, all := b.candidates(w)
	if all {
		t.Fatalf("candidates(window of %d forks) looks at every process", maxNarrowedScan)
	}
	if !slices.Contains(pids, pid) || slices.Contains(pids, b.self) {
		t.Errorf("candidates = %v: want %d (started after the window), not runnel's own %d", pids, pid, b.self)
	}
	for _, p := range pids {
		if p <= w.after {
			t.Errorf("candidate %d is not after the window's start %d", p, w.after)
		}
	}

	busy := w
	busy.forks -= maxNarrowedScan + 1 // more forks since than the window trusts
	wrapped := w
	wrapped.after += 1 << 22 // the counter is now below the window's start
	for name, win := range map[string]pidWindow{"unknown": {}, "busy host": busy, "counter wrapped": wrapped} {
		if _, all := b.candidates(win); !all {
			t.Errorf("%s: candidates narrowed the scan; want every process", name)
		}
	}
}
