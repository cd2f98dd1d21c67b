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

// joinNames stores a list of names that contain no newline, one per line.
func joinNames(v []string) string { return strings.Join(v, "\n") }

func splitNames(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\n")
}

const providerCols = `name, kind, display_name, url, client_id, ciphertext, key_id, scopes, allowed_orgs, allowed_domains, created_at, updated_at, sign_in, connect`

func scanProvider(sc scanner) (*store.AuthProvider, error) {
	var (
		p                     store.AuthProvider
		scopes, orgs, domains string
		created, updated      int64
	)
	if err := sc.Scan(&p.Name, &p.Kind, &p.DisplayName, &p.URL, &p.ClientID, &p.Ciphertext, &p.KeyID, &scopes, &orgs, &domains,
		&created, &updated, &p.SignIn, &p.Connect); err != nil {
		return nil, err
	}
	p.Scopes, p.AllowedOrgs, p.AllowedDomains = splitNames(scopes), splitNames(orgs), splitNames(domains)
	p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &p, nil
}

// CreateAuthProvider stores a new provider.
func (s *Store) CreateAuthProvider(ctx context.Context, p *store.AuthProvider) error {
	op := "create auth provider"
	if p == nil || p.Name == "" {
		return invalid(op, "the name must not be empty")
	}
	op += " " + p.Name
	now := s.nowUTC()
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO auth_providers (`+providerCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.Name, p.Kind, p.DisplayName, p.URL, p.ClientID, p.Ciphertext, p.KeyID, joinNames(p.Scopes), joinNames(p.AllowedOrgs),
			joinNames(p.AllowedDomains), micros(orNow(p.CreatedAt, now)), micros(orNow(p.UpdatedAt, now)), p.SignIn, p.Connect)
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: a provider %s exists: %w", op, p.Name, store.ErrConflict)
	}
	return wrapOp(op, err)
}

// UpdateAuthProvider replaces a provider's fields but its name and
// creation time.
func (s *Store) UpdateAuthProvider(ctx context.Context, p *store.AuthProvider) error {
	op := "update auth provider " + p.Name
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `UPDATE auth_providers SET kind = ?, display_name = ?, url = ?, client_id = ?, ciphertext = ?,
			key_id = ?, scopes = ?, allowed_orgs = ?, allowed_domains = ?, updated_at = ?, sign_in = ?, connect = ? WHERE name = ?`,
			p.Kind, p.DisplayName, p.URL, p.ClientID, p.Ciphertext, p.KeyID, joinNames(p.Scopes), joinNames(p.AllowedOrgs),
			joinNames(p.AllowedDomains), micros(orNow(p.UpdatedAt, s.nowUTC())), p.SignIn, p.Connect, p.Name)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// GetAuthProvider returns a provider by name.
func (s *Store) GetAuthProvider(ctx context.Context, name string) (*store.AuthProvider, error) {
	op := "get auth provider " + name
	p, err := scanProvider(s.queryRow(ctx, s.r, `SELECT `+providerCols+` FROM auth_providers WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return p, nil
}

// ListAuthProviders lists the providers by name.
func (s *Store) ListAuthProviders(ctx context.Context) ([]*store.AuthProvider, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+providerCols+` FROM auth_providers ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list auth providers: %w", err)
	}
	ps, err := collect(rows, scanProvider)
	if err != nil {
		return nil, fmt.Errorf("list auth providers: %w", err)
	}
	return ps, nil
}

// DeleteAuthProvider removes a provider and the identities and sessions
// it signed in.
func (s *Store) DeleteAuthProvider(ctx context.Context, name string) error {
	op := "delete auth provider " + name
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM auth_providers WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if !ok {
			return notFound(op)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM user_identities WHERE provider = ?`, name); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `DELETE FROM sessions WHERE provider = ?`, name)
		return err
	})
	return wrapOp(op, err)
}

