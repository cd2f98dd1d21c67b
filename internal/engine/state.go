package engine

import (
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/expr"
	"github.com/runnel-ci/runnel/internal/plan"
)

// JobState is what the run-level state machine knows about one job.
type JobState struct {
	Status runnel.JobStatus
	// Attempt counts the attempts started so far (1 after the first start).
	Attempt int
	// AllowedFailure is set when the job finished with failures that
	// continueOnError allowed (a failed step, or the job itself).
	AllowedFailure bool
	// Outputs are the job's outputs, for the needs context of later jobs.
	Outputs map[string]string
	// Reason explains a skip, a cancellation or a failure.
	Reason string
	// RetryAt is when a failed job may start its next attempt.
	RetryAt time.Time
}

// State is the run-level state machine: pure logic over the plan and the jobs'
// states. It never performs I/O, so the same rules serve `runnel exec` (states in
// memory) and the server (states loaded from the database).
type State struct {
	Plan *plan.Plan
	// Env is the pipeline-level env, evaluated, for the env context of job
	// conditions.
	Env       map[string]string
	Jobs      map[string]*JobState
	Cancelled bool
}

// NewState returns the initial state of a run: every job pending.
func NewState(p *plan.Plan, env map[string]string) *State {
	s := &State{Plan: p, Env: env, Jobs: make(map[string]*JobState, len(p.Jobs))}
	for id := range p.Jobs {
		s.Jobs[id] = &JobState{Status: runnel.JobPending}
	}
	return s
}

// Skip is a decision to not run a job.
type Skip struct {
	Job    *plan.Job
	Status runnel.JobStatus // skipped or cancelled
	Reason string
}

// Decision is what the driver must do next.
type Decision struct {
	// Start lists jobs to start now; Next has already counted the attempt and
	// marked them queued.
	Start []*plan.Job
	// Skipped lists jobs Next has just marked skipped or cancelled.
	Skipped []Skip
	// WakeAt, when not zero, is the earliest time a waiting retry becomes due.
	WakeAt time.Time
	// Done is set when every job is terminal; Status is then the run's result.
	Done   bool
	Status runnel.RunStatus
}

// Next advances the state machine: stages in order, jobs of the current stage as
// soon as their needs are done. It is called after every change (a job finished,
// a retry timer fired, a cancellation) until Done.
func (s *State) Next(now time.Time) Decision {
	var d Decision
	earlierFailed := false
	for _, st := range s.Plan.Stages {
		stageDone := true
		for _, j := range st.Jobs {
			js := s.Jobs[j.ID]
			if js.Status.Terminal() {
				continue
			}
			stageDone = false
			if js.Status != runnel.JobPending {
				continue
			}
			if !js.RetryAt.IsZero() && js.RetryAt.After(now) && !s.Cancelled {
				if d.WakeAt.IsZero() || js.RetryAt.Before(d.WakeAt) {
					d.WakeAt = js.RetryAt
				}
				continue
			}
			if !s.needsDone(j) {
				continue
			}
			if js.Attempt > 0 && s.Cancelled {
				// A retry waiting while the run is cancelled does not start.
				js.Status, js.Reason = runnel.JobFailed, "run cancelled before the retry started"
				d.Skipped = append(d.Skipped, Skip{Job: j, Status: runnel.JobFailed, Reason: js.Reason})
				continue
			}
			start, status, reason := s.decide(j, earlierFailed)
			if !start {
				js.Status, js.Reason = status, reason
				d.Skipped = append(d.Skipped, Skip{Job: j, Status: status, Reason: reason})
				continue
			}
			js.Status = runnel.JobQueued
			js.Attempt++
			js.RetryAt = time.Time{}
			d.Start = append(d.Start, j)
		}
		if !stageDone {
			// Later stages wait for this one; re-check: the loop above may have
			// just finished the stage by skipping its last jobs.
			if !s.stageTerminal(st) {
				return d
			}
		}
		for _, j := range st.Jobs {
			if js := s.Jobs[j.ID]; js.Status == runnel.JobFailed && !js.AllowedFailure {
				earlierFailed = true
			}
		}
	}
	d.Done = true
	d.Status = s.result()
	return d
}

func (s *State) stageTerminal(st *plan.Stage) bool {
	for _, j := range st.Jobs {
		if !s.Jobs[j.ID].Status.Terminal() {
			return false
		}
	}
	return true
}

func (s *State) needsDone(j *plan.Job) bool {
	for _, n := range j.Needs {
		if !s.Jobs[n].Status.Terminal() {
			return false
		}
	}
	return true
}

