package api

import (
	"cmp"
	"encoding/json"
	"slices"

	"github.com/runnel-ci/runnel/internal/pipeline"
	"github.com/runnel-ci/runnel/internal/safeurl"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

// The JSON shapes the API sends. Field names are the seed's (camelCase);
// times are RFC 3339 in UTC with milliseconds (wire.Time), null when unknown.

type pipelineJSON struct {
	PipelineID       string         `json:"pipelineId"`
	ProjectID        string         `json:"projectId"`
	Name             string         `json:"name"`
	Description      string         `json:"description"`
	RepoURL          string         `json:"repoUrl"`
	DefaultBranch    string         `json:"defaultBranch"`
	PipelineFilePath string         `json:"pipelineFilePath"`
	SaveMode         string         `json:"saveMode"`
	PRTargetBranch   string         `json:"prTargetBranch"`
	Metadata         map[string]any `json:"metadata"`
	CreatedBy        string         `json:"createdBy"`
	CreatorID        string         `json:"creatorId"`
	CreatedAt        string         `json:"createdAt"`
	UpdatedAt        string         `json:"updatedAt"`
	HeadVersion      int            `json:"headVersion"`
	HeadCommitSHA    string         `json:"headCommitSha"`
	LastExecutionID  string         `json:"lastExecutionId"`
	LastRunState     string         `json:"lastRunState"`
	LastStarted      *string        `json:"lastStarted"`
	LastEnded        *string        `json:"lastEnded"`
	// WebhookSecretSet says whether a webhook secret is set (GET of one
	// pipeline only; the secret itself is never shown).
	WebhookSecretSet *bool `json:"webhookSecretSet,omitempty"`
	// The pipeline's own cron schedule (flat, as the seed has it) and the
	// next tick over all its cron schedules (null: none).
	TriggerCronExpression string  `json:"triggerCronExpression"`
	TriggerTimezone       string  `json:"triggerTimezone"`
	NextStart             *string `json:"nextStart"`
	// CredentialID is the credential repoUrl is read and written with.
	CredentialID string `json:"credentialId"`
	// EventSinks are the pipeline's own CDEvents sinks; a sink URL's
	// password is not shown.
	EventSinks []string `json:"eventSinks"`
	// Active is false once deactivated (seed 001): neither cron nor
	// webhooks start runs. TriggerWebhook says whether webhooks do.
	Active           bool   `json:"active"`
	TriggerWebhook   bool   `json:"triggerWebhook"`
	ForkPullRequests string `json:"forkPullRequests"`
	// Repository is the forge repository the pipeline is bound to (GET of
	// one pipeline; null when none).
	Repository *repositoryJSON `json:"repository,omitempty"`
}

// repositoryJSON is a pipeline's forge repository and the webhook Runnel
// manages there (its id and secret are never shown).
type repositoryJSON struct {
	Kind          string  `json:"kind"`
	Provider      string  `json:"provider"`
	FullName      string  `json:"fullName"`
	WebhookState  string  `json:"webhookState"`
	WebhookError  string  `json:"webhookError"`
	WebhookURL    string  `json:"webhookUrl"`
	CheckedAt     *string `json:"checkedAt"`
	StatusContext string  `json:"statusContext"`
}

// toPipelineJSON shapes a pipeline; NextStart is left null (it needs the
// head spec: Server.pipelineOut fills it).
func toPipelineJSON(p *store.Pipeline) pipelineJSON {
	md := p.Metadata
	if md == nil {
		md = map[string]any{}
	}
	return pipelineJSON{
		PipelineID:       p.ID,
		ProjectID:        p.ProjectID,
		Name:             p.Name,
		Description:      p.Description,
		RepoURL:          p.RepoURL,
		DefaultBranch:    p.DefaultBranch,
		PipelineFilePath: p.PipelineFilePath,
		SaveMode:         p.SaveMode,
		PRTargetBranch:   p.PRTargetBranch,
		Metadata:         md,
		CreatedBy:        p.CreatedBy,
		CreatorID:        p.CreatorID,
		CreatedAt:        wire.Time(p.CreatedAt),
		UpdatedAt:        wire.Time(p.UpdatedAt),
		HeadVersion:      p.HeadVersion,
		HeadCommitSHA:    p.HeadCommitSHA,
		LastExecutionID:  p.LastExecutionID,
		LastRunState:     p.LastRunState,
		LastStarted:      wire.TimePtr(p.LastStarted),
		LastEnded:        wire.TimePtr(p.LastEnded),

		CredentialID:          p.CredentialID,
		EventSinks:            redactedSinks(p.EventSinks),
		TriggerCronExpression: p.TriggerCronExpression,
		TriggerTimezone:       p.TriggerTimezone,
		Active:                !p.Deactivated,
		TriggerWebhook:        !p.WebhookDisabled,
		ForkPullRequests:      pipeline.ForkMode(p.ForkPullRequests),
	}
}

// redactedSinks shows sink URLs without their passwords ([] when none).
func redactedSinks(sinks []string) []string {
	out := make([]string, 0, len(sinks))
	for _, s := range sinks {
		out = append(out, safeurl.Redact(s))
	}
	return out
}

// specVersionJSON is a saved spec version (the answer of a save).
type specVersionJSON struct {
	PipelineID    string `json:"pipelineId"`
	Version       int    `json:"version"`
	HeadCommitSHA string `json:"headCommitSha"`
	Format        string `json:"format"`
	CommitMessage string `json:"commitMessage"`
	Editor        string `json:"editor"`
	RequestID     string `json:"requestId"`
	CreatedAt     string `json:"createdAt"`
	// Replayed is true when the requestId had been used: nothing was saved.
	Replayed bool `json:"replayed"`
	// Git-backed pipelines: how it was saved (direct | pr), the commit
	// pushed, the branch it was pushed to, and for pr saves the pull
	// request opened against targetBranch. Unchanged: the file already had
	// this content; nothing was pushed.
	SaveMode          string `json:"saveMode,omitempty"`
	CommitSHA         string `json:"commitSha,omitempty"`
	Branch            string `json:"branch,omitempty"`
	TargetBranch      string `json:"targetBranch,omitempty"`
	PullRequestURL    string `json:"pullRequestUrl,omitempty"`
	PullRequestNumber int64  `json:"pullRequestNumber,omitempty"`
	Unchanged         bool   `json:"unchanged,omitempty"`
}

func toSpecVersionJSON(sv *store.SpecVersion, replayed bool) specVersionJSON {
	return specVersionJSON{
		PipelineID:    sv.PipelineID,
		Version:       sv.Version,
		HeadCommitSHA: sv.CommitSHA,
		Format:        sv.Format,
		CommitMessage: sv.CommitMessage,
		Editor:        sv.Editor,
		RequestID:     sv.RequestID,
		CreatedAt:     wire.Time(sv.CreatedAt),
		Replayed:      replayed,
	}
}

// specJSON is the answer of GET …/spec.
type specJSON struct {
	Spec   json.RawMessage `json:"spec"`
	Format string          `json:"format"`
	// HeadCommitSHA is the pipeline's current head: the value a save passes as
	// expectedHeadCommitSha.
	HeadCommitSHA string `json:"headCommitSha"`
	// Version and CommitSHA identify the version returned (the head unless
	// ?version= asked for another).
	Version       int    `json:"version"`
	CommitSHA     string `json:"commitSha"`
	CommitMessage string `json:"commitMessage"`
	Editor        string `json:"editor"`
	CreatedAt     string `json:"createdAt"`
	// Source is "git" when the definition was read from the pipeline's
	// repository (File on Branch at CommitSHA), else "store".
	Source string `json:"source,omitempty"`
	File   string `json:"file,omitempty"`
	Branch string `json:"branch,omitempty"`
	// Text is the definition as text in its format, with ?render=text: the
	// file as committed for a Git-backed pipeline, the text as written for a
	// version saved as text, else the stored spec rendered (YAML in the
	// stored key order).
	Text *string `json:"text,omitempty"`
}

// specError is one problem of a spec, positioned in the spec as sent.
type specError = pipeline.SpecError

type validateJSON struct {
	Valid  bool        `json:"valid"`
	Errors []specError `json:"errors"`
}

type triggerJSON struct {
	RunID      string `json:"runId"`
	PipelineID string `json:"pipelineId"`
	Number     int64  `json:"number"`
	Status     string `json:"status"`
	// Replayed is true when the requestId had been used: no new run.
	Replayed bool `json:"replayed"`
}

// runJSON is a run without its tree (list items).
type runJSON struct {
	RunID      string `json:"runId"`
	PipelineID string `json:"pipelineId"`
	// ProjectID is the project of the run's pipeline.
	ProjectID   string `json:"projectId"`
	Number      int64  `json:"number"`
	Status      string `json:"status"`
	TriggerType string `json:"triggerType"`
	TriggeredBy string `json:"triggeredBy"`
	// TriggerUserID is the user whose token triggered it ("" for cron and
	// webhook runs).
	TriggerUserID string            `json:"triggerUserId"`
	RequestID     string            `json:"requestId"`
	Variables     map[string]string `json:"variables"`
	SpecVersion   int               `json:"specVersion"`
	Commit        string            `json:"commit"`
	// Trigger is the trigger context of an event run (branch, commit,
	// event, pull request…); absent when the run has none.
	Trigger   json.RawMessage `json:"trigger,omitempty"`
	Reason    string          `json:"reason"`
	CreatedAt string          `json:"createdAt"`
	StartedAt *string         `json:"startedAt"`
	EndedAt   *string         `json:"endedAt"`
}

// toRunJSON is r as answers show it; projectID is its pipeline's project.
func toRunJSON(r *store.Run, projectID string) runJSON {
	vars := r.Variables
	if vars == nil {
		vars = map[string]string{}
	}
	return runJSON{
		RunID:         r.ID,
		PipelineID:    r.PipelineID,
		ProjectID:     projectID,
		Number:        r.Number,
		Status:        string(r.Status),
		TriggerType:   r.TriggerType,
		TriggeredBy:   r.TriggeredBy,
		TriggerUserID: r.TriggerUserID,
		RequestID:     r.RequestID,
		Variables:     vars,
		SpecVersion:   r.SpecVersion,
		Commit:        r.Commit,
		Trigger:       triggerContext(r.Trigger),
		Reason:        r.Reason,
		CreatedAt:     wire.Time(r.CreatedAt),
		StartedAt:     wire.TimePtr(r.StartedAt),
		EndedAt:       wire.TimePtr(r.EndedAt),
	}
}

// runDetailJSON is a run with its whole tree and timeline in one object, so
// that a client never joins two maps (seed 001's review comment).
type runDetailJSON struct {
	runJSON
	Stages   []stageJSON    `json:"stages"`
	Timeline []timelineJSON `json:"timeline"`
	// Definition says what the run was planned from; null when it failed
	// before a definition could be read.
	Definition *runDefinitionJSON `json:"definition"`
	// CommitStatuses are what the run reported on its commit at its forge
	// (one per context), with the last error sending each.
	CommitStatuses []commitStatusJSON `json:"commitStatuses"`
}

type commitStatusJSON struct {
	Context     string `json:"context"`
	SHA         string `json:"sha"`
	State       string `json:"state"`
	Description string `json:"description"`
	TargetURL   string `json:"targetUrl"`
	Error       string `json:"error"`
	Attempts    int    `json:"attempts"`
	UpdatedAt   string `json:"updatedAt"`
}

// runDefinitionJSON: a stored version (source store, specVersion), the
// pipeline file read from Git (source git, file at commitSha), or a
// configuration extension's answer (source extension).
type runDefinitionJSON struct {
	Source      string `json:"source"`
	SpecVersion int    `json:"specVersion,omitempty"`
	File        string `json:"file,omitempty"`
	CommitSHA   string `json:"commitSha,omitempty"`
	// Content is the definition's text: always for git and extension
	// definitions; for a stored version with ?include=definition (the text
	// as written, else the stored spec rendered in Format).
	Content string `json:"content,omitempty"`
	// Format is how a stored version's Content is written (json, yaml,
	// yml), with ?include=definition.
	Format string `json:"format,omitempty"`
}

type stageJSON struct {
	Name  string    `json:"name"`
	Index int       `json:"index"`
	Jobs  []jobJSON `json:"jobs"`
}

type jobJSON struct {
	JobRunID       string `json:"jobRunId"`
	Key            string `json:"key"`
	Name           string `json:"name"`
	Status         string `json:"status"`
	Attempt        int    `json:"attempt"`
	AllowedFailure bool   `json:"allowedFailure"`
	Reason         string `json:"reason"`
	AgentID        string `json:"agentId"`
	// Needs are the keys of the jobs this one waits for (the plan's needs).
	Needs     []string          `json:"needs"`
	Outputs   map[string]string `json:"outputs"`
	QueuedAt  *string           `json:"queuedAt"`
	StartedAt *string           `json:"startedAt"`
	EndedAt   *string           `json:"endedAt"`
	Steps     []stepJSON        `json:"steps"`
}

type stepJSON struct {
	StepRunID string  `json:"stepRunId"`
	Index     int     `json:"index"`
	Name      string  `json:"name"`
	Uses      string  `json:"uses,omitempty"`
	Run       string  `json:"run,omitempty"`
	Status    string  `json:"status"`
	ExitCode  *int    `json:"exitCode"`
	Error     string  `json:"error"`
	StartedAt *string `json:"startedAt"`
	EndedAt   *string `json:"endedAt"`
}

type timelineJSON struct {
	Time     string `json:"time"`
	Action   string `json:"action"`
	Operator string `json:"operator"`
	Reason   string `json:"reason"`
	JobRunID string `json:"jobRunId,omitempty"`
}

// toRunDetailJSON groups the tree's jobs into stages by StageIndex, in plan
// order, and puts each job's steps inside it.
func toRunDetailJSON(tree *store.RunTree, projectID string, timeline []*store.TimelineEntry) runDetailJSON {
	out := runDetailJSON{runJSON: toRunJSON(tree.Run, projectID), Stages: []stageJSON{}, Timeline: []timelineJSON{}}
	byIndex := map[int]int{} // StageIndex → position in out.Stages
	for _, j := range tree.Jobs {
		pos, ok := byIndex[j.StageIndex]
		if !ok {
			pos = len(out.Stages)
			byIndex[j.StageIndex] = pos
			out.Stages = append(out.Stages, stageJSON{Name: j.Stage, Index: j.StageIndex, Jobs: []jobJSON{}})
		}
		outputs := j.Outputs
		if outputs == nil {
			outputs = map[string]string{}
		}
		jj := jobJSON{
			JobRunID:       j.ID,
			Key:            j.Key,
			Name:           j.Name,
			Status:         string(j.Status),
			Attempt:        j.Attempt,
			AllowedFailure: j.AllowedFailure,
			Reason:         j.Reason,
			AgentID:        j.AgentID,
			Outputs:        outputs,
			Needs:          []string{},
			QueuedAt:       wire.TimePtr(j.QueuedAt),
			StartedAt:      wire.TimePtr(j.StartedAt),
			EndedAt:        wire.TimePtr(j.EndedAt),
			Steps:          []stepJSON{},
		}
		for _, st := range tree.Steps[j.ID] {
			jj.Steps = append(jj.Steps, stepJSON{
				StepRunID: st.ID,
				Index:     st.Index,
				Name:      st.Name,
				Uses:      st.Uses,
				Run:       st.Run,
				Status:    string(st.Status),
				ExitCode:  st.ExitCode,
				Error:     st.Error,
				StartedAt: wire.TimePtr(st.StartedAt),
				EndedAt:   wire.TimePtr(st.EndedAt),
			})
		}
		out.Stages[pos].Jobs = append(out.Stages[pos].Jobs, jj)
	}
	// Stages in plan order even if a store returned jobs out of stage order.
	sortStages(out.Stages)
	for _, e := range timeline {
		out.Timeline = append(out.Timeline, timelineJSON{
			Time: wire.Time(e.Time), Action: e.Action, Operator: e.Operator, Reason: e.Reason, JobRunID: e.JobRunID,
		})
	}
	return out
}

func sortStages(stages []stageJSON) {
	slices.SortStableFunc(stages, func(a, b stageJSON) int { return cmp.Compare(a.Index, b.Index) })
}

type logLineJSON = wire.LogLine

// triggerContext is a run's stored trigger context, nil when it has none.
func triggerContext(raw json.RawMessage) json.RawMessage {
	switch string(raw) {
	case "", "{}", "null":
		return nil
	}
	return raw
}
