package scheduler_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/agent"
	"github.com/runnel-ci/runnel/internal/backend/local"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
)

type env struct {
	t     *testing.T
	st    store.Store
	sched *scheduler.Scheduler
	stop  func()
}

// newEnv starts a scheduler and an embedded agent (real local backend, real
// SQLite store) like `runnel server` does.
func newEnv(t *testing.T, lease time.Duration, agentID string) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "runnel.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	catalog := action.Builtins()
	sched := scheduler.New(scheduler.Options{Store: st, Catalog: catalog, LeaseDuration: lease})
	be, err := local.New(local.Options{Root: t.TempDir(), GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sched.Run(ctx) }()
	if agentID != "" {
		if err := sched.RegisterLocalAgent(ctx, &store.Agent{ID: agentID, Kind: "embedded", Capacity: 2}); err != nil {
			t.Fatal(err)
		}
		ag := &agent.Agent{ID: agentID, Capacity: 2, Source: scheduler.LocalSource{S: sched, AgentID: agentID}, Executor: &engine.Executor{Backend: be, Actions: catalog}, FlushInterval: 20 * time.Millisecond}
		wg.Add(1)
		go func() { defer wg.Done(); ag.Run(ctx) }()
	}
	e := &env{t: t, st: st, sched: sched}
	e.stop = func() { cancel(); wg.Wait(); st.Close() }
	t.Cleanup(e.stop)
	return e
}

