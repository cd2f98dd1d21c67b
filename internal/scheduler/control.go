package scheduler

import (
	"context"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
)

// Stop cancels a run: running steps are stopped, nothing new starts except
// jobs and steps whose condition runs on cancellation (always(), cancelled()).
// The run's status is cancelled from now on; it ends when its last job does.
func (s *Scheduler) Stop(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	var running []string
	err := s.st.UpdateRunTx(ctx, runID, func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		run := tree.Run
		switch runnel.RunStatus(run.Status) {
		case runnel.RunPending, runnel.RunRunning, runnel.RunPaused:
		default:
			return conflict("run %s is already %s; only a pending, running or paused run can be stopped", runID, run.Status)
		}
		now := s.now().UTC()
		run.Status = runnel.RunCancelled
		run.Reason = "stopped"
		if operator != "" {
			run.Reason += " by " + operator
		}
		if reason != "" {
			run.Reason += ": " + reason
		}
		if err := tx.AppendTimeline(&store.TimelineEntry{RunID: runID, Time: now, Action: "stop", Operator: operator, Reason: reason}); err != nil {
			return err
		}
		for _, j := range tree.Jobs {
			if j.Status == runnel.JobRunning {
				running = append(running, j.ID)
			}
		}
		if err := tx.UpdateRun(run); err != nil {
			return err
		}
		if err := cancelGates(tx, runID, operator, now); err != nil {
			return err
		}
		_, err = s.advanceTx(ctx, tx, tree)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.cancelLocal(running)
	if len(running) > 0 {
		// Agents on other replicas hear of it through the bus; this
		// replica's own subscription reaches its remote agents' sessions.
		if err := s.bus.Publish(context.WithoutCancel(ctx), topicCancel, runID); err != nil {
			s.log.Warn("publish a cancellation", "run_id", runID, "err", err)
		}
	}
	s.wake()
	return s.st.GetRun(ctx, runID)
}

// Pause stops new work from starting; steps already running finish.
func (s *Scheduler) Pause(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	err := s.st.UpdateRunTx(ctx, runID, func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		run := tree.Run
		if run.Status != runnel.RunRunning && run.Status != runnel.RunPending {
			return conflict("run %s is %s; only a pending or running run can be paused", runID, run.Status)
		}
		now := s.now().UTC()
		// Queued jobs that no agent took yet go back to pending: they are
		// decided again on resume.
		for _, j := range tree.Jobs {
			if j.Status == runnel.JobQueued {
				j.Status, j.Attempt, j.QueuedAt, j.Request = runnel.JobPending, j.Attempt-1, nil, nil
				if err := tx.UpdateJob(j); err != nil {
					return err
				}
			}
		}
		run.Status = runnel.RunPaused
		if err := tx.AppendTimeline(&store.TimelineEntry{RunID: runID, Time: now, Action: "paused", Operator: operator, Reason: reason}); err != nil {
			return err
		}
		if err := tx.UpdateRun(run); err != nil {
			return err
		}
		return tx.SetPipelineStatus(run)
	})
	if err != nil {
		return nil, err
	}
	return s.st.GetRun(ctx, runID)
}

// Resume continues a paused run where it stopped.
func (s *Scheduler) Resume(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	var started bool
	err := s.st.UpdateRunTx(ctx, runID, func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		run := tree.Run
		if run.Status != runnel.RunPaused {
			return conflict("run %s is %s; only a paused run can be resumed", runID, run.Status)
		}
		now := s.now().UTC()
		run.Status = runnel.RunRunning
		if err := tx.AppendTimeline(&store.TimelineEntry{RunID: runID, Time: now, Action: "resumed", Operator: operator, Reason: reason}); err != nil {
			return err
		}
		if err := tx.UpdateRun(run); err != nil {
			return err
		}
		if err := tx.SetPipelineStatus(run); err != nil {
			return err
		}
		started, err = s.advanceTx(ctx, tx, tree)
		return err
	})
	if err != nil {
		return nil, err
	}
	if started {
		s.wake()
	}
	return s.st.GetRun(ctx, runID)
}

func (s *Scheduler) cancelLocal(jobRunIDs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range jobRunIDs {
		if ch := s.cancels[id]; ch != nil {
			close(ch)
			delete(s.cancels, id)
		}
	}
}