// decide evaluates a ready job's condition.
func (s *State) decide(j *plan.Job, earlierFailed bool) (start bool, status runnel.JobStatus, reason string) {
	failed, notOK := earlierFailed, false
	for _, n := range j.Needs {
		ns := s.Jobs[n]
		switch {
		case ns.Status == runnel.JobFailed && !ns.AllowedFailure:
			failed, notOK = true, true
		case ns.Status == runnel.JobCancelled || ns.Status == runnel.JobSkipped:
			notOK = true
		}
	}
	if s.Cancelled && !j.If.RunsWhenCancelled() {
		return false, runnel.JobCancelled, "the run was cancelled before the job started"
	}
	if !j.If.UsesStatusFunction() {
		if failed {
			return false, runnel.JobSkipped, "an earlier job failed (use if: always() or failure() to run anyway)"
		}
		if notOK {
			return false, runnel.JobSkipped, "a job it needs did not succeed"
		}
	}
	env := s.JobEnv(j)
	env.Status = expr.Status{Failed: failed, Cancelled: s.Cancelled, Incomplete: notOK && !failed}
	ok, err := j.If.Eval(&env)
	if err != nil {
		return false, runnel.JobFailed, "evaluating if: " + err.Error()
	}
	if !ok {
		if j.If.String() == "" {
			return false, runnel.JobSkipped, "an earlier job failed"
		}
		return false, runnel.JobSkipped, "condition is false: " + j.If.String()
	}
	return true, "", ""
}

// JobEnv returns the contexts a job's expressions see before its steps run:
// the run-level contexts plus env, matrix, needs and job.
func (s *State) JobEnv(j *plan.Job) expr.Env {
	env := s.Plan.Base
	env.Env = s.Env
	env.Matrix = j.MatrixValues()
	if len(j.NeedNames) > 0 {
		env.Needs = make(map[string]expr.NeedResult, len(j.NeedNames))
		for name, ids := range j.NeedNames {
			nr := expr.NeedResult{Outputs: map[string]string{}, Result: string(runnel.JobSuccess)}
			for _, id := range ids {
				ns := s.Jobs[id]
				for k, v := range ns.Outputs {
					nr.Outputs[k] = v
				}
				if ns.Status != runnel.JobSuccess {
					nr.Result = string(ns.Status)
				}
			}
			env.Needs[name] = nr
		}
	}
	attempt := s.Jobs[j.ID].Attempt
	if attempt == 0 {
		attempt = 1
	}
	env.Job = expr.Job{Name: j.Base, Stage: j.Stage, Attempt: attempt, Status: string(runnel.JobSuccess)}
	return env
}

// Started records that a queued job began running.
func (s *State) Started(id string) {
	if js := s.Jobs[id]; js != nil && js.Status == runnel.JobQueued {
		js.Status = runnel.JobRunning
	}
}

// Finish records a finished attempt. It returns true when the job will be
// retried (its status is pending again, due at RetryAt).
func (s *State) Finish(id string, r JobResult, now time.Time) (retry bool) {
	js := s.Jobs[id]
	j := s.Plan.Jobs[id]
	js.Outputs = r.Outputs
	js.Reason = r.Reason
	switch r.Status {
	case runnel.JobFailed:
		if !s.Cancelled && js.Attempt <= j.RetryMax {
			js.Status = runnel.JobPending
			js.RetryAt = now.Add(j.RetryWait)
			return true
		}
		js.Status = runnel.JobFailed
		js.AllowedFailure = j.Spec.ContinueOnError
	case runnel.JobSuccess:
		js.Status = runnel.JobSuccess
		js.AllowedFailure = r.AllowedFailure
	default:
		js.Status = r.Status
	}
	return false
}

// Cancel marks the run as cancelled: nothing new starts except jobs whose
// condition asks to run on cancellation (always(), cancelled()).
func (s *State) Cancel() { s.Cancelled = true }

func (s *State) result() runnel.RunStatus {
	if s.Cancelled {
		return runnel.RunCancelled
	}
	partial := false
	for _, js := range s.Jobs {
		switch {
		case js.Status == runnel.JobFailed && !js.AllowedFailure:
			return runnel.RunFailed
		case js.Status == runnel.JobCancelled:
			return runnel.RunCancelled
		case js.AllowedFailure:
			partial = true
		}
	}
	if partial {
		return runnel.RunPartial
	}
	return runnel.RunSuccess
}
