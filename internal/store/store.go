// Package store declares Runnel's persistent model (pipelines, spec versions,
// runs, job runs, step runs, log lines, the run timeline, API tokens) and the
// operations the server and the scheduler need. The database is the source of
// truth: every state change goes through these operations, and in-memory
// signals are only wake-up hints.
//
// Implementations live in sub-packages (sqlstore: SQLite and PostgreSQL through
// one database/sql code path) and must pass the conformance suite in storetest.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Domain errors. Implementations wrap them (errors.Is works); the API maps them
// to HTTP statuses, and only there.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
	// ErrLeaseLost: the caller's lease on a job run expired or was reassigned;
	// its report is rejected (fencing).
	ErrLeaseLost = errors.New("lease lost")
)

// HeadConflictError is returned (wrapping ErrConflict) when a spec save names
// an expected head that is not the current one.
type HeadConflictError struct{ Current string }

func (e *HeadConflictError) Error() string {
	return "the pipeline's head is " + e.Current + ", not the expected one"
}

func (e *HeadConflictError) Unwrap() error { return ErrConflict }

// Pipeline is a pipeline definition's record. Status fields are flat, as the
// API shows them.
type Pipeline struct {
	ID               string
	ProjectID        string
	Name             string
	Description      string
	RepoURL          string
	DefaultBranch    string
	PipelineFilePath string
	SaveMode         string // direct | pr
	PRTargetBranch   string
	Metadata         map[string]any
	CreatedBy        string
	CreatedAt        time.Time
	UpdatedAt        time.Time
	// HeadVersion is the newest spec version (0: none saved yet).
	HeadVersion   int
	HeadCommitSHA string
	// Status of the latest run.
	LastExecutionID string
	LastRunState    string
	LastStarted     *time.Time
	LastEnded       *time.Time
}

// PipelineFilter selects pipelines to list.
type PipelineFilter struct {
	ProjectID string
	// Search matches a substring of the name, case-insensitively.
	Search string
	Offset int
	Limit  int
}

// SpecVersion is one saved version of a pipeline's definition.
type SpecVersion struct {
	PipelineID string
	Version    int
	// CommitSHA is the content hash of Spec (hex SHA-256 of the canonical JSON).
	CommitSHA string
	// Spec is the structured definition as canonical JSON.
	Spec          json.RawMessage
	Format        string // json | yaml | yml: how the author wrote it
	CommitMessage string
	Editor        string
	RequestID     string
	CreatedAt     time.Time
}

// Run is a PipelineRun.
type Run struct {
	ID          string
	PipelineID  string
	Number      int64
	Status      string // pending running success failed cancelled paused partial
	TriggerType string // manual | cron | event
	TriggeredBy string
	RequestID   string
	Variables   map[string]string
	SpecVersion int
	Commit      string
	// Reason explains a failure or cancellation of the whole run.
	Reason    string
	CreatedAt time.Time
	StartedAt *time.Time
	EndedAt   *time.Time
}

// JobRun is one job (one matrix combination) of a run. It is also the queue
// entry: a job run in status queued whose RetryAt has passed is claimable.
type JobRun struct {
	ID    string
	RunID string
	// Key is the plan's job id, unique within the run: "stage/job[k=v]".
	Key        string
	Name       string
	Stage      string
	StageIndex int
	// Index orders jobs within the run (plan order).
	Index          int
	Status         string // pending queued running success failed cancelled skipped
	Attempt        int
	AllowedFailure bool
	Outputs        map[string]string
	Reason         string
	// Request is the executor's job request, serialised by the scheduler when
	// the job is queued, so any agent can run it.
	Request json.RawMessage
	// Labels required of the agent (runsOn), as written; empty = any agent.
	RunsOn json.RawMessage
	// Lease of the agent running it.
	AgentID        string
	LeaseID        string
	LeaseExpiresAt *time.Time
	RetryAt        *time.Time
	QueuedAt       *time.Time
	StartedAt      *time.Time
	EndedAt        *time.Time
}

// StepRun is one step of a job run (of its current attempt).
type StepRun struct {
	ID       string
	JobRunID string
	Index    int
	Name     string
	// Uses or Run summarise what the step does.
	Uses      string
	Run       string
	Status    string // pending queued running success failed cancelled timeout skipped
	ExitCode  *int
	Error     string
	StartedAt *time.Time
	EndedAt   *time.Time
	// LogBytes is the size of the stored log, for the per-step cap.
	LogBytes int64
}

// LogLine is one line of a step's log.
type LogLine struct {
	Seq     int64
	Time    time.Time
	Level   string
	Message string
}

// LogQuery selects log lines; zero values mean no bound.
type LogQuery struct {
	Start  time.Time // inclusive
	End    time.Time // inclusive
	Offset int
	Limit  int
}

// TimelineEntry records who did what to a run, when and why.
type TimelineEntry struct {
	ID       int64
	RunID    string
	Time     time.Time
	Action   string // triggered, started, paused, resumed, stop, finished, job_retried, interrupted, …
	Operator string
	Reason   string
	// JobRunID is set for entries about one job.
	JobRunID string
}

// APIToken is a bearer token; only its hash is stored.
type APIToken struct {
	ID         string
	Name       string
	Subject    string
	Role       string // admin | user | agent
	Hash       []byte // SHA-256 of the token
	CreatedAt  time.Time
	LastUsedAt *time.Time
	ExpiresAt  *time.Time
}

// RunFilter selects runs to list, newest first.
type RunFilter struct {
	PipelineID string
	Status     string
	Offset     int
	Limit      int
}

// RunTree is a run with all its job runs and step runs, in plan order.
type RunTree struct {
	Run   *Run
	Jobs  []*JobRun
	Steps map[string][]*StepRun // by JobRunID, ordered by Index
}

