// Package store declares Runnel's persistent model (pipelines, spec versions,
// runs, job runs, step runs, log lines, the run timeline, API tokens, agents,
// secrets, credentials, artifact and cache records, webhook secrets and
// deliveries) and the operations the server and the scheduler need. The
// database is the source of truth: every state change goes through these
// operations, and in-memory signals are only wake-up hints.
//
// Implementations live in sub-packages (sqlstore: SQLite and PostgreSQL through
// one database/sql code path) and must pass the conformance suite in storetest.
package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/runnel-ci/runnel"
)

// The domain errors of the vocabulary (package runnel), named here too because
// the store's contract is written in them: implementations wrap them
// (errors.Is works), and the transports map them to statuses at their edges.
var (
	ErrNotFound = runnel.ErrNotFound
	ErrConflict = runnel.ErrConflict
	ErrInvalid  = runnel.ErrInvalid
	// ErrLeaseLost: the caller's lease on a job run expired or was reassigned;
	// its report is rejected (fencing).
	ErrLeaseLost = runnel.ErrLeaseLost
	// ErrForbidden: the caller may not do this (not an approver).
	ErrForbidden = runnel.ErrForbidden
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
	// CreatorID is the id of the user who created it ("" for one created
	// by no user, or before users existed).
	CreatorID string
	CreatedAt time.Time
	UpdatedAt time.Time
	// HeadVersion is the newest spec version (0: none saved yet).
	HeadVersion   int
	HeadCommitSHA string
	// TriggerCronExpression and TriggerTimezone are the pipeline's own cron
	// schedule (the seed's flat fields), besides the head spec's cron
	// triggers: "" is none, and an empty zone is UTC. Editable.
	TriggerCronExpression string
	TriggerTimezone       string
	// CredentialID names the source-code credential the server reads and
	// writes RepoURL with ("" none: a public repository, or the machine's
	// own SSH keys).
	CredentialID string
	// EventSinks are the pipeline's own CDEvents sinks (HTTP URLs), besides
	// the server's.
	EventSinks []string
	// Deactivated: neither cron nor webhook deliveries start runs (seed
	// 001's deactivate action); manual runs still do and history stays.
	Deactivated bool
	// WebhookDisabled: webhook deliveries start no runs (the inverse of
	// seed 001's triggerWebhook flag, so that the zero value is on).
	WebhookDisabled bool
	// ForkPullRequests says what runs of pull requests from forks get:
	// "" (withhold: no secrets, no credentials), "approve" (a maintainer's
	// approval gives them) or "allow".
	ForkPullRequests string
	// Status of the latest run.
	LastExecutionID string
	LastRunState    string
	LastStarted     *time.Time
	LastEnded       *time.Time
}

// PipelineFilter selects pipelines to list.
type PipelineFilter struct {
	ProjectID string
	// CreatorID selects the pipelines a user created.
	CreatorID string
	// Within, when not nil, limits the list to these projects (an empty
	// list matches nothing): the projects the caller may see.
	Within []string
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
	Spec   json.RawMessage
	Format string // json | yaml | yml: how the author wrote it
	// Text is the definition as written, when it was saved as text ("" when
	// saved as a spec object). Spec and CommitSHA are derived from it;
	// a change of comments or layout alone keeps the CommitSHA.
	Text          string
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
	Status      runnel.RunStatus
	TriggerType string // manual | cron | event
	TriggeredBy string
	// TriggerUserID is the user whose token started the run ("" for cron,
	// webhooks, and runs from before users existed).
	TriggerUserID string
	RequestID     string
	// Trigger is the trigger context the run was started with (JSON of
	// runnel.Trigger: event, ref, branch, commit, pull request…); nil for
	// runs from before it was recorded.
	Trigger     json.RawMessage
	Variables   map[string]string
	SpecVersion int
	Commit      string
	// Reason explains a failure or cancellation of the whole run.
	Reason    string
	CreatedAt time.Time
	StartedAt *time.Time
	EndedAt   *time.Time
}

// TriggerContext is the run's trigger context: as recorded, or what the run
// row says for runs from before it was.
func (r *Run) TriggerContext() runnel.Trigger {
	if len(r.Trigger) > 0 {
		var t runnel.Trigger
		if err := json.Unmarshal(r.Trigger, &t); err == nil {
			t.Type = r.TriggerType
			if t.Event == "" {
				t.Event = r.TriggerType
			}
			return t
		}
	}
	return runnel.Trigger{Type: r.TriggerType, Event: r.TriggerType, Actor: r.TriggeredBy, Commit: r.Commit}
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
	Status         runnel.JobStatus
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
	// Acked: the agent acknowledged the claim by renewing its lease once
	// (ExtendLease sets it; ClaimJob and ReleaseJob clear it). Until then the
	// claim is provisional: the agent runs nothing before acknowledging.
	Acked     bool
	RetryAt   *time.Time
	QueuedAt  *time.Time
	StartedAt *time.Time
	EndedAt   *time.Time
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
	Status    runnel.StepStatus
	ExitCode  *int
	Error     string
	StartedAt *time.Time
	EndedAt   *time.Time
	// LogBytes is the size of the stored log, for the per-step cap.
	LogBytes int64
}

// LogLine is the vocabulary's.
type LogLine = runnel.LogLine

