package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/runnel-ci/runnel/internal/store"
)

// CheckLease checks that a job run holds leaseID, running and unexpired,
// with the same conditions as ExtendLease, and changes nothing. As for
// ExtendLease, an unknown job run has lost its lease too.
func (s *Store) CheckLease(ctx context.Context, jobRunID, leaseID string) error {
	op := "check lease of job run " + jobRunID
	if leaseID == "" {
		return fmt.Errorf("%s: no lease given: %w", op, store.ErrLeaseLost)
	}
	var one int
	err := s.queryRow(ctx, s.r, `SELECT 1 FROM job_runs
		WHERE id = ? AND lease_id = ? AND status = 'running' AND lease_expires_at > ?`,
		jobRunID, leaseID, micros(s.nowUTC())).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, store.ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

const artifactCols = `id, run_id, job_run_id, job_key, name, size, sha256, blob_key, created_at, expires_at`

func scanArtifact(sc scanner) (*store.Artifact, error) {
	var (
		a       store.Artifact
		created int64
		expires sql.NullInt64
	)
	if err := sc.Scan(&a.ID, &a.RunID, &a.JobRunID, &a.JobKey, &a.Name, &a.Size, &a.SHA256, &a.BlobKey,
		&created, &expires); err != nil {
		return nil, err
	}
	a.CreatedAt, a.ExpiresAt = fromMicros(created), timePtr(expires)
	return &a, nil
}

// checkText refuses what one of the two databases would store differently
// or not at all: invalid UTF-8 (PostgreSQL refuses it, SQLite keeps it) and
// NUL bytes.
func checkText(op, field, v string) error {
	if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return invalid(op, field+" must be valid UTF-8 without NUL bytes")
	}
	return nil
}

func checkArtifact(op string, a *store.Artifact) error {
	switch {
	case a == nil || a.ID == "":
		return invalid(op, "the artifact id must not be empty")
	case a.RunID == "" || a.JobRunID == "" || a.JobKey == "":
		return invalid(op, "the run id, job run id and job key must not be empty")
	case a.Name == "":
		return invalid(op, "the artifact name must not be empty")
	case a.BlobKey == "":
		return invalid(op, "the blob key must not be empty")
	case a.Size < 0:
		return invalid(op, "the size must not be negative")
	}
	if err := checkText(op, "the artifact name", a.Name); err != nil {
		return err
	}
	return checkText(op, "the job key", a.JobKey)
}

// PutArtifact inserts an artifact, replacing the same job's earlier one.
// The existing row of the name is locked (PostgreSQL) before it is compared,
// so a replacement and a concurrent upload of another job cannot both win;
// two uploads racing for a free name meet on the unique index.
func (s *Store) PutArtifact(ctx context.Context, a *store.Artifact) (string, error) {
	op := "put artifact"
	if err := checkArtifact(op, a); err != nil {
		return "", err
	}
	op = fmt.Sprintf("put artifact %q of run %s", a.Name, a.RunID)
	created := orNow(a.CreatedAt, s.nowUTC())
	var replaced string
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		replaced = ""
		var oldID, oldKey, oldBlob string
		err := s.queryRow(ctx, tx, `SELECT id, job_key, blob_key FROM artifacts WHERE run_id = ? AND name = ?`+s.d.forUpdate,
			a.RunID, a.Name).Scan(&oldID, &oldKey, &oldBlob)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case oldKey != a.JobKey:
			return fmt.Errorf("%s: job %s already uploaded it: %w", op, oldKey, store.ErrConflict)
		default:
			if _, err := s.exec(ctx, tx, `DELETE FROM artifacts WHERE id = ?`, oldID); err != nil {
				return err
			}
			replaced = oldBlob
		}
		_, err = s.exec(ctx, tx, `INSERT INTO artifacts (`+artifactCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.ID, a.RunID, a.JobRunID, a.JobKey, a.Name, a.Size, a.SHA256, a.BlobKey, micros(created), nullMicros(a.ExpiresAt))
		return err
	})
	switch {
	case s.d.isUnique(err):
		return "", fmt.Errorf("%s: another upload of the name (or the id) came first: %w", op, store.ErrConflict)
	case s.d.isForeignKey(err):
		return "", fmt.Errorf("%s: no such run: %w", op, store.ErrNotFound)
	case err != nil && !errors.Is(err, store.ErrConflict):
		return "", fmt.Errorf("%s: %w", op, err)
	}
	return replaced, err
}

