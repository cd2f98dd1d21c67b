// Package backend declares the contract between the engine (or an agent) and the
// thing that actually executes steps: the local shell today, Docker and others later.
//
// Lifecycle, for one job attempt:
//
//	SetupJob → RunStep (zero or more times, strictly one after another) → DestroyJob
//
// Call order and guarantees every implementation must honour:
//   - SetupJob is called once per job attempt before any RunStep. If it fails, no
//     RunStep follows, but DestroyJob is still called.
//   - RunStep calls for the same job never overlap. Steps of different jobs may run
//     concurrently on the same Backend value, so implementations are safe for
//     concurrent use across jobs.
//   - RunStep blocks until the step's main process has exited. When ctx is done it
//     stops the step: SIGTERM to the whole process group, then SIGKILL after the
//     backend's grace period, and returns once the process is gone. The caller tells
//     a timeout from a cancellation through context.Cause; the backend does not.
//   - DestroyJob is idempotent, safe after a failed or partial SetupJob, and safe to
//     call with a cancelled ctx (implementations use context.WithoutCancel for
//     cleanup). It kills every process the job left behind (daemons included) and
//     removes the workspace unless the backend was told to keep it.
package backend

import (
	"context"
	"io"
)

// Job describes one attempt of a job to a backend.
type Job struct {
	// ID is unique per attempt within the backend's lifetime and safe to use in a
	// path component: [A-Za-z0-9._-]+.
	ID string
	// Name is for humans (logs, error messages).
	Name string
	// Image is the container image the job asks for; backends without containers
	// ignore it.
	Image string
}

// Step is one unit of execution inside a job.
type Step struct {
	// ID is unique within the job attempt and safe in a path component.
	ID   string
	Name string
	// Shell selects the interpreter: "bash" (bash --noprofile --norc -eo pipefail),
	// "sh" (sh -e), "" (bash when it exists, else sh), or a command template in
	// which "{0}" is replaced by the path of the script file (e.g. "python3 {0}");
	// without "{0}" the script path is appended as the last argument.
	Shell  string
	Script string
	// Env is added on top of the backend's base environment. The backend adds
	// RUNNEL_WORKSPACE and RUNNEL_OUTPUT itself.
	Env map[string]string
	// WorkingDir is relative to the workspace (or absolute); "" means the workspace.
	WorkingDir string
}

// Result is what a finished step reports.
type Result struct {
	// ExitCode of the step's main process; -1 when it was killed by a signal.
	ExitCode int
	// Outputs are the KEY=VALUE pairs the step appended to $RUNNEL_OUTPUT.
	Outputs map[string]string
}

// Workspace tells the caller where a job's files live.
type Workspace struct {
	// Path as the steps see it.
	Path string
}

// Backend executes jobs. See the package documentation for the call contract.
type Backend interface {
	SetupJob(ctx context.Context, job *Job) (*Workspace, error)
	// RunStep runs one step, writing its combined stdout and stderr to out as raw
	// bytes (out need not be safe for concurrent use: the backend writes from one
	// goroutine). A non-nil error means the step could not be run or was
	// interrupted (ctx done); a step that ran and failed reports a non-zero
	// ExitCode with a nil error.
	RunStep(ctx context.Context, job *Job, step *Step, out io.Writer) (Result, error)
	DestroyJob(ctx context.Context, job *Job) error
}
