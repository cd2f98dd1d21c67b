package event_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/event"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
)

// TestHintingEndsLogStreamOfStepWrittenInRunTx: a step's final status
// written in a run transaction (the job's result carries the last step's
// report; a skip) ends the step's log stream at once, not at the hub's next
// poll (an hour here).
func TestHintingEndsLogStreamOfStepWrittenInRunTx(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st0, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "runnel.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st0.Close()
	hub := event.NewHub(event.HubOptions{Store: st0, Poll: time.Hour})
	go hub.Run(ctx)
	st := event.Hinting{Store: st0, Hub: hub}

	now := time.Now().UTC()
	if err := st.CreatePipeline(ctx, &store.Pipeline{ID: "pl_hint", ProjectID: "p", Name: "hint", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	const runID, jobID, stepID = "run_hint", "jr_hint", "sr_hint"
	step := &store.StepRun{ID: stepID, JobRunID: jobID, Name: "s", Status: "pending"}
	if _, _, err := st.CreateRun(ctx, &store.NewRun{
		Run:   &store.Run{ID: runID, PipelineID: "pl_hint", TriggerType: "manual"},
		Jobs:  []*store.JobRun{{ID: jobID, RunID: runID, Key: "default/j", Name: "j", Stage: "default"}},
		Steps: map[string][]*store.StepRun{jobID: {step}},
	}); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		ended <- hub.TailLogBatches(ctx, stepID, 0, func([]store.LogLine) error { return nil })
	}()
	// The stream reads the step (not final) and waits: an empty log sends
	// nothing to tell when, so give it a moment.
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-ended:
		t.Fatalf("the stream ended before the step did: %v", err)
	default:
	}
	if err := st.UpdateRunTx(ctx, runID, func(tx store.RunTx) error {
		s := *step
		s.Status = "skipped"
		return tx.UpdateStep(&s)
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the step's log stream did not end after its final status was written in a run transaction")
	}
}
