// Package scheduler turns triggers into runs and drives them through the
// database: it plans a run, stores its job and step runs, queues the jobs the
// engine's State says may start, hands them to agents under a lease, records
// what agents report, and re-evaluates the run after every change. Every
// decision for a run is made inside store.UpdateRunTx, so decisions for one run
// are serialised even with several server replicas; in-memory channels only
// wake agents up sooner.
package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/bus"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/expr"
	"github.com/runnel-ci/runnel/internal/plan"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/worker"
)

// Defaults.
const (
	DefaultLeaseDuration = worker.DefaultLeaseDuration
	DefaultLogCap        = 10 << 20
)

// Options configure a Scheduler.
type Options struct {
	Store   store.Store
	Catalog spec.ActionCatalog
	Logger  *slog.Logger
	// Now tells time; nil → time.Now.
	Now func() time.Time
	// LeaseDuration is how long a claim lasts without renewal.
	LeaseDuration time.Duration
	// LogCapBytes bounds each step's stored log.
	LogCapBytes int64
	// Bus carries wake-ups and cancellations between replicas; nil → an
	// in-process bus (one server).
	Bus bus.Bus
	// OfflineAfter: an agent not seen for this long is offline (default 30s).
	OfflineAfter time.Duration
	// PollInterval bounds how late a claimer learns of work whose wake-up
	// signal was lost (default 1s).
	PollInterval time.Duration
	// Secrets opens the secrets a pipeline's jobs may use; nil: none.
	Secrets SecretSource
	// Storage binds a claimed job to the run's artifacts and the pipeline's
	// caches; nil: jobs have none (artifact and cache steps fail).
	Storage StorageBinder
	// Definitions finds a new run's definition when it does not come from
	// the stored head version (Git-backed pipelines, a configuration
	// extension); nil: always the stored head version.
	Definitions DefinitionSource
}

// DefinitionSource finds the definition of a new run.
type DefinitionSource interface {
	// Definition returns the definition for a run of p started by t, or nil
	// (and no error) for the pipeline's stored head version. An error fails
	// the run, with the error as its reason.
	Definition(ctx context.Context, p *store.Pipeline, t runnel.Trigger, vars map[string]string) (*store.RunDefinition, error)
}

// StorageBinder gives a claimed job its artifact and cache storage
// (artifact.Service implements it).
type StorageBinder interface {
	Bind(job worker.JobRef) action.Storage
}

// SecretSource resolves secret values and credentials (secret.Resolver
// implements it).
type SecretSource interface {
	ForPipeline(ctx context.Context, pipelineID string) (map[string]string, error)
	// Credentials opens the credentials ids that a job of the pipeline
	// names; one it may not use (unknown, another project's) is left out.
	Credentials(ctx context.Context, pipelineID string, ids []string) (map[string]runnel.Credential, error)
}

// Scheduler implements run control (trigger, stop, pause, resume) and the job
// source agents claim work from.
type Scheduler struct {
	st      store.Store
	catalog spec.ActionCatalog
	log     *slog.Logger
	now     func() time.Time
	lease   time.Duration
	logCap  int64
	bus     bus.Bus
	ownBus  bool
	poll    time.Duration
	// offlineAfter: agents not seen for this long are offline.
	offlineAfter time.Duration
	routes       routeCache
	secrets      SecretSource
	storage      StorageBinder
	defs         DefinitionSource
	kick         chan struct{}

	mu sync.Mutex
	// waiters are claimers blocked in Claim, by label signature.
	waiters map[string][]*waiter
	// localAgents are agents running in this process; their last-seen time
	// is kept fresh by Run.
	localAgents     map[string]bool
	cancelListeners []func(agentID, jobRunID, leaseID, reason string)
	// cancels holds the cancellation channels of jobs claimed in this process,
	// so a stop reaches the embedded agent at once (remote agents learn it
	// through Heartbeat).
	cancels map[string]chan struct{}
	plans   map[string]*plan.Plan // by run id; plans are deterministic, the cache only saves parsing
	timers  map[string]*time.Timer
}

