package event

import (
	"context"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// Hinting is a store that tells a Hub about the writes that record events or
// log lines, after they commit, so that streams on every replica wake at
// once instead of at their next poll.
type Hinting struct {
	store.Store
	Hub *Hub
}

func (s Hinting) CreateRun(ctx context.Context, nr *store.NewRun) (*store.Run, bool, error) {
	var steps []string
	if then := nr.Then; then != nil {
		c := *nr
		c.Then = func(tx store.RunTx) error {
			steps = steps[:0] // the transaction may be retried
			return then(hintingTx{RunTx: tx, steps: &steps})
		}
		nr = &c
	}
	r, replayed, err := s.Store.CreateRun(ctx, nr)
	if err == nil && !replayed {
		s.Hub.Hint("r:" + r.ID)
		s.hintSteps(steps)
	}
	return r, replayed, err
}

func (s Hinting) UpdateRunTx(ctx context.Context, runID string, fn func(tx store.RunTx) error) error {
	var steps []string
	err := s.Store.UpdateRunTx(ctx, runID, func(tx store.RunTx) error {
		steps = steps[:0]
		return fn(hintingTx{RunTx: tx, steps: &steps})
	})
	if err == nil {
		s.Hub.Hint("r:" + runID)
		s.hintSteps(steps)
	}
	return err
}

// hintSteps wakes the log streams of steps a run transaction wrote: a
// final status written there (a job's result, a skip) ends them.
func (s Hinting) hintSteps(ids []string) {
	for _, id := range ids {
		s.Hub.Hint("s:" + id)
	}
}

// hintingTx is a RunTx that notes the steps it writes.
type hintingTx struct {
	store.RunTx
	steps *[]string
}

func (t hintingTx) UpdateStep(st *store.StepRun) error {
	err := t.RunTx.UpdateStep(st)
	if err == nil {
		*t.steps = append(*t.steps, st.ID)
	}
	return err
}

func (s Hinting) UpdateStep(ctx context.Context, leaseID string, st *store.StepRun) error {
	err := s.Store.UpdateStep(ctx, leaseID, st)
	if err == nil {
		s.Hub.Hint("j:" + st.JobRunID)
		// The step's final status ends its log stream.
		s.Hub.Hint("s:" + st.ID)
	}
	return err
}

func (s Hinting) ExtendLease(ctx context.Context, jobRunID, leaseID string, d time.Duration) (time.Time, error) {
	t, err := s.Store.ExtendLease(ctx, jobRunID, leaseID, d)
	if err == nil {
		s.Hub.Hint("j:" + jobRunID)
	}
	return t, err
}

func (s Hinting) AppendLogs(ctx context.Context, stepRunID string, lines []store.LogLine, maxBytes int64) ([]store.LogLine, error) {
	out, err := s.Store.AppendLogs(ctx, stepRunID, lines, maxBytes)
	if err == nil && len(out) > 0 {
		s.Hub.Hint("s:" + stepRunID)
	}
	return out, err
}

func (s Hinting) AppendStepLogs(ctx context.Context, leaseID, stepRunID string, lines []store.LogLine, maxBytes int64) ([]store.LogLine, error) {
	out, err := s.Store.AppendStepLogs(ctx, leaseID, stepRunID, lines, maxBytes)
	if err == nil && len(out) > 0 {
		s.Hub.Hint("s:" + stepRunID)
	}
	return out, err
}
