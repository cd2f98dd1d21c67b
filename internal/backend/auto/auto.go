// Package auto is the backend that picks, per job, between the local backend
// and the Docker backend: a job that uses containers (an image, services or
// docker:// steps, see backend.Job.UsesContainers) runs on Docker, any other
// on the local machine. Docker is contacted only for the jobs that need it,
// so a machine without Docker runs the others as before; a job that needs it
// fails its setup with an error that says Docker is unreachable.
package auto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/runnel-ci/runnel/internal/backend"
	"github.com/runnel-ci/runnel/internal/backend/docker"
)

// Backend routes each job to Local or Docker.
type Backend struct {
	Local  backend.Stale
	Docker backend.Stale
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger

	mu   sync.Mutex
	jobs map[string]backend.Backend
}

var _ backend.Backend = (*Backend)(nil)

// New returns a Backend over the two.
func New(local, docker backend.Stale, log *slog.Logger) *Backend {
	return &Backend{Local: local, Docker: docker, Logger: log}
}

func (b *Backend) pick(job *backend.Job) backend.Backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	if be, ok := b.jobs[job.ID]; ok {
		return be
	}
	if job.UsesContainers() {
		return b.Docker
	}
	return b.Local
}

// SetupJob sets the job up on the backend it needs.
func (b *Backend) SetupJob(ctx context.Context, job *backend.Job) (*backend.Workspace, error) {
	be := b.pick(job)
	b.mu.Lock()
	if b.jobs == nil {
		b.jobs = map[string]backend.Backend{}
	}
	b.jobs[job.ID] = be
	b.mu.Unlock()
	return be.SetupJob(ctx, job)
}

// RunStep runs the step on the job's backend.
func (b *Backend) RunStep(ctx context.Context, job *backend.Job, step *backend.Step, out io.Writer) (backend.Result, error) {
	return b.pick(job).RunStep(ctx, job, step, out)
}

// DestroyJob destroys the job on its backend and forgets the choice.
func (b *Backend) DestroyJob(ctx context.Context, job *backend.Job) error {
	be := b.pick(job)
	err := be.DestroyJob(ctx, job)
	b.mu.Lock()
	delete(b.jobs, job.ID)
	b.mu.Unlock()
	return err
}

// CleanupStale cleans up after a predecessor on both backends. Docker being
// unreachable is no error here: then nothing of ours can run on it either.
func (b *Backend) CleanupStale(ctx context.Context) error {
	var errs []error
	if err := b.Local.CleanupStale(ctx); err != nil {
		errs = append(errs, fmt.Errorf("local backend: %w", err))
	}
	if err := b.Docker.CleanupStale(ctx); err != nil {
		if errors.Is(err, docker.ErrUnreachable) {
			if b.Logger != nil {
				b.Logger.Info("Docker is not reachable: jobs with an image, services or docker:// steps will fail until it is", "err", err)
			}
		} else {
			errs = append(errs, fmt.Errorf("docker backend: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ArchiveWorkspace reads the workspace on the job's backend.
func (b *Backend) ArchiveWorkspace(ctx context.Context, job *backend.Job, dir string) (io.ReadCloser, error) {
	f, ok := b.pick(job).(backend.Files)
	if !ok {
		return nil, fmt.Errorf("the backend of job %s cannot read its workspace", job.Name)
	}
	return f.ArchiveWorkspace(ctx, job, dir)
}

// ExtractToWorkspace writes the workspace on the job's backend.
func (b *Backend) ExtractToWorkspace(ctx context.Context, job *backend.Job, dir string, r io.Reader) error {
	f, ok := b.pick(job).(backend.Files)
	if !ok {
		return fmt.Errorf("the backend of job %s cannot write its workspace", job.Name)
	}
	return f.ExtractToWorkspace(ctx, job, dir, r)
}