// New returns a Scheduler; call Run to start its background sweeps.
func New(o Options) *Scheduler {
	s := &Scheduler{
		st: o.Store, catalog: o.Catalog, log: o.Logger, now: o.Now, lease: o.LeaseDuration, logCap: o.LogCapBytes,
		bus: o.Bus, poll: o.PollInterval, secrets: o.Secrets, storage: o.Storage, defs: o.Definitions, offlineAfter: o.OfflineAfter, kick: make(chan struct{}, 1),
		waiters: map[string][]*waiter{}, localAgents: map[string]bool{},
		cancels: map[string]chan struct{}{}, plans: map[string]*plan.Plan{}, timers: map[string]*time.Timer{},
	}
	if s.bus == nil {
		s.bus, s.ownBus = bus.NewLocal(), true
	}
	if s.poll <= 0 {
		s.poll = time.Second
	}
	if s.offlineAfter <= 0 {
		s.offlineAfter = 30 * time.Second
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.lease <= 0 {
		s.lease = DefaultLeaseDuration
	}
	if s.logCap == 0 {
		s.logCap = DefaultLogCap
	}
	return s
}

// LeaseDuration is the lease granted per claim.
func (s *Scheduler) LeaseDuration() time.Duration { return s.lease }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), runnel.ErrInvalid)
}

func conflict(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), runnel.ErrConflict)
}

// Trigger plans a run of the pipeline's head definition, stores it and starts
// it. A RequestID already used for the pipeline returns that run (replayed).
func (s *Scheduler) Trigger(ctx context.Context, pipelineID string, req runnel.TriggerRequest) (*store.Run, bool, error) {
	p, err := s.st.GetPipeline(ctx, pipelineID)
	if err != nil {
		return nil, false, err
	}
	if req.TriggerType == "" {
		req.TriggerType = runnel.TriggerManual
	}
	runID := runnel.NewID("run")
	run := &store.Run{
		ID: runID, PipelineID: pipelineID, Status: runnel.RunPending, TriggerType: req.TriggerType,
		TriggeredBy: req.TriggeredBy, TriggerUserID: req.TriggerUserID, RequestID: req.RequestID, CreatedAt: s.now().UTC(),
	}
	tc := runnel.Trigger{}
	if req.Trigger != nil {
		tc = *req.Trigger
	}
	tc.Type = req.TriggerType
	if tc.Actor == "" {
		tc.Actor = req.TriggeredBy
	}
	if tc.Event == "" {
		tc.Event = req.TriggerType
	}
	if tc.PullRequest.Fork {
		tc.PullRequest.ForkSecrets = cmpOr(p.ForkPullRequests, "withhold")
	}
	if req.RequestID != "" && s.defs != nil {
		// Reading a definition from Git or an extension takes time: a
		// replayed request answers at once with the run it started.
		if prev, err := s.st.RunByRequest(ctx, pipelineID, req.RequestID); err == nil && prev != nil {
			return prev, true, nil
		}
	}
	var (
		def *spec.Pipeline
		rd  *store.RunDefinition
	)
	if s.defs != nil {
		rd, err = s.defs.Definition(ctx, p, tc, req.Variables)
		if err != nil {
			return s.failedRun(ctx, run, tc, nil, "cannot read the definition: "+err.Error())
		}
	}
	if rd != nil {
		rd.RunID = runID
		file := rd.File
		if file == "" {
			file = "extension"
		}
		def, err = spec.Parse(rd.Content, spec.Options{File: file, Catalog: s.catalog})
		if err != nil {
			where := file
			if rd.CommitSHA != "" {
				where += " at " + rd.CommitSHA
			}
			if rd.Source == "extension" {
				where = "the configuration extension's answer"
			}
			return s.failedRun(ctx, run, tc, rd, fmt.Sprintf("the definition (%s) is not valid: %v", where, err))
		}
		if tc.Commit == "" && rd.CommitSHA != "" {
			// A manual or cron run of a Git-backed pipeline runs the commit
			// it read the definition at.
			tc.Commit = rd.CommitSHA
			if tc.Ref == "" && p.DefaultBranch != "" {
				tc.Ref, tc.Branch = "refs/heads/"+p.DefaultBranch, p.DefaultBranch
			}
		}
	} else {
		sv, err := s.st.GetSpec(ctx, pipelineID, 0)
		if errors.Is(err, runnel.ErrNotFound) {
			return nil, false, invalid("pipeline %s has no definition yet: save one with POST /api/v1/pipelines/%s/spec/save", pipelineID, pipelineID)
		}
		if err != nil {
			return nil, false, err
		}
		def, err = spec.Parse(sv.Spec, spec.Options{File: "spec", Catalog: s.catalog})
		if err != nil {
			return nil, false, invalid("the pipeline's definition (version %d) is not valid: %v", sv.Version, err)
		}
		run.SpecVersion = sv.Version
	}
	if err := setTrigger(run, tc); err != nil {
		return nil, false, err
	}
	forkGate(def, tc)
	pl, err := plan.New(plan.Input{
		Spec: def, Pipeline: pipelineCtx(p, def), Run: expr.Run{ID: runID}, Trigger: run.TriggerContext(), Variables: req.Variables,
	})
	if err != nil {
		var pe *plan.Error
		if errors.As(err, &pe) {
			return nil, false, invalid("%s", pe.Msg)
		}
		return nil, false, err
	}
	run.Variables = pl.Base.Variables
	nr := &store.NewRun{Run: run, Steps: map[string][]*store.StepRun{}, Definition: rd}
	i := 0
	for _, st := range pl.Stages {
		for _, j := range st.Jobs {
			var runsOn json.RawMessage
			if k := RouteKey(j.Spec.RunsOn); k != "" {
				runsOn = json.RawMessage(k)
			}
			jr := &store.JobRun{
				ID: runnel.NewID("jr"), RunID: runID, Key: j.ID, Name: j.Name, Stage: j.Stage, StageIndex: j.StageIndex,
				Index: i, Status: runnel.JobPending, RunsOn: runsOn,
			}
			i++
			nr.Jobs = append(nr.Jobs, jr)
			for k, step := range j.Spec.Steps {
				nr.Steps[jr.ID] = append(nr.Steps[jr.ID], &store.StepRun{
					ID: runnel.NewID("sr"), JobRunID: jr.ID, Index: k, Name: step.Name, Uses: step.Uses, Run: step.Run,
					Status: runnel.StepPending,
				})
			}
		}
	}
	// The run's first evaluation (its first jobs queued) happens in the
	// transaction that creates it: one write instead of two, and no second
	// read of what was just written.
	var (
		advanced *store.Run
		started  bool
	)
	nr.Then = func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		// The plan is the one planFor would rebuild, now that the number is
		// known: cache it and spare the evaluation a parse.
		pl.Base.Run.Number = tree.Run.Number
		s.mu.Lock()
		s.plans[runID] = pl
		s.mu.Unlock()
		if note := forkNote(tc); note != "" {
			if err := tx.AppendTimeline(&store.TimelineEntry{RunID: runID, Time: s.now().UTC(), Action: "fork_pull_request",
				Operator: "runnel", Reason: note}); err != nil {
				return err
			}
		}
		if started, err = s.advanceTx(ctx, tx, tree); err != nil {
			return err
		}
		advanced = tree.Run
		return nil
	}
	created, replayed, err := s.st.CreateRun(ctx, nr)
	if err != nil || replayed {
		if err != nil {
			s.forget(runID)
		}
		return created, replayed, err
	}
	if started {
		s.wake()
	}
	return advanced, false, nil
}

