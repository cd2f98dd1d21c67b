package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/backend/local"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/expr"
	"github.com/runnel-ci/runnel/internal/plan"
	"github.com/runnel-ci/runnel/internal/spec"
)

func planFor(t *testing.T, src string) *plan.Plan {
	t.Helper()
	p, err := spec.Parse([]byte(src), spec.Options{Catalog: action.Builtins()})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := plan.New(plan.Input{Spec: p, Run: expr.Run{ID: "r", Number: 1}, Trigger: runnel.Trigger{Type: "manual"}})
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

func newRunner(t *testing.T, obs engine.Observer) *engine.Runner {
	be, err := local.New(local.Options{Root: t.TempDir(), GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &engine.Runner{Executor: &engine.Executor{Backend: be, Actions: action.Builtins()}, Concurrency: 2, Observer: obs}
}

type obsFunc func(engine.Event)

func (f obsFunc) Event(e engine.Event) { f(e) }

// TestHardStop: a second, hard stop ends even always() steps and is reported as
// a cancellation, not as a timeout.
func TestHardStop(t *testing.T) {
	pl := planFor(t, `namespace: t
jobs:
  - name: a
    steps:
      - {name: long, run: "echo go; sleep 60"}
      - {name: cleanup, if: "${{ always() }}", run: "echo cleanup-started; sleep 60"}
      - {name: more, if: "${{ always() }}", run: "echo never-printed"}
`)
	ctx, cancel := context.WithCancel(context.Background())
	hard, hardCancel := context.WithCancel(context.Background())
	defer cancel()
	defer hardCancel()
	var logs []string
	r := newRunner(t, obsFunc(func(e engine.Event) {
		if e.Type != engine.EventLog {
			return
		}
		logs = append(logs, e.Message)
		switch e.Message {
		case "go":
			cancel()
		case "cleanup-started":
			hardCancel()
		}
	}))
	start := time.Now()
	res := r.Run(ctx, hard, pl)
	if time.Since(start) > 10*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
	if res.Status != runnel.RunCancelled {
		t.Fatalf("run %s", res.Status)
	}
	j := res.Jobs[0]
	if j.Status != runnel.JobCancelled || strings.Contains(j.Reason, "timed out") {
		t.Fatalf("job %s: %s", j.Status, j.Reason)
	}
	want := []runnel.StepStatus{runnel.StepCancelled, runnel.StepCancelled, runnel.StepCancelled}
	for i, s := range j.Steps {
		if s.Status != want[i] {
			t.Errorf("step %s = %s, want %s", s.Name, s.Status, want[i])
		}
	}
	for _, l := range logs {
		if strings.Contains(l, "never-printed") {
			t.Fatal("a step ran after the hard stop")
		}
	}
}

// TestFailureReasonSkipsToleratedSteps: the job's reason names the step that
// failed it, not an earlier tolerated failure.
func TestFailureReasonSkipsToleratedSteps(t *testing.T) {
	pl := planFor(t, `namespace: t
jobs:
  - name: a
    steps:
      - {name: tolerated, continueOnError: true, run: "exit 1"}
      - {name: real, run: "exit 7"}
`)
	res := newRunner(t, nil).Run(context.Background(), context.Background(), pl)
	if res.Status != runnel.RunFailed || res.Jobs[0].Reason != "step real failed with exit code 7" {
		t.Fatalf("%s: %q", res.Status, res.Jobs[0].Reason)
	}
}