func (e *env) pipeline(yaml string) string {
	e.t.Helper()
	ctx := context.Background()
	def, err := spec.Parse([]byte(yaml), spec.Options{Catalog: action.Builtins()})
	if err != nil {
		e.t.Fatal(err)
	}
	canonical, _ := json.Marshal(def)
	sum := sha256.Sum256(canonical)
	id := runnel.NewID("pl")
	now := time.Now().UTC()
	if err := e.st.CreatePipeline(ctx, &store.Pipeline{ID: id, ProjectID: "p", Name: id, SaveMode: "direct", CreatedAt: now, UpdatedAt: now}); err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := e.st.SaveSpec(ctx, &store.SpecVersion{PipelineID: id, CommitSHA: hex.EncodeToString(sum[:]), Spec: canonical, Format: "yaml", CreatedAt: now}, ""); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) wait(runID string, timeout time.Duration) *store.RunTree {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		tree, err := e.st.GetRunTree(context.Background(), runID)
		if err != nil {
			e.t.Fatal(err)
		}
		if tree.Run.EndedAt != nil {
			return tree
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("run %s still %s after %s: %s", runID, tree.Run.Status, timeout, describe(tree))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func describe(tree *store.RunTree) string {
	var b strings.Builder
	for _, j := range tree.Jobs {
		fmt.Fprintf(&b, "\n  %s %s attempt=%d %s", j.Key, j.Status, j.Attempt, j.Reason)
		for _, s := range tree.Steps[j.ID] {
			fmt.Fprintf(&b, "\n    %s %s %s", s.Name, s.Status, s.Error)
		}
	}
	return b.String()
}

func jobStatuses(tree *store.RunTree) map[string]string {
	m := map[string]string{}
	for _, j := range tree.Jobs {
		m[j.Key] = string(j.Status)
	}
	return m
}

func (e *env) logs(tree *store.RunTree, jobKey, step string) string {
	for _, j := range tree.Jobs {
		if j.Key != jobKey {
			continue
		}
		for _, s := range tree.Steps[j.ID] {
			if s.Name == step {
				lines, err := e.st.ListLogs(context.Background(), s.ID, store.LogQuery{})
				if err != nil {
					e.t.Fatal(err)
				}
				var out []string
				for _, l := range lines {
					out = append(out, l.Message)
				}
				return strings.Join(out, "\n")
			}
		}
	}
	e.t.Fatalf("no step %s/%s", jobKey, step)
	return ""
}

func TestRunToSuccess(t *testing.T) {
	e := newEnv(t, 5*time.Second, "agent_test")
	id := e.pipeline(`namespace: t
variables: {who: nobody}
stages:
  - name: build
    jobs:
      - name: a
        outputs: {v: "${{ steps.s.outputs.v }}"}
        steps: [{name: s, run: 'echo "hello ${{ variables.who }} run ${{ run.number }}"; echo v=42 >> $RUNNEL_OUTPUT'}]
      - name: b
        needs: a
        steps: [{name: s, run: 'echo "got ${{ needs.a.outputs.v }}"'}]
  - name: test
    jobs:
      - {name: c, steps: [{name: s, run: "exit 3", continueOnError: true}]}
`)
	run, replayed, err := e.sched.Trigger(context.Background(), id, runnel.TriggerRequest{Variables: map[string]string{"who": "you"}, TriggeredBy: "tester"})
	if err != nil || replayed {
		t.Fatal(err, replayed)
	}
	if run.Number != 1 || run.Variables["who"] != "you" {
		t.Fatalf("run %+v", run)
	}
	tree := e.wait(run.ID, 20*time.Second)
	if tree.Run.Status != "partial" {
		t.Fatalf("status %s: %s", tree.Run.Status, describe(tree))
	}
	want := map[string]string{"build/a": "success", "build/b": "success", "test/c": "success"}
	for k, v := range want {
		if jobStatuses(tree)[k] != v {
			t.Errorf("job %s = %s, want %s", k, jobStatuses(tree)[k], v)
		}
	}
	if got := e.logs(tree, "build/a", "s"); got != "hello you run 1" {
		t.Errorf("log a: %q", got)
	}
	if got := e.logs(tree, "build/b", "s"); got != "got 42" {
		t.Errorf("log b: %q", got)
	}
	p, _ := e.st.GetPipeline(context.Background(), id)
	if p.LastExecutionID != run.ID || p.LastRunState != "partial" || p.LastEnded == nil {
		t.Errorf("pipeline status %+v", p)
	}
	tl, _ := e.st.Timeline(context.Background(), run.ID)
	var actions []string
	for _, x := range tl {
		actions = append(actions, x.Action)
	}
	if strings.Join(actions, ",") != "triggered,started,finished" {
		t.Errorf("timeline %v", actions)
	}
}

func TestTriggerIdempotent(t *testing.T) {
	e := newEnv(t, 5*time.Second, "")
	id := e.pipeline("namespace: t\njobs: [{name: a, steps: [{run: 'true'}]}]")
	var wg sync.WaitGroup
	ids := make([]string, 50)
	errs := make([]error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, err := e.sched.Trigger(context.Background(), id, runnel.TriggerRequest{RequestID: "req-1"})
			errs[i] = err
			if r != nil {
				ids[i] = r.ID
			}
		}()
	}
	wg.Wait()
	for i := range 50 {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("request %d: %v %s vs %s", i, errs[i], ids[i], ids[0])
		}
	}
	runs, total, err := e.st.ListRuns(context.Background(), store.RunFilter{PipelineID: id, Limit: 100})
	if err != nil || total != 1 || len(runs) != 1 {
		t.Fatalf("runs: %d %v", total, err)
	}
}

func TestTriggerErrors(t *testing.T) {
	e := newEnv(t, 5*time.Second, "")
	id := e.pipeline("namespace: t\nvariables: {env: {options: [a, b], default: a}}\njobs: [{name: a, steps: [{run: 'true'}]}]")
	_, _, err := e.sched.Trigger(context.Background(), id, runnel.TriggerRequest{Variables: map[string]string{"env": "c"}})
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), `"c" is not one of a, b`) {
		t.Fatalf("bad variable: %v", err)
	}
	_, _, err = e.sched.Trigger(context.Background(), "pl_nope", runnel.TriggerRequest{})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown pipeline: %v", err)
	}
}

