package engine

import (
	"context"
	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"maps"
	"sync"
	"time"

	"github.com/runnel-ci/runnel/internal/plan"
)

// Observer receives every status change and log line of a run driven by Runner.
// Calls may come from several goroutines (one per running job) but never
// concurrently: Runner serialises them.
type Observer interface {
	Event(e Event)
}

// Event kinds.
const (
	EventRun  = "run"
	EventJob  = "job"
	EventStep = "step"
	EventLog  = "log"
)

// Event is one thing that happened in a run.
type Event struct {
	Type  string    `json:"type"`
	Time  time.Time `json:"time"`
	RunID string    `json:"runId"`
	// Run
	RunStatus runnel.RunStatus `json:"runStatus,omitempty"`
	// Job
	JobID     string           `json:"jobId,omitempty"`
	JobName   string           `json:"job,omitempty"`
	Stage     string           `json:"stage,omitempty"`
	JobStatus runnel.JobStatus `json:"jobStatus,omitempty"`
	Attempt   int              `json:"attempt,omitempty"`
	// Step
	StepIndex  *int              `json:"stepIndex,omitempty"`
	StepName   string            `json:"step,omitempty"`
	StepStatus runnel.StepStatus `json:"stepStatus,omitempty"`
	ExitCode   *int              `json:"exitCode,omitempty"`
	// Log
	Level   string `json:"level,omitempty"`
	Message string `json:"message,omitempty"`
	// Reason explains a skip, failure or cancellation.
	Reason string `json:"reason,omitempty"`
}

// Runner drives a whole run in this process: State decides, Executor runs jobs
// in goroutines, at most Concurrency at a time.
type Runner struct {
	Executor *Executor
	// Concurrency bounds jobs running at once; 0 → 1.
	Concurrency int
	Observer    Observer
	// ExtraEnv is added to every step (below the definition's env).
	ExtraEnv map[string]string
	// RepoURL is exported to steps as RUNNEL_REPO_URL.
	RepoURL string
	// Storage, when set, gives each job (by plan job id) its artifact and
	// cache storage.
	Storage func(jobID string) action.Storage
}

// RunResult is the outcome of a run.
type RunResult struct {
	Status  runnel.RunStatus
	Started time.Time
	Ended   time.Time
	Jobs    []JobSummary
}

// JobSummary is a job's final state and its steps, in plan order.
type JobSummary struct {
	Job      *plan.Job
	Status   runnel.JobStatus
	Attempts int
	Reason   string
	Started  time.Time
	Ended    time.Time
	Steps    []StepReport
}

type jobDone struct {
	id     string
	result JobResult
}