// setTrigger records the trigger context on the run; its commit becomes the
// run's.
func setTrigger(run *store.Run, tc runnel.Trigger) error {
	b, err := json.Marshal(tc)
	if err != nil {
		return fmt.Errorf("trigger %s: encode the trigger context: %w", run.PipelineID, err)
	}
	run.Trigger, run.Commit = b, tc.Commit
	return nil
}

// failedRun stores a run that failed before it could be planned (its
// definition could not be read or is not valid), so that the failure and its
// reason show in the pipeline's history like any other run's.
func (s *Scheduler) failedRun(ctx context.Context, run *store.Run, tc runnel.Trigger, rd *store.RunDefinition, reason string) (*store.Run, bool, error) {
	if err := setTrigger(run, tc); err != nil {
		return nil, false, err
	}
	now := s.now().UTC()
	run.Status, run.Reason, run.EndedAt = runnel.RunFailed, reason, &now
	s.log.Warn("run failed before it started", "pipeline", run.PipelineID, "run", run.ID, "reason", reason)
	return s.st.CreateRun(ctx, &store.NewRun{Run: run, Definition: rd})
}

func pipelineCtx(p *store.Pipeline, def *spec.Pipeline) expr.Pipeline {
	return expr.Pipeline{ID: p.ID, Name: p.Name, Namespace: def.Namespace}
}

