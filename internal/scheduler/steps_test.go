package scheduler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/store"
)

// TestStepsQueued: the steps of a job are pending until an agent holds the
// job (its claim acknowledged), then queued until each starts; a claim
// handed back leaves them pending, and a retried attempt puts them back to
// pending until it is claimed again. The run detail (the tree) and the
// step.status events say the same.
func TestStepsQueued(t *testing.T) {
	e := newEnv(t, 5*time.Second, "")
	id := e.pipeline("namespace: t\njobs: [{name: a, retry: {max: 1}, steps: [{name: one, run: 'true'}, {name: two, run: 'true'}]}]")
	ctx := context.Background()
	run, _, err := e.sched.Trigger(ctx, id, runnel.TriggerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	steps := func(what, want string) {
		t.Helper()
		tree, err := e.st.GetRunTree(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, st := range tree.Steps[tree.Jobs[0].ID] {
			got = append(got, string(st.Status))
		}
		if strings.Join(got, ",") != want {
			t.Fatalf("%s: steps %s, want %s (%s)", what, strings.Join(got, ","), want, describe(tree))
		}
	}
	steps("job queued", "pending,pending")

	c, err := e.sched.Claim(ctx, "agent_1", nil, 5*time.Second)
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	steps("claim not acknowledged yet", "pending,pending")
	if err := e.sched.Release(ctx, c); err != nil {
		t.Fatal(err)
	}
	steps("claim handed back", "pending,pending")

	c, err = e.sched.Claim(ctx, "agent_1", nil, 5*time.Second)
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	if _, err := e.sched.Heartbeat(ctx, c); err != nil { // acknowledged
		t.Fatal(err)
	}
	steps("claim acknowledged", "queued,queued")
	if err := e.sched.StepStatus(ctx, c, engine.StepReport{Index: 0, Name: "one", Status: runnel.StepRunning, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	steps("first step started", "running,queued")

	// The agent goes away: the attempt fails and the job is retried.
	if err := e.sched.Interrupt(ctx, c, "interrupted: the agent shut down"); err != nil {
		t.Fatal(err)
	}
	tree, _ := e.st.GetRunTree(ctx, run.ID)
	if j := tree.Jobs[0]; j.Status != runnel.JobQueued || j.Attempt != 2 {
		t.Fatalf("after the interruption: %s", describe(tree))
	}
	steps("attempt 2 queued", "pending,pending")
	c, err = e.sched.Claim(ctx, "agent_2", nil, 5*time.Second)
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	if _, err := e.sched.Heartbeat(ctx, c); err != nil {
		t.Fatal(err)
	}
	steps("attempt 2 acknowledged", "queued,queued")

	// The events of step two tell the same story.
	es, err := e.st.ListRunEvents(ctx, run.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var two []string
	for _, ev := range es {
		var sc store.StatusChange
		if ev.Type != store.EventStepStatus {
			continue
		}
		if err := json.Unmarshal(ev.Data, &sc); err != nil {
			t.Fatal(err)
		}
		if sc.StepIndex == 1 {
			two = append(two, fmt.Sprintf("%s<-%s", sc.Status, sc.Previous))
		}
	}
	if want := "queued<-pending,skipped<-queued,pending<-skipped,queued<-pending"; strings.Join(two, ",") != want {
		t.Fatalf("step two's events %s, want %s", strings.Join(two, ","), want)
	}
}
