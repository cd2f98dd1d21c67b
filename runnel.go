// Package runnel is Runnel's vocabulary: the words every part of the program
// shares. The statuses of runs, jobs and steps, how a run was started and the
// request that starts one, identifiers, and the domain errors (which the
// transports map to HTTP statuses and gRPC codes at their edges, and nowhere
// else). It imports nothing of the project and does no I/O; everything may
// import it.
package runnel

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// RunStatus is the status of a pipeline run.
type RunStatus string

// Run statuses, as the pipeline model enumerates them.
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

// Known reports whether s is a run status.
func (s RunStatus) Known() bool {
	switch s {
	case RunPending, RunRunning, RunSuccess, RunFailed, RunCancelled, RunPaused, RunPartial:
		return true
	}
	return false
}

// JobStatus is the status of a job run.
type JobStatus string

// Job run statuses. The model's enumeration (pending queued running success
// failed cancelled) has no word for a job that never ran because its
// condition was false, so a job run has skipped too, as a step run has.
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

// Known reports whether s is a job status.
func (s JobStatus) Known() bool {
	switch s {
	case JobPending, JobQueued, JobRunning, JobSuccess, JobFailed, JobCancelled, JobSkipped:
		return true
	}
	return false
}

// StepStatus is the status of a step run.
type StepStatus string

// Step run statuses, as the pipeline model enumerates them.
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

// ApprovalStatus is the status of an approval gate.
type ApprovalStatus string

// Approval statuses: waiting for a decision, decided, or ended without one
// (its timeout passed; the run was stopped).
const (
	ApprovalPending   ApprovalStatus = "pending"
	ApprovalApproved  ApprovalStatus = "approved"
	ApprovalRejected  ApprovalStatus = "rejected"
	ApprovalExpired   ApprovalStatus = "expired"
	ApprovalCancelled ApprovalStatus = "cancelled"
)

// How a run was started: a run's TriggerType and trigger.type in
// expressions.
const (
	TriggerManual = "manual" // the API or the UI
	TriggerCron   = "cron"   // a schedule of the definition
	TriggerEvent  = "event"  // a forge's webhook delivery
)

// Trigger is what started a run, as expressions see it (trigger.*) and as
// it is stored with the run.
type Trigger struct {
	Type   string `expr:"type" json:"type"`     // TriggerManual, TriggerCron or TriggerEvent
	Ref    string `expr:"ref" json:"ref"`       // refs/heads/main, refs/tags/v1
	Branch string `expr:"branch" json:"branch"` // main
	Tag    string `expr:"tag" json:"tag"`
	Commit string `expr:"commit" json:"commit"`
	Event  string `expr:"event" json:"event"` // push, tag, pull_request, manual, cron
	Actor  string `expr:"actor" json:"actor"`
	// Before and After are the commits a push moved the ref between.
	Before string `expr:"before" json:"before,omitempty"`
	After  string `expr:"after" json:"after,omitempty"`
	// Author and Message describe the head commit.
	Author  string `expr:"author" json:"author,omitempty"`
	Message string `expr:"message" json:"message,omitempty"`
	// PullRequest is set for pull/merge request events.
	PullRequest PullRequest `expr:"pull_request" json:"pull_request"`
	// Provider is the forge that sent the event (github, gitlab, gitea,
	// bitbucket); Action its action (opened, synchronize, …).
	Provider string `expr:"provider" json:"provider,omitempty"`
	Action   string `expr:"action" json:"action,omitempty"`
}

// PullRequest is trigger.pull_request.
type PullRequest struct {
	Number int64  `expr:"number" json:"number"`
	Title  string `expr:"title" json:"title,omitempty"`
	Head   string `expr:"head" json:"head"` // source branch
	Base   string `expr:"base" json:"base"` // target branch
	URL    string `expr:"url" json:"url,omitempty"`
	// Fork: the head branch is in another repository than the base (a
	// fork); HeadRepo is that repository's full name. A fork's runs get no
	// secrets unless the pipeline allows them (forkPullRequests).
	Fork     bool   `expr:"fork" json:"fork,omitempty"`
	HeadRepo string `expr:"head_repo" json:"headRepo,omitempty"`
	// ForkSecrets is the pipeline's forkPullRequests when a fork's run
	// was triggered (withhold, approve or allow): what its jobs get is
	// decided once, with the run.
	ForkSecrets string `expr:"fork_secrets" json:"forkSecrets,omitempty"`
}

// SecretsWithheld reports whether a run with this trigger context runs
// without secrets and credentials: a pull request from a fork whose
// pipeline did not allow them (with "approve", the run waits at an approval
// and its approval gives them).
func (t Trigger) SecretsWithheld() bool {
	return t.PullRequest.Fork && t.PullRequest.ForkSecrets != "allow" && t.PullRequest.ForkSecrets != "approve"
}

// TriggerRequest starts a run: what every trigger (the API, cron,
// webhooks, image builds) hands to the scheduler.
type TriggerRequest struct {
	Variables   map[string]string
	TriggeredBy string
	// TriggerUserID is the user whose token started the run ("" for cron,
	// webhooks and tokens no user owns).
	TriggerUserID string
	// RequestID makes the request idempotent: the same id for the same
	// pipeline returns the run it started.
	RequestID   string
	TriggerType string // TriggerManual, TriggerCron or TriggerEvent
	// Trigger, when set, is the trigger context (webhook events, cron
	// ticks); its Type is TriggerType. Commit becomes the run's commit.
	Trigger *Trigger
}