// planFor rebuilds (or recalls) the plan of a stored run. Planning is
// deterministic: the same spec version, variables and trigger give the same
// plan on every replica.
func (s *Scheduler) planFor(ctx context.Context, run *store.Run) (*plan.Plan, error) {
	pl, err := s.PlanOf(ctx, run)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if cur := s.plans[run.ID]; cur != nil {
		pl = cur
	} else {
		s.plans[run.ID] = pl
	}
	s.mu.Unlock()
	return pl, nil
}

// JobNeeds returns, for each job of the run (by key), the keys of the jobs
// it needs; jobs without needs are absent. A run being driven uses its
// cached plan; any other run's plan is rebuilt and not kept.
func (s *Scheduler) JobNeeds(ctx context.Context, run *store.Run) (map[string][]string, error) {
	pl, err := s.PlanOf(ctx, run)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, st := range pl.Stages {
		for _, j := range st.Jobs {
			if len(j.Needs) > 0 {
				out[j.ID] = append([]string(nil), j.Needs...)
			}
		}
	}
	return out, nil
}

// PlanOf returns the plan of a run being driven (cached), or plans any
// other run from its definition without keeping the plan (plans are
// deterministic; only the runs being driven are kept).
func (s *Scheduler) PlanOf(ctx context.Context, run *store.Run) (*plan.Plan, error) {
	s.mu.Lock()
	pl := s.plans[run.ID]
	s.mu.Unlock()
	if pl != nil {
		return pl, nil
	}
	return s.buildPlan(ctx, run)
}

// buildPlan plans a stored run from its definition.
func (s *Scheduler) buildPlan(ctx context.Context, run *store.Run) (*plan.Plan, error) {
	p, err := s.st.GetPipeline(ctx, run.PipelineID)
	if err != nil {
		return nil, err
	}
	var def *spec.Pipeline
	if run.SpecVersion == 0 {
		rd, err := s.st.GetRunDefinition(ctx, run.ID)
		if err != nil {
			return nil, err
		}
		if def, err = spec.Parse(rd.Content, spec.Options{File: rd.File, Catalog: s.catalog}); err != nil {
			return nil, fmt.Errorf("run %s: its definition: %w", run.ID, err)
		}
	} else {
		sv, err := s.st.GetSpec(ctx, run.PipelineID, run.SpecVersion)
		if err != nil {
			return nil, err
		}
		if def, err = spec.Parse(sv.Spec, spec.Options{File: "spec", Catalog: s.catalog}); err != nil {
			return nil, fmt.Errorf("run %s: definition version %d: %w", run.ID, run.SpecVersion, err)
		}
	}
	forkGate(def, run.TriggerContext())
	return plan.New(plan.Input{
		Spec: def, Pipeline: pipelineCtx(p, def), Run: expr.Run{ID: run.ID, Number: run.Number},
		Trigger: run.TriggerContext(), Variables: run.Variables,
	})
}

func (s *Scheduler) forget(runID string) {
	s.mu.Lock()
	delete(s.plans, runID)
	if t := s.timers[runID]; t != nil {
		t.Stop()
		delete(s.timers, runID)
	}
	s.mu.Unlock()
}

// rebuild restores the engine's State of a run from its stored job runs.
func rebuild(pl *plan.Plan, tree *store.RunTree) (*engine.State, error) {
	env, err := engine.PipelineEnv(pl)
	if err != nil {
		return nil, err
	}
	st := engine.NewState(pl, env)
	for _, j := range tree.Jobs {
		js := st.Jobs[j.Key]
		if js == nil {
			return nil, fmt.Errorf("run %s: stored job %q is not in the plan", tree.Run.ID, j.Key)
		}
		js.Status = runnel.JobStatus(j.Status)
		js.Attempt = j.Attempt
		js.AllowedFailure = j.AllowedFailure
		js.Outputs = j.Outputs
		js.Reason = j.Reason
		if j.RetryAt != nil {
			js.RetryAt = *j.RetryAt
		}
	}
	st.Cancelled = tree.Run.Status == runnel.RunCancelled
	return st, nil
}

// advance re-evaluates a run in its own transaction.
func (s *Scheduler) advance(ctx context.Context, runID string) error {
	var started bool
	err := s.st.UpdateRunTx(ctx, runID, func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		started, err = s.advanceTx(ctx, tx, tree)
		return err
	})
	if started {
		s.wake()
	}
	return err
}

