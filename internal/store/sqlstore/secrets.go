package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/runnel-ci/runnel/internal/store"
)

const secretCols = `id, name, scope, scope_id, ciphertext, key_id, created_by, created_at, updated_at`

func scanSecret(sc scanner) (*store.Secret, error) {
	var (
		x                store.Secret
		created, updated int64
	)
	if err := sc.Scan(&x.ID, &x.Name, &x.Scope, &x.ScopeID, &x.Ciphertext, &x.KeyID, &x.CreatedBy, &created, &updated); err != nil {
		return nil, err
	}
	x.CreatedAt, x.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &x, nil
}

func checkSecret(op string, x *store.Secret) error {
	switch {
	case x == nil || x.ID == "":
		return invalid(op, "the secret id must not be empty")
	case x.Name == "":
		return invalid(op, "the secret name must not be empty")
	case x.Scope != "project" && x.Scope != "pipeline":
		return invalid(op, fmt.Sprintf("the scope must be project or pipeline, got %q", x.Scope))
	case x.ScopeID == "":
		return invalid(op, "the scope id must not be empty")
	case len(x.Ciphertext) == 0 || x.KeyID == "":
		return invalid(op, "the ciphertext and its key id must not be empty")
	}
	return nil
}

// CreateSecret stores a new secret.
func (s *Store) CreateSecret(ctx context.Context, x *store.Secret) error {
	op := "create secret"
	if err := checkSecret(op, x); err != nil {
		return err
	}
	op += " " + x.ID
	now := s.nowUTC()
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO secrets (`+secretCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			x.ID, x.Name, x.Scope, x.ScopeID, x.Ciphertext, x.KeyID, x.CreatedBy,
			micros(orNow(x.CreatedAt, now)), micros(orNow(x.UpdatedAt, now)))
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: the %s %s already has a secret named %s (or the id exists): %w", op, x.Scope, x.ScopeID, x.Name, store.ErrConflict)
	}
	return wrapOp(op, err)
}

// GetSecret returns one secret.
func (s *Store) GetSecret(ctx context.Context, id string) (*store.Secret, error) {
	x, err := scanSecret(s.queryRow(ctx, s.r, `SELECT `+secretCols+` FROM secrets WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("get secret " + id)
	}
	if err != nil {
		return nil, fmt.Errorf("get secret %s: %w", id, err)
	}
	return x, nil
}

// ListSecrets lists secrets in scope order.
func (s *Store) ListSecrets(ctx context.Context, f store.SecretFilter) ([]*store.Secret, error) {
	q := `SELECT ` + secretCols + ` FROM secrets WHERE 1 = 1`
	var args []any
	if f.Scope != "" {
		q += ` AND scope = ?`
		args = append(args, f.Scope)
	}
	if f.ScopeID != "" {
		q += ` AND scope_id = ?`
		args = append(args, f.ScopeID)
	}
	rows, err := s.query(ctx, s.r, q+` ORDER BY scope, scope_id, name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	list, err := collect(rows, scanSecret)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	return list, nil
}

// UpdateSecret replaces a secret's name and value.
func (s *Store) UpdateSecret(ctx context.Context, x *store.Secret) error {
	op := "update secret"
	if err := checkSecret(op, x); err != nil {
		return err
	}
	op += " " + x.ID
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `UPDATE secrets SET name = ?, ciphertext = ?, key_id = ?, updated_at = ? WHERE id = ?`,
			x.Name, x.Ciphertext, x.KeyID, micros(orNow(x.UpdatedAt, s.nowUTC())), x.ID)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: the %s %s already has a secret named %s: %w", op, x.Scope, x.ScopeID, x.Name, store.ErrConflict)
	}
	return wrapOp(op, err)
}

// DeleteSecret removes a secret.
func (s *Store) DeleteSecret(ctx context.Context, id string) error {
	op := "delete secret " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM secrets WHERE id = ?`, id)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// SecretsForPipeline lists the secrets a run of the pipeline may use.
func (s *Store) SecretsForPipeline(ctx context.Context, projectID, pipelineID string) ([]*store.Secret, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+secretCols+` FROM secrets
		WHERE (scope = 'project' AND scope_id = ?) OR (scope = 'pipeline' AND scope_id = ?)
		ORDER BY name, scope DESC`, projectID, pipelineID)
	if err != nil {
		return nil, fmt.Errorf("secrets of pipeline %s: %w", pipelineID, err)
	}
	list, err := collect(rows, scanSecret)
	if err != nil {
		return nil, fmt.Errorf("secrets of pipeline %s: %w", pipelineID, err)
	}
	return list, nil
}