// Credential is a source-code credential opened for one job (or one read of
// a repository): Secret is the access token, or the SSH private key for kind
// ssh. It never leaves the process that opened it unmasked: see
// docs/security.md.
type Credential struct {
	ID       string
	Kind     string // github gitlab gitea bitbucket basic ssh
	Host     string
	Username string
	Secret   string
}

// NewID returns a random identifier with a prefix: prefix_ and 20 lower-case
// base32 characters (100 bits), e.g. run_7dq2…. Every id Runnel makes has
// this form.
func NewID(prefix string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[b[i]&31]
	}
	return prefix + "_" + string(b)
}

// LogLine is one line of a step's log: as an agent reports it (Seq 0), as
// it is stored and streamed (Seq numbers a step's lines from 1).
type LogLine struct {
	Seq     int64
	Time    time.Time
	Level   string
	Message string
}

// The domain errors. Wrap them with what failed and why
// (fmt.Errorf("pipeline %s: %w", id, runnel.ErrNotFound)); the HTTP API and
// the gRPC services map them to statuses and codes.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
	// ErrLeaseLost: the caller's lease on a job run expired or was
	// reassigned.
	ErrLeaseLost = errors.New("lease lost")
	// ErrForbidden: the caller may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthenticated: the caller did not prove who it is (a webhook
	// signature that does not verify, a missing secret to verify it with).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUnavailable: this server cannot do it as configured (no secret
	// key, no registry); another server, or a restart with the setting,
	// can.
	ErrUnavailable = errors.New("unavailable")
	// ErrUpstream: a system Runnel depends on (a forge, a Git server, a
	// registry) refused or failed.
	ErrUpstream = errors.New("upstream failure")
	// ErrUnprocessable: what was found is not usable (a definition file in
	// a repository that does not hold a definition).
	ErrUnprocessable = errors.New("unprocessable")
)

// Error is a domain error whose message is written for the person who reads
// it: what and where (a field path such as body.name first), and what is
// accepted. Kind is one of the Err sentinels above (errors.Is works); the
// edges choose the status or code from it and show Msg as it is.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

// Errorf returns an *Error of kind.
func Errorf(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Invalidf is Errorf(ErrInvalid, …): bad input.
func Invalidf(format string, args ...any) *Error { return Errorf(ErrInvalid, format, args...) }

// About words a store error about one entity for its reader: a missing one
// is ErrNotFound saying "<noun> <id> not found", anything else says what was
// done to which ("delete secret sec_x: …", wrapping err); nil stays nil.
func About(err error, verb, noun, id string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return Errorf(ErrNotFound, "%s %s not found", noun, id)
	}
	return fmt.Errorf("%s %s %s: %w", verb, noun, id, err)
}

// Principal is the authenticated caller.
type Principal struct {
	TokenID string
	// Subject is the user's login (what createdBy, triggeredBy and
	// approvers record).
	Subject string
	// Role is "admin" for a site admin, else "user".
	Role string
	// UserID is the user the token belongs to ("" for a token made before
	// users existed and not linked to one).
	UserID string
	// Scopes are the token's (nil: every scope).
	Scopes []string
}

// The scopes of API tokens, each including the ones before it: read (see),
// run (trigger and control runs, approve), write (change definitions and
// settings), admin (administer the server; only for site admins).
const (
	ScopeRead  = "read"
	ScopeRun   = "run"
	ScopeWrite = "write"
	ScopeAdmin = "admin"
)

// Scopes lists the scopes from the least to the most.
var Scopes = []string{ScopeRead, ScopeRun, ScopeWrite, ScopeAdmin}

// scopeRank is a scope's place in Scopes (-1: unknown).
func scopeRank(s string) int {
	for i, x := range Scopes {
		if x == s {
			return i
		}
	}
	return -1
}

// Allows reports whether scopes (nil: all) grant need: a scope grants the
// ones before it in Scopes.
func Allows(scopes []string, need string) bool {
	if scopes == nil {
		return true
	}
	r := scopeRank(need)
	for _, s := range scopes {
		if sr := scopeRank(s); sr >= 0 && sr >= r {
			return true
		}
	}
	return false
}

// Admin reports whether the caller is a site admin using a token that may
// administer.
func (p Principal) Admin() bool { return p.Role == "admin" && Allows(p.Scopes, ScopeAdmin) }

// SiteAdmin reports whether the caller is a site admin, whatever the token's
// scopes: they hold every project role (the scopes still bound what the
// token may do).
func (p Principal) SiteAdmin() bool { return p.Role == "admin" }

type principalKey struct{}

// WithPrincipal returns ctx carrying p: the API does it for every
// authenticated request, and services read it with PrincipalFrom to decide
// what the caller may see and change.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller ctx carries; ok is false for work Runnel
// does on its own behalf (cron, webhooks verified by their signature,
// recovery), which access checks let through.
func PrincipalFrom(ctx context.Context) (p Principal, ok bool) {
	p, ok = ctx.Value(principalKey{}).(Principal)
	return p, ok
}
