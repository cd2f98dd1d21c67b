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
//
// Backends that keep state outside the process (processes, directories,
// containers) also offer CleanupStale(ctx) (the Stale interface), called
// once at startup, which removes what an earlier process of the same backend
// instance left behind when it died without DestroyJob.
package backend

import (
	"context"
	"io"
)

// Stale is a Backend that cleans up after a predecessor that died without
// DestroyJob (see the package documentation). Every backend an agent can be
// given implements it.
type Stale interface {
	Backend
	CleanupStale(ctx context.Context) error
}

// Job describes one attempt of a job to a backend.
type Job struct {
	// ID is unique per attempt within the backend's lifetime and safe to use in a
	// path component: [A-Za-z0-9._-]+.
	ID string
	// Name is for humans (logs, error messages).
	Name string
	// Image is the container image the job's run steps execute in; backends
	// without containers ignore it.
	Image string
	// Services are sidecar containers started for the job on a network of its
	// own, each reachable from the steps by its Name; backends without
	// containers ignore them.
	Services []Service
	// PullPolicy says when container images (the job's, its services' and its
	// plugin steps') are pulled: PullIfNotPresent ("" means that), PullAlways
	// or PullNever.
	PullPolicy string
	// Plugins lists the images of the job's plugin steps (Step.Image), so that a
	// backend can route the job or fetch them before the first step.
	Plugins []string
}

// Pull policies for Job.PullPolicy.
const (
	PullIfNotPresent = "if-not-present"
	PullAlways       = "always"
	PullNever        = "never"
)

// Service is a sidecar container of a job.
type Service struct {
	// Name is the service's host name on the job's network ([a-z0-9-]).
	Name  string
	Image string
	Env   map[string]string
	// Entrypoint and Command replace the image's when not empty.
	Entrypoint []string
	Command    []string
}

// UsesContainers tells whether a job needs a backend that runs containers:
// it names an image or services, or has plugin steps.
func (j *Job) UsesContainers() bool {
	return j.Image != "" || len(j.Services) > 0 || len(j.Plugins) > 0
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
	// Image, when not empty, makes the step a plugin (`uses: docker://IMAGE`):
	// the backend runs this image with its own entrypoint and command instead
	// of Script, with the workspace mounted and as the working directory, and
	// Env (which carries the PLUGIN_* arguments). Shell and Script are unused.
	// Backends without containers fail such a step.
	Image string
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

// Files is offered by backends whose job workspaces the agent can read and
// write from outside the steps (for artifacts, caches and image builds). Both
// methods may be called between SetupJob and DestroyJob, never concurrently
// with RunStep of the same job. dir is relative to the workspace, with
// forward slashes ("" or "." for the root); paths leaving the workspace are
// refused.
type Files interface {
	// ArchiveWorkspace returns a tar stream of dir with entry names relative
	// to it. A missing dir is an error wrapping fs.ErrNotExist.
	ArchiveWorkspace(ctx context.Context, job *Job, dir string) (io.ReadCloser, error)
	// ExtractToWorkspace unpacks a tar stream into dir, creating it.
	ExtractToWorkspace(ctx context.Context, job *Job, dir string, tar io.Reader) error
}
