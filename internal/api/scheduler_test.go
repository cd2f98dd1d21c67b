package api

import (
	"context"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/store"
)

// schedulerControl adapts the real scheduler to RunControl: its Trigger
// takes runnel.TriggerRequest, a struct with the same fields (cmd/runnel
// needs the same few lines).
type schedulerControl struct{ *scheduler.Scheduler }

func (c schedulerControl) Trigger(ctx context.Context, pipelineID string, req runnel.TriggerRequest) (*store.Run, bool, error) {
	return c.Scheduler.Trigger(ctx, pipelineID, runnel.TriggerRequest(req))
}

// newSchedulerEnv is an API on the real store and the real scheduler (no
// agent runs, so jobs stay queued: enough for trigger, the run tree and the
// control transitions).
func newSchedulerEnv(t *testing.T) *env {
	return newEnvWith(t, func(c *Config) {
		c.Runs = schedulerControl{scheduler.New(scheduler.Options{Store: c.Store, Catalog: action.Builtins(), Now: c.Clock})}
	})
}

func TestWithScheduler(t *testing.T) {
	e := newSchedulerEnv(t)
	stages := map[string]any{
		"namespace": "demo.pipeline", "version": "v1",
		"variables": map[string]any{"env": map[string]any{"default": "dev", "options": []any{"dev", "prod"}}},
		"stages": []any{
			map[string]any{"name": "build", "jobs": []any{map[string]any{"name": "compile", "steps": []any{
				map[string]any{"name": "checkout", "uses": "actions/git-checkout@v1", "args": map[string]any{"repo": "https://example.com/x.git"}},
				map[string]any{"name": "make", "run": "make"},
			}}}},
			map[string]any{"name": "deploy", "jobs": []any{map[string]any{"name": "ship", "steps": []any{
				map[string]any{"name": "ship", "run": "./ship ${{ variables.env }}"},
			}}}},
		},
	}
	pid := e.createPipeline("real", map[string]any{"spec": stages})

	// 50 identical triggers at once: one run.
	var ids []string
	fresh := 0
	for _, a := range e.parallel(50, "POST", "/api/v1/pipelines/"+pid+"/trigger", map[string]any{"requestId": "burst", "variables": map[string]any{"env": "prod"}}) {
		d := a.must(t, 200).detail()
		ids = append(ids, d["runId"].(string))
		if d["replayed"] == false {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d answers report a new run, want exactly 1", fresh)
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("two runs for one requestId: %s, %s", ids[0], id)
		}
	}
	rid := ids[0]
	if l := e.do("GET", "/api/v1/pipelines/"+pid+"/runs", nil).must(t, 200).detail(); l["total"] != 1.0 {
		t.Errorf("%v runs after 50 identical triggers", l["total"])
	}

	d := e.do("GET", "/api/v1/pipelines/runs/"+rid, nil).must(t, 200).detail()
	st := d["stages"].([]any)
	if len(st) != 2 || st[0].(map[string]any)["name"] != "build" || st[1].(map[string]any)["name"] != "deploy" {
		t.Fatalf("stages: %v", st)
	}
	steps := st[0].(map[string]any)["jobs"].([]any)[0].(map[string]any)["steps"].([]any)
	if steps[0].(map[string]any)["uses"] != "actions/git-checkout@v1" || steps[1].(map[string]any)["run"] != "make" {
		t.Errorf("steps: %v", steps)
	}
	if d["variables"].(map[string]any)["env"] != "prod" || d["specVersion"] != 1.0 {
		t.Errorf("run: %v", d)
	}

	// A variable outside its options is the scheduler's ErrInvalid: a 400
	// with its message.
	r := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", map[string]any{"variables": map[string]any{"env": "qa"}})
	r.must(t, 400)
	if !strings.Contains(r.errMsg(), "env") || strings.HasSuffix(r.errMsg(), ": invalid") {
		t.Errorf("bad variable message: %q", r.errMsg())
	}

	base := "/api/v1/pipelines/" + pid + "/runs/" + rid
	e.do("POST", base+"/resume", nil).mustErr(t, 409, "only a paused run can be resumed")
	if p := e.do("POST", base+"/pause", map[string]any{"reason": "maintenance"}).must(t, 200).detail(); p["status"] != "paused" {
		t.Errorf("pause: %v", p["status"])
	}
	if p := e.do("POST", base+"/resume", nil).must(t, 200).detail(); p["status"] != "running" && p["status"] != "pending" {
		t.Errorf("resume: %v", p["status"])
	}
	stopped := e.do("POST", base+"/stop", map[string]any{"reason": "enough", "operator": "user_ops"}).must(t, 200).detail()
	if stopped["status"] != "cancelled" {
		t.Errorf("stop: %v", stopped["status"])
	}
	msg := e.do("POST", base+"/stop", nil).mustErr(t, 409, "is already cancelled").errMsg()
	if strings.HasSuffix(msg, ": conflict") {
		t.Errorf("409 message ends with the sentinel: %q", msg)
	}
	var actions []string
	for _, x := range stopped["timeline"].([]any) {
		m := x.(map[string]any)
		actions = append(actions, m["action"].(string)+"/"+m["operator"].(string))
	}
	joined := strings.Join(actions, " ")
	for _, want := range []string{"paused/user_alice", "resumed/user_alice", "stop/user_ops"} {
		if !strings.Contains(joined, want) {
			t.Errorf("timeline %v lacks %s", actions, want)
		}
	}
}
