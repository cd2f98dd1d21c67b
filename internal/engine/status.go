// Package engine drives runs: the run-level state machine that decides which job
// starts, is skipped or retried (State), the job executor that runs a job's
// steps on a backend (Executor), and an in-process driver tying both together
// (Runner) used by `runnel exec`. The server drives the same State and Executor
// with a database and a queue in between.
package engine

// RunStatus is the status of a PipelineRun.
type RunStatus string

// PipelineRun statuses, exactly as the pipeline model enumerates them.
const (
	RunPending   RunStatus = "pending"
	RunRunning   RunStatus = "running"
	RunSuccess   RunStatus = "success"
	RunFailed    RunStatus = "failed"
	RunCancelled RunStatus = "cancelled"
	RunPaused    RunStatus = "paused"
	RunPartial   RunStatus = "partial"
)

// Terminal reports whether the run has ended.
func (s RunStatus) Terminal() bool {
	return s == RunSuccess || s == RunFailed || s == RunCancelled || s == RunPartial
}

// JobStatus is the status of a JobRun.
type JobStatus string

// JobRun statuses. The model's enumeration (pending queued running success
// failed cancelled) has no word for a job that never ran because its condition
// was false, so JobRun adds skipped, as StepRun has.
const (
	JobPending   JobStatus = "pending"
	JobQueued    JobStatus = "queued"
	JobRunning   JobStatus = "running"
	JobSuccess   JobStatus = "success"
	JobFailed    JobStatus = "failed"
	JobCancelled JobStatus = "cancelled"
	JobSkipped   JobStatus = "skipped"
)

// Terminal reports whether the job has ended.
func (s JobStatus) Terminal() bool {
	return s == JobSuccess || s == JobFailed || s == JobCancelled || s == JobSkipped
}

// StepStatus is the status of a StepRun.
type StepStatus string

// StepRun statuses, exactly as the pipeline model enumerates them.
const (
	StepPending   StepStatus = "pending"
	StepQueued    StepStatus = "queued"
	StepRunning   StepStatus = "running"
	StepSuccess   StepStatus = "success"
	StepFailed    StepStatus = "failed"
	StepCancelled StepStatus = "cancelled"
	StepTimeout   StepStatus = "timeout"
	StepSkipped   StepStatus = "skipped"
)

// Terminal reports whether the step has ended.
func (s StepStatus) Terminal() bool {
	switch s {
	case StepSuccess, StepFailed, StepCancelled, StepTimeout, StepSkipped:
		return true
	}
	return false
}
