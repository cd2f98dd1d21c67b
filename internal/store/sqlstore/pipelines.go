package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/runnel-ci/runnel/internal/store"
)

// activeStatuses are the run statuses that are not final (the order matters
// to nobody; it is the IN list of ActiveRuns and DeletePipeline).
const activeStatuses = `('pending', 'running', 'paused')`

// CreatePipeline stores p. Head and status fields are ignored: a new
// pipeline has no spec version and no run.
func (s *Store) CreatePipeline(ctx context.Context, p *store.Pipeline) error {
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		return s.insertPipeline(ctx, tx, p)
	})
	if err != nil && p != nil {
		return wrapOp("create pipeline "+p.ID, err)
	}
	return err
}

// insertPipeline inserts p's row in tx (CreatePipeline's work, shared with
// CreateImageRepository). Its domain errors are CreatePipeline's, complete
// with their "create pipeline <id>" prefix: ErrInvalid for an empty id or
// name or unencodable metadata, ErrConflict for a taken id or name. Other
// errors come back bare (a retryable one must stay recognisable), for the
// caller to wrap after the transaction.
func (s *Store) insertPipeline(ctx context.Context, tx *sql.Tx, p *store.Pipeline) error {
	op := "create pipeline"
	if p == nil || p.ID == "" || p.Name == "" {
		return invalid(op, "the id and the name must not be empty")
	}
	op += " " + p.ID
	meta, err := encodeJSON(op, p.Metadata)
	if err != nil {
		return err
	}
	sinks, err := encodeList(op, p.EventSinks)
	if err != nil {
		return err
	}
	now := s.nowUTC()
	_, err = s.exec(ctx, tx, `INSERT INTO pipelines (id, project_id, name, name_lower, description,
		repo_url, default_branch, pipeline_file_path, save_mode, pr_target_branch, metadata,
		created_by, created_at, updated_at, trigger_cron_expression, trigger_timezone, credential_id, event_sinks, creator_id,
		deactivated, webhook_disabled, fork_pull_requests)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.ProjectID, p.Name, strings.ToLower(p.Name), p.Description, p.RepoURL, p.DefaultBranch,
		p.PipelineFilePath, p.SaveMode, p.PRTargetBranch, meta, p.CreatedBy,
		micros(orNow(p.CreatedAt, now)), micros(orNow(p.UpdatedAt, now)),
		p.TriggerCronExpression, p.TriggerTimezone, p.CredentialID, sinks, p.CreatorID,
		p.Deactivated, p.WebhookDisabled, p.ForkPullRequests)
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: a pipeline with this id, or named %q in project %q, already exists: %w",
			op, p.Name, p.ProjectID, store.ErrConflict)
	}
	return err
}

// GetPipeline returns a pipeline by id.
func (s *Store) GetPipeline(ctx context.Context, id string) (*store.Pipeline, error) {
	p, err := scanPipeline(s.queryRow(ctx, s.r, `SELECT `+pipelineCols+` FROM pipelines WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("get pipeline " + id)
	}
	if err != nil {
		return nil, fmt.Errorf("get pipeline %s: %w", id, err)
	}
	return p, nil
}

