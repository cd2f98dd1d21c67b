package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/runnel-ci/runnel/internal/backend"
	"github.com/runnel-ci/runnel/internal/testdocker"
)

// newBackend returns a Backend with an owner of its own, whose leftovers are
// removed when the test ends.
func newBackend(t *testing.T, opts Options) (*Backend, *client.Client) {
	t.Helper()
	cli := testdocker.Connect(t)
	if opts.Owner == "" {
		opts.Owner = randomOwner()
	}
	if opts.GracePeriod == 0 {
		opts.GracePeriod = time.Second
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.CleanupStale(context.Background()); err != nil {
			t.Errorf("CleanupStale: %v", err)
		}
		b.Close()
	})
	return b, cli
}

func randomOwner() string {
	p := make([]byte, 6)
	_, _ = rand.Read(p)
	return "test-" + hex.EncodeToString(p)
}

// setupJob sets up a job and registers its destruction.
func setupJob(t *testing.T, b *Backend, job *backend.Job) {
	t.Helper()
	if _, err := b.SetupJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.DestroyJob(context.Background(), job); err != nil {
			t.Errorf("DestroyJob: %v", err)
		}
	})
}

func runStep(t *testing.T, b *Backend, job *backend.Job, step *backend.Step) (backend.Result, string, error) {
	t.Helper()
	var out bytes.Buffer
	res, err := b.RunStep(context.Background(), job, step, &out)
	return res, out.String(), err
}

func mustRun(t *testing.T, b *Backend, job *backend.Job, step *backend.Step) (backend.Result, string) {
	t.Helper()
	res, out, err := runStep(t, b, job, step)
	if err != nil {
		t.Fatalf("RunStep %s: %v (output %q)", step.ID, err, out)
	}
	return res, out
}

// TestJobInImage: steps run in the job's image (busybox, no bash, no
// /etc/os-release) with the workspace shared between them, outputs
// published through $RUNNEL_OUTPUT and exit codes reported.
func TestJobInImage(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, Options{})
	job := &backend.Job{ID: "image-1", Name: "image", Image: testdocker.Busybox}
	setupJob(t, b, job)

	res, out := mustRun(t, b, job, &backend.Step{ID: "step-1", Name: "first", Script: `
test ! -e /etc/os-release
test -x /bin/busybox
! command -v bash
pwd
echo "ws=$RUNNEL_WORKSPACE ci=$CI"
echo shared > file.txt
echo "version=1.2.3" >> "$RUNNEL_OUTPUT"
printf 'notes<<EOF\nline 1\nline 2\nEOF\n' >> "$RUNNEL_OUTPUT"
printf 'no newline at the end'
`})
	if res.ExitCode != 0 {
		t.Fatalf("exit code %d, output %q", res.ExitCode, out)
	}
	for _, want := range []string{"/runnel/workspace\n", "ws=/runnel/workspace ci=true\n", "no newline at the end"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if res.Outputs["version"] != "1.2.3" || res.Outputs["notes"] != "line 1\nline 2" {
		t.Errorf("outputs = %q", res.Outputs)
	}

	res, out = mustRun(t, b, job, &backend.Step{ID: "step-2", Name: "second", Shell: "sh", Script: "cat file.txt\necho stderr >&2\nexit 3\n"})
	if res.ExitCode != 3 || out != "shared\nstderr\n" {
		t.Errorf("second step: exit code %d, output %q; want 3, \"shared\\nstderr\\n\"", res.ExitCode, out)
	}
	if len(res.Outputs) != 0 {
		t.Errorf("second step outputs %q, want none (each step has its own $RUNNEL_OUTPUT)", res.Outputs)
	}

	// -e: a failing command ends the script.
	res, out = mustRun(t, b, job, &backend.Step{ID: "step-3", Name: "errexit", Script: "false\necho not reached\n"})
	if res.ExitCode != 1 || strings.Contains(out, "not reached") {
		t.Errorf("errexit: exit code %d, output %q", res.ExitCode, out)
	}

	// A command template: "{0}" is the script file.
	res, out = mustRun(t, b, job, &backend.Step{ID: "step-4", Name: "template", Shell: "busybox sh {0}", Script: "echo sourced; false; echo no -e\n"})
	if res.ExitCode != 0 || out != "sourced\nno -e\n" {
		t.Errorf("template shell: exit code %d, output %q", res.ExitCode, out)
	}
	res, out = mustRun(t, b, job, &backend.Step{ID: "step-5", Name: "cat", Shell: "cat", Script: "the script itself\n"})
	if res.ExitCode != 0 || out != "the script itself\n" {
		t.Errorf("shell cat: exit code %d, output %q", res.ExitCode, out)
	}

	// bash is not in the image: the step fails as a command not found.
	res, out = mustRun(t, b, job, &backend.Step{ID: "step-6", Name: "bash", Shell: "bash", Script: "echo hi\n"})
	if res.ExitCode != 127 || !strings.Contains(out, "bash") {
		t.Errorf("shell bash in an image without bash: exit code %d, output %q", res.ExitCode, out)
	}
}

