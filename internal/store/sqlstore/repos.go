package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/runnel-ci/runnel/internal/store"
)

// Pipelines' forge repositories (pipeline_repos) and the statuses runs
// reported on their commits (commit_statuses).

const repoBindingCols = `pipeline_id, provider, kind, api_base, full_name, hook_id, hook_state, hook_error,
	hook_checked_at, status_context, job_statuses, created_at, updated_at`

func scanRepoBinding(sc scanner) (*store.RepoBinding, error) {
	var (
		b                store.RepoBinding
		checked          sql.NullInt64
		created, updated int64
	)
	if err := sc.Scan(&b.PipelineID, &b.Provider, &b.Kind, &b.APIBase, &b.FullName, &b.HookID, &b.HookState, &b.HookError,
		&checked, &b.StatusContext, &b.JobStatuses, &created, &updated); err != nil {
		return nil, err
	}
	b.HookCheckedAt = timePtr(checked)
	b.CreatedAt, b.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &b, nil
}

// PutRepoBinding stores or replaces a pipeline's binding.
func (s *Store) PutRepoBinding(ctx context.Context, b *store.RepoBinding) error {
	op := "put repository of pipeline"
	if b == nil || b.PipelineID == "" || b.Kind == "" || b.FullName == "" || b.APIBase == "" {
		return invalid(op, "the pipeline id, kind, API base and full name must not be empty")
	}
	op += " " + b.PipelineID
	now := s.nowUTC()
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var one int
		if err := s.queryRow(ctx, tx, `SELECT 1 FROM pipelines WHERE id = ?`, b.PipelineID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return notFound(op)
		} else if err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO pipeline_repos (`+repoBindingCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (pipeline_id) DO UPDATE SET provider = excluded.provider, kind = excluded.kind,
			api_base = excluded.api_base, full_name = excluded.full_name, hook_id = excluded.hook_id,
			hook_state = excluded.hook_state, hook_error = excluded.hook_error, hook_checked_at = excluded.hook_checked_at,
			status_context = excluded.status_context, job_statuses = excluded.job_statuses, updated_at = excluded.updated_at`,
			b.PipelineID, b.Provider, b.Kind, b.APIBase, b.FullName, b.HookID, b.HookState, b.HookError,
			nullMicros(b.HookCheckedAt), b.StatusContext, b.JobStatuses, micros(orNow(b.CreatedAt, now)), micros(orNow(b.UpdatedAt, now)))
		return err
	})
	return wrapOp(op, err)
}

// GetRepoBinding returns a pipeline's binding.
func (s *Store) GetRepoBinding(ctx context.Context, pipelineID string) (*store.RepoBinding, error) {
	op := "get repository of pipeline " + pipelineID
	b, err := scanRepoBinding(s.queryRow(ctx, s.r, `SELECT `+repoBindingCols+` FROM pipeline_repos WHERE pipeline_id = ?`, pipelineID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return b, nil
}

// ListRepoBindings lists bindings by kind and full name.
func (s *Store) ListRepoBindings(ctx context.Context, kind, fullName string) ([]*store.RepoBinding, error) {
	q, args := `SELECT `+repoBindingCols+` FROM pipeline_repos WHERE 1 = 1`, []any{}
	if kind != "" {
		q += ` AND kind = ?`
		args = append(args, kind)
	}
	if fullName != "" {
		q += ` AND full_name = ?`
		args = append(args, fullName)
	}
	rows, err := s.query(ctx, s.r, q+` ORDER BY pipeline_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list pipeline repositories: %w", err)
	}
	list, err := collect(rows, scanRepoBinding)
	if err != nil {
		return nil, fmt.Errorf("list pipeline repositories: %w", err)
	}
	return list, nil
}

// DeleteRepoBinding removes a pipeline's binding.
func (s *Store) DeleteRepoBinding(ctx context.Context, pipelineID string) error {
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `DELETE FROM pipeline_repos WHERE pipeline_id = ?`, pipelineID)
		return err
	})
	return wrapOp("delete repository of pipeline "+pipelineID, err)
}

const commitStatusCols = `run_id, context, sha, state, description, target_url, error, attempts, updated_at`

func scanCommitStatus(sc scanner) (*store.CommitStatusRecord, error) {
	var (
		c       store.CommitStatusRecord
		updated int64
	)
	if err := sc.Scan(&c.RunID, &c.Context, &c.SHA, &c.State, &c.Description, &c.TargetURL, &c.Error, &c.Attempts, &updated); err != nil {
		return nil, err
	}
	c.UpdatedAt = fromMicros(updated)
	return &c, nil
}

// PutCommitStatus stores or replaces a run's status for its context.
func (s *Store) PutCommitStatus(ctx context.Context, c *store.CommitStatusRecord) error {
	op := "put commit status"
	if c == nil || c.RunID == "" || c.Context == "" {
		return invalid(op, "the run id and the context must not be empty")
	}
	op += " of run " + c.RunID
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO commit_statuses (`+commitStatusCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (run_id, context) DO UPDATE SET sha = excluded.sha, state = excluded.state,
			description = excluded.description, target_url = excluded.target_url, error = excluded.error,
			attempts = excluded.attempts, updated_at = excluded.updated_at`,
			c.RunID, c.Context, c.SHA, c.State, c.Description, c.TargetURL, c.Error, c.Attempts, micros(orNow(c.UpdatedAt, s.nowUTC())))
		if s.d.isForeignKey(err) {
			return notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// ListCommitStatuses lists a run's statuses by context.
func (s *Store) ListCommitStatuses(ctx context.Context, runID string) ([]*store.CommitStatusRecord, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+commitStatusCols+` FROM commit_statuses WHERE run_id = ? ORDER BY context`, runID)
	if err != nil {
		return nil, fmt.Errorf("list commit statuses of run %s: %w", runID, err)
	}
	list, err := collect(rows, scanCommitStatus)
	if err != nil {
		return nil, fmt.Errorf("list commit statuses of run %s: %w", runID, err)
	}
	return list, nil
}