// ListPipelines returns one page of the matching pipelines, ordered by name,
// and how many match in all.
func (s *Store) ListPipelines(ctx context.Context, f store.PipelineFilter) ([]*store.Pipeline, int, error) {
	const op = "list pipelines"
	if f.Offset < 0 || f.Limit < 0 {
		return nil, 0, invalid(op, "offset and limit must not be negative")
	}
	var (
		where []string
		args  []any
	)
	if f.ProjectID != "" {
		where = append(where, "project_id = ?")
		args = append(args, f.ProjectID)
	}
	if f.CreatorID != "" {
		where = append(where, "creator_id = ?")
		args = append(args, f.CreatorID)
	}
	if f.Within != nil {
		if len(f.Within) == 0 {
			return []*store.Pipeline{}, 0, nil
		}
		where = append(where, "project_id IN ("+strings.Repeat("?, ", len(f.Within)-1)+"?)")
		for _, id := range f.Within {
			args = append(args, id)
		}
	}
	if f.Search != "" {
		where = append(where, `name_lower LIKE ? ESCAPE '\'`)
		args = append(args, "%"+escapeLike(strings.ToLower(f.Search))+"%")
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var total int
	if err := s.queryRow(ctx, s.r, `SELECT COUNT(*) FROM pipelines`+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	page, pargs := s.d.page(f.Limit, f.Offset)
	rows, err := s.query(ctx, s.r, `SELECT `+pipelineCols+` FROM pipelines`+cond+
		` ORDER BY name_lower, name, id`+page, append(args, pargs...)...)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	ps, err := collect(rows, scanPipeline)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	return ps, total, nil
}

// escapeLike makes s match literally in a LIKE pattern with ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// page returns the LIMIT/OFFSET clause; limit 0 means no limit.
func (d dialect) page(limit, offset int) (string, []any) {
	switch {
	case limit > 0 && offset > 0:
		return " LIMIT ? OFFSET ?", []any{limit, offset}
	case limit > 0:
		return " LIMIT ?", []any{limit}
	case offset > 0 && d.postgres:
		return " OFFSET ?", []any{offset}
	case offset > 0:
		// SQLite accepts OFFSET only after a LIMIT; -1 is none.
		return " LIMIT -1 OFFSET ?", []any{offset}
	}
	return "", nil
}

// UpdatePipeline replaces the editable fields: name, description, repository,
// branches, file path, save mode, metadata, the cron fields and UpdatedAt (now when zero). The
// id, project, creator, creation time, head and status are not editable here:
// moving a pipeline to another project is not an edit, and the head and status
// belong to SaveSpec and the runs.
func (s *Store) UpdatePipeline(ctx context.Context, p *store.Pipeline) error {
	op := "update pipeline"
	if p == nil || p.ID == "" || p.Name == "" {
		return invalid(op, "the id and the name must not be empty")
	}
	op += " " + p.ID
	meta, err := encodeJSON(op, p.Metadata)
	if err != nil {
		return err
	}
	sinks, err := encodeList(op, p.EventSinks)
	if err != nil {
		return err
	}
	var found bool
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var err error
		found, err = s.execOne(ctx, tx, `UPDATE pipelines SET name = ?, name_lower = ?, description = ?,
			repo_url = ?, default_branch = ?, pipeline_file_path = ?, save_mode = ?, pr_target_branch = ?,
			metadata = ?, updated_at = ?, trigger_cron_expression = ?, trigger_timezone = ?,
			credential_id = ?, event_sinks = ?, deactivated = ?, webhook_disabled = ?, fork_pull_requests = ? WHERE id = ?`,
			p.Name, strings.ToLower(p.Name), p.Description, p.RepoURL, p.DefaultBranch, p.PipelineFilePath,
			p.SaveMode, p.PRTargetBranch, meta, micros(orNow(p.UpdatedAt, s.nowUTC())),
			p.TriggerCronExpression, p.TriggerTimezone, p.CredentialID, sinks, p.Deactivated, p.WebhookDisabled,
			p.ForkPullRequests, p.ID)
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: another pipeline of the project is named %q: %w", op, p.Name, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if !found {
		return notFound(op)
	}
	return nil
}

// DeletePipeline removes a pipeline; the schema's ON DELETE CASCADE removes
// its spec versions, runs, job runs, step runs, logs and timeline.
func (s *Store) DeletePipeline(ctx context.Context, id string) error {
	op := "delete pipeline " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		// Lock the runs before the pipeline row: UpdateRunTx locks a run and
		// then the pipeline (SetPipelineStatus), so taking them in the same
		// order here avoids a deadlock with it.
		if s.d.postgres {
			if err := s.lockRows(ctx, tx, `SELECT id FROM runs WHERE pipeline_id = ? ORDER BY id`+s.d.forUpdate, id); err != nil {
				return err
			}
		}
		var one int
		err := s.queryRow(ctx, tx, `SELECT 1 FROM pipelines WHERE id = ?`+s.d.forUpdate, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound(op)
		}
		if err != nil {
			return err
		}
		var active string
		err = s.queryRow(ctx, tx, `SELECT id FROM runs WHERE pipeline_id = ? AND status IN `+activeStatuses+
			` ORDER BY number LIMIT 1`, id).Scan(&active)
		if err == nil {
			return fmt.Errorf("%s: run %s is still active; stop it first: %w", op, active, store.ErrConflict)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// The pipeline's own secrets go with it (project secrets stay).
		if _, err := s.exec(ctx, tx, `DELETE FROM secrets WHERE scope = 'pipeline' AND scope_id = ?`, id); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `DELETE FROM pipelines WHERE id = ?`, id)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return err
}

// SaveSpec stores a new spec version: the pipeline row is locked, the
// request id checked for a replay, the expected head compared, then the
// version head+1 inserted and the head moved, all in one transaction. An
// empty CommitSHA is filled with the hex SHA-256 of Spec; a zero CreatedAt
// with now. sv itself is not modified.
func (s *Store) SaveSpec(ctx context.Context, sv *store.SpecVersion, expectedHead string) (*store.SpecVersion, bool, error) {
	op := "save spec"
	if sv == nil || sv.PipelineID == "" {
		return nil, false, invalid(op, "the pipeline id must not be empty")
	}
	op += " of pipeline " + sv.PipelineID
	if len(sv.Spec) == 0 {
		return nil, false, invalid(op, "the spec is empty")
	}
	spec, err := rawJSON(op, "the spec", sv.Spec)
	if err != nil {
		return nil, false, err
	}
	saved := *sv
	saved.Spec = append([]byte(nil), sv.Spec...)
	if saved.CommitSHA == "" {
		sum := sha256.Sum256(sv.Spec)
		saved.CommitSHA = hex.EncodeToString(sum[:])
	}
	saved.CreatedAt = orNow(sv.CreatedAt, s.nowUTC())

	// A replay needs no lock: answer it from the read pool.
	if sv.RequestID != "" {
		prev, err := s.specByRequest(ctx, s.r, sv.PipelineID, sv.RequestID)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", op, err)
		}
		if prev != nil {
			return prev, true, nil
		}
	}
	var replay *store.SpecVersion
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		replay = nil
		var (
			version int
			head    string
		)
		err := s.queryRow(ctx, tx, `SELECT head_version, head_commit_sha FROM pipelines WHERE id = ?`+s.d.forUpdate,
			sv.PipelineID).Scan(&version, &head)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound(op)
		}
		if err != nil {
			return err
		}
		// With the pipeline locked, a concurrent save of the same request has
		// either committed (and is found here) or not started.
		if sv.RequestID != "" {
			if replay, err = s.specByRequest(ctx, tx, sv.PipelineID, sv.RequestID); err != nil || replay != nil {
				return err
			}
		}
		if expectedHead != "" && expectedHead != head {
			return fmt.Errorf("%s: %w", op, &store.HeadConflictError{Current: head})
		}
		saved.Version = version + 1
		if _, err := s.exec(ctx, tx, `INSERT INTO spec_versions (`+specCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			saved.PipelineID, saved.Version, saved.CommitSHA, spec, saved.Format, saved.CommitMessage,
			saved.Editor, saved.RequestID, micros(saved.CreatedAt), saved.Text); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `UPDATE pipelines SET head_version = ?, head_commit_sha = ? WHERE id = ?`,
			saved.Version, saved.CommitSHA, saved.PipelineID)
		return err
	})
	switch {
	case err == nil && replay != nil:
		return replay, true, nil
	case err == nil:
		return &saved, false, nil
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict):
		return nil, false, err
	default:
		return nil, false, fmt.Errorf("%s: %w", op, err)
	}
}