// TestEnvAndWorkingDir: step env on top of the image's, CI=true, and working
// directories relative to the workspace or absolute.
func TestEnvAndWorkingDir(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, Options{})
	job := &backend.Job{ID: "env-1", Name: "env", Image: testdocker.Busybox}
	setupJob(t, b, job)

	_, out := mustRun(t, b, job, &backend.Step{ID: "step-1", Env: map[string]string{"GREETING": "hello world", "QUOTE": `it's "quoted"`},
		Script: "echo \"$GREETING|$QUOTE|$CI|$PATH\"\nmkdir -p sub/dir\n"})
	if out != "hello world|it's \"quoted\"|true|/bin\n" {
		t.Errorf("env output %q", out)
	}
	_, out = mustRun(t, b, job, &backend.Step{ID: "step-2", WorkingDir: "sub/dir", Env: map[string]string{"CI": "no"}, Script: "pwd\necho $CI\n"})
	if out != "/runnel/workspace/sub/dir\nno\n" {
		t.Errorf("relative working directory: output %q", out)
	}
	_, out = mustRun(t, b, job, &backend.Step{ID: "step-3", WorkingDir: "/tmp", Script: "pwd\n"})
	if out != "/tmp\n" {
		t.Errorf("absolute working directory: output %q", out)
	}
	_, _, err := runStep(t, b, job, &backend.Step{ID: "step-4", WorkingDir: "missing", Script: "pwd\n"})
	if err == nil || !strings.Contains(err.Error(), `working directory "missing" does not exist`) {
		t.Errorf("missing working directory: err %v", err)
	}
	// The backend's own variables win over the step's.
	_, out = mustRun(t, b, job, &backend.Step{ID: "step-5", Env: map[string]string{"RUNNEL_WORKSPACE": "/elsewhere"}, Script: "echo $RUNNEL_WORKSPACE\n"})
	if out != "/runnel/workspace\n" {
		t.Errorf("RUNNEL_WORKSPACE overridden: %q", out)
	}
}

// TestService: a service is reachable from the steps by its name.
func TestService(t *testing.T) {
	t.Parallel()
	b, cli := newBackend(t, Options{})
	job := &backend.Job{ID: "svc-1", Name: "svc", Image: testdocker.Busybox, Services: []backend.Service{{
		Name:  "web",
		Image: testdocker.Busybox,
		Env:   map[string]string{"BODY": "served by web"},
		Command: []string{"sh", "-c",
			`mkdir -p /www && echo "$BODY" > /www/x && exec httpd -f -p 8080 -h /www`},
	}}}
	setupJob(t, b, job)
	res, out := mustRun(t, b, job, &backend.Step{ID: "step-1", Script: `
for i in $(seq 1 50); do
  if wget -qO- http://web:8080/x; then exit 0; fi
  sleep 0.1
done
exit 1
`})
	if res.ExitCode != 0 || !strings.Contains(out, "served by web") {
		t.Fatalf("exit code %d, output %q", res.ExitCode, out)
	}
	if left := testdocker.Leftovers(t, cli, b.Owner(), job.ID); len(left) != 3 {
		t.Errorf("while the job runs: %q, want the service, the network and the volume", left)
	}
	if err := b.DestroyJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if left := testdocker.Leftovers(t, cli, b.Owner(), job.ID); len(left) != 0 {
		t.Errorf("after DestroyJob: %q", left)
	}
	// Idempotent.
	if err := b.DestroyJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
}