// LogQuery selects log lines; zero values mean no bound.
type LogQuery struct {
	// AfterSeq keeps lines with a greater Seq (0: from the first).
	AfterSeq int64
	Start    time.Time // inclusive
	End      time.Time // inclusive
	Offset   int
	Limit    int
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

// RunEvent is one recorded change of a run: a status change of the run, a
// job run or a step run (written by the store itself in the transaction that
// made the change), or an event a transaction added explicitly (approvals,
// notifications). It is both the source of the live streams and the outbox
// of event delivery.
type RunEvent struct {
	// ID is global and increases in insertion order, which on PostgreSQL is
	// not always commit order (see ListEventsAfter).
	ID    int64
	RunID string
	// Seq numbers the run's events from 1 in commit order: they are
	// allocated under the run row's lock, held to commit.
	Seq        int64
	PipelineID string
	ProjectID  string
	// Type is run.status, job.status, step.status, or an explicit event
	// type (approval.requested, approval.approved, …).
	Type string
	// Data is the event's JSON: a StatusChange for the .status types.
	Data json.RawMessage
	Time time.Time
}

// Event types the store writes by itself.
const (
	EventRunStatus  = "run.status"
	EventJobStatus  = "job.status"
	EventStepStatus = "step.status"
)

// StatusChange is the data of a run.status, job.status or step.status event:
// the entity as it is after the change, and the status it had before ("" for
// a new run). A job's status in events is its public one: a claimed job is
// "queued" until its agent acknowledges the claim, then "running"; its steps
// become "queued" at that acknowledgement too.
type StatusChange struct {
	RunID      string `json:"runId"`
	PipelineID string `json:"pipelineId"`
	RunNumber  int64  `json:"runNumber"`
	// JobRunID is set for job and step events, StepRunID for step events.
	JobRunID  string `json:"jobRunId,omitempty"`
	StepRunID string `json:"stepRunId,omitempty"`
	// Key, Name, Stage describe a job (Name also a step); StepIndex a step.
	Key       string `json:"key,omitempty"`
	Name      string `json:"name,omitempty"`
	Stage     string `json:"stage,omitempty"`
	StepIndex int    `json:"stepIndex,omitempty"`
	Status    string `json:"status"`
	Previous  string `json:"previous,omitempty"`
	// Attempt of a job (from 1).
	Attempt int    `json:"attempt,omitempty"`
	AgentID string `json:"agentId,omitempty"`
	// Reason of a run or job; a step's error.
	Reason   string `json:"reason,omitempty"`
	ExitCode *int   `json:"exitCode,omitempty"`
	// SystemError marks a failed run none of whose jobs ever started (its
	// definition could not be read, planned or run at all).
	SystemError bool       `json:"systemError,omitempty"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	EndedAt     *time.Time `json:"endedAt,omitempty"`
	// FailedJobs lists, on the run.status event that records a run's end
	// (a final status with EndedAt), the run's failed job runs in plan
	// order, at most MaxFailedJobs of them; FailedJobCount counts them all.
	FailedJobs     []FailedJob `json:"failedJobs,omitempty"`
	FailedJobCount int         `json:"failedJobCount,omitempty"`
}

// FailedJob is a failed job run as a run's end event lists it.
type FailedJob struct {
	JobRunID string `json:"jobRunId"`
	Key      string `json:"key"`
	Name     string `json:"name"`
	Reason   string `json:"reason,omitempty"`
	// AllowedFailure: the job was allowed to fail (continueOnError), so it
	// did not fail the run.
	AllowedFailure bool `json:"allowedFailure,omitempty"`
}

// MaxFailedJobs bounds StatusChange.FailedJobs.
const MaxFailedJobs = 20

// ListFailedJobs returns the failed jobs among jobs (in the order given),
// at most MaxFailedJobs of them, and how many failed in all: what a run's
// end event lists.
func ListFailedJobs(jobs []*JobRun) ([]FailedJob, int) {
	var out []FailedJob
	n := 0
	for _, j := range jobs {
		if j == nil || j.Status != runnel.JobFailed {
			continue
		}
		n++
		if len(out) < MaxFailedJobs {
			out = append(out, FailedJob{JobRunID: j.ID, Key: j.Key, Name: j.Name, Reason: j.Reason, AllowedFailure: j.AllowedFailure})
		}
	}
	return out, n
}

// ForgeStatusSink is the outbox's name for commit statuses: the run.status
// events of runs of a pipeline bound to a forge repository (and the
// job.status events that start or end an attempt) are queued for it.
const ForgeStatusSink = "runnel:forge-status"

// NotifySink is the outbox's name for the notifier: a run.status event that
// ends a run is queued for it, besides the CDEvents sinks.
const NotifySink = "runnel:notify"

// Delivery is an outbox entry: an event still to be delivered to a sink.
type Delivery struct {
	ID        int64
	Sink      string
	Attempts  int
	LastError string
	CreatedAt time.Time
	Event     *RunEvent
}

// Events reads recorded run events and works the outbox.
//
// Which events are queued for delivery, written in the transaction that
// records them: to every CDEvents sink (the server's, given when the store
// is opened, and the pipeline's EventSinks), the run.status events and the
// job.status events that start or end an attempt (to or from running); to
// NotifySink, the run.status event that ends the run.
type Events interface {
	// ListRunEvents lists the run's events with Seq > afterSeq in Seq order,
	// at most limit (0 or more than 1000: 1000). An unknown run → ErrNotFound.
	ListRunEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]*RunEvent, error)
	// ListEventsAfter lists events with ID > afterID in ID order, at most
	// limit (0 or more than 1000: 1000). On PostgreSQL an event can commit
	// after one with a greater ID (IDs are taken before commit): a reader
	// following IDs must wait a little for a gap to fill.
	ListEventsAfter(ctx context.Context, afterID int64, limit int) ([]*RunEvent, error)
	// LastEventID is the greatest event ID (0 when none).
	LastEventID(ctx context.Context) (int64, error)
	// ClaimDeliveries leases for lease at most limit deliveries that are due
	// at now and are the oldest pending ones of their (sink, run): a run's
	// events reach a sink in order, one at a time. Concurrent claimers
	// (other replicas) never get the same delivery while its lease lasts.
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*Delivery, error)
	// DeliveryDone removes a delivered entry (a missing one is not an error:
	// another replica may have delivered it after this one's lease ended).
	DeliveryDone(ctx context.Context, id int64) error
	// DeliveriesDone is DeliveryDone of several entries at once.
	DeliveriesDone(ctx context.Context, ids []int64) error
	// DeliveryFailed counts an attempt, keeps errMsg and makes the entry due
	// again at next (the lease ends).
	DeliveryFailed(ctx context.Context, id int64, next time.Time, errMsg string) error
	// PendingDeliveries counts the entries not yet delivered.
	PendingDeliveries(ctx context.Context) (int, error)
}

// APIToken is a bearer token; only its hash is stored.
type APIToken struct {
	ID      string
	Name    string
	Subject string
	Role    string // admin | user | agent
	// UserID is the user the token belongs to ("" for agent tokens, and for
	// user tokens stored before users existed until the upgrade links them).
	UserID string
	// Scopes are what the token may do (read, run, write, admin); nil for
	// tokens made before scopes existed, which may do all their user may.
	Scopes     []string
	Hash       []byte // SHA-256 of the token
	CreatedAt  time.Time
	LastUsedAt *time.Time
	ExpiresAt  *time.Time
}

// User is a person (or a robot account) who signs in and owns API tokens.
// Login is unique and is the subject the rest of Runnel records (createdBy,
// triggeredBy, approvers).
type User struct {
	ID          string
	Login       string
	Name        string
	Email       string
	AvatarURL   string
	Admin       bool
	Disabled    bool
	CreatedAt   time.Time
	LastLoginAt *time.Time
}

// RunFilter selects runs to list, newest first.
type RunFilter struct {
	PipelineID string
	Status     runnel.RunStatus
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
	// Definition, when set, is the definition the run was planned from
	// (Run.SpecVersion is then 0).
	Definition *RunDefinition
	// Then, when set, runs in CreateRun's transaction once the run is
	// stored, with the new run locked as in UpdateRunTx: the run is created
	// and its first decisions taken (jobs queued) in one transaction. Its
	// error rolls the creation back. It may run again when the transaction
	// is retried; it does not run for a replayed request.
	Then func(tx RunTx) error
}

// RunDefinition is the definition a run was planned from when it did not
// come from a stored spec version.
type RunDefinition struct {
	RunID string
	// Source: "git" (read from the pipeline's repository) or "extension"
	// (a configuration extension's answer).
	Source string
	// File is the path in the repository ("" for an extension's answer).
	File string
	// CommitSHA is the commit it was read at ("" when not from Git).
	CommitSHA string
	// Content is the definition text as read (YAML or JSON).
	Content []byte
}

// Store is everything the server and the scheduler persist.
type Store interface {
	Pipelines
	Specs
	Runs
	Queue
	Leases
	Approvals
	Logs
	Tokens
	Users
	Projects
	Teams
	SignIn
	Audit
	Agents
	Secrets
	Credentials
	Artifacts
	Caches
	Webhooks
	CronState
	Events
	ImageRepositories
	Repositories
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

// CronTick is the state of one cron schedule of a pipeline: the last tick
// the cron service handled. ScheduleKey is the trigger's index in the head
// spec ("0", "1", …) or "pipeline" for the pipeline's flat fields; Schedule
// identifies the schedule's definition (expression and zone), so a changed
// definition starts afresh instead of inheriting the old one's ticks.
type CronTick struct {
	PipelineID  string
	ScheduleKey string
	Schedule    string
	LastTick    time.Time
}

// CronState keeps the cron service's progress, shared by every replica.
type CronState interface {
	// ListCronTicks lists the state of every schedule of every pipeline.
	ListCronTicks(ctx context.Context) ([]*CronTick, error)
	// StartCronSchedule records t unless the same schedule (pipeline, key and
	// Schedule) is already recorded, and returns what is recorded then: a
	// concurrent start by another replica keeps the first one's LastTick. A
	// different Schedule under the key replaces the row (the definition
	// changed). An unknown pipeline → ErrNotFound.
	StartCronSchedule(ctx context.Context, t *CronTick) (*CronTick, error)
	// AdvanceCronTick moves the schedule's LastTick forward to tick, never
	// back, and only while the recorded Schedule is schedule. It reports
	// whether the row changed; a missing row → ErrNotFound.
	AdvanceCronTick(ctx context.Context, pipelineID, key, schedule string, tick time.Time) (bool, error)
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
	// SpecByRequest returns the version a requestId saved; ErrNotFound when
	// none.
	SpecByRequest(ctx context.Context, pipelineID, requestID string) (*SpecVersion, error)
}

// Runs manages runs, job runs, step runs and the timeline; every decision
// about a run is written in UpdateRunTx.
type Runs interface {
	// CreateRun allocates the run's number (per pipeline, from 1) and stores the
	// run, its jobs and steps and a "triggered" timeline entry in one
	// transaction. When nr.Run.RequestID was already used for this pipeline, the
	// existing run is returned with replayed=true, also under concurrent calls.
	CreateRun(ctx context.Context, nr *NewRun) (run *Run, replayed bool, err error)
	GetRun(ctx context.Context, id string) (*Run, error)
	// RunByRequest returns the run a pipeline's requestId started;
	// ErrNotFound when none.
	RunByRequest(ctx context.Context, pipelineID, requestID string) (*Run, error)
	// GetRunDefinition returns the definition a run was planned from when
	// it did not come from a stored spec version; ErrNotFound otherwise.
	GetRunDefinition(ctx context.Context, runID string) (*RunDefinition, error)
	GetRunTree(ctx context.Context, id string) (*RunTree, error)
	ListRuns(ctx context.Context, f RunFilter) ([]*Run, int, error)
	// ActiveRuns lists runs not yet in a final status, oldest first.
	ActiveRuns(ctx context.Context) ([]*Run, error)

	// UpdateRunTx runs fn in a transaction that holds the run exclusively
	// (SELECT … FOR UPDATE on PostgreSQL): fn reads the tree, decides, and
	// writes through tx. Scheduler decisions for one run are serialised this way.
	UpdateRunTx(ctx context.Context, runID string, fn func(tx RunTx) error) error

	// Timeline lists a run's timeline, oldest first.
	Timeline(ctx context.Context, runID string) ([]*TimelineEntry, error)
	// GetStepRun returns one step run.
	GetStepRun(ctx context.Context, id string) (*StepRun, error)
	// ProjectOfStepRun returns the project a step run's pipeline belongs
	// to (ErrNotFound for no such step run).
	ProjectOfStepRun(ctx context.Context, stepRunID string) (string, error)
}

// Queue is the job queue: job runs queued by run decisions, claimed by
// agents under a lease.
type Queue interface {
	// QueuedRoutes lists the distinct RunsOn values (as stored; "" for jobs
	// without runsOn) of claimable job runs (status queued, RetryAt past at
	// now). It is how a claimer learns which label requirements are waiting
	// without reading every queued row.
	QueuedRoutes(ctx context.Context, now time.Time) ([]string, error)
	// ClaimJob hands the oldest claimable job run (status queued, RetryAt past)
	// whose RunsOn is one of routes ("" = jobs without runsOn) to agentID with
	// a new lease of d: status running, a fresh LeaseID, StartedAt set, Reason
	// cleared. It returns ErrNotFound when nothing is claimable (also when
	// routes is empty). Two concurrent claims never get the same job run.
	ClaimJob(ctx context.Context, agentID string, routes []string, d time.Duration) (*JobRun, error)
	// ReleaseJob puts a claimed job run that was never delivered to its agent
	// back in the queue as it was before the claim (same place, same attempt):
	// status queued, no agent, no lease, no StartedAt. ErrLeaseLost when the
	// job run no longer holds leaseID (running), ErrNotFound when it does not
	// exist.
	ReleaseJob(ctx context.Context, jobRunID, leaseID string) error
	// SetQueuedReason sets Reason on every queued job run whose RunsOn equals
	// runsOn and whose Reason differs (why it waits, or "" once an agent can
	// take it). It returns how many rows changed.
	SetQueuedReason(ctx context.Context, runsOn, reason string) (int, error)
}

// Leases are the claims agents hold on running job runs: every write on a
// job's behalf is fenced by its lease.
type Leases interface {
	// ExtendLease renews a lease; ErrLeaseLost if it expired or was reassigned.
	ExtendLease(ctx context.Context, jobRunID, leaseID string, d time.Duration) (time.Time, error)
	// CheckLease reports whether the job run still holds leaseID (running,
	// unexpired), as ExtendLease would, without renewing it: ErrLeaseLost if
	// not (an unknown job run included). Writes on behalf of a job that are
	// not store operations (artifact and cache blobs) check it first.
	CheckLease(ctx context.Context, jobRunID, leaseID string) error
	// UpdateStep records a step's status change under a lease (ErrLeaseLost if
	// the lease is gone).
	UpdateStep(ctx context.Context, leaseID string, s *StepRun) error
	// ExpiredLeases lists running job runs whose lease expired before now.
	ExpiredLeases(ctx context.Context, now time.Time) ([]*JobRun, error)
	// JobsOfAgent lists running job runs leased to an agent.
	JobsOfAgent(ctx context.Context, agentID string) ([]*JobRun, error)
	// RunningJobsByAgent maps each agent id to the ids of the job runs it
	// holds (status running), oldest start first.
	RunningJobsByAgent(ctx context.Context) (map[string][]string, error)
}

// Approvals reads runs' approval gates (decisions are written in
// UpdateRunTx).
type Approvals interface {
	// ListApprovals lists a run's approval gates in request order; an
	// unknown run → ErrNotFound.
	ListApprovals(ctx context.Context, runID string) ([]*Approval, error)
	// GetApproval returns one gate.
	GetApproval(ctx context.Context, id string) (*Approval, error)
}

// Approval is a gate of a run: the pipeline's, a stage's or a job's
// approval block, once the run reached it.
type Approval struct {
	ID    string
	RunID string
	// Scope is pipeline, stage or job; Target is "" for the pipeline, the
	// stage's name, or the job's key.
	Scope, Target string
	Message       string
	// Approvers may decide (token subjects, or role:<role>); empty: anyone
	// with a user or admin token.
	Approvers   []string
	Status      runnel.ApprovalStatus
	RequestedAt time.Time
	TimeoutAt   *time.Time
	DecidedBy   string
	DecidedAt   *time.Time
	Comment     string
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
	// Approvals lists the run's approval gates, in request order.
	Approvals() ([]*Approval, error)
	// PutApproval stores a new gate (a gate of the same scope and target →
	// ErrConflict) or, when its ID exists, its decision.
	PutApproval(a *Approval) error
	// AddEvent records an event of the locked run (not a status change:
	// those are recorded by UpdateRun, UpdateJob and UpdateStep themselves)
	// and returns it with its ID and Seq.
	AddEvent(typ string, data json.RawMessage) (*RunEvent, error)
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
	// AppendStepLogs is AppendLogs for an agent holding a lease: in the same
	// transaction it checks that the step's job run still holds leaseID
	// (running, unexpired), else ErrLeaseLost and nothing is stored (fencing).
	// An unknown step run → ErrNotFound.
	AppendStepLogs(ctx context.Context, leaseID, stepRunID string, lines []LogLine, maxBytes int64) ([]LogLine, error)
}

// Agent is a registered agent: a remote `runnel agent` or a server's
// embedded one.
type Agent struct {
	ID   string
	Name string
	Kind string // remote | embedded
	// ReportedLabels are what the agent announces (its --labels plus os and
	// arch); AdminLabels, when not nil, replace them (set through the API).
	ReportedLabels map[string]string
	AdminLabels    map[string]string
	Capacity       int
	Version        string
	Hostname       string
	Platform       string // os/arch
	Disabled       bool
	// RegistrationTokenID is the registration token the agent registered with.
	RegistrationTokenID string
	CreatedAt           time.Time
	LastSeenAt          *time.Time
}

// Labels are the labels jobs are routed by: AdminLabels when set, else
// ReportedLabels.
func (a *Agent) Labels() map[string]string {
	if a.AdminLabels != nil {
		return a.AdminLabels
	}
	return a.ReportedLabels
}

// RegistrationToken lets a new agent register; only its hash is stored.
type RegistrationToken struct {
	ID        string
	Name      string
	Hash      []byte // SHA-256 of the token
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt *time.Time
	// MaxUses bounds registrations (0: unlimited); Uses counts them.
	MaxUses    int
	Uses       int
	LastUsedAt *time.Time
}

// ErrRegistrationRejected wraps ErrInvalid: the registration token exists but
// expired or has no use left (the message says which).
var ErrRegistrationRejected = fmt.Errorf("registration token rejected: %w", ErrInvalid)

// Agents stores agents and registration tokens. Operations on an unknown
// agent or registration token return ErrNotFound; invalid input (an empty
// id, a negative capacity or maximum of uses, no token hash) ErrInvalid.
//
// ReportedLabels are stored with nil as empty: they read back as an empty,
// non-nil map. AdminLabels keep nil (not set) apart from an empty map (set
// to no labels).
type Agents interface {
	// CreateAgent stores a new agent (ID, CreatedAt set by the caller); an
	// existing id → ErrConflict.
	CreateAgent(ctx context.Context, a *Agent) error
	GetAgent(ctx context.Context, id string) (*Agent, error)
	// ListAgents lists every agent, oldest first.
	ListAgents(ctx context.Context) ([]*Agent, error)
	// ReportAgent replaces what an agent reports about itself (Name,
	// ReportedLabels, Capacity, Version, Hostname, Platform) and sets
	// LastSeenAt; AdminLabels and Disabled are kept.
	ReportAgent(ctx context.Context, a *Agent) error
	// UpdateAgentAdmin sets AdminLabels (nil: use the reported labels again)
	// and Disabled, and returns the updated agent.
	UpdateAgentAdmin(ctx context.Context, id string, adminLabels map[string]string, disabled bool) (*Agent, error)
	// TouchAgent sets LastSeenAt.
	TouchAgent(ctx context.Context, id string, at time.Time) error
	// DeleteAgent removes the agent and its API tokens (role agent, subject
	// the agent id).
	DeleteAgent(ctx context.Context, id string) error

	// CreateRegistrationToken stores a registration token (its hash only); a
	// used id or hash → ErrConflict.
	CreateRegistrationToken(ctx context.Context, t *RegistrationToken) error
	// ListRegistrationTokens lists every registration token, oldest first.
	ListRegistrationTokens(ctx context.Context) ([]*RegistrationToken, error)
	DeleteRegistrationToken(ctx context.Context, id string) error
	// RegisterAgent, in one transaction: finds the registration token by the
	// SHA-256 of its value (ErrNotFound if unknown), rejects it when expired
	// at now or used up (ErrRegistrationRejected, saying which), counts one
	// use, creates agent a (a.RegistrationTokenID set to the token's id) and
	// stores tok (the agent's own API token, role agent, subject a.ID; an
	// empty Role or Subject defaults to these, others → ErrInvalid). An
	// existing agent id, or a used API token id or hash → ErrConflict, and
	// the use is not counted.
	RegisterAgent(ctx context.Context, tokenHash []byte, now time.Time, a *Agent, tok *APIToken) error
}

// Secret is a named value for steps, encrypted at rest, scoped to a project
// or to a pipeline. The store never sees the value, only its ciphertext.
type Secret struct {
	ID      string
	Name    string
	Scope   string // project | pipeline
	ScopeID string // the project id or the pipeline id
	// Ciphertext is the sealed value; KeyID names the key that sealed it.
	Ciphertext []byte
	KeyID      string
	CreatedBy  string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// SecretFilter selects secrets to list; empty fields match all.
type SecretFilter struct {
	Scope   string
	ScopeID string
}

// Secrets stores secrets.
type Secrets interface {
	// CreateSecret stores a new secret; a secret of the same name in the same
	// scope → ErrConflict.
	CreateSecret(ctx context.Context, s *Secret) error
	GetSecret(ctx context.Context, id string) (*Secret, error)
	// ListSecrets lists secrets ordered by scope, scope id and name.
	ListSecrets(ctx context.Context, f SecretFilter) ([]*Secret, error)
	// UpdateSecret replaces Name, Ciphertext, KeyID and UpdatedAt (a clash of
	// names in the scope → ErrConflict).
	UpdateSecret(ctx context.Context, s *Secret) error
	DeleteSecret(ctx context.Context, id string) error
	// SecretsForPipeline lists the project's secrets and the pipeline's own,
	// ordered by name, project scope first.
	SecretsForPipeline(ctx context.Context, projectID, pipelineID string) ([]*Secret, error)
}

// Credential is a source-code credential (seed 001): what git needs to fetch
// from a forge or a host. Its secret material (an access token or an SSH
// private key) is sealed like a secret's value.
type Credential struct {
	ID       string
	Name     string
	Kind     string // github gitlab gitea bitbucket basic ssh
	Host     string
	Username string
	// ProjectID, when set, limits the credential to that project's pipelines.
	ProjectID  string
	Ciphertext []byte
	KeyID      string
	CreatedBy  string
	// CreatorID is the id of the user who created it ("" when none).
	CreatorID string
	CreatedAt time.Time
	UpdatedAt time.Time
	// A connected account (seed 001's source-code credential) is personal:
	// OwnerID is its user, Provider the forge application it was
	// connected through, AccountID, LoginName and AvatarURL the forge's
	// account. Hand-made credentials have none of these.
	OwnerID   string
	Provider  string
	AccountID string
	LoginName string
	AvatarURL string
	// RefreshCiphertext is the sealed refresh token (nil: none), sealed
	// under RefreshSealID; ExpiresAt is when the access token expires (nil:
	// it does not, or the forge did not say).
	RefreshCiphertext []byte
	RefreshKeyID      string
	ExpiresAt         *time.Time
}

// RefreshSealID is the id the refresh token is sealed under.
func (c *Credential) RefreshSealID() string { return "refresh:" + c.ID }

// Credentials stores source-code credentials.
type Credentials interface {
	// CreateCredential stores a new credential; a used name → ErrConflict.
	CreateCredential(ctx context.Context, c *Credential) error
	GetCredential(ctx context.Context, id string) (*Credential, error)
	// ListCredentials lists credentials by name; projectID filters ("" all).
	ListCredentials(ctx context.Context, projectID string) ([]*Credential, error)
	// UpdateCredential replaces every field but ID, Kind, CreatedBy, CreatorID,
	// CreatedAt and a connected account's identity (OwnerID, Provider,
	// AccountID).
	UpdateCredential(ctx context.Context, c *Credential) error
	DeleteCredential(ctx context.Context, id string) error
}

// Artifact is a named file set a job of a run uploaded (the built-in
// actions store a gzip-compressed tar archive). Its bytes live in the blob
// store under BlobKey; the row is the truth about what exists.
type Artifact struct {
	ID    string
	RunID string
	// JobRunID and JobKey name the job that uploaded it; a later attempt of
	// the same job (same JobKey) may replace it.
	JobRunID string
	JobKey   string
	// Name is unique within the run.
	Name      string
	Size      int64
	SHA256    string // hex digest of the stored bytes
	BlobKey   string
	CreatedAt time.Time
	// ExpiresAt is when retention deletes it; nil keeps it forever.
	ExpiresAt *time.Time
}

// Artifacts stores artifact records. Artifacts go with their run: deleting
// a run (with its pipeline) deletes its artifact rows; their blobs are then
// the blob store's orphans, which the artifact service's sweeper removes.
type Artifacts interface {
	// PutArtifact stores a (every field set by the caller). When the run
	// already has an artifact of that name uploaded by the same JobKey (an
	// earlier attempt of the job), that row is replaced and its BlobKey
	// returned so that the caller can delete the blob. Another job's
	// artifact of that name → ErrConflict (also when two uploads race for a
	// free name); an unknown run → ErrNotFound.
	PutArtifact(ctx context.Context, a *Artifact) (replacedBlobKey string, err error)
	// GetArtifact finds a run's artifact by name (ErrNotFound).
	GetArtifact(ctx context.Context, runID, name string) (*Artifact, error)
	GetArtifactByID(ctx context.Context, id string) (*Artifact, error)
	// ListArtifacts lists a run's artifacts by name (empty for an unknown run).
	ListArtifacts(ctx context.Context, runID string) ([]*Artifact, error)
	// ExpiredArtifacts lists at most limit artifacts whose ExpiresAt is at or
	// before now, soonest expired first.
	ExpiredArtifacts(ctx context.Context, now time.Time, limit int) ([]*Artifact, error)
	// DeleteArtifact removes the row (ErrNotFound if it is gone).
	DeleteArtifact(ctx context.Context, id string) error
}

// Cache is a pipeline's cache entry: immutable contents under a key, shared
// by the pipeline's runs. Its bytes live in the blob store under BlobKey.
type Cache struct {
	ID         string
	PipelineID string
	// Key is unique within the pipeline; any text.
	Key        string
	Size       int64
	SHA256     string
	BlobKey    string
	CreatedAt  time.Time
	LastUsedAt time.Time
}

// Caches stores cache records. Caches go with their pipeline, as artifacts
// with their run.
type Caches interface {
	// PutCache stores c; a key the pipeline already has → ErrConflict
	// (entries never change), an unknown pipeline → ErrNotFound.
	PutCache(ctx context.Context, c *Cache) error
	// FindCache returns the pipeline's cache whose key is exact; failing
	// that, for each prefix in order, the newest (CreatedAt) cache whose key
	// starts with it (byte for byte: % and _ are not wildcards). ErrNotFound
	// when nothing matches; an empty exact is skipped.
	FindCache(ctx context.Context, pipelineID, exact string, prefixes []string) (*Cache, error)
	// TouchCache moves LastUsedAt forward to at (never back); ErrNotFound if
	// the cache is gone.
	TouchCache(ctx context.Context, id string, at time.Time) error
	// StaleCaches lists at most limit caches last used before olderThan,
	// least recently used first.
	StaleCaches(ctx context.Context, olderThan time.Time, limit int) ([]*Cache, error)
	// DeleteCache removes the row (ErrNotFound if it is gone).
	DeleteCache(ctx context.Context, id string) error
	// ListCaches lists a pipeline's caches by key.
	ListCaches(ctx context.Context, pipelineID string) ([]*Cache, error)
}

// Tokens stores API tokens.
type Tokens interface {
	CreateToken(ctx context.Context, t *APIToken) error
	// TokenByHash finds a token by the SHA-256 of its value.
	TokenByHash(ctx context.Context, hash []byte) (*APIToken, error)
	TouchToken(ctx context.Context, id string, at time.Time) error
	ListTokens(ctx context.Context) ([]*APIToken, error)
	// GetToken returns a token by id (ErrNotFound).
	GetToken(ctx context.Context, id string) (*APIToken, error)
	// TokensOfUser lists a user's tokens, oldest first (empty, not an error,
	// for a user without tokens or an unknown id).
	TokensOfUser(ctx context.Context, userID string) ([]*APIToken, error)
	// DeleteToken removes a token (ErrNotFound).
	DeleteToken(ctx context.Context, id string) error
}

// AuditEntry is one change made through the API: who, what, when, from
// where.
type AuditEntry struct {
	// ID is assigned by the store, increasing.
	ID   int64
	Time time.Time
	// Actor is the caller's login (the token's subject); ActorID their user
	// id ("" for a token no user owns); TokenID the token used.
	Actor   string
	ActorID string
	TokenID string
	// Action is the route: method and path template, e.g.
	// "POST /api/v1/pipelines/{pipelineId}/trigger".
	Action string
	// Resource is what it acted on: the created resource's path (its
	// Location) or the request's path, e.g. "/api/v1/pipelines/pl_x".
	Resource   string
	Status     int
	RemoteAddr string
	RequestID  string
}

// AuditFilter selects audit entries, newest first. Empty fields select all.
type AuditFilter struct {
	Actor string
	// Action matches exactly.
	Action string
	// Resource matches the entries whose Resource starts with it.
	Resource string
	// Since and Until bound Time (inclusive, exclusive).
	Since, Until *time.Time
	Offset       int
	// Limit 0 returns every entry from Offset on.
	Limit int
}

// Audit stores the audit log.
type Audit interface {
	// AppendAudit stores e and sets e.ID.
	AppendAudit(ctx context.Context, e *AuditEntry) error
	// ListAudit returns a page of the entries f selects, newest first (by
	// ID), and how many f selects in all.
	ListAudit(ctx context.Context, f AuditFilter) ([]*AuditEntry, int, error)
	// DeleteAuditBefore removes the entries older than t and says how many.
	DeleteAuditBefore(ctx context.Context, t time.Time) (int, error)
}

// Users stores users.
type Users interface {
	// CreateUser stores u (ID and CreatedAt set by the caller); an empty id or
	// login → ErrInvalid, a used id or login → ErrConflict.
	CreateUser(ctx context.Context, u *User) error
	// GetUser and UserByLogin return ErrNotFound for no such user.
	GetUser(ctx context.Context, id string) (*User, error)
	UserByLogin(ctx context.Context, login string) (*User, error)
	// ListUsers lists every user by login.
	ListUsers(ctx context.Context) ([]*User, error)
	// UpdateUser replaces the user's name, email, avatar URL, admin and
	// disabled flags and last login (not its login or creation time);
	// ErrNotFound for no such user.
	UpdateUser(ctx context.Context, u *User) error
	// DeleteUser removes a user and every token of theirs (ErrNotFound).
	DeleteUser(ctx context.Context, id string) error
}

// PipelineWebhook is a pipeline's webhook secret, sealed by the server like a
// secret's value (the store never sees it in clear), under the id SealID.
type PipelineWebhook struct {
	PipelineID string
	Ciphertext []byte
	KeyID      string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// SealID is the id the webhook secret is sealed under (bound to the
// ciphertext): the pipeline's, marked as a webhook's, so that neither a
// secret's nor another pipeline's ciphertext opens in its place.
func (w *PipelineWebhook) SealID() string { return "webhook:" + w.PipelineID }

// WebhookDelivery is a verified webhook delivery and what came of it.
type WebhookDelivery struct {
	PipelineID string
	Provider   string // github gitlab gitea bitbucket
	DeliveryID string
	// RunIDs are the runs the delivery started (empty when ignored).
	RunIDs    []string
	Status    string // triggered | ignored
	Reason    string
	CreatedAt time.Time
}

// Webhooks stores pipelines' webhook secrets and the deliveries received.
// Both go with their pipeline.
type Webhooks interface {
	// SetWebhookSecret stores or replaces the pipeline's sealed secret
	// (CreatedAt is kept on replacement). An unknown pipeline → ErrNotFound;
	// no ciphertext or key id → ErrInvalid.
	SetWebhookSecret(ctx context.Context, w *PipelineWebhook) error
	// GetWebhookSecret returns the pipeline's secret; ErrNotFound when none
	// is set.
	GetWebhookSecret(ctx context.Context, pipelineID string) (*PipelineWebhook, error)
	// ListWebhookSecrets lists every pipeline's secret (for re-encryption
	// under a new key), by pipeline id.
	ListWebhookSecrets(ctx context.Context) ([]*PipelineWebhook, error)
	// RecordDelivery stores d. When the pipeline already has a delivery of
	// that provider and id, nothing is written and the stored one is
	// returned with replayed=true, also under concurrent calls. An unknown
	// pipeline → ErrNotFound.
	RecordDelivery(ctx context.Context, d *WebhookDelivery) (stored *WebhookDelivery, replayed bool, err error)
	// GetDelivery returns a recorded delivery (ErrNotFound).
	GetDelivery(ctx context.Context, pipelineID, provider, deliveryID string) (*WebhookDelivery, error)
	// DeleteDeliveriesBefore forgets deliveries recorded before the time
	// (their runs stay) and says how many.
	DeleteDeliveriesBefore(ctx context.Context, before time.Time) (int64, error)
}

// ImageRepository is an image build repository (seed 002): the source
// repository an image is built from, and its tag configs (which branches or
// tags become which image tags). Its builds are the runs of its pipeline
// (PipelineID), a pipeline the server manages for it: deleting the pipeline
// deletes the repository.
type ImageRepository struct {
	// ID is also the id of its build config (the seed's build_config.id).
	ID              int64
	Namespace       string
	Name            string
	Description     string
	FullDescription string
	IsPublic        bool
	PipelineID      string
	Source          ImageSource
	// BuildNode and EmailEnabled are kept and shown as given.
	BuildNode    string
	EmailEnabled bool
	// TagConfigs in the order given.
	TagConfigs []*ImageTagConfig
	CreatedBy  string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// ImageSource is where an image repository's code comes from.
type ImageSource struct {
	// Client is GitHub, Bitbucket, GitLab, Gitea or Simple.
	Client string
	// Namespace and Name of the forge's repository; Host of a self-hosted
	// forge ("" for the public one).
	Namespace string
	Name      string
	Host      string
	// CloneURL is the Simple client's URL.
	CloneURL string
	// CredentialID is the source-code credential to fetch with ("" none).
	CredentialID string
}

// ImageTagConfig says which branch or tag becomes which image tag, and how
// it is built.
type ImageTagConfig struct {
	ID           int64
	RepositoryID int64
	// CodeRepoType is branch or tag; CodeRepoTypeValue a name or a glob.
	CodeRepoType       string
	CodeRepoTypeValue  string
	DockerRepoTag      string
	DockerfileLocation string
	BuildContextPath   string
	// IsActive: pushes to a matching branch or tag build automatically.
	IsActive          bool
	BuildCacheEnabled bool
	// VersionTagging: 0 no extra tag, 1 a time tag, 2 the commit id.
	VersionTagging int
}

// ImageBuildFilter selects image builds (runs of image repositories'
// pipelines); empty fields match all.
type ImageBuildFilter struct {
	Namespace string
	RepoName  string
	// Within, when not nil, limits the list to these namespaces (an empty
	// list matches nothing): the projects the caller may see.
	Within []string
	Offset int
	Limit  int
}

// ImageBuildRun is a run of an image repository's pipeline.
type ImageBuildRun struct {
	Run          *Run
	RepositoryID int64
	Namespace    string
	RepoName     string
}

// ImageRepositories stores image build repositories and their tag configs.
type ImageRepositories interface {
	// CreateImageRepository stores, in one transaction, the pipeline p (as
	// CreatePipeline would) and r with its tag configs (r.PipelineID set to
	// p.ID). It assigns r.ID, and each tag config's ID and RepositoryID. A
	// repository with the same Namespace and Name → ErrConflict (saying
	// which), and so does a pipeline name clash; nothing is written then.
	CreateImageRepository(ctx context.Context, r *ImageRepository, p *Pipeline) error
	// GetImageRepository returns a repository with its tag configs
	// (ErrNotFound).
	GetImageRepository(ctx context.Context, namespace, name string) (*ImageRepository, error)
	// ImageRepositoryByPipeline returns the repository whose pipeline is
	// pipelineID (ErrNotFound when it is not one's).
	ImageRepositoryByPipeline(ctx context.Context, pipelineID string) (*ImageRepository, error)
	// ListImageRepositories lists repositories (namespace "" all) by
	// namespace and name, with their tag configs.
	ListImageRepositories(ctx context.Context, namespace string) ([]*ImageRepository, error)
	// UpdateImageBuildConfig replaces repository id's BuildNode and tag
	// configs with configs, in order, in one transaction: an entry whose ID
	// is one of the repository's configs keeps that ID, one with ID 0 gets a
	// new one, configs not listed are removed. An ID that is not one of the
	// repository's configs → ErrInvalid naming it; an unknown repository →
	// ErrNotFound. UpdatedAt becomes updatedAt. It returns the repository as
	// stored.
	UpdateImageBuildConfig(ctx context.Context, id int64, buildNode string, configs []*ImageTagConfig, updatedAt time.Time) (*ImageRepository, error)
	// ListImageBuilds lists the runs of image repositories' pipelines,
	// newest first (CreatedAt, then run id, descending), and how many match
	// in all.
	ListImageBuilds(ctx context.Context, f ImageBuildFilter) ([]*ImageBuildRun, int, error)
}

// Project is a project: the access boundary that pipelines, secrets,
// credentials limited to it and image repositories (by namespace) belong to.
type Project struct {
	ID          string
	Name        string
	Description string
	CreatedBy   string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Member kinds: a project's member is a user or a team.
const (
	MemberUser = "user"
	MemberTeam = "team"
)

// Member is a user's or a team's role in a project.
type Member struct {
	ProjectID string
	Kind      string // MemberUser | MemberTeam
	MemberID  string // the user's or the team's id
	Role      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Grant is one role a user holds in a project: directly (Team "") or as a
// member of a team.
type Grant struct {
	ProjectID string
	Role      string
	// TeamID and TeamName say through which team; "" when direct.
	TeamID   string
	TeamName string
}

// Projects stores projects and their members.
type Projects interface {
	// CreateProject stores p (timestamps set by the caller; zero → now); an
	// empty id → ErrInvalid, a used id → ErrConflict.
	CreateProject(ctx context.Context, p *Project) error
	// GetProject returns ErrNotFound for no such project.
	GetProject(ctx context.Context, id string) (*Project, error)
	// ListProjects lists every project by id.
	ListProjects(ctx context.Context) ([]*Project, error)
	// UpdateProject replaces the name, description and UpdatedAt
	// (ErrNotFound).
	UpdateProject(ctx context.Context, p *Project) error
	// DeleteProject removes a project and its members (ErrNotFound); the
	// caller checks it holds nothing any more.
	DeleteProject(ctx context.Context, id string) error
	// SetMember creates or replaces a member's role (ErrNotFound for no such
	// project).
	SetMember(ctx context.Context, m *Member) error
	// RemoveMember removes one (ErrNotFound when it is not a member).
	RemoveMember(ctx context.Context, projectID, kind, memberID string) error
	// Members lists a project's members: users then teams, by id.
	Members(ctx context.Context, projectID string) ([]*Member, error)
	// GrantsOf lists the roles user userID holds, directly and through
	// their teams, ordered by project.
	GrantsOf(ctx context.Context, userID string) ([]Grant, error)
}

// Team is a named group of users that may be a project's member.
type Team struct {
	ID          string
	Name        string
	Description string
	CreatedAt   time.Time
}

// Teams stores teams and their members.
type Teams interface {
	// CreateTeam stores t; a used id or name → ErrConflict.
	CreateTeam(ctx context.Context, t *Team) error
	// GetTeam and TeamByName return ErrNotFound for no such team.
	GetTeam(ctx context.Context, id string) (*Team, error)
	TeamByName(ctx context.Context, name string) (*Team, error)
	// ListTeams lists every team by name.
	ListTeams(ctx context.Context) ([]*Team, error)
	// UpdateTeam replaces the description (ErrNotFound).
	UpdateTeam(ctx context.Context, t *Team) error
	// DeleteTeam removes a team, its members and its project memberships.
	DeleteTeam(ctx context.Context, id string) error
	// AddTeamMember adds a user (already a member: no change; ErrNotFound
	// for no such team).
	AddTeamMember(ctx context.Context, teamID, userID string) error
	// RemoveTeamMember removes one (ErrNotFound when not a member).
	RemoveTeamMember(ctx context.Context, teamID, userID string) error
	// TeamMembers lists the ids of a team's users, in order.
	TeamMembers(ctx context.Context, teamID string) ([]string, error)
	// TeamsOf lists the teams user userID is a member of, by name.
	TeamsOf(ctx context.Context, userID string) ([]*Team, error)
}

// AuthProvider is a single sign-on provider an admin configured. Its
// client secret is sealed like a secret's value (SealID).
type AuthProvider struct {
	Name           string
	Kind           string
	DisplayName    string
	URL            string
	ClientID       string
	Ciphertext     []byte
	KeyID          string
	Scopes         []string
	AllowedOrgs    []string
	AllowedDomains []string
	// SignIn: users may sign in with it; Connect: users may connect their
	// forge accounts through it (a forge application, seed 001).
	SignIn    bool
	Connect   bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// SealID is the id the client secret is sealed under.
func (p *AuthProvider) SealID() string { return "auth-provider:" + p.Name }

// LoginState is a sign-in under way, keyed by its OAuth state.
type LoginState struct {
	State    string
	Provider string
	Nonce    string
	Verifier string
	// ReturnTo is the UI path to land on after signing in.
	ReturnTo  string
	ExpiresAt time.Time
	// UserID is set when the flow connects this user's forge account
	// rather than signing someone in.
	UserID string
}

// Session is a browser session: its cookie's value is never stored, only
// its SHA-256 (Hash).
type Session struct {
	ID         string
	Hash       []byte
	UserID     string
	Provider   string // "" when made from an API token
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastSeenAt time.Time
	UserAgent  string
	RemoteAddr string
	// Scopes limit a session opened with a scoped API token (nil: every
	// scope of its user).
	Scopes []string
}

// SignIn stores single sign-on's providers, identities, pending logins and
// sessions.
type SignIn interface {
	// CreateAuthProvider stores a new provider (a used name → ErrConflict);
	// UpdateAuthProvider replaces one (ErrNotFound).
	CreateAuthProvider(ctx context.Context, p *AuthProvider) error
	UpdateAuthProvider(ctx context.Context, p *AuthProvider) error
	GetAuthProvider(ctx context.Context, name string) (*AuthProvider, error)
	ListAuthProviders(ctx context.Context) ([]*AuthProvider, error)
	DeleteAuthProvider(ctx context.Context, name string) error
	// LinkIdentity records that user userID signs in as subject at
	// provider (already linked → ErrConflict); UserOfIdentity finds them
	// (ErrNotFound).
	LinkIdentity(ctx context.Context, provider, subject, userID string, at time.Time) error
	UserOfIdentity(ctx context.Context, provider, subject string) (string, error)
	// PutLoginState stores a pending login; TakeLoginState returns and
	// removes it in one step (so it is used at most once): unknown or
	// expired at now → ErrNotFound. Expired states are removed on the way.
	PutLoginState(ctx context.Context, l *LoginState) error
	TakeLoginState(ctx context.Context, state string, now time.Time) (*LoginState, error)
	// CreateSession stores a session; SessionByHash finds one by its
	// cookie's hash (ErrNotFound); TouchSession records its use.
	CreateSession(ctx context.Context, s *Session) error
	SessionByHash(ctx context.Context, hash []byte) (*Session, error)
	TouchSession(ctx context.Context, id string, at time.Time) error
	// ListSessions lists a user's sessions, newest first.
	ListSessions(ctx context.Context, userID string) ([]*Session, error)
	// DeleteSession removes one (ErrNotFound); DeleteExpiredSessions those
	// expired before t, and the login states too.
	DeleteSession(ctx context.Context, id string) error
	DeleteExpiredSessions(ctx context.Context, t time.Time) (int, error)
	// PutCLIGrant stores a grant of the command line's sign-in;
	// TakeCLIGrant returns and removes it in one step (unknown or expired
	// at now → ErrNotFound).
	PutCLIGrant(ctx context.Context, g *CLIGrant) error
	TakeCLIGrant(ctx context.Context, codeHash []byte, now time.Time) (*CLIGrant, error)
}

// CLIGrant is a signed-in user's consent to the command line's sign-in: a
// one-use code (kept as its hash) the command line exchanges, with the
// verifier of Challenge, for an API token.
type CLIGrant struct {
	CodeHash  []byte
	UserID    string
	Challenge string
	// Scopes of the token to make (nil: every scope of the user).
	Scopes    []string
	ExpiresAt time.Time
}

// RepoBinding binds a pipeline to a repository on a forge: where its API
// is, the webhook Runnel manages there, and how runs report on commits.
type RepoBinding struct {
	PipelineID string
	// Provider is the forge application the repository was activated
	// through ("" when activated with a hand-made credential).
	Provider string
	Kind     string // github gitlab gitea bitbucket
	APIBase  string
	FullName string
	// HookID is the forge's id of the webhook ("" none); HookState is
	// "active", "missing" (deleted at the forge) or "" (none); HookError
	// the last failure managing it.
	HookID        string
	HookState     string
	HookError     string
	HookCheckedAt *time.Time
	// StatusContext names the commit statuses ("" runnel/<pipeline>);
	// JobStatuses adds one status per job.
	StatusContext string
	JobStatuses   bool
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// CommitStatusRecord is the last status a run reported on its commit for a
// context, and the outcome of reporting it.
type CommitStatusRecord struct {
	RunID       string
	Context     string
	SHA         string
	State       string
	Description string
	TargetURL   string
	// Error is the last failure sending it ("" sent); Attempts counts
	// the tries of the current state.
	Error     string
	Attempts  int
	UpdatedAt time.Time
}

// Repositories stores pipelines' forge repositories and commit statuses.
type Repositories interface {
	// PutRepoBinding stores or replaces the pipeline's binding (CreatedAt
	// kept). An unknown pipeline → ErrNotFound.
	PutRepoBinding(ctx context.Context, b *RepoBinding) error
	// GetRepoBinding → ErrNotFound when the pipeline has none.
	GetRepoBinding(ctx context.Context, pipelineID string) (*RepoBinding, error)
	// ListRepoBindings lists bindings of kind and fullName (either "":
	// any), by pipeline id.
	ListRepoBindings(ctx context.Context, kind, fullName string) ([]*RepoBinding, error)
	// DeleteRepoBinding removes it (none: not an error).
	DeleteRepoBinding(ctx context.Context, pipelineID string) error
	// PutCommitStatus stores or replaces a run's status for its context.
	PutCommitStatus(ctx context.Context, c *CommitStatusRecord) error
	// ListCommitStatuses lists a run's statuses by context.
	ListCommitStatuses(ctx context.Context, runID string) ([]*CommitStatusRecord, error)
}
