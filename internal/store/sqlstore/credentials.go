package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/runnel-ci/runnel/internal/store"
)

const credentialCols = `id, name, kind, host, username, project_id, ciphertext, key_id, created_by, created_at, updated_at, creator_id,
	owner_id, provider, account_id, login_name, avatar_url, refresh_ciphertext, refresh_key_id, expires_at`

func scanCredential(sc scanner) (*store.Credential, error) {
	var (
		c                store.Credential
		created, updated int64
		expires          sql.NullInt64
	)
	if err := sc.Scan(&c.ID, &c.Name, &c.Kind, &c.Host, &c.Username, &c.ProjectID, &c.Ciphertext, &c.KeyID,
		&c.CreatedBy, &created, &updated, &c.CreatorID, &c.OwnerID, &c.Provider, &c.AccountID, &c.LoginName, &c.AvatarURL,
		&c.RefreshCiphertext, &c.RefreshKeyID, &expires); err != nil {
		return nil, err
	}
	c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
	c.ExpiresAt = timePtr(expires)
	if len(c.RefreshCiphertext) == 0 {
		c.RefreshCiphertext = nil
	}
	return &c, nil
}

func checkCredential(op string, c *store.Credential) error {
	switch {
	case c == nil || c.ID == "":
		return invalid(op, "the credential id must not be empty")
	case c.Name == "" || c.Kind == "":
		return invalid(op, "the name and the kind must not be empty")
	case len(c.Ciphertext) == 0 || c.KeyID == "":
		return invalid(op, "the ciphertext and its key id must not be empty")
	}
	return nil
}

// CreateCredential stores a new credential.
func (s *Store) CreateCredential(ctx context.Context, c *store.Credential) error {
	op := "create credential"
	if err := checkCredential(op, c); err != nil {
		return err
	}
	op += " " + c.ID
	now := s.nowUTC()
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO credentials (`+credentialCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.Name, c.Kind, c.Host, c.Username, c.ProjectID, c.Ciphertext, c.KeyID, c.CreatedBy,
			micros(orNow(c.CreatedAt, now)), micros(orNow(c.UpdatedAt, now)), c.CreatorID,
			c.OwnerID, c.Provider, c.AccountID, c.LoginName, c.AvatarURL, c.RefreshCiphertext, c.RefreshKeyID, nullMicros(c.ExpiresAt))
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: a credential named %s (or with this id) exists: %w", op, c.Name, store.ErrConflict)
	}
	return wrapOp(op, err)
}

// GetCredential returns one credential.
func (s *Store) GetCredential(ctx context.Context, id string) (*store.Credential, error) {
	c, err := scanCredential(s.queryRow(ctx, s.r, `SELECT `+credentialCols+` FROM credentials WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("get credential " + id)
	}
	if err != nil {
		return nil, fmt.Errorf("get credential %s: %w", id, err)
	}
	return c, nil
}

// ListCredentials lists credentials by name.
func (s *Store) ListCredentials(ctx context.Context, projectID string) ([]*store.Credential, error) {
	q, args := `SELECT `+credentialCols+` FROM credentials`, []any{}
	if projectID != "" {
		q += ` WHERE project_id = ?`
		args = append(args, projectID)
	}
	rows, err := s.query(ctx, s.r, q+` ORDER BY name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	list, err := collect(rows, scanCredential)
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	return list, nil
}

// UpdateCredential replaces a credential's editable fields.
func (s *Store) UpdateCredential(ctx context.Context, c *store.Credential) error {
	op := "update credential"
	if err := checkCredential(op, c); err != nil {
		return err
	}
	op += " " + c.ID
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `UPDATE credentials SET name = ?, host = ?, username = ?, project_id = ?,
			ciphertext = ?, key_id = ?, updated_at = ?, login_name = ?, avatar_url = ?, refresh_ciphertext = ?,
			refresh_key_id = ?, expires_at = ? WHERE id = ?`,
			c.Name, c.Host, c.Username, c.ProjectID, c.Ciphertext, c.KeyID, micros(orNow(c.UpdatedAt, s.nowUTC())),
			c.LoginName, c.AvatarURL, c.RefreshCiphertext, c.RefreshKeyID, nullMicros(c.ExpiresAt), c.ID)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: a credential named %s exists: %w", op, c.Name, store.ErrConflict)
	}
	return wrapOp(op, err)
}

// DeleteCredential removes a credential.
func (s *Store) DeleteCredential(ctx context.Context, id string) error {
	op := "delete credential " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM credentials WHERE id = ?`, id)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}
