package api

import (
	"context"
	"io"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/imageapi"
	"github.com/runnel-ci/runnel/internal/store"
)

// RunControl is what the API needs from the scheduler (package scheduler
// implements it). Errors wrap the store sentinels: runnel.ErrNotFound,
// runnel.ErrInvalid (bad variables: the message says which and why),
// runnel.ErrConflict (illegal transition: the message names the current status).
type RunControl interface {
	// Trigger plans and creates a run of the pipeline's head spec and starts it.
	// The same RequestID for the same pipeline returns the same run
	// (replayed=true), also under concurrent requests.
	Trigger(ctx context.Context, pipelineID string, req runnel.TriggerRequest) (run *store.Run, replayed bool, err error)
	// Stop cancels a run: running steps are stopped (process group killed),
	// nothing new starts except units whose condition runs on cancellation.
	Stop(ctx context.Context, runID, operator, reason string) (*store.Run, error)
	// Pause: nothing new starts; running steps finish; status paused.
	Pause(ctx context.Context, runID, operator, reason string) (*store.Run, error)
	// Resume continues a paused run where it stopped.
	Resume(ctx context.Context, runID, operator, reason string) (*store.Run, error)
}

// JobNeeder is implemented by a RunControl that can say which jobs each job
// of a run waits for (the plan's needs, by job key); the run detail shows
// them. Without it jobs carry no needs.
type JobNeeder interface {
	JobNeeds(ctx context.Context, run *store.Run) (map[string][]string, error)
}

// ArtifactSource is what the API needs of the artifact service (package
// artifact implements it).
type ArtifactSource interface {
	// ListArtifacts lists a run's artifacts by name.
	ListArtifacts(ctx context.Context, runID string) ([]*store.Artifact, error)
	// OpenArtifact opens an artifact's bytes; runnel.ErrNotFound when the id
	// is unknown or its bytes are gone. The caller closes the reader.
	OpenArtifact(ctx context.Context, artifactID string) (store.Artifact, io.ReadCloser, error)
}

// ImageService is the image build service (package imagebuild implements
// it); package imageapi serves its routes.
type ImageService = imageapi.Service