// TestPlugin: a plugin step runs its image's entrypoint in the workspace.
func TestPlugin(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, Options{})
	job := &backend.Job{ID: "plugin-1", Name: "plugin", Image: testdocker.Busybox, Plugins: []string{testdocker.Plugin}}
	setupJob(t, b, job)
	res, out := mustRun(t, b, job, &backend.Step{ID: "step-1", Image: testdocker.Plugin,
		Env: map[string]string{"PLUGIN_TARGET": "prod", "PLUGIN_TAGS": "a,b", "OTHER": "x"}})
	if res.ExitCode != 0 || out != "plugin: pwd=/runnel/workspace\nPLUGIN_TAGS=a,b\nPLUGIN_TARGET=prod\n" {
		t.Errorf("plugin: exit code %d, output %q", res.ExitCode, out)
	}
	_, out = mustRun(t, b, job, &backend.Step{ID: "step-2", Script: "cat plugin.txt\n"})
	if out != "ran\n" {
		t.Errorf("the plugin's file in the workspace: %q", out)
	}
	res, _ = mustRun(t, b, job, &backend.Step{ID: "step-3", Image: testdocker.Plugin, Env: map[string]string{"PLUGIN_EXIT_CODE": "4"}})
	if res.ExitCode != 4 {
		t.Errorf("plugin exit code %d, want 4", res.ExitCode)
	}
	// A job of plugins only needs no image; its run steps fail clearly.
	job2 := &backend.Job{ID: "plugin-2", Name: "plugins only", Plugins: []string{testdocker.Plugin}}
	setupJob(t, b, job2)
	res, out = mustRun(t, b, job2, &backend.Step{ID: "step-1", Image: testdocker.Plugin})
	if res.ExitCode != 0 || !strings.Contains(out, "plugin: pwd=") {
		t.Errorf("plugin-only job: exit code %d, output %q", res.ExitCode, out)
	}
	_, _, err := runStep(t, b, job2, &backend.Step{ID: "step-2", Name: "script", Script: "true"})
	if err == nil || !strings.Contains(err.Error(), "has no image") {
		t.Errorf("run step in a job without image: %v", err)
	}
}

// TestStopStep: a timeout or cancellation stops the step's container with
// SIGTERM, and with SIGKILL after the grace period when SIGTERM is ignored;
// no container of the step is left.
func TestStopStep(t *testing.T) {
	t.Parallel()
	const grace = 1500 * time.Millisecond
	b, cli := newBackend(t, Options{GracePeriod: grace})
	job := &backend.Job{ID: "stop-1", Name: "stop", Image: testdocker.Busybox}
	setupJob(t, b, job)

	// run runs script and stops it (timeout) d after it printed "started".
	run := func(id, script string, d time.Duration) (backend.Result, string, error, time.Duration) {
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		var stopped time.Time
		out := &watchWriter{want: "started\n", seen: func() {
			stopped = time.Now().Add(d)
			time.AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
		}}
		res, err := b.RunStep(ctx, job, &backend.Step{ID: id, Script: script}, out)
		if stopped.IsZero() {
			t.Fatalf("step %s never printed started: %v, %q", id, err, out.buf.String())
		}
		return res, out.buf.String(), err, time.Since(stopped)
	}
	res, out, err, took := run("step-1", "echo started\nsleep 30\n", 300*time.Millisecond)
	if !errors.Is(err, context.Canceled) || res.ExitCode != -1 {
		t.Errorf("timeout: result %+v, err %v", res, err)
	}
	if out != "started\n" {
		t.Errorf("output %q", out)
	}
	if took > grace {
		t.Errorf("a step that obeys SIGTERM took %s to stop (grace %s)", took, grace)
	}

	res, out, err, took = run("step-2", "trap 'echo got TERM' TERM\necho started\nwhile :; do sleep 0.1; done\n", 300*time.Millisecond)
	if !errors.Is(err, context.Canceled) || res.ExitCode != -1 {
		t.Errorf("timeout: result %+v, err %v", res, err)
	}
	if !strings.Contains(out, "got TERM") {
		t.Errorf("the step did not see SIGTERM: %q", out)
	}
	if took < grace-100*time.Millisecond || took > grace+5*time.Second {
		t.Errorf("a step that ignores SIGTERM stopped %s after the signal; want the grace period, %s", took, grace)
	}

	// Cancellation.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out3 := &watchWriter{want: "started\n", seen: cancel}
	go func() {
		_, err := b.RunStep(ctx, job, &backend.Step{ID: "step-3", Script: "echo started\nsleep 30\n"}, out3)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancel: err %v", err)
		}
	case <-time.After(grace + 5*time.Second):
		t.Fatal("RunStep did not return after cancel")
	}
	left := testdocker.Leftovers(t, cli, b.Owner(), job.ID)
	for _, l := range left {
		if strings.HasPrefix(l, "container") {
			t.Errorf("left after stopped steps: %s", l)
		}
	}
	// An already cancelled step does not start.
	_, _, err = runStepCtx(ctx, b, job, &backend.Step{ID: "step-4", Script: "echo no"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled before the start: %v", err)
	}
}

