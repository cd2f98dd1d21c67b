package action

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/moby/moby/client"
)

// Native is an action the agent itself carries out, in Go, instead of a script
// the backend runs: it moves files between the job's workspace and the server
// (artifacts, caches) or drives the Docker engine (image builds). A Native
// action still implements Action; its Prepare is not called.
//
// Run is called at the step's place in the job, with the step's context: it
// must return promptly when ctx is done. Its outputs become the step's
// outputs; an error fails the step with that message (said to the user, so it
// names the argument or file at fault).
type Native interface {
	Action
	Run(ctx context.Context, call Call, rt *Runtime) (outputs map[string]string, err error)
}

// Runtime is what the executor lends a native action for one step.
type Runtime struct {
	// Workspace reads and writes the job's workspace, wherever it lives (a
	// host directory, a Docker volume).
	Workspace Workspace
	// Storage keeps the run's artifacts and the pipeline's caches; nil where
	// the host has none.
	Storage Storage
	// Docker opens a client of the Docker engine the agent is configured
	// with; nil when the agent has none.
	Docker func() (*client.Client, error)
	// Log writes one line to the step's log (secrets masked).
	Log func(line string)
	// After registers fn to run once all steps of the job have run, in
	// registration order, e.g. to save a cache when the job succeeded. Its
	// error is logged as a warning on this step; it never changes the job's
	// outcome.
	After func(fn func(ctx context.Context, jobSucceeded bool) error)
	// Now tells time.
	Now func() time.Time
}

// Workspace is file access to a job's workspace. Paths are relative to the
// workspace root, use forward slashes, and never leave it.
type Workspace interface {
	// Archive returns a tar stream of dir ("" or "." for the root); entry
	// names are relative to dir, directories end in "/". A missing dir is an
	// error wrapping fs.ErrNotExist.
	Archive(ctx context.Context, dir string) (io.ReadCloser, error)
	// Extract unpacks a tar stream into dir, creating it and any parent.
	// Entries that would land outside dir (absolute names, "..") are refused.
	Extract(ctx context.Context, dir string, tar io.Reader) error
}

// Storage is where a job's artifacts and caches are kept: the server's blob
// store, reached directly by the embedded agent and over agent.v1 by remote
// ones. A Storage value is bound to one claimed job (its run, pipeline and
// lease): writes from a job that lost its lease fail.
//
// Contents are opaque byte streams to Storage; the built-in actions store
// gzip-compressed tar archives.
type Storage interface {
	// UploadArtifact stores the artifact name of the run from r. A second
	// upload of the same name by another job of the run fails with
	// ErrArtifactExists; an upload by a later attempt of the same job
	// replaces its earlier one.
	UploadArtifact(ctx context.Context, name string, r io.Reader) (ArtifactInfo, error)
	// DownloadArtifact opens the artifact name of the run; ErrNoArtifact when
	// no job of the run uploaded it (yet).
	DownloadArtifact(ctx context.Context, name string) (io.ReadCloser, ArtifactInfo, error)
	// RestoreCache looks up the pipeline's caches: keys[0] exactly, then each
	// further entry as a prefix of a key (newest cache first). It returns the
	// key found and its contents, or ErrCacheMiss.
	RestoreCache(ctx context.Context, keys []string) (key string, rc io.ReadCloser, err error)
	// SaveCache stores a cache under key; ErrCacheExists (and nothing
	// written) when the key is already taken: cache entries never change.
	SaveCache(ctx context.Context, key string, r io.Reader) error
}

// ArtifactInfo describes a stored artifact.
type ArtifactInfo struct {
	Name   string
	Size   int64
	SHA256 string // hex digest of the stored bytes
}

// Storage errors.
var (
	ErrNoArtifact     = errors.New("no such artifact")
	ErrArtifactExists = errors.New("artifact already uploaded by another job of the run")
	ErrCacheMiss      = errors.New("cache miss")
	ErrCacheExists    = errors.New("cache key already saved")
)