// Run executes a planned run. Cancelling ctx cancels the run gracefully
// (always() steps and jobs still run); cancelling hard stops everything.
func (r *Runner) Run(ctx, hard context.Context, p *plan.Plan) RunResult {
	clock := r.Executor.Clock
	if clock == nil {
		clock = realClock{}
	}
	conc := r.Concurrency
	if conc <= 0 {
		conc = 1
	}
	var mu sync.Mutex
	emit := func(e Event) {
		if r.Observer == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		e.RunID = p.Base.Run.ID
		if e.Time.IsZero() {
			e.Time = clock.Now()
		}
		r.Observer.Event(e)
	}

	res := RunResult{Started: clock.Now()}
	pipelineEnv, envErr := evalPipelineEnv(p)
	state := NewState(p, pipelineEnv)
	summaries := map[string]*JobSummary{}
	for _, st := range p.Stages {
		for _, j := range st.Jobs {
			summaries[j.ID] = &JobSummary{Job: j, Status: runnel.JobPending}
		}
	}
	emit(Event{Type: EventRun, RunStatus: runnel.RunRunning})
	if envErr != nil {
		// The pipeline env could not be evaluated: nothing can run.
		for _, s := range summaries {
			s.Status, s.Reason = runnel.JobFailed, envErr.Error()
			emit(Event{Type: EventJob, JobID: s.Job.ID, JobName: s.Job.Name, Stage: s.Job.Stage, JobStatus: runnel.JobFailed, Reason: s.Reason})
		}
		res.Status, res.Ended = runnel.RunFailed, clock.Now()
		res.Jobs = r.ordered(p, summaries)
		emit(Event{Type: EventRun, RunStatus: res.Status, Reason: envErr.Error()})
		return res
	}

	done := make(chan jobDone)
	sem := make(chan struct{}, conc)
	running := 0
	var timer *time.Timer
	var timerC <-chan time.Time
	cancelSeen := false
	for {
		if !cancelSeen && ctx.Err() != nil {
			cancelSeen = true
			state.Cancel()
		}
		d := state.Next(clock.Now())
		for _, sk := range d.Skipped {
			s := summaries[sk.Job.ID]
			s.Status, s.Reason = sk.Status, sk.Reason
			for i, st := range sk.Job.Spec.Steps {
				stepStatus := runnel.StepSkipped
				if sk.Status == runnel.JobCancelled {
					stepStatus = runnel.StepCancelled
				}
				s.Steps = append(s.Steps, StepReport{Index: i, Name: st.Name, Status: stepStatus})
			}
			emit(Event{Type: EventJob, JobID: sk.Job.ID, JobName: sk.Job.Name, Stage: sk.Job.Stage, JobStatus: sk.Status, Reason: sk.Reason})
		}
		for _, j := range d.Start {
			running++
			js := state.Jobs[j.ID]
			req := JobRequest{
				BackendID: BackendID(p.Base.Run.ID, j.ID, js.Attempt),
				Job:       j,
				Env:       state.JobEnv(j),
				ExtraEnv:  r.ExtraEnv,
				RepoURL:   r.RepoURL,
				Hard:      hard,
			}
			if r.Storage != nil {
				req.Storage = r.Storage(j.ID)
			}
			s := summaries[j.ID]
			s.Attempts = js.Attempt
			startedAfterCancel := state.Cancelled
			emit(Event{Type: EventJob, JobID: j.ID, JobName: j.Name, Stage: j.Stage, JobStatus: runnel.JobQueued, Attempt: js.Attempt})
			go func() {
				select {
				case sem <- struct{}{}:
				case <-hard.Done():
					done <- jobDone{id: j.ID, result: JobResult{Status: runnel.JobCancelled, Reason: "cancelled before it started"}}
					return
				}
				defer func() { <-sem }()
				if s.Started.IsZero() {
					s.Started = clock.Now()
				}
				emit(Event{Type: EventJob, JobID: j.ID, JobName: j.Name, Stage: j.Stage, JobStatus: runnel.JobRunning, Attempt: req.Env.Job.Attempt})
				rep := &jobReporter{emit: emit, job: j, attempt: req.Env.Job.Attempt}
				jobCtx := ctx
				if startedAfterCancel {
					// The job was chosen to run on cancellation (always(),
					// cancelled()): its steps run normally.
					jobCtx = context.WithoutCancel(ctx)
				}
				done <- jobDone{id: j.ID, result: r.Executor.Execute(jobCtx, req, rep)}
			}()
		}
		if d.Done && running == 0 {
			res.Status = d.Status
			break
		}
		if timer != nil {
			timer.Stop()
			timerC = nil
		}
		if !d.WakeAt.IsZero() {
			timer = time.NewTimer(max(0, d.WakeAt.Sub(clock.Now())))
			timerC = timer.C
		}
		var ctxDone <-chan struct{}
		if !cancelSeen {
			ctxDone = ctx.Done()
		}
		select {
		case jd := <-done:
			running--
			s := summaries[jd.id]
			s.Ended = clock.Now()
			s.Steps = jd.result.Steps
			retry := state.Finish(jd.id, jd.result, clock.Now())
			js := state.Jobs[jd.id]
			s.Status, s.Reason = js.Status, js.Reason
			j := p.Jobs[jd.id]
			if retry {
				emit(Event{Type: EventJob, JobID: j.ID, JobName: j.Name, Stage: j.Stage, JobStatus: runnel.JobFailed, Attempt: js.Attempt,
					Reason: jd.result.Reason + "; retrying in " + j.RetryWait.String()})
				emit(Event{Type: EventJob, JobID: j.ID, JobName: j.Name, Stage: j.Stage, JobStatus: runnel.JobPending, Attempt: js.Attempt})
				continue
			}
			emit(Event{Type: EventJob, JobID: j.ID, JobName: j.Name, Stage: j.Stage, JobStatus: js.Status, Attempt: js.Attempt, Reason: js.Reason})
		case <-timerC:
		case <-ctxDone:
		}
	}
	if timer != nil {
		timer.Stop()
	}
	res.Ended = clock.Now()
	res.Jobs = r.ordered(p, summaries)
	emit(Event{Type: EventRun, RunStatus: res.Status})
	return res
}

func (r *Runner) ordered(p *plan.Plan, m map[string]*JobSummary) []JobSummary {
	var out []JobSummary
	for _, st := range p.Stages {
		for _, j := range st.Jobs {
			out = append(out, *m[j.ID])
		}
	}
	return out
}

// evalPipelineEnv evaluates the definition's top-level env.
func evalPipelineEnv(p *plan.Plan) (map[string]string, error) {
	out := map[string]string{}
	env := p.Base
	env.Env = out
	for _, k := range sortedKeys(p.Spec.Env) {
		v, err := evalString(p.Spec.Env[k], &env)
		if err != nil {
			return nil, &plan.Error{Msg: "env." + k + ": " + err.Error()}
		}
		out[k] = v
	}
	return maps.Clone(out), nil
}

// jobReporter turns executor reports into events.
type jobReporter struct {
	emit    func(Event)
	job     *plan.Job
	attempt int
}

func (jr *jobReporter) StepStatus(s StepReport) {
	idx := s.Index
	jr.emit(Event{Type: EventStep, Time: stepTime(s), JobID: jr.job.ID, JobName: jr.job.Name, Stage: jr.job.Stage, Attempt: jr.attempt,
		StepIndex: &idx, StepName: s.Name, StepStatus: s.Status, ExitCode: s.ExitCode, Reason: s.Error})
}

func stepTime(s StepReport) time.Time {
	if s.Status.Terminal() && !s.Ended.IsZero() {
		return s.Ended
	}
	return s.Started
}

func (jr *jobReporter) StepLog(step int, t time.Time, level, line string) {
	idx := step
	name := ""
	if step >= 0 && step < len(jr.job.Spec.Steps) {
		name = jr.job.Spec.Steps[step].Name
	}
	jr.emit(Event{Type: EventLog, Time: t, JobID: jr.job.ID, JobName: jr.job.Name, Stage: jr.job.Stage, Attempt: jr.attempt,
		StepIndex: &idx, StepName: name, Level: level, Message: line})
}