func runStepCtx(ctx context.Context, b *Backend, job *backend.Job, step *backend.Step) (backend.Result, string, error) {
	var out bytes.Buffer
	res, err := b.RunStep(ctx, job, step, &out)
	return res, out.String(), err
}

// TestCancelLeavesNothing: cancelling a job mid-step, then DestroyJob (as the
// executor does) leaves no labelled container, network or volume.
func TestCancelLeavesNothing(t *testing.T) {
	t.Parallel()
	b, cli := newBackend(t, Options{GracePeriod: 500 * time.Millisecond})
	job := &backend.Job{ID: "cancel-1", Name: "cancel", Image: testdocker.Busybox,
		Services: []backend.Service{{Name: "idle", Image: testdocker.Busybox, Command: []string{"sleep", "300"}}}}
	if _, err := b.SetupJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	if _, _, err := runStepCtx(ctx, b, job, &backend.Step{ID: "step-1", Script: "sleep 30"}); !errors.Is(err, context.Canceled) {
		t.Errorf("RunStep: %v", err)
	}
	if err := b.DestroyJob(ctx, job); err != nil { // a cancelled ctx, as after a cancel
		t.Fatal(err)
	}
	if left := testdocker.Leftovers(t, cli, b.Owner(), ""); len(left) != 0 {
		t.Errorf("left after cancel and DestroyJob: %q", left)
	}
}

// TestPullPolicy: a missing image with pullPolicy never fails the setup with
// an error naming the image and the policy; invalid policies are refused.
func TestPullPolicy(t *testing.T) {
	t.Parallel()
	b, cli := newBackend(t, Options{})
	job := &backend.Job{ID: "pull-1", Name: "pull", Image: "runnel-test/absent:1", PullPolicy: backend.PullNever}
	_, err := b.SetupJob(context.Background(), job)
	if err == nil || !strings.Contains(err.Error(), `image "runnel-test/absent:1" is not present and pullPolicy is never`) {
		t.Errorf("SetupJob: %v", err)
	}
	if err := b.DestroyJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	// A present image needs no pull under never.
	job2 := &backend.Job{ID: "pull-2", Name: "pull", Image: testdocker.Busybox, PullPolicy: backend.PullNever}
	setupJob(t, b, job2)
	// A missing plugin image fails its step.
	_, _, err = runStep(t, b, job2, &backend.Step{ID: "step-1", Image: "runnel-test/absent-plugin:1"})
	if err == nil || !strings.Contains(err.Error(), `image "runnel-test/absent-plugin:1" is not present and pullPolicy is never`) {
		t.Errorf("plugin step: %v", err)
	}
	job3 := &backend.Job{ID: "pull-3", Name: "pull", Image: testdocker.Busybox, PullPolicy: "sometimes"}
	if _, err := b.SetupJob(context.Background(), job3); err == nil || !strings.Contains(err.Error(), `invalid pull policy "sometimes"`) {
		t.Errorf("invalid policy: %v", err)
	}
	b.DestroyJob(context.Background(), job3)
	if left := testdocker.Leftovers(t, cli, b.Owner(), "pull-1"); len(left) != 0 {
		t.Errorf("left after a failed setup: %q", left)
	}
}

