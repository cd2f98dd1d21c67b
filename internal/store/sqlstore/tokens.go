package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// CreateToken stores a token (its hash only). A used id or hash → ErrConflict.
func (s *Store) CreateToken(ctx context.Context, t *store.APIToken) error {
	op := "create token"
	if t == nil || t.ID == "" || len(t.Hash) == 0 {
		return invalid(op, "the id and the hash must not be empty")
	}
	op += " " + t.ID
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO api_tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.Name, t.Subject, t.Role, t.Hash, micros(orNow(t.CreatedAt, s.nowUTC())),
			nullMicros(t.LastUsedAt), nullMicros(t.ExpiresAt))
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: a token with this id or hash exists: %w", op, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// TokenByHash finds a token by the SHA-256 of its value. The lookup is an
// index search on the hash, not a comparison of secrets: its timing can only
// tell an attacker about hashes, which are useless without a preimage.
// Expiry is the caller's to check (ExpiresAt), so that it can say why a
// token is refused.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (*store.APIToken, error) {
	const op = "token by hash"
	if len(hash) == 0 {
		return nil, notFound(op)
	}
	t, err := scanToken(s.queryRow(ctx, s.r, `SELECT `+tokenCols+` FROM api_tokens WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return t, nil
}

// TouchToken records a token's use.
func (s *Store) TouchToken(ctx context.Context, id string, at time.Time) error {
	op := "touch token " + id
	var ok bool
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var err error
		ok, err = s.execOne(ctx, tx, `UPDATE api_tokens SET last_used_at = ? WHERE id = ?`,
			micros(orNow(at, s.nowUTC())), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if !ok {
		return notFound(op)
	}
	return nil
}

// ListTokens lists every token, oldest first.
func (s *Store) ListTokens(ctx context.Context) ([]*store.APIToken, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+tokenCols+` FROM api_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	ts, err := collect(rows, scanToken)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return ts, nil
}
