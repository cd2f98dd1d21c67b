package sqlstore

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// Times are stored as Unix microseconds: one integer type that both
// databases compare and index the same way, with no time zone to get wrong.

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func timePtr(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// orNow returns t, or now when t is zero (a caller that left a timestamp unset).
func orNow(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t.UTC().Truncate(time.Microsecond)
}

// encodeJSON stores a map as JSON text. A nil map is stored as "null" and read
// back as nil, an empty one as "{}", so values round-trip exactly.
func encodeJSON(op string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", invalid(op, fmt.Sprintf("cannot encode as JSON: %v", err))
	}
	return string(b), nil
}

// encodeList stores a list of strings as a JSON array, nil as [].
func encodeList(op string, l []string) (string, error) {
	if len(l) == 0 {
		return "[]", nil
	}
	return encodeJSON(op, l)
}

func decodeJSON(s string, v any) error {
	if s == "" {
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}

// rawJSON checks a raw JSON value before it is stored; nil or empty is kept
// as empty text and read back as nil.
func rawJSON(op, field string, m json.RawMessage) (string, error) {
	if len(m) == 0 {
		return "", nil
	}
	if !json.Valid(m) {
		return "", invalid(op, field+" is not valid JSON")
	}
	return string(m), nil
}

func fromRawJSON(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

type scanner interface{ Scan(dest ...any) error }

const pipelineCols = `id, project_id, name, description, repo_url, default_branch, pipeline_file_path,
	save_mode, pr_target_branch, metadata, created_by, created_at, updated_at, head_version,
	head_commit_sha, last_execution_id, last_run_state, last_started, last_ended,
	trigger_cron_expression, trigger_timezone, credential_id, event_sinks, creator_id,
	deactivated, webhook_disabled, fork_pull_requests`

func scanPipeline(sc scanner) (*store.Pipeline, error) {
	var (
		p                    store.Pipeline
		meta, sinks          string
		created, updated     int64
		lastStart, lastEnded sql.NullInt64
	)
	err := sc.Scan(&p.ID, &p.ProjectID, &p.Name, &p.Description, &p.RepoURL, &p.DefaultBranch,
		&p.PipelineFilePath, &p.SaveMode, &p.PRTargetBranch, &meta, &p.CreatedBy, &created, &updated,
		&p.HeadVersion, &p.HeadCommitSHA, &p.LastExecutionID, &p.LastRunState, &lastStart, &lastEnded,
		&p.TriggerCronExpression, &p.TriggerTimezone, &p.CredentialID, &sinks, &p.CreatorID,
		&p.Deactivated, &p.WebhookDisabled, &p.ForkPullRequests)
	if err != nil {
		return nil, err
	}
	if err := decodeJSON(sinks, &p.EventSinks); err != nil {
		return nil, fmt.Errorf("pipeline %s: event sinks: %w", p.ID, err)
	}
	if len(p.EventSinks) == 0 {
		p.EventSinks = nil
	}
	if err := decodeJSON(meta, &p.Metadata); err != nil {
		return nil, fmt.Errorf("pipeline %s: metadata: %w", p.ID, err)
	}
	p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updated)
	p.LastStarted, p.LastEnded = timePtr(lastStart), timePtr(lastEnded)
	return &p, nil
}

const specCols = `pipeline_id, version, commit_sha, spec, format, commit_message, editor, request_id, created_at, source_text`

func scanSpec(sc scanner) (*store.SpecVersion, error) {
	var (
		sv      store.SpecVersion
		spec    string
		created int64
	)
	if err := sc.Scan(&sv.PipelineID, &sv.Version, &sv.CommitSHA, &spec, &sv.Format, &sv.CommitMessage,
		&sv.Editor, &sv.RequestID, &created, &sv.Text); err != nil {
		return nil, err
	}
	sv.Spec = fromRawJSON(spec)
	sv.CreatedAt = fromMicros(created)
	return &sv, nil
}

const runCols = `id, pipeline_id, number, status, trigger_type, triggered_by, request_id, variables,
	spec_version, commit_sha, reason, created_at, started_at, ended_at, trigger_context, trigger_user_id`

func scanRun(sc scanner) (*store.Run, error) {
	var (
		r              store.Run
		vars, trig     string
		created        int64
		started, ended sql.NullInt64
	)
	if err := sc.Scan(&r.ID, &r.PipelineID, &r.Number, &r.Status, &r.TriggerType, &r.TriggeredBy,
		&r.RequestID, &vars, &r.SpecVersion, &r.Commit, &r.Reason, &created, &started, &ended, &trig, &r.TriggerUserID); err != nil {
		return nil, err
	}
	if err := decodeJSON(vars, &r.Variables); err != nil {
		return nil, fmt.Errorf("run %s: variables: %w", r.ID, err)
	}
	if trig != "" && trig != "{}" {
		r.Trigger = json.RawMessage(trig)
	}
	r.CreatedAt = fromMicros(created)
	r.StartedAt, r.EndedAt = timePtr(started), timePtr(ended)
	return &r, nil
}

const jobCols = `id, run_id, job_key, name, stage, stage_index, idx, status, attempt, allowed_failure,
	outputs, reason, request, runs_on, agent_id, lease_id, lease_expires_at, retry_at, queued_at,
	started_at, ended_at, acked`

func scanJob(sc scanner) (*store.JobRun, error) {
	var (
		j                                    store.JobRun
		outputs, request, runsOn             string
		lease, retry, queued, started, ended sql.NullInt64
	)
	if err := sc.Scan(&j.ID, &j.RunID, &j.Key, &j.Name, &j.Stage, &j.StageIndex, &j.Index, &j.Status,
		&j.Attempt, &j.AllowedFailure, &outputs, &j.Reason, &request, &runsOn, &j.AgentID, &j.LeaseID,
		&lease, &retry, &queued, &started, &ended, &j.Acked); err != nil {
		return nil, err
	}
	if err := decodeJSON(outputs, &j.Outputs); err != nil {
		return nil, fmt.Errorf("job run %s: outputs: %w", j.ID, err)
	}
	j.Request, j.RunsOn = fromRawJSON(request), fromRawJSON(runsOn)
	j.LeaseExpiresAt, j.RetryAt, j.QueuedAt = timePtr(lease), timePtr(retry), timePtr(queued)
	j.StartedAt, j.EndedAt = timePtr(started), timePtr(ended)
	return &j, nil
}

const stepCols = `id, job_run_id, idx, name, uses, run_command, status, exit_code, error, started_at,
	ended_at, log_bytes`

func scanStep(sc scanner) (*store.StepRun, error) {
	var (
		s              store.StepRun
		exit           sql.NullInt64
		started, ended sql.NullInt64
	)
	if err := sc.Scan(&s.ID, &s.JobRunID, &s.Index, &s.Name, &s.Uses, &s.Run, &s.Status, &exit, &s.Error,
		&started, &ended, &s.LogBytes); err != nil {
		return nil, err
	}
	if exit.Valid {
		c := int(exit.Int64)
		s.ExitCode = &c
	}
	s.StartedAt, s.EndedAt = timePtr(started), timePtr(ended)
	return &s, nil
}

func nullInt(p *int) any {
	if p == nil {
		return nil
	}
	return int64(*p)
}

const timelineCols = `id, run_id, ts, action, operator, reason, job_run_id`

func scanTimeline(sc scanner) (*store.TimelineEntry, error) {
	var (
		e  store.TimelineEntry
		ts int64
	)
	if err := sc.Scan(&e.ID, &e.RunID, &ts, &e.Action, &e.Operator, &e.Reason, &e.JobRunID); err != nil {
		return nil, err
	}
	e.Time = fromMicros(ts)
	return &e, nil
}

const tokenCols = `id, name, subject, role, user_id, scopes, hash, created_at, last_used_at, expires_at`

func scanToken(sc scanner) (*store.APIToken, error) {
	var (
		t             store.APIToken
		userID        sql.NullString
		scopes        string
		created       int64
		used, expires sql.NullInt64
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Subject, &t.Role, &userID, &scopes, &t.Hash, &created, &used,
		&expires); err != nil {
		return nil, err
	}
	t.UserID = userID.String
	if scopes != "" {
		t.Scopes = strings.Split(scopes, ",")
	}
	t.CreatedAt = fromMicros(created)
	t.LastUsedAt, t.ExpiresAt = timePtr(used), timePtr(expires)
	return &t, nil
}

func scanString(sc scanner) (string, error) {
	var v string
	err := sc.Scan(&v)
	return v, err
}

// collect scans every row with scan.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	out := []T{} // empty, not nil: lists encode as [] in the API
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
