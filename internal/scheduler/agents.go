package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/store"
)

// Claim is a job handed to an agent under a lease.
type Claim struct {
	Job     *store.JobRun
	Steps   []*store.StepRun
	Request engine.JobRequest
	// Cancelled is closed when the run is stopped; it works for agents in this
	// process. Remote agents learn it from Heartbeat.
	Cancelled <-chan struct{}
}

// Claim blocks until a queued job accepted by match can be leased to agentID,
// or ctx ends. Work is found by polling the database, woken early by triggers
// in this process; the poll interval bounds the delay for work queued by
// another replica.
func (s *Scheduler) Claim(ctx context.Context, agentID string, match func(*store.JobRun) bool) (*Claim, error) {
	const poll = 500 * time.Millisecond
	for {
		wake := s.wakeChan()
		j, err := s.st.ClaimJob(ctx, agentID, match, s.lease)
		if err == nil {
			c, cerr := s.prepareClaim(ctx, j)
			if cerr == nil {
				return c, nil
			}
			// A job whose request cannot be decoded can never run: fail it
			// rather than hand it out again.
			s.log.Error("claimed job cannot run", "job_run_id", j.ID, "err", cerr)
			if ferr := s.interrupt(ctx, j, "the job cannot be executed: "+cerr.Error(), false); ferr != nil {
				return nil, ferr
			}
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (s *Scheduler) prepareClaim(ctx context.Context, j *store.JobRun) (*Claim, error) {
	req, err := engine.DecodeRequest(j.Request)
	if err != nil {
		return nil, err
	}
	tree, err := s.st.GetRunTree(ctx, j.RunID)
	if err != nil {
		return nil, err
	}
	ch := make(chan struct{})
	s.mu.Lock()
	s.cancels[j.ID] = ch
	s.mu.Unlock()
	return &Claim{Job: j, Steps: tree.Steps[j.ID], Request: req, Cancelled: ch}, nil
}

// Heartbeat renews the claim's lease and tells whether the run was stopped.
// store.ErrLeaseLost means the job was taken away: the agent must stop it.
func (s *Scheduler) Heartbeat(ctx context.Context, c *Claim) (cancelled bool, err error) {
	if _, err := s.st.ExtendLease(ctx, c.Job.ID, c.Job.LeaseID, s.lease); err != nil {
		return false, err
	}
	run, err := s.st.GetRun(ctx, c.Job.RunID)
	if err != nil {
		return false, err
	}
	return run.Status == string(engine.RunCancelled), nil
}

// StepStatus records a step's status change.
func (s *Scheduler) StepStatus(ctx context.Context, c *Claim, r engine.StepReport) error {
	if r.Index < 0 || r.Index >= len(c.Steps) {
		return fmt.Errorf("step status: job run %s has no step %d: %w", c.Job.ID, r.Index, store.ErrInvalid)
	}
	st := *c.Steps[r.Index]
	applyReport(&st, r)
	if err := s.st.UpdateStep(ctx, c.Job.LeaseID, &st); err != nil {
		return err
	}
	*c.Steps[r.Index] = st
	return nil
}

func applyReport(st *store.StepRun, r engine.StepReport) {
	st.Status = string(r.Status)
	st.ExitCode = r.ExitCode
	st.Error = r.Error
	if !r.Started.IsZero() {
		t := r.Started.UTC()
		st.StartedAt = &t
	}
	if !r.Ended.IsZero() {
		t := r.Ended.UTC()
		st.EndedAt = &t
	}
}

// AppendLogs stores log lines of one step, capped per step.
func (s *Scheduler) AppendLogs(ctx context.Context, c *Claim, step int, lines []store.LogLine) error {
	if step < 0 || step >= len(c.Steps) {
		return fmt.Errorf("append logs: job run %s has no step %d: %w", c.Job.ID, step, store.ErrInvalid)
	}
	_, err := s.st.AppendLogs(ctx, c.Steps[step].ID, lines, s.logCap)
	return err
}

// Complete records a finished attempt and re-evaluates the run: the job is
// retried, or ends, and what depends on it may start.
func (s *Scheduler) Complete(ctx context.Context, c *Claim, res engine.JobResult) error {
	s.mu.Lock()
	delete(s.cancels, c.Job.ID)
	s.mu.Unlock()
	var started bool
	err := s.st.UpdateRunTx(ctx, c.Job.RunID, func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		started, err = s.finishTx(ctx, tx, tree, c.Job.ID, c.Job.LeaseID, res, "", false)
		return err
	})
	if started {
		s.wake()
	}
	return err
}

// Interrupt hands back a claimed job that its agent could not finish (the
// agent is shutting down): it is retried when its retry allows, else failed
// with reason.
func (s *Scheduler) Interrupt(ctx context.Context, c *Claim, reason string) error {
	s.mu.Lock()
	delete(s.cancels, c.Job.ID)
	s.mu.Unlock()
	return s.interrupt(ctx, c.Job, reason, true)
}

// finishTx records an attempt's result under the run lock. leaseID must still
// hold the job (fencing); timelineAction, when set, is recorded too.
func (s *Scheduler) finishTx(ctx context.Context, tx store.RunTx, tree *store.RunTree, jobRunID, leaseID string, res engine.JobResult, timelineAction string, noRetry bool) (bool, error) {
	var job *store.JobRun
	for _, j := range tree.Jobs {
		if j.ID == jobRunID {
			job = j
		}
	}
	if job == nil {
		return false, fmt.Errorf("complete job %s: %w", jobRunID, store.ErrNotFound)
	}
	if job.Status != string(engine.JobRunning) || job.LeaseID != leaseID {
		return false, fmt.Errorf("complete job %s: %w", jobRunID, store.ErrLeaseLost)
	}
	pl, err := s.planFor(ctx, tree.Run)
	if err != nil {
		return false, err
	}
	state, err := rebuild(pl, tree)
	if err != nil {
		return false, err
	}
	now := s.now().UTC()
	js := state.Jobs[job.Key]
	attempt := js.Attempt
	if noRetry {
		js.Attempt = math.MaxInt32 // no attempt left: Finish does not retry
	}
	retry := state.Finish(job.Key, res, now)
	js.Attempt = attempt
	job.Status, job.AllowedFailure, job.Outputs, job.Reason = string(js.Status), js.AllowedFailure, js.Outputs, js.Reason
	job.LeaseID, job.LeaseExpiresAt = "", nil
	if retry {
		at := js.RetryAt
		job.RetryAt = &at
	} else {
		job.EndedAt = &now
	}
	if err := tx.UpdateJob(job); err != nil {
		return false, err
	}
	for i, r := range res.Steps {
		if i >= len(tree.Steps[job.ID]) {
			break
		}
		st := tree.Steps[job.ID][i]
		applyReport(st, r)
		if err := tx.UpdateStep(st); err != nil {
			return false, err
		}
	}
	if timelineAction != "" {
		if err := tx.AppendTimeline(&store.TimelineEntry{RunID: tree.Run.ID, JobRunID: job.ID, Time: now, Action: timelineAction, Reason: res.Reason}); err != nil {
			return false, err
		}
	}
	if retry {
		if err := tx.AppendTimeline(&store.TimelineEntry{RunID: tree.Run.ID, JobRunID: job.ID, Time: now, Action: "job_retried",
			Reason: fmt.Sprintf("attempt %d of %s failed: %s; next attempt at %s", job.Attempt, job.Name, res.Reason, js.RetryAt.Format(time.RFC3339))}); err != nil {
			return false, err
		}
	}
	return s.advanceTx(ctx, tx, tree)
}

// interrupt ends a running attempt whose agent is gone (or whose request is
// unusable): it is retried when its retry allows, else failed with reason.
func (s *Scheduler) interrupt(ctx context.Context, j *store.JobRun, reason string, allowRetry bool) error {
	var started bool
	err := s.st.UpdateRunTx(ctx, j.RunID, func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		var cur *store.JobRun
		for _, x := range tree.Jobs {
			if x.ID == j.ID {
				cur = x
			}
		}
		if cur == nil || cur.Status != string(engine.JobRunning) || cur.LeaseID != j.LeaseID {
			return nil // already handled (another replica, or the agent reported after all)
		}
		res := engine.JobResult{Status: engine.JobFailed, Reason: reason}
		for _, st := range tree.Steps[cur.ID] {
			r := engine.StepReport{Index: st.Index, Name: st.Name, Status: engine.StepStatus(st.Status), ExitCode: st.ExitCode, Error: st.Error}
			if st.StartedAt != nil {
				r.Started = *st.StartedAt
			}
			if st.EndedAt != nil {
				r.Ended = *st.EndedAt
			}
			switch r.Status {
			case engine.StepRunning:
				r.Status, r.Error, r.Ended = engine.StepFailed, reason, s.now().UTC()
			case engine.StepPending, engine.StepQueued:
				r.Status = engine.StepSkipped
			}
			res.Steps = append(res.Steps, r)
		}
		started, err = s.finishTx(ctx, tx, tree, cur.ID, cur.LeaseID, res, "interrupted", !allowRetry)
		return err
	})
	if started {
		s.wake()
	}
	return err
}

// Recover runs once at startup: jobs leased to this server's embedded agent
// by a previous process died with it; they are retried if their retry
// allows, else failed with "interrupted by server restart". Every active run
// is re-evaluated (retry timers live in memory).
func (s *Scheduler) Recover(ctx context.Context, embeddedAgentID string) error {
	if embeddedAgentID != "" {
		jobs, err := s.st.JobsOfAgent(ctx, embeddedAgentID)
		if err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		for _, j := range jobs {
			if err := s.interrupt(ctx, j, "interrupted by server restart", true); err != nil {
				return fmt.Errorf("recover job %s: %w", j.ID, err)
			}
		}
	}
	return s.sweepRuns(ctx)
}

func (s *Scheduler) sweepRuns(ctx context.Context) error {
	runs, err := s.st.ActiveRuns(ctx)
	if err != nil {
		return fmt.Errorf("sweep runs: %w", err)
	}
	for _, r := range runs {
		if err := s.advance(ctx, r.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("advance run", "run_id", r.ID, "err", err)
		}
	}
	return nil
}

// Run sweeps until ctx ends: expired leases (agents that vanished) every
// second, and every active run every 10 seconds as a backstop for lost
// wake-ups and retry timers.
func (s *Scheduler) Run(ctx context.Context) error {
	leases := time.NewTicker(time.Second)
	defer leases.Stop()
	runs := time.NewTicker(10 * time.Second)
	defer runs.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-leases.C:
			jobs, err := s.st.ExpiredLeases(ctx, s.now())
			if err != nil {
				s.log.Error("list expired leases", "err", err)
				continue
			}
			for _, j := range jobs {
				s.log.Warn("lease expired: agent lost", "job_run_id", j.ID, "agent_id", j.AgentID)
				if err := s.interrupt(ctx, j, "agent lost (lease expired)", true); err != nil {
					s.log.Error("fail job of a lost agent", "job_run_id", j.ID, "err", err)
				}
			}
		case <-runs.C:
			if err := s.sweepRuns(ctx); err != nil {
				s.log.Error("sweep", "err", err)
			}
		}
	}
}
