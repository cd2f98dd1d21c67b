package engine_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/backend/auto"
	"github.com/runnel-ci/runnel/internal/backend/docker"
	"github.com/runnel-ci/runnel/internal/backend/local"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/testdocker"
)

// dockerRunner returns a Runner on the auto backend (local, and Docker for
// jobs with containers) whose Docker things carry an owner of their own.
func dockerRunner(t *testing.T, obs engine.Observer) (*engine.Runner, *docker.Backend) {
	t.Helper()
	testdocker.Connect(t)
	root := t.TempDir()
	lb, err := local.New(local.Options{Root: root, GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 6)
	_, _ = rand.Read(p)
	db, err := docker.New(docker.Options{Owner: "test-" + hex.EncodeToString(p), GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.CleanupStale(context.Background()); err != nil {
			t.Errorf("CleanupStale: %v", err)
		}
		db.Close()
	})
	be := auto.New(lb, db, nil)
	return &engine.Runner{Executor: &engine.Executor{Backend: be, Actions: action.Builtins()}, Concurrency: 2, Observer: obs}, db
}

// logCollector keeps the log lines of each job.
type logCollector struct {
	mu    sync.Mutex
	lines map[string][]string
	on    func(engine.Event)
}

func (c *logCollector) Event(e engine.Event) {
	if e.Type != engine.EventLog {
		return
	}
	c.mu.Lock()
	if c.lines == nil {
		c.lines = map[string][]string{}
	}
	c.lines[e.JobName] = append(c.lines[e.JobName], e.Message)
	on := c.on
	c.mu.Unlock()
	if on != nil {
		on(e)
	}
}

func (c *logCollector) text(job string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines[job], "\n")
}

// TestDockerPipeline runs a pipeline through the engine on the auto backend:
// a job in an image with a service and a plugin step, and a job without image
// on the local machine.
func TestDockerPipeline(t *testing.T) {
	logs := &logCollector{}
	r, _ := dockerRunner(t, logs)
	pl := planFor(t, `namespace: t
jobs:
  - name: contained
    image: runnel-test/busybox:${{ env.TAG }}
    pullPolicy: never
    env: {TAG: "1", GREETING: hello}
    services:
      - name: web
        image: runnel-test/busybox:1
        env: {BODY: "${{ env.GREETING }} from web"}
        command: [sh, -c, 'mkdir -p /www && echo "$BODY" > /www/x && exec httpd -f -p 8080 -h /www']
    outputs:
      version: ${{ steps.build.outputs.version }}
    steps:
      - name: build
        run: |
          test ! -e /etc/os-release
          mkdir -p out
          echo artefact > out/a.txt
          echo "version=1.$RUNNEL_RUN_NUMBER" >> "$RUNNEL_OUTPUT"
      - name: inside
        workingDirectory: out
        run: pwd; cat a.txt; echo "$GREETING"
      - name: service
        run: |
          for i in $(seq 1 50); do wget -qO- http://web:8080/x && exit 0; sleep 0.1; done
          exit 1
      - name: plugin
        uses: docker://runnel-test/plugin:1
        args:
          target: ${{ steps.build.outputs.version }}
          dry-run: true
          count: 3
          tags: [a, b]
          settings: {k: v}
      - name: after
        run: cat plugin.txt
      - name: slow
        timeout: 1s
        continueOnError: true
        run: echo slow-started; sleep 30
  - name: plain
    steps:
      - run: test -e /etc/os-release && echo "on the host"
`)
	start := time.Now()
	res := r.Run(context.Background(), context.Background(), pl)
	t.Logf("run took %s", time.Since(start))
	// partial: the slow step times out, tolerated by continueOnError.
	if res.Status != runnel.RunPartial {
		for _, j := range res.Jobs {
			t.Logf("job %s: %s %s\n%s", j.Job.Name, j.Status, j.Reason, logs.text(j.Job.Name))
		}
		t.Fatalf("run %s", res.Status)
	}
	c := res.Jobs[0]
	if c.Job.Name != "contained" {
		c = res.Jobs[1]
	}
	out := logs.text("contained")
	for _, want := range []string{
		"/runnel/workspace/out\nartefact\nhello",
		"hello from web",
		"plugin: pwd=/runnel/workspace\nPLUGIN_COUNT=3\nPLUGIN_DRY_RUN=true\nPLUGIN_SETTINGS={\"k\":\"v\"}\nPLUGIN_TAGS=a,b\nPLUGIN_TARGET=1.1",
		"ran",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log of contained lacks %q:\n%s", want, out)
		}
	}
	if got := c.Steps[5].Status; got != runnel.StepTimeout {
		t.Errorf("slow step: %s", got)
	}
	// The timeout counts from the step's start, container creation included:
	// on a loaded machine the script may not even have printed yet.
	if d := c.Steps[5].Ended.Sub(c.Steps[5].Started); d > 6*time.Second {
		t.Errorf("slow step stopped after %s (timeout 1s, grace 1s)", d)
	}
	if !strings.Contains(logs.text("plain"), "on the host") {
		t.Errorf("plain job: %s", logs.text("plain"))
	}
}

// TestDockerCancel: cancelling a run stops the step's container and leaves
// nothing of the job behind.
func TestDockerCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &logCollector{on: func(e engine.Event) {
		if e.Message == "started" {
			cancel()
		}
	}}
	r, db := dockerRunner(t, logs)
	pl := planFor(t, `namespace: t
jobs:
  - name: a
    image: runnel-test/busybox:1
    services: [{name: idle, image: runnel-test/busybox:1, command: [sleep, "300"]}]
    steps:
      - run: echo started; sleep 60
      - {name: never, run: echo never}
`)
	start := time.Now()
	res := r.Run(ctx, context.Background(), pl)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("took %s", took)
	}
	if res.Status != runnel.RunCancelled || res.Jobs[0].Steps[0].Status != runnel.StepCancelled {
		t.Fatalf("run %s, step %s", res.Status, res.Jobs[0].Steps[0].Status)
	}
	if left := testdocker.Leftovers(t, testdocker.Connect(t), db.Owner(), ""); len(left) != 0 {
		t.Errorf("left after the cancelled run: %q", left)
	}
}

// TestDockerSetupErrors: a missing image under pullPolicy never fails the job
// with a reason naming the image and the policy.
func TestDockerSetupErrors(t *testing.T) {
	r, _ := dockerRunner(t, nil)
	pl := planFor(t, `namespace: t
jobs:
  - name: a
    image: runnel-test/absent:1
    pullPolicy: never
    steps: [{run: echo never}]
`)
	res := r.Run(context.Background(), context.Background(), pl)
	if res.Status != runnel.RunFailed || !strings.Contains(res.Jobs[0].Reason, `image "runnel-test/absent:1" is not present and pullPolicy is never`) {
		t.Fatalf("run %s: %q", res.Status, res.Jobs[0].Reason)
	}
}

// TestPluginOnLocalBackend: the local backend refuses docker:// steps with an
// error that says what is needed.
func TestPluginOnLocalBackend(t *testing.T) {
	pl := planFor(t, `namespace: t
jobs:
  - name: a
    steps: [{name: p, uses: "docker://runnel-test/plugin:1", args: {x: 1}}]
`)
	res := newRunner(t, nil).Run(context.Background(), context.Background(), pl)
	if res.Status != runnel.RunFailed || !strings.Contains(res.Jobs[0].Reason, "needs the docker backend") {
		t.Fatalf("run %s: %q", res.Status, res.Jobs[0].Reason)
	}
}
