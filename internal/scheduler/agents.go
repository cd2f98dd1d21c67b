package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/worker"
)

// claimOf is the claim of job run j of a run of pipelineID, with its steps
// as stored.
func claimOf(pipelineID string, j *store.JobRun, steps []*store.StepRun) *worker.Claim {
	c := &worker.Claim{
		JobRef:  worker.JobRef{PipelineID: pipelineID, RunID: j.RunID, JobRunID: j.ID, JobKey: j.Key, LeaseID: j.LeaseID},
		Name:    j.Name,
		Attempt: j.Attempt, AgentID: j.AgentID, RunsOn: string(j.RunsOn),
		EncodedRequest: j.Request,
		Steps:          make([]*worker.Step, len(steps)),
	}
	if j.LeaseExpiresAt != nil {
		c.LeaseExpiresAt = *j.LeaseExpiresAt
	}
	for i, st := range steps {
		c.Steps[i] = &worker.Step{ID: st.ID, Index: st.Index, Name: st.Name, Status: st.Status, ExitCode: st.ExitCode,
			Error: st.Error, StartedAt: st.StartedAt, EndedAt: st.EndedAt}
	}
	return c
}

func (s *Scheduler) prepareClaim(ctx context.Context, j *store.JobRun) (*worker.Claim, error) {
	req, err := engine.DecodeRequest(j.Request)
	if err != nil {
		return nil, err
	}
	tree, err := s.st.GetRunTree(ctx, j.RunID)
	if err != nil {
		return nil, err
	}
	// A pull request from a fork gets neither secrets nor credentials
	// unless its pipeline allowed them (its timeline says so).
	withheld := tree.Run.TriggerContext().SecretsWithheld()
	if s.secrets != nil && !withheld {
		if names := secretRefs(j.Request); len(names) > 0 {
			all, err := s.secrets.ForPipeline(ctx, tree.Run.PipelineID)
			if err != nil {
				return nil, fmt.Errorf("open the pipeline's secrets: %w", err)
			}
			// Only what the job refers to travels to the agent.
			req.Env.Secrets = map[string]string{}
			for name, v := range all {
				if names["*"] || names[name] {
					req.Env.Secrets[name] = v
				}
			}
		}
	}
	if s.secrets != nil && !withheld {
		if ids := credentialRefs(j.Request); len(ids) > 0 {
			creds, err := s.secrets.Credentials(ctx, tree.Run.PipelineID, ids)
			if err != nil {
				return nil, fmt.Errorf("open the job's credentials: %w", err)
			}
			req.Credentials = creds
		}
	}
	ch := make(chan struct{})
	s.mu.Lock()
	s.cancels[j.ID] = ch
	s.mu.Unlock()
	c := claimOf(tree.Run.PipelineID, j, tree.Steps[j.ID])
	c.Request, c.Cancelled = req, ch
	return c, nil
}

// Heartbeat renews the claim's lease and tells whether the run was stopped.
// runnel.ErrLeaseLost means the job was taken away: the agent must stop it.
func (s *Scheduler) Heartbeat(ctx context.Context, c *worker.Claim) (cancelled bool, err error) {
	if _, err := s.st.ExtendLease(ctx, c.JobRunID, c.LeaseID, s.lease); err != nil {
		return false, err
	}
	run, err := s.st.GetRun(ctx, c.RunID)
	if err != nil {
		return false, err
	}
	return run.Status == runnel.RunCancelled, nil
}

// StepStatus records a step's status change.
func (s *Scheduler) StepStatus(ctx context.Context, c *worker.Claim, r engine.StepReport) error {
	if r.Index < 0 || r.Index >= len(c.Steps) {
		return fmt.Errorf("step status: job run %s has no step %d: %w", c.JobRunID, r.Index, runnel.ErrInvalid)
	}
	cur := c.Steps[r.Index]
	st := store.StepRun{ID: cur.ID, JobRunID: c.JobRunID, Index: cur.Index, Name: cur.Name, Status: cur.Status,
		ExitCode: cur.ExitCode, Error: cur.Error, StartedAt: cur.StartedAt, EndedAt: cur.EndedAt}
	applyReport(&st, r)
	if err := s.st.UpdateStep(ctx, c.LeaseID, &st); err != nil {
		return err
	}
	cur.Status, cur.ExitCode, cur.Error, cur.StartedAt, cur.EndedAt = st.Status, st.ExitCode, st.Error, st.StartedAt, st.EndedAt
	return nil
}