// NewRun is what CreateRun stores: the run, its job runs and their step runs.
type NewRun struct {
	Run   *Run
	Jobs  []*JobRun
	Steps map[string][]*StepRun // by JobRun.ID
}

// Store is everything the server and the scheduler persist.
type Store interface {
	Pipelines
	Specs
	Runs
	Logs
	Tokens
	// Ping checks the database is reachable (for /readyz).
	Ping(ctx context.Context) error
	Close() error
}

// Pipelines manages pipeline records.
type Pipelines interface {
	// CreatePipeline stores p (ID and timestamps set by the caller); a pipeline
	// of the same name in the same project → ErrConflict.
	CreatePipeline(ctx context.Context, p *Pipeline) error
	GetPipeline(ctx context.Context, id string) (*Pipeline, error)
	ListPipelines(ctx context.Context, f PipelineFilter) ([]*Pipeline, int, error)
	// UpdatePipeline replaces the editable fields (not head or status fields).
	UpdatePipeline(ctx context.Context, p *Pipeline) error
	// DeletePipeline removes the pipeline with its specs, runs and logs. A
	// pipeline with an active run (pending, running, paused) → ErrConflict.
	DeletePipeline(ctx context.Context, id string) error
}

// Specs manages spec versions.
type Specs interface {
	// SaveSpec stores a new version atomically. When sv.RequestID was already
	// used for this pipeline, the version saved then is returned with
	// replayed=true and nothing is written. When expectedHead is not empty and
	// differs from the current head, a *HeadConflictError is returned.
	SaveSpec(ctx context.Context, sv *SpecVersion, expectedHead string) (saved *SpecVersion, replayed bool, err error)
	// GetSpec returns a version; version 0 means the head.
	GetSpec(ctx context.Context, pipelineID string, version int) (*SpecVersion, error)
}

// Runs manages runs, job runs, step runs, the timeline and the job queue.
type Runs interface {
	// CreateRun allocates the run's number (per pipeline, from 1) and stores the
	// run, its jobs and steps and a "triggered" timeline entry in one
	// transaction. When nr.Run.RequestID was already used for this pipeline, the
	// existing run is returned with replayed=true, also under concurrent calls.
	CreateRun(ctx context.Context, nr *NewRun) (run *Run, replayed bool, err error)
	GetRun(ctx context.Context, id string) (*Run, error)
	GetRunTree(ctx context.Context, id string) (*RunTree, error)
	ListRuns(ctx context.Context, f RunFilter) ([]*Run, int, error)
	// ActiveRuns lists runs not yet in a final status, oldest first.
	ActiveRuns(ctx context.Context) ([]*Run, error)

	// UpdateRunTx runs fn in a transaction that holds the run exclusively
	// (SELECT … FOR UPDATE on PostgreSQL): fn reads the tree, decides, and
	// writes through tx. Scheduler decisions for one run are serialised this way.
	UpdateRunTx(ctx context.Context, runID string, fn func(tx RunTx) error) error

	// ClaimJob hands the oldest claimable job run (status queued, RetryAt past)
	// accepted by match to agentID with a new lease of d: status running, a
	// fresh LeaseID, StartedAt set. It returns ErrNotFound when nothing is
	// claimable. Two concurrent claims never get the same job run.
	ClaimJob(ctx context.Context, agentID string, match func(*JobRun) bool, d time.Duration) (*JobRun, error)
	// ExtendLease renews a lease; ErrLeaseLost if it expired or was reassigned.
	ExtendLease(ctx context.Context, jobRunID, leaseID string, d time.Duration) (time.Time, error)
	// UpdateStep records a step's status change under a lease (ErrLeaseLost if
	// the lease is gone).
	UpdateStep(ctx context.Context, leaseID string, s *StepRun) error
	// ExpiredLeases lists running job runs whose lease expired before now.
	ExpiredLeases(ctx context.Context, now time.Time) ([]*JobRun, error)
	// JobsOfAgent lists running job runs leased to an agent.
	JobsOfAgent(ctx context.Context, agentID string) ([]*JobRun, error)

	// Timeline lists a run's timeline, oldest first.
	Timeline(ctx context.Context, runID string) ([]*TimelineEntry, error)
}

// RunTx is the view of one locked run inside UpdateRunTx.
type RunTx interface {
	Tree() (*RunTree, error)
	UpdateRun(r *Run) error
	UpdateJob(j *JobRun) error
	// UpdateStep writes a step run (the scheduler resets steps for a new attempt).
	UpdateStep(s *StepRun) error
	AppendTimeline(e *TimelineEntry) error
	// SetPipelineStatus updates the pipeline's flat status fields from the run.
	SetPipelineStatus(r *Run) error
}

// Logs stores step logs.
type Logs interface {
	// AppendLogs appends lines to a step's log, assigning consecutive Seq
	// numbers after the last one. When the stored log would exceed maxBytes,
	// the oldest lines are dropped and a marker line (level "warn") says how
	// many bytes and lines were dropped, so the latest section is kept. It
	// returns the lines as stored (with Seq).
	AppendLogs(ctx context.Context, stepRunID string, lines []LogLine, maxBytes int64) ([]LogLine, error)
	ListLogs(ctx context.Context, stepRunID string, q LogQuery) ([]LogLine, error)
}

// Tokens stores API tokens.
type Tokens interface {
	CreateToken(ctx context.Context, t *APIToken) error
	// TokenByHash finds a token by the SHA-256 of its value.
	TokenByHash(ctx context.Context, hash []byte) (*APIToken, error)
	TouchToken(ctx context.Context, id string, at time.Time) error
	ListTokens(ctx context.Context) ([]*APIToken, error)
}