// LinkIdentity links a provider's subject to a user.
func (s *Store) LinkIdentity(ctx context.Context, provider, subject, userID string, at time.Time) error {
	op := fmt.Sprintf("link identity %s/%s", provider, subject)
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO user_identities (provider, subject, user_id, created_at) VALUES (?, ?, ?, ?)`,
			provider, subject, userID, micros(orNow(at, s.nowUTC())))
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: already linked: %w", op, store.ErrConflict)
	}
	return wrapOp(op, err)
}

// UserOfIdentity returns the user a provider's subject signs in as.
func (s *Store) UserOfIdentity(ctx context.Context, provider, subject string) (string, error) {
	var id string
	err := s.queryRow(ctx, s.r, `SELECT user_id FROM user_identities WHERE provider = ? AND subject = ?`, provider, subject).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound(fmt.Sprintf("identity %s/%s", provider, subject))
	}
	if err != nil {
		return "", fmt.Errorf("identity %s/%s: %w", provider, subject, err)
	}
	return id, nil
}

// PutLoginState stores a pending login.
func (s *Store) PutLoginState(ctx context.Context, l *store.LoginState) error {
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO login_states (state, provider, nonce, verifier, return_to, expires_at, user_id) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			l.State, l.Provider, l.Nonce, l.Verifier, l.ReturnTo, micros(l.ExpiresAt), l.UserID)
		return err
	})
	return wrapOp("put login state", err)
}

// TakeLoginState returns and removes a pending login, in one transaction:
// two callbacks with the same state cannot both have it.
func (s *Store) TakeLoginState(ctx context.Context, state string, now time.Time) (*store.LoginState, error) {
	var out *store.LoginState
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		out = nil
		var l store.LoginState
		var exp int64
		err := s.queryRow(ctx, tx, `SELECT state, provider, nonce, verifier, return_to, expires_at, user_id FROM login_states WHERE state = ?`, state).
			Scan(&l.State, &l.Provider, &l.Nonce, &l.Verifier, &l.ReturnTo, &exp, &l.UserID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		ok, err := s.execOne(ctx, tx, `DELETE FROM login_states WHERE state = ?`, state)
		if err != nil || !ok {
			return err
		}
		l.ExpiresAt = fromMicros(exp)
		if now.Before(l.ExpiresAt) {
			out = &l
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("take login state: %w", err)
	}
	if out == nil {
		return nil, notFound("login state")
	}
	return out, nil
}

const sessionCols = `id, hash, user_id, provider, created_at, expires_at, last_seen_at, user_agent, remote_addr, scopes`

func scanSession(sc scanner) (*store.Session, error) {
	var (
		x                      store.Session
		created, expires, seen int64
	)
	var scopes string
	if err := sc.Scan(&x.ID, &x.Hash, &x.UserID, &x.Provider, &created, &expires, &seen, &x.UserAgent, &x.RemoteAddr, &scopes); err != nil {
		return nil, err
	}
	if scopes != "" {
		x.Scopes = strings.Split(scopes, ",")
	}
	x.CreatedAt, x.ExpiresAt, x.LastSeenAt = fromMicros(created), fromMicros(expires), fromMicros(seen)
	return &x, nil
}

// CreateSession stores a session.
func (s *Store) CreateSession(ctx context.Context, x *store.Session) error {
	if x == nil || x.ID == "" || len(x.Hash) == 0 || x.UserID == "" {
		return invalid("create session", "the id, hash and user must not be empty")
	}
	scopes, err := encodeScopes("create session "+x.ID, x.Scopes)
	if err != nil {
		return err
	}
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO sessions (`+sessionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			x.ID, x.Hash, x.UserID, x.Provider, micros(x.CreatedAt), micros(x.ExpiresAt), micros(orNow(x.LastSeenAt, x.CreatedAt)),
			x.UserAgent, x.RemoteAddr, scopes)
		return err
	})
	return wrapOp("create session "+x.ID, err)
}

// SessionByHash finds a session by its cookie's hash.
func (s *Store) SessionByHash(ctx context.Context, hash []byte) (*store.Session, error) {
	x, err := scanSession(s.queryRow(ctx, s.r, `SELECT `+sessionCols+` FROM sessions WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("session")
	}
	if err != nil {
		return nil, fmt.Errorf("session by hash: %w", err)
	}
	return x, nil
}

// TouchSession records a session's use.
func (s *Store) TouchSession(ctx context.Context, id string, at time.Time) error {
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `UPDATE sessions SET last_seen_at = ? WHERE id = ?`, micros(at), id)
		return err
	})
	return wrapOp("touch session "+id, err)
}

// ListSessions lists a user's sessions, newest first.
func (s *Store) ListSessions(ctx context.Context, userID string) ([]*store.Session, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+sessionCols+` FROM sessions WHERE user_id = ? ORDER BY created_at DESC, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list sessions of %s: %w", userID, err)
	}
	xs, err := collect(rows, scanSession)
	if err != nil {
		return nil, fmt.Errorf("list sessions of %s: %w", userID, err)
	}
	return xs, nil
}

// DeleteSession removes a session.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	op := "delete session " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM sessions WHERE id = ?`, id)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// DeleteExpiredSessions removes the sessions and login states expired
// before t.
func (s *Store) DeleteExpiredSessions(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM sessions WHERE expires_at < ?`, micros(t))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		if _, err := s.exec(ctx, tx, `DELETE FROM login_states WHERE expires_at < ?`, micros(t)); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `DELETE FROM cli_grants WHERE expires_at < ?`, micros(t))
		return err
	})
	return int(n), wrapOp("delete expired sessions", err)
}

// PutCLIGrant stores a grant of the command line's sign-in.
func (s *Store) PutCLIGrant(ctx context.Context, g *store.CLIGrant) error {
	scopes, err := encodeScopes("put cli grant", g.Scopes)
	if err != nil {
		return err
	}
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO cli_grants (code_hash, user_id, challenge, scopes, expires_at) VALUES (?, ?, ?, ?, ?)`,
			g.CodeHash, g.UserID, g.Challenge, scopes, micros(g.ExpiresAt))
		return err
	})
	return wrapOp("put cli grant", err)
}

// TakeCLIGrant returns and removes a grant in one transaction, so that its
// code is used at most once.
func (s *Store) TakeCLIGrant(ctx context.Context, codeHash []byte, now time.Time) (*store.CLIGrant, error) {
	var out *store.CLIGrant
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		out = nil
		var (
			g      store.CLIGrant
			scopes string
			exp    int64
		)
		err := s.queryRow(ctx, tx, `SELECT code_hash, user_id, challenge, scopes, expires_at FROM cli_grants WHERE code_hash = ?`, codeHash).
			Scan(&g.CodeHash, &g.UserID, &g.Challenge, &scopes, &exp)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		ok, err := s.execOne(ctx, tx, `DELETE FROM cli_grants WHERE code_hash = ?`, codeHash)
		if err != nil || !ok {
			return err
		}
		if scopes != "" {
			g.Scopes = strings.Split(scopes, ",")
		}
		g.ExpiresAt = fromMicros(exp)
		if now.Before(g.ExpiresAt) {
			out = &g
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("take cli grant: %w", err)
	}
	if out == nil {
		return nil, notFound("cli grant")
	}
	return out, nil
}