// sameStepReport reports whether a and b hold the same report: status,
// exit code, error and times.
func sameStepReport(a, b *store.StepRun) bool {
	eqTime := func(x, y *time.Time) bool { // as stored: to the microsecond
		return (x == nil) == (y == nil) && (x == nil || x.Truncate(time.Microsecond).Equal(y.Truncate(time.Microsecond)))
	}
	eqInt := func(x, y *int) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.Status == b.Status && a.Error == b.Error && eqInt(a.ExitCode, b.ExitCode) &&
		eqTime(a.StartedAt, b.StartedAt) && eqTime(a.EndedAt, b.EndedAt)
}

func applyReport(st *store.StepRun, r engine.StepReport) {
	st.Status = r.Status
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

// AppendLogs stores log lines of one step, capped per step, if the claim
// still holds its lease (runnel.ErrLeaseLost otherwise).
func (s *Scheduler) AppendLogs(ctx context.Context, c *worker.Claim, step int, lines []runnel.LogLine) error {
	_, err := s.AppendStepLogs(ctx, c, step, lines)
	return err
}

// AppendStepLogs is AppendLogs returning the lines as stored.
func (s *Scheduler) AppendStepLogs(ctx context.Context, c *worker.Claim, step int, lines []runnel.LogLine) ([]runnel.LogLine, error) {
	if step < 0 || step >= len(c.Steps) {
		return nil, fmt.Errorf("append logs: job run %s has no step %d: %w", c.JobRunID, step, runnel.ErrInvalid)
	}
	return s.st.AppendStepLogs(ctx, c.LeaseID, c.Steps[step].ID, lines, s.logCap)
}

// LoadClaim rebuilds the claim of a job run from the database, for reports
// that reach a replica other than the one that handed the job out. It fails
// with runnel.ErrLeaseLost when the job no longer holds leaseID.
func (s *Scheduler) LoadClaim(ctx context.Context, runID, jobRunID, leaseID string) (*worker.Claim, error) {
	tree, err := s.st.GetRunTree(ctx, runID)
	if err != nil {
		return nil, err
	}
	for _, j := range tree.Jobs {
		if j.ID != jobRunID {
			continue
		}
		if j.Status != runnel.JobRunning || j.LeaseID == "" || j.LeaseID != leaseID {
			return nil, fmt.Errorf("job run %s: %w", jobRunID, runnel.ErrLeaseLost)
		}
		return claimOf(tree.Run.PipelineID, j, tree.Steps[j.ID]), nil
	}
	return nil, fmt.Errorf("run %s has no job run %s: %w", runID, jobRunID, runnel.ErrNotFound)
}

// forgetClaim drops the in-process cancellation channel of a claim.
func (s *Scheduler) forgetClaim(jobRunID string) {
	s.mu.Lock()
	delete(s.cancels, jobRunID)
	s.mu.Unlock()
}

// HandBack ends the running jobs an agent holds without it: they are retried
// when their retry allows, else failed with reason. keep lists jobs the agent
// still runs (left alone). It returns the ids handed back.
func (s *Scheduler) HandBack(ctx context.Context, agentID, reason string, keep []string) ([]string, error) {
	jobs, err := s.st.JobsOfAgent(ctx, agentID)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, j := range jobs {
		if slices.Contains(keep, j.ID) {
			continue
		}
		s.forgetClaim(j.ID)
		if !j.Acked {
			// Never acknowledged, so never run: back in the queue as it was.
			if err := s.st.ReleaseJob(ctx, j.ID, j.LeaseID); err != nil && !errors.Is(err, runnel.ErrLeaseLost) {
				return out, fmt.Errorf("hand back job run %s: %w", j.ID, err)
			}
			s.kickDispatcher()
		} else if err := s.interrupt(ctx, j.RunID, j.ID, j.LeaseID, reason, true); err != nil {
			return out, fmt.Errorf("hand back job run %s: %w", j.ID, err)
		}
		out = append(out, j.ID)
	}
	return out, nil
}

// LocalSource is the job source of an agent running in the server's process
// (the embedded agent), registered with RegisterLocalAgent.
type LocalSource struct {
	S       *Scheduler
	AgentID string
}

// Claim waits for a job this agent may take.
func (l LocalSource) Claim(ctx context.Context) (*worker.Claim, error) {
	for {
		c, err := l.S.ClaimForAgent(ctx, l.AgentID, time.Minute)
		switch {
		case c != nil:
			return c, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			return nil, err
		}
	}
}

func (l LocalSource) Heartbeat(ctx context.Context, c *worker.Claim) (bool, error) {
	return l.S.Heartbeat(ctx, c)
}
func (l LocalSource) StepStatus(ctx context.Context, c *worker.Claim, r engine.StepReport) error {
	return l.S.StepStatus(ctx, c, r)
}
func (l LocalSource) AppendLogs(ctx context.Context, c *worker.Claim, step int, lines []runnel.LogLine) error {
	return l.S.AppendLogs(ctx, c, step, lines)
}
func (l LocalSource) Complete(ctx context.Context, c *worker.Claim, res engine.JobResult) error {
	return l.S.Complete(ctx, c, res)
}
func (l LocalSource) Interrupt(ctx context.Context, c *worker.Claim, reason string) error {
	return l.S.Interrupt(ctx, c, reason)
}

// Storage binds the claim to the run's artifacts and the pipeline's caches
// (nil when the server has no storage).
func (l LocalSource) Storage(c *worker.Claim) action.Storage { return l.S.Storage(c) }

func (l LocalSource) Abandon(c *worker.Claim)      { l.S.forgetClaim(c.JobRunID) }
func (l LocalSource) LeaseDuration() time.Duration { return l.S.LeaseDuration() }

// RegisterLocalAgent records an agent of this process (creating or updating
// its record) and keeps its last-seen time fresh while Run runs.
func (s *Scheduler) RegisterLocalAgent(ctx context.Context, a *store.Agent) error {
	if _, err := s.st.GetAgent(ctx, a.ID); errors.Is(err, runnel.ErrNotFound) {
		a.CreatedAt = s.now().UTC()
		if err := s.st.CreateAgent(ctx, a); err != nil && !errors.Is(err, runnel.ErrConflict) {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := s.st.ReportAgent(ctx, a); err != nil {
		return err
	}
	s.mu.Lock()
	s.localAgents[a.ID] = true
	s.mu.Unlock()
	return nil
}

// Complete records a finished attempt and re-evaluates the run: the job is
// retried, or ends, and what depends on it may start.
func (s *Scheduler) Complete(ctx context.Context, c *worker.Claim, res engine.JobResult) error {
	s.mu.Lock()
	delete(s.cancels, c.JobRunID)
	s.mu.Unlock()
	var started bool
	err := s.st.UpdateRunTx(ctx, c.RunID, func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		started, err = s.finishTx(ctx, tx, tree, c.JobRunID, c.LeaseID, res, "", false)
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
func (s *Scheduler) Interrupt(ctx context.Context, c *worker.Claim, reason string) error {
	s.mu.Lock()
	delete(s.cancels, c.JobRunID)
	s.mu.Unlock()
	return s.interrupt(ctx, c.RunID, c.JobRunID, c.LeaseID, reason, true)
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
		return false, fmt.Errorf("complete job %s: %w", jobRunID, runnel.ErrNotFound)
	}
	if job.Status != runnel.JobRunning || job.LeaseID != leaseID {
		return false, fmt.Errorf("complete job %s: %w", jobRunID, runnel.ErrLeaseLost)
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
	job.Status, job.AllowedFailure, job.Outputs, job.Reason = js.Status, js.AllowedFailure, js.Outputs, js.Reason
	job.LeaseID, job.LeaseExpiresAt = "", nil
	if retry {
		at := js.RetryAt
		job.RetryAt = &at
	} else {
		job.EndedAt = &now
	}
	// The steps' last reports first: a job's events end after its steps'.
	for i, r := range res.Steps {
		if i >= len(tree.Steps[job.ID]) {
			break
		}
		st := tree.Steps[job.ID][i]
		before := *st
		applyReport(st, r)
		if sameStepReport(&before, st) {
			continue // reported already, as it happened
		}
		if err := tx.UpdateStep(st); err != nil {
			return false, err
		}
	}
	if err := tx.UpdateJob(job); err != nil {
		return false, err
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
func (s *Scheduler) interrupt(ctx context.Context, runID, jobRunID, leaseID string, reason string, allowRetry bool) error {
	var started bool
	err := s.st.UpdateRunTx(ctx, runID, func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		var cur *store.JobRun
		for _, x := range tree.Jobs {
			if x.ID == jobRunID {
				cur = x
			}
		}
		if cur == nil || cur.Status != runnel.JobRunning || cur.LeaseID != leaseID {
			return nil // already handled (another replica, or the agent reported after all)
		}
		res := engine.JobResult{Status: runnel.JobFailed, Reason: reason}
		for _, st := range tree.Steps[cur.ID] {
			r := engine.StepReport{Index: st.Index, Name: st.Name, Status: st.Status, ExitCode: st.ExitCode, Error: st.Error}
			if st.StartedAt != nil {
				r.Started = *st.StartedAt
			}
			if st.EndedAt != nil {
				r.Ended = *st.EndedAt
			}
			switch r.Status {
			case runnel.StepRunning:
				r.Status, r.Error, r.Ended = runnel.StepFailed, reason, s.now().UTC()
			case runnel.StepPending, runnel.StepQueued:
				r.Status = runnel.StepSkipped
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
		if _, err := s.HandBack(ctx, embeddedAgentID, "interrupted by server restart", nil); err != nil {
			return fmt.Errorf("recover: %w", err)
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
		if err := s.advance(ctx, r.ID); err != nil && !errors.Is(err, runnel.ErrNotFound) {
			s.log.Error("advance run", "run_id", r.ID, "err", err)
		}
	}
	return nil
}

// Run drives the background work until ctx ends: the dispatcher (handing
// queued jobs to waiting claimers), cancellations from other replicas,
// expired leases (agents that vanished) every second, why queued jobs wait
// every 2 seconds, the last-seen time of this process's agents every 10
// seconds, and every active run every 10 seconds as a backstop for lost
// wake-ups and retry timers.
func (s *Scheduler) Run(ctx context.Context) error {
	if s.ownBus {
		defer s.bus.Close()
	}
	cancels, unsub := s.bus.Subscribe(topicCancel, 256)
	defer unsub()
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		s.dispatch(ctx)
	}()
	leases := time.NewTicker(time.Second)
	defer leases.Stop()
	routes := time.NewTicker(2 * time.Second)
	defer routes.Stop()
	runs := time.NewTicker(10 * time.Second)
	defer runs.Stop()
	s.touchLocalAgents(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case runID, ok := <-cancels:
			if ok && runID != "" {
				s.onCancel(ctx, runID)
			}
		case <-leases.C:
			s.expireLeases(ctx)
		case <-routes.C:
			if err := s.checkRoutes(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("explain waiting jobs", "err", err)
			}
		case <-runs.C:
			s.touchLocalAgents(ctx)
			if err := s.sweepRuns(ctx); err != nil {
				s.log.Error("sweep", "err", err)
			}
		}
	}
}

func (s *Scheduler) expireLeases(ctx context.Context) {
	jobs, err := s.st.ExpiredLeases(ctx, s.now())
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("list expired leases", "err", err)
		}
		return
	}
	for _, j := range jobs {
		s.forgetClaim(j.ID)
		if !j.Acked {
			// The agent never acknowledged the claim, so it never ran
			// anything: the job goes back to the queue as it was.
			s.log.Warn("claim not acknowledged in time: job back in the queue", "job_run_id", j.ID, "agent_id", j.AgentID)
			if err := s.st.ReleaseJob(ctx, j.ID, j.LeaseID); err != nil && !errors.Is(err, runnel.ErrLeaseLost) {
				s.log.Error("put an unacknowledged job back", "job_run_id", j.ID, "err", err)
			}
			s.kickDispatcher()
			continue
		}
		s.log.Warn("lease expired: agent lost", "job_run_id", j.ID, "agent_id", j.AgentID)
		if err := s.interrupt(ctx, j.RunID, j.ID, j.LeaseID, "agent lost: its lease expired (agent "+j.AgentID+")", true); err != nil {
			s.log.Error("fail job of a lost agent", "job_run_id", j.ID, "err", err)
		}
	}
}

func (s *Scheduler) touchLocalAgents(ctx context.Context) {
	s.mu.Lock()
	ids := make([]string, 0, len(s.localAgents))
	for id := range s.localAgents {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		if err := s.st.TouchAgent(ctx, id, s.now().UTC()); err != nil && ctx.Err() == nil {
			s.log.Warn("record agent as seen", "agent_id", id, "err", err)
		}
	}
}

var (
	secretRefRe     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\bsecrets\.([A-Za-z_][A-Za-z0-9_]*)`) })
	secretDynamicRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\bsecrets\s*\[`) })
)

// secretRefs lists the secret names a serialised job request refers to;
// "*" when it indexes the secrets context dynamically (secrets[...]).
func secretRefs(request []byte) map[string]bool {
	out := map[string]bool{}
	if secretDynamicRe().Match(request) {
		out["*"] = true
	}
	for _, m := range secretRefRe().FindAllSubmatch(request, -1) {
		out[string(m[1])] = true
	}
	return out
}

var credentialRefRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\bcred_[a-z0-9]{10,40}\b`) })

// credentialRefs lists the credential ids a serialised job request names.
func credentialRefs(request []byte) []string {
	var out []string
	for _, m := range credentialRefRe().FindAll(request, -1) {
		if !slices.Contains(out, string(m)) {
			out = append(out, string(m))
		}
	}
	return out
}

// Storage binds a claim to the run's artifacts and the pipeline's caches; nil
// when the scheduler has no StorageBinder.
func (s *Scheduler) Storage(c *worker.Claim) action.Storage {
	if s.storage == nil {
		return nil
	}
	return s.storage.Bind(c.JobRef)
}