// SpecByRequest returns the version a requestId saved.
func (s *Store) SpecByRequest(ctx context.Context, pipelineID, requestID string) (*store.SpecVersion, error) {
	sv, err := s.specByRequest(ctx, s.r, pipelineID, requestID)
	if err != nil {
		return nil, fmt.Errorf("spec of pipeline %s by request %q: %w", pipelineID, requestID, err)
	}
	if sv == nil {
		return nil, notFound(fmt.Sprintf("spec of pipeline %s by request %q", pipelineID, requestID))
	}
	return sv, nil
}

func (s *Store) specByRequest(ctx context.Context, q querier, pipelineID, requestID string) (*store.SpecVersion, error) {
	sv, err := scanSpec(s.queryRow(ctx, q, `SELECT `+specCols+` FROM spec_versions
		WHERE pipeline_id = ? AND request_id = ? AND request_id <> ''`, pipelineID, requestID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return sv, err
}

// GetSpec returns a spec version; version 0 is the head.
func (s *Store) GetSpec(ctx context.Context, pipelineID string, version int) (*store.SpecVersion, error) {
	op := fmt.Sprintf("get spec %d of pipeline %s", version, pipelineID)
	if version < 0 {
		return nil, invalid(op, "the version must not be negative")
	}
	var row *sql.Row
	if version == 0 {
		op = "get head spec of pipeline " + pipelineID
		row = s.queryRow(ctx, s.r, `SELECT `+specCols+` FROM spec_versions WHERE pipeline_id = ?
			ORDER BY version DESC LIMIT 1`, pipelineID)
	} else {
		row = s.queryRow(ctx, s.r, `SELECT `+specCols+` FROM spec_versions WHERE pipeline_id = ? AND version = ?`,
			pipelineID, version)
	}
	sv, err := scanSpec(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return sv, nil
}