// TestCleanupStale: a new backend with the same owner removes what a
// "crashed" one left (no DestroyJob), but not what another owner has.
func TestCleanupStale(t *testing.T) {
	t.Parallel()
	crashed, cli := newBackend(t, Options{})
	other, _ := newBackend(t, Options{})
	job := &backend.Job{ID: "stale-1", Name: "stale", Image: testdocker.Busybox,
		Services: []backend.Service{{Name: "idle", Image: testdocker.Busybox, Command: []string{"sleep", "300"}}}}
	if _, err := crashed.SetupJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	otherJob := &backend.Job{ID: "stale-1", Name: "same ID, other owner", Image: testdocker.Busybox,
		Services: []backend.Service{{Name: "idle", Image: testdocker.Busybox, Command: []string{"sleep", "300"}}}}
	setupJob(t, other, otherJob)

	if left := testdocker.Leftovers(t, cli, crashed.Owner(), ""); len(left) != 3 {
		t.Fatalf("before the cleanup: %q", left)
	}
	fresh, err := New(Options{Owner: crashed.Owner(), GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := fresh.CleanupStale(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := testdocker.Leftovers(t, cli, crashed.Owner(), ""); len(left) != 0 {
		t.Errorf("after CleanupStale: %q", left)
	}
	if left := testdocker.Leftovers(t, cli, other.Owner(), ""); len(left) != 3 {
		t.Errorf("another owner's things: %q, want its service, network and volume", left)
	}
	_, out := mustRun(t, other, otherJob, &backend.Step{ID: "step-1", Script: "echo still here"})
	if out != "still here\n" {
		t.Errorf("the other owner's job: %q", out)
	}
}

// TestOwnerFromRoot: the owner is stable for a root and differs between roots.
func TestOwnerFromRoot(t *testing.T) {
	a1, _ := New(Options{Root: "/var/lib/runnel/a"})
	a2, _ := New(Options{Root: "/var/lib/runnel/a/"})
	c, _ := New(Options{Root: "/var/lib/runnel/c"})
	if a1.Owner() != a2.Owner() || a1.Owner() == c.Owner() || len(a1.Owner()) != 16 {
		t.Errorf("owners %q %q %q", a1.Owner(), a2.Owner(), c.Owner())
	}
}

// TestUnreachable: without Docker, a job that needs it fails its setup with an
// error naming the image and the daemon's address; nothing else breaks.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	b, err := New(Options{Root: t.TempDir(), Host: "unix:///nonexistent/docker.sock"})
	if err != nil {
		t.Fatal(err)
	}
	job := &backend.Job{ID: "j1", Name: "build", Image: "golang:1.26"}
	_, err = b.SetupJob(context.Background(), job)
	if err == nil || !errors.Is(err, ErrUnreachable) ||
		!strings.Contains(err.Error(), `image "golang:1.26"`) || !strings.Contains(err.Error(), "unix:///nonexistent/docker.sock") {
		t.Errorf("SetupJob: %v", err)
	}
	if err := b.DestroyJob(context.Background(), job); err != nil {
		t.Errorf("DestroyJob after a failed setup: %v", err)
	}
	if err := b.CleanupStale(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Errorf("CleanupStale: %v", err)
	}
}

func TestInterpreter(t *testing.T) {
	for _, tc := range []struct {
		shell string
		want  string
	}{
		{"sh", `sh -c exec 2>&1; exec sh -e "$0" /s`},
		{"bash", `bash -c exec 2>&1; exec bash --noprofile --norc -eo pipefail "$0" /s`},
		{"python3 {0}", "python3 /s"},
		{"pwsh -File {0} -x", "pwsh -File /s -x"},
		{"perl", "perl /s"},
	} {
		if got := strings.Join(interpreter(tc.shell, "/s"), " "); got != tc.want {
			t.Errorf("interpreter(%q) = %q, want %q", tc.shell, got, tc.want)
		}
	}
	if interpreter("  ", "/s") != nil {
		t.Error("a blank template must yield nil")
	}
}

// watchWriter calls seen once when the output so far contains want.
type watchWriter struct {
	buf  bytes.Buffer
	want string
	seen func()
	once bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if !w.once && strings.Contains(w.buf.String(), w.want) {
		w.once = true
		w.seen()
	}
	return len(p), nil
}