func TestStopPauseResume(t *testing.T) {
	e := newEnv(t, 5*time.Second, "agent_test")
	id := e.pipeline(`namespace: t
stages:
  - name: one
    jobs:
      - name: long
        steps:
          - {name: wait, run: "echo waiting; sleep 60"}
          - {name: cleanup, if: "${{ always() }}", run: "echo cleanup"}
  - name: two
    jobs: [{name: never, steps: [{name: s, run: "echo never"}]}]
`)
	ctx := context.Background()
	run, _, err := e.sched.Trigger(ctx, id, runnel.TriggerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the step is running.
	deadline := time.Now().Add(10 * time.Second)
	for {
		tree, _ := e.st.GetRunTree(ctx, run.ID)
		if tree.Steps[tree.Jobs[0].ID][0].Status == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("step never started: %s", describe(tree))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.sched.Resume(ctx, run.ID, "op", "x"); !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "is running") {
		t.Fatalf("resume of a running run: %v", err)
	}
	paused, err := e.sched.Pause(ctx, run.ID, "op", "maintenance")
	if err != nil || paused.Status != "paused" {
		t.Fatalf("pause: %v %+v", err, paused)
	}
	resumed, err := e.sched.Resume(ctx, run.ID, "op", "done")
	if err != nil || resumed.Status != "running" {
		t.Fatalf("resume: %v %+v", err, resumed)
	}
	start := time.Now()
	stopped, err := e.sched.Stop(ctx, run.ID, "op", "enough")
	if err != nil || stopped.Status != "cancelled" {
		t.Fatalf("stop: %v %+v", err, stopped)
	}
	tree := e.wait(run.ID, 15*time.Second)
	if time.Since(start) > 5*time.Second {
		t.Errorf("stop took %s", time.Since(start))
	}
	steps := tree.Steps[tree.Jobs[0].ID]
	if tree.Run.Status != "cancelled" || steps[0].Status != "cancelled" || steps[1].Status != "success" || jobStatuses(tree)["two/never"] != "cancelled" {
		t.Fatalf("after stop: %s %s", tree.Run.Status, describe(tree))
	}
	if _, err := e.sched.Stop(ctx, run.ID, "op", ""); !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "already cancelled") {
		t.Fatalf("second stop: %v", err)
	}
	tl, _ := e.st.Timeline(ctx, run.ID)
	var got []string
	for _, x := range tl {
		got = append(got, x.Action+":"+x.Operator+":"+x.Reason)
	}
	want := "triggered::manual,started::,paused:op:maintenance,resumed:op:done,stop:op:enough,finished::cancelled"
	if strings.Join(got, ",") != want {
		t.Errorf("timeline\n got %s\nwant %s", strings.Join(got, ","), want)
	}
}

