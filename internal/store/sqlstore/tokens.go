package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// CreateToken stores a token (its hash only). A used id or hash → ErrConflict;
// scopes that would not read back as given (an empty but non-nil list, an
// empty scope, one with a comma) → ErrInvalid.
func (s *Store) CreateToken(ctx context.Context, t *store.APIToken) error {
	op := "create token"
	if t == nil || t.ID == "" || len(t.Hash) == 0 {
		return invalid(op, "the id and the hash must not be empty")
	}
	op += " " + t.ID
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		return s.insertToken(ctx, tx, op, t, s.nowUTC())
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: a token with this id or hash exists: %w", op, store.ErrConflict)
	}
	return wrapOp(op, err)
}

// insertToken stores a new token created at now unless t.CreatedAt is set.
// An empty UserID is stored as NULL, the scopes as one comma-separated text
// (empty for nil). A unique violation is returned as is, for the caller to
// say what it conflicts with.
func (s *Store) insertToken(ctx context.Context, tx *sql.Tx, op string, t *store.APIToken, now time.Time) error {
	scopes, err := encodeScopes(op, t.Scopes)
	if err != nil {
		return err
	}
	var userID any
	if t.UserID != "" {
		userID = t.UserID
	}
	_, err = s.exec(ctx, tx, `INSERT INTO api_tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, t.Subject, t.Role, userID, scopes, t.Hash, micros(orNow(t.CreatedAt, now)),
		nullMicros(t.LastUsedAt), nullMicros(t.ExpiresAt))
	return err
}

// encodeScopes joins a token's scopes with commas. nil (a token that may do
// all its user may) is stored as empty text, so an empty but non-nil list,
// which would read back as nil and widen the token to everything, is
// refused; so are scopes that are empty or hold a comma, which would not
// split back as they were.
func encodeScopes(op string, scopes []string) (string, error) {
	if scopes == nil {
		return "", nil
	}
	if len(scopes) == 0 {
		return "", invalid(op, "the scopes must be nil (all the user may do) or name at least one scope")
	}
	for _, sc := range scopes {
		if sc == "" || strings.Contains(sc, ",") {
			return "", invalid(op, fmt.Sprintf("a scope must not be empty nor hold a comma, got %q", sc))
		}
	}
	return strings.Join(scopes, ","), nil
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

// GetToken returns a token by id.
func (s *Store) GetToken(ctx context.Context, id string) (*store.APIToken, error) {
	op := "get token " + id
	t, err := scanToken(s.queryRow(ctx, s.r, `SELECT `+tokenCols+` FROM api_tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return t, nil
}

// TokensOfUser lists a user's tokens, oldest first; none (an empty list) for
// a user without tokens or an unknown id.
func (s *Store) TokensOfUser(ctx context.Context, userID string) ([]*store.APIToken, error) {
	op := "tokens of user " + userID
	rows, err := s.query(ctx, s.r, `SELECT `+tokenCols+` FROM api_tokens WHERE user_id = ? ORDER BY created_at, id`,
		userID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	ts, err := collect(rows, scanToken)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return ts, nil
}

// DeleteToken removes a token. An unknown token → ErrNotFound.
func (s *Store) DeleteToken(ctx context.Context, id string) error {
	op := "delete token " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM api_tokens WHERE id = ?`, id)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}