// GetArtifact finds a run's artifact by name.
func (s *Store) GetArtifact(ctx context.Context, runID, name string) (*store.Artifact, error) {
	op := fmt.Sprintf("get artifact %q of run %s", name, runID)
	a, err := scanArtifact(s.queryRow(ctx, s.r, `SELECT `+artifactCols+` FROM artifacts WHERE run_id = ? AND name = ?`, runID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return a, nil
}

// GetArtifactByID returns one artifact.
func (s *Store) GetArtifactByID(ctx context.Context, id string) (*store.Artifact, error) {
	op := "get artifact " + id
	a, err := scanArtifact(s.queryRow(ctx, s.r, `SELECT `+artifactCols+` FROM artifacts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return a, nil
}

// ListArtifacts lists a run's artifacts by name.
func (s *Store) ListArtifacts(ctx context.Context, runID string) ([]*store.Artifact, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+artifactCols+` FROM artifacts WHERE run_id = ? ORDER BY name, id`, runID)
	if err != nil {
		return nil, fmt.Errorf("list artifacts of run %s: %w", runID, err)
	}
	list, err := collect(rows, scanArtifact)
	if err != nil {
		return nil, fmt.Errorf("list artifacts of run %s: %w", runID, err)
	}
	return list, nil
}

// ExpiredArtifacts lists artifacts past their expiry, soonest expired first.
func (s *Store) ExpiredArtifacts(ctx context.Context, now time.Time, limit int) ([]*store.Artifact, error) {
	if limit <= 0 {
		return nil, invalid("expired artifacts", "the limit must be positive")
	}
	rows, err := s.query(ctx, s.r, `SELECT `+artifactCols+` FROM artifacts
		WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, id LIMIT ?`, micros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("expired artifacts: %w", err)
	}
	list, err := collect(rows, scanArtifact)
	if err != nil {
		return nil, fmt.Errorf("expired artifacts: %w", err)
	}
	return list, nil
}

// DeleteArtifact removes an artifact's row.
func (s *Store) DeleteArtifact(ctx context.Context, id string) error {
	op := "delete artifact " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM artifacts WHERE id = ?`, id)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

const cacheCols = `id, pipeline_id, cache_key, size, sha256, blob_key, created_at, last_used_at`

func scanCache(sc scanner) (*store.Cache, error) {
	var (
		c             store.Cache
		created, used int64
	)
	if err := sc.Scan(&c.ID, &c.PipelineID, &c.Key, &c.Size, &c.SHA256, &c.BlobKey, &created, &used); err != nil {
		return nil, err
	}
	c.CreatedAt, c.LastUsedAt = fromMicros(created), fromMicros(used)
	return &c, nil
}

// PutCache inserts a cache entry.
func (s *Store) PutCache(ctx context.Context, c *store.Cache) error {
	op := "put cache"
	switch {
	case c == nil || c.ID == "":
		return invalid(op, "the cache id must not be empty")
	case c.PipelineID == "" || c.Key == "" || c.BlobKey == "":
		return invalid(op, "the pipeline id, key and blob key must not be empty")
	case c.Size < 0:
		return invalid(op, "the size must not be negative")
	}
	if err := checkText(op, "the cache key", c.Key); err != nil {
		return err
	}
	op = fmt.Sprintf("put cache %q of pipeline %s", c.Key, c.PipelineID)
	now := s.nowUTC()
	created := orNow(c.CreatedAt, now)
	used := orNow(c.LastUsedAt, created)
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO caches (`+cacheCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.PipelineID, c.Key, c.Size, c.SHA256, c.BlobKey, micros(created), micros(used))
		return err
	})
	switch {
	case s.d.isUnique(err):
		return fmt.Errorf("%s: the key is taken: %w", op, store.ErrConflict)
	case s.d.isForeignKey(err):
		return fmt.Errorf("%s: no such pipeline: %w", op, store.ErrNotFound)
	}
	return wrapOp(op, err)
}

// FindCache looks a cache up by exact key, then by prefixes. A prefix is
// compared with substr over its length in characters (both databases count
// characters in text), not with LIKE: keys may hold % and _, and collations
// cannot change what matches.
func (s *Store) FindCache(ctx context.Context, pipelineID, exact string, prefixes []string) (*store.Cache, error) {
	op := "find cache of pipeline " + pipelineID
	if exact != "" {
		c, err := scanCache(s.queryRow(ctx, s.r, `SELECT `+cacheCols+` FROM caches WHERE pipeline_id = ? AND cache_key = ?`,
			pipelineID, exact))
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	for _, p := range prefixes {
		if !utf8.ValidString(p) || strings.ContainsRune(p, 0) {
			continue // no stored key starts with it
		}
		c, err := scanCache(s.queryRow(ctx, s.r, `SELECT `+cacheCols+` FROM caches
			WHERE pipeline_id = ? AND substr(cache_key, 1, ?) = ? ORDER BY created_at DESC, id DESC LIMIT 1`,
			pipelineID, utf8.RuneCountInString(p), p))
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil, notFound(op)
}

// TouchCache records a use of a cache.
func (s *Store) TouchCache(ctx context.Context, id string, at time.Time) error {
	op := "touch cache " + id
	t := micros(at)
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `UPDATE caches SET last_used_at = CASE WHEN last_used_at < ? THEN ? ELSE last_used_at END
			WHERE id = ?`, t, t, id)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// StaleCaches lists caches not used since olderThan, least recently used
// first.
func (s *Store) StaleCaches(ctx context.Context, olderThan time.Time, limit int) ([]*store.Cache, error) {
	if limit <= 0 {
		return nil, invalid("stale caches", "the limit must be positive")
	}
	rows, err := s.query(ctx, s.r, `SELECT `+cacheCols+` FROM caches WHERE last_used_at < ?
		ORDER BY last_used_at, id LIMIT ?`, micros(olderThan), limit)
	if err != nil {
		return nil, fmt.Errorf("stale caches: %w", err)
	}
	list, err := collect(rows, scanCache)
	if err != nil {
		return nil, fmt.Errorf("stale caches: %w", err)
	}
	return list, nil
}

// DeleteCache removes a cache's row.
func (s *Store) DeleteCache(ctx context.Context, id string) error {
	op := "delete cache " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM caches WHERE id = ?`, id)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// ListCaches lists a pipeline's caches by key.
func (s *Store) ListCaches(ctx context.Context, pipelineID string) ([]*store.Cache, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+cacheCols+` FROM caches WHERE pipeline_id = ? ORDER BY cache_key, id`, pipelineID)
	if err != nil {
		return nil, fmt.Errorf("list caches of pipeline %s: %w", pipelineID, err)
	}
	list, err := collect(rows, scanCache)
	if err != nil {
		return nil, fmt.Errorf("list caches of pipeline %s: %w", pipelineID, err)
	}
	return list, nil
}