// advanceTx applies the State's decisions to a locked run. It returns true when
// jobs were queued.
func (s *Scheduler) advanceTx(ctx context.Context, tx store.RunTx, tree *store.RunTree) (bool, error) {
	run := tree.Run
	// To the microsecond, as stored: a run returned from memory equals the
	// run read back.
	now := s.now().UTC().Truncate(time.Microsecond)
	if run.Status == runnel.RunPaused || run.EndedAt != nil {
		return false, nil
	}
	pl, err := s.planFor(ctx, run)
	if err != nil {
		return false, s.failRunTx(tx, tree, "cannot plan the run: "+err.Error())
	}
	state, err := rebuild(pl, tree)
	if err != nil {
		return false, s.failRunTx(tx, tree, err.Error())
	}
	// changed: the run row must be written. A re-evaluation that decides
	// nothing (the periodic sweep, most wake-ups) writes nothing.
	changed := false
	if run.Status == runnel.RunPending {
		changed = true
		run.Status = runnel.RunRunning
		run.StartedAt = &now
		if err := tx.AppendTimeline(&store.TimelineEntry{RunID: run.ID, Time: now, Action: "started"}); err != nil {
			return false, err
		}
	}
	d := state.Next(now)
	jobs := map[string]*store.JobRun{}
	for _, j := range tree.Jobs {
		jobs[j.Key] = j
	}
	for _, sk := range d.Skipped {
		j := jobs[sk.Job.ID]
		j.Status, j.Reason, j.EndedAt = sk.Status, sk.Reason, &now
		if err := tx.UpdateJob(j); err != nil {
			return false, err
		}
		stepStatus := runnel.StepSkipped
		if sk.Status == runnel.JobCancelled {
			stepStatus = runnel.StepCancelled
		}
		for _, st := range tree.Steps[j.ID] {
			if !runnel.StepStatus(st.Status).Terminal() {
				st.Status = stepStatus
				if err := tx.UpdateStep(st); err != nil {
					return false, err
				}
			}
		}
	}
	start, rejected, err := s.gateStarts(tx, tree, pl, d.Start, jobs, now)
	if err != nil {
		return false, err
	}
	if rejected {
		// Jobs failed at their gates: what follows from that is decided in
		// a new evaluation.
		s.wakeAt(run.ID, now)
	}
	for _, pj := range start {
		j := jobs[pj.ID]
		js := state.Jobs[pj.ID]
		req := engine.JobRequest{
			BackendID: engine.BackendID(run.ID, pj.ID, js.Attempt),
			Job:       pj,
			Env:       state.JobEnv(pj),
		}
		if src := pl.Spec.Source; src != nil && !strings.Contains(src.RepoURL, "${{") {
			req.RepoURL = src.RepoURL
		}
		b, err := engine.EncodeRequest(req)
		if err != nil {
			return false, err
		}
		j.Status, j.Attempt, j.Request, j.QueuedAt, j.RetryAt = runnel.JobQueued, js.Attempt, b, &now, nil
		j.StartedAt, j.EndedAt, j.AgentID, j.LeaseID, j.LeaseExpiresAt, j.Reason = nil, nil, "", "", nil, ""
		if err := tx.UpdateJob(j); err != nil {
			return false, err
		}
		for _, st := range tree.Steps[j.ID] {
			if js.Attempt > 1 || st.Status != runnel.StepPending {
				*st = store.StepRun{ID: st.ID, JobRunID: st.JobRunID, Index: st.Index, Name: st.Name, Uses: st.Uses, Run: st.Run, Status: runnel.StepPending, LogBytes: st.LogBytes}
				if err := tx.UpdateStep(st); err != nil {
					return false, err
				}
			}
		}
	}
	if !d.WakeAt.IsZero() {
		s.wakeAt(run.ID, d.WakeAt)
	}
	if d.Done {
		changed = true
		status := d.Status
		if run.Status == runnel.RunCancelled {
			status = runnel.RunCancelled
		}
		run.Status = status
		run.EndedAt = &now
		if status == runnel.RunFailed && run.Reason == "" {
			run.Reason = failureReason(tree.Jobs)
		}
		if err := tx.AppendTimeline(&store.TimelineEntry{RunID: run.ID, Time: now, Action: "finished", Reason: string(status)}); err != nil {
			return false, err
		}
		defer s.forget(run.ID)
	}
	if !changed && len(start) == 0 && len(d.Skipped) == 0 && !rejected {
		return false, nil
	}
	if err := tx.UpdateRun(run); err != nil {
		return false, err
	}
	if err := tx.SetPipelineStatus(run); err != nil {
		return false, err
	}
	return len(start) > 0, nil
}