func TestRetryAndLostAgent(t *testing.T) {
	// No agent runs here: the test claims as a "dead" agent, then the server
	// restarts (Recover) — the job is retried, then claimed again and failed by
	// lease expiry.
	e := newEnv(t, 1*time.Second, "")
	id := e.pipeline("namespace: t\njobs: [{name: a, retry: {max: 1}, steps: [{name: s, run: 'true'}]}]")
	ctx := context.Background()
	run, _, err := e.sched.Trigger(ctx, id, runnel.TriggerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := e.sched.Claim(cctx, "agent_dead", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sched.Heartbeat(ctx, c); err != nil { // acknowledged: it started
		t.Fatal(err)
	}
	if err := e.sched.Recover(ctx, "agent_dead"); err != nil {
		t.Fatal(err)
	}
	tree, _ := e.st.GetRunTree(ctx, run.ID)
	if j := tree.Jobs[0]; j.Status != "queued" || j.Attempt != 2 {
		t.Fatalf("after restart: %s", describe(tree))
	}
	// The dead agent's late report is rejected.
	if err := e.sched.Complete(ctx, c, engine.JobResult{Status: runnel.JobSuccess}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("late report: %v", err)
	}
	// Claimed again by an agent that then vanishes: its lease expires and the
	// job, out of retries, fails as "agent lost".
	c, err = e.sched.Claim(cctx, "agent_vanishing", nil, 5*time.Second)
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	if _, err := e.sched.Heartbeat(ctx, c); err != nil {
		t.Fatal(err)
	}
	tree = e.wait(run.ID, 10*time.Second)
	if tree.Run.Status != "failed" || !strings.Contains(tree.Jobs[0].Reason, "agent lost") {
		t.Fatalf("after lease expiry: %s %s", tree.Run.Status, describe(tree))
	}
	// The run says why it failed: its job and the job's reason.
	if want := "job " + tree.Jobs[0].Name + " failed: " + tree.Jobs[0].Reason; tree.Run.Reason != want {
		t.Fatalf("run reason %q, want %q", tree.Run.Reason, want)
	}
	tl, _ := e.st.Timeline(ctx, run.ID)
	var reasons []string
	for _, x := range tl {
		reasons = append(reasons, x.Action+":"+x.Reason)
	}
	if all := strings.Join(reasons, ","); !strings.Contains(all, "interrupted:interrupted by server restart") || !strings.Contains(all, "job_retried") {
		t.Errorf("timeline: %s", all)
	}
}

func TestRequestRoundTrip(t *testing.T) {
	e := newEnv(t, 5*time.Second, "")
	id := e.pipeline("namespace: t\njobs: [{name: a, matrix: {go: ['1.25', 2]}, timeout: 3m, env: {A: x}, steps: [{name: s, run: 'echo ${{ matrix.go }}', if: 'always()'}]}]")
	ctx := context.Background()
	if _, _, err := e.sched.Trigger(ctx, id, runnel.TriggerRequest{}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := e.sched.Claim(cctx, "agent_x", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Request
	if r.Job.Timeout != 3*time.Minute || r.Job.Spec.Env["A"] != "x" || r.Job.Spec.Steps[0].If != "always()" || len(c.Steps) != 1 || r.Env.Run.Number != 1 {
		t.Fatalf("request %+v job %+v", r, r.Job)
	}
}

// TestUnacknowledgedClaim: a claim the agent never acknowledges (it froze or
// never received the answer) goes back to the queue when its provisional
// lease runs out, without costing an attempt; the late acknowledgement is
// refused.
func TestUnacknowledgedClaim(t *testing.T) {
	e := newEnv(t, 1*time.Second, "")
	id := e.pipeline("namespace: t\njobs: [{name: a, steps: [{name: s, run: 'true'}]}]")
	ctx := context.Background()
	run, _, err := e.sched.Trigger(ctx, id, runnel.TriggerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.sched.Claim(ctx, "agent_frozen", nil, 5*time.Second)
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		tree, _ := e.st.GetRunTree(ctx, run.ID)
		j := tree.Jobs[0]
		if j.Status == "queued" {
			if j.Attempt != 1 || j.AgentID != "" {
				t.Fatalf("released job: attempt %d agent %q", j.Attempt, j.AgentID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the unacknowledged claim was not released: %s", describe(tree))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := e.sched.Heartbeat(ctx, c); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("late acknowledgement: %v", err)
	}
	c2, err := e.sched.Claim(ctx, "agent_b", nil, 5*time.Second)
	if err != nil || c2 == nil || c2.Attempt != 1 {
		t.Fatalf("claim after release: %+v %v", c2, err)
	}
}

// TestJobNeeds: the run detail's graph edges, matrix expanded, for a run
// being driven and for a finished one (planned again, not cached).
func TestJobNeeds(t *testing.T) {
	e := newEnv(t, 5*time.Second, "agent-needs")
	id := e.pipeline(`namespace: t
jobs:
  - name: build
    matrix: {go: ["1.25", "1.26"]}
    steps: [{run: 'true'}]
  - name: test
    needs: build
    steps: [{run: 'true'}]
  - name: ship
    needs: [test]
    steps: [{run: 'true'}]
`)
	run, _, err := e.sched.Trigger(context.Background(), id, runnel.TriggerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"default/test": {"default/build[go=1.25]", "default/build[go=1.26]"},
		"default/ship": {"default/test"},
	}
	check := func(when string) {
		t.Helper()
		got, err := e.sched.JobNeeds(context.Background(), run)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: needs %v, want %v", when, got, want)
		}
	}
	check("while running")
	if tree := e.wait(run.ID, 30*time.Second); tree.Run.Status != "success" {
		t.Fatalf("run: %s", describe(tree))
	}
	check("after the end")
}