// failRunTx ends a run that cannot go on (its definition no longer plans).
func (s *Scheduler) failRunTx(tx store.RunTx, tree *store.RunTree, reason string) error {
	now := s.now().UTC()
	run := tree.Run
	for _, j := range tree.Jobs {
		if !runnel.JobStatus(j.Status).Terminal() && j.Status != runnel.JobRunning {
			j.Status, j.Reason, j.EndedAt = runnel.JobFailed, reason, &now
			if err := tx.UpdateJob(j); err != nil {
				return err
			}
		}
	}
	run.Status, run.Reason, run.EndedAt = runnel.RunFailed, reason, &now
	if err := tx.AppendTimeline(&store.TimelineEntry{RunID: run.ID, Time: now, Action: "finished", Reason: reason}); err != nil {
		return err
	}
	if err := tx.UpdateRun(run); err != nil {
		return err
	}
	return tx.SetPipelineStatus(run)
}

// wakeAt re-evaluates a run when a retry becomes due.
func (s *Scheduler) wakeAt(runID string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.timers[runID]; t != nil {
		t.Stop()
	}
	s.timers[runID] = time.AfterFunc(max(0, at.Sub(s.now())), func() {
		s.mu.Lock()
		delete(s.timers, runID)
		s.mu.Unlock()
		if err := s.advance(context.Background(), runID); err != nil {
			s.log.Error("advance run after retry delay", "run_id", runID, "err", err)
		}
	})
}

// wake tells waiting claimers, on every replica, that work may be claimable.
func (s *Scheduler) wake() {
	s.kickDispatcher()
	if err := s.bus.Publish(context.Background(), topicWork, ""); err != nil {
		s.log.Warn("publish a wake-up", "err", err)
	}
}

// failureReason says why a run failed: its first failed job (in plan order)
// that was not allowed to fail, and that job's reason (a step's exit code, a
// lost agent, a server restart, a timeout…).
func failureReason(jobs []*store.JobRun) string {
	for _, j := range jobs {
		if j.Status != runnel.JobFailed || j.AllowedFailure {
			continue
		}
		if j.Reason == "" {
			return fmt.Sprintf("job %s failed", j.Name)
		}
		return fmt.Sprintf("job %s failed: %s", j.Name, j.Reason)
	}
	return "a job failed"
}

// forkGate puts a pull request from a fork whose pipeline says "approve"
// behind the pipeline's approval: a maintainer's approval lets it run, with
// its secrets. The fork's author may have written the definition (it is read
// at the pull request's head): a pipeline approval of its own keeps its
// message and timeout, but maintainers decide it, never approvers the
// definition names.
func forkGate(def *spec.Pipeline, tc runnel.Trigger) {
	if !tc.PullRequest.Fork || tc.PullRequest.ForkSecrets != "approve" {
		return
	}
	if required(def.Approval) {
		a := *def.Approval
		a.Approvers = []string{"role:maintainer"}
		def.Approval = &a
		return
	}
	def.Approval = &spec.Approval{Approvers: []string{"role:maintainer"},
		Message: fmt.Sprintf("Pull request #%d comes from fork %s: approve to run it with the pipeline's secrets and credentials",
			tc.PullRequest.Number, cmpOr(tc.PullRequest.HeadRepo, "(deleted)"))}
}

// forkNote is what a fork's run says on its timeline ("" for other runs).
func forkNote(tc runnel.Trigger) string {
	if !tc.PullRequest.Fork {
		return ""
	}
	from := cmpOr(tc.PullRequest.HeadRepo, "a deleted fork")
	switch tc.PullRequest.ForkSecrets {
	case "allow":
		return "pull request from fork " + from + ": the pipeline allows forks' runs its secrets and credentials"
	case "approve":
		return "pull request from fork " + from + ": waits for a maintainer's approval, which gives it the pipeline's secrets and credentials"
	}
	return "pull request from fork " + from + ": runs without the pipeline's secrets and credentials (forkPullRequests: withhold)"
}
