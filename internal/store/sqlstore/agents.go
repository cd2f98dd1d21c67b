package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// Label maps are JSON objects in TEXT. Reported labels are never NULL (nil is
// stored as {} and read back as an empty map); admin labels are NULL when not
// set, so that nil (use the reported labels) and an empty map (an admin's "no
// labels") stay apart.

const agentCols = `id, name, kind, reported_labels, admin_labels, capacity, version, hostname, platform,
	disabled, registration_token_id, created_at, last_seen_at`

func scanAgent(sc scanner) (*store.Agent, error) {
	var (
		a        store.Agent
		reported string
		admin    sql.NullString
		created  int64
		seen     sql.NullInt64
	)
	if err := sc.Scan(&a.ID, &a.Name, &a.Kind, &reported, &admin, &a.Capacity, &a.Version, &a.Hostname,
		&a.Platform, &a.Disabled, &a.RegistrationTokenID, &created, &seen); err != nil {
		return nil, err
	}
	if err := decodeJSON(reported, &a.ReportedLabels); err != nil {
		return nil, fmt.Errorf("agent %s: reported labels: %w", a.ID, err)
	}
	if a.ReportedLabels == nil {
		a.ReportedLabels = map[string]string{}
	}
	if admin.Valid {
		if err := decodeJSON(admin.String, &a.AdminLabels); err != nil {
			return nil, fmt.Errorf("agent %s: admin labels: %w", a.ID, err)
		}
		if a.AdminLabels == nil {
			a.AdminLabels = map[string]string{}
		}
	}
	a.CreatedAt = fromMicros(created)
	a.LastSeenAt = timePtr(seen)
	return &a, nil
}

// reportedLabels encodes reported labels: nil is stored as {}.
func reportedLabels(op string, m map[string]string) (string, error) {
	if m == nil {
		return "{}", nil
	}
	return encodeJSON(op, m)
}

// adminLabels encodes admin labels: nil is stored as NULL.
func adminLabels(op string, m map[string]string) (any, error) {
	if m == nil {
		return nil, nil
	}
	return encodeJSON(op, m)
}

// checkAgent rejects an agent that cannot be stored.
func checkAgent(op string, a *store.Agent) error {
	switch {
	case a == nil || a.ID == "":
		return invalid(op, "the agent id must not be empty")
	case a.Capacity < 0:
		return invalid(op, fmt.Sprintf("the capacity must not be negative, got %d", a.Capacity))
	}
	return nil
}

// insertAgent stores a new agent created at now unless a.CreatedAt is set.
func (s *Store) insertAgent(ctx context.Context, tx *sql.Tx, op string, a *store.Agent, now time.Time) error {
	reported, err := reportedLabels(op, a.ReportedLabels)
	if err != nil {
		return err
	}
	admin, err := adminLabels(op, a.AdminLabels)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, tx, `INSERT INTO agents (`+agentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.Name, a.Kind, reported, admin, a.Capacity, a.Version, a.Hostname, a.Platform, a.Disabled,
		a.RegistrationTokenID, micros(orNow(a.CreatedAt, now)), nullMicros(a.LastSeenAt))
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: an agent with this id exists: %w", op, store.ErrConflict)
	}
	return err
}

// CreateAgent stores a new agent; a zero CreatedAt becomes now. An existing
// id → ErrConflict. a is not modified.
func (s *Store) CreateAgent(ctx context.Context, a *store.Agent) error {
	op := "create agent"
	if err := checkAgent(op, a); err != nil {
		return err
	}
	op += " " + a.ID
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		return s.insertAgent(ctx, tx, op, a, s.nowUTC())
	})
	return wrapOp(op, err)
}

// GetAgent returns an agent by id.
func (s *Store) GetAgent(ctx context.Context, id string) (*store.Agent, error) {
	op := "get agent " + id
	a, err := scanAgent(s.queryRow(ctx, s.r, `SELECT `+agentCols+` FROM agents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return a, nil
}

// ListAgents lists every agent, oldest first.
func (s *Store) ListAgents(ctx context.Context) ([]*store.Agent, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+agentCols+` FROM agents ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	as, err := collect(rows, scanAgent)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return as, nil
}

// ReportAgent replaces what the agent says about itself (name, reported
// labels, capacity, version, hostname, platform) and sets LastSeenAt to the
// store's clock. Kind, AdminLabels, Disabled, RegistrationTokenID and
// CreatedAt are kept. An unknown agent → ErrNotFound. a is not modified.
func (s *Store) ReportAgent(ctx context.Context, a *store.Agent) error {
	op := "report agent"
	if err := checkAgent(op, a); err != nil {
		return err
	}
	op += " " + a.ID
	reported, err := reportedLabels(op, a.ReportedLabels)
	if err != nil {
		return err
	}
	var ok bool
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var err error
		ok, err = s.execOne(ctx, tx, `UPDATE agents SET name = ?, reported_labels = ?, capacity = ?, version = ?,
			hostname = ?, platform = ?, last_seen_at = ? WHERE id = ?`,
			a.Name, reported, a.Capacity, a.Version, a.Hostname, a.Platform, micros(s.nowUTC()), a.ID)
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

// UpdateAgentAdmin sets the admin labels (nil: none, the reported labels
// apply again; an empty map: no labels) and the disabled flag, and returns
// the updated agent. An unknown agent → ErrNotFound.
func (s *Store) UpdateAgentAdmin(ctx context.Context, id string, labels map[string]string, disabled bool) (*store.Agent, error) {
	op := "update agent " + id
	admin, err := adminLabels(op, labels)
	if err != nil {
		return nil, err
	}
	var a *store.Agent
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var err error
		a, err = scanAgent(s.queryRow(ctx, tx, `UPDATE agents SET admin_labels = ?, disabled = ? WHERE id = ?
			RETURNING `+agentCols, admin, disabled, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound(op)
		}
		return err
	})
	if err != nil {
		return nil, wrapOp(op, err)
	}
	return a, nil
}

// TouchAgent sets an agent's LastSeenAt (a zero at: now). An unknown agent →
// ErrNotFound.
func (s *Store) TouchAgent(ctx context.Context, id string, at time.Time) error {
	op := "touch agent " + id
	var ok bool
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var err error
		ok, err = s.execOne(ctx, tx, `UPDATE agents SET last_seen_at = ? WHERE id = ?`,
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

// DeleteAgent removes an agent and, in the same transaction, its API tokens
// (role agent, subject the agent's id), so that a deleted agent cannot
// authenticate any more. An unknown agent → ErrNotFound. Job runs it still
// holds are the scheduler's to take back.
func (s *Store) DeleteAgent(ctx context.Context, id string) error {
	op := "delete agent " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM agents WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if !ok {
			return notFound(op)
		}
		_, err = s.exec(ctx, tx, `DELETE FROM api_tokens WHERE role = 'agent' AND subject = ?`, id)
		return err
	})
	return wrapOp(op, err)
}

const registrationTokenCols = `id, name, hash, created_by, created_at, expires_at, max_uses, uses, last_used_at`

func scanRegistrationToken(sc scanner) (*store.RegistrationToken, error) {
	var (
		t             store.RegistrationToken
		created       int64
		expires, used sql.NullInt64
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Hash, &t.CreatedBy, &created, &expires, &t.MaxUses, &t.Uses,
		&used); err != nil {
		return nil, err
	}
	t.CreatedAt = fromMicros(created)
	t.ExpiresAt, t.LastUsedAt = timePtr(expires), timePtr(used)
	return &t, nil
}

// CreateRegistrationToken stores a registration token (its hash only); a
// zero CreatedAt becomes now. A used id or hash → ErrConflict.
func (s *Store) CreateRegistrationToken(ctx context.Context, t *store.RegistrationToken) error {
	op := "create registration token"
	switch {
	case t == nil || t.ID == "":
		return invalid(op, "the id must not be empty")
	case len(t.Hash) == 0:
		return invalid(op+" "+t.ID, "the token hash must not be empty")
	case t.MaxUses < 0 || t.Uses < 0:
		return invalid(op+" "+t.ID, fmt.Sprintf("the maximum and the count of uses must not be negative, got %d and %d",
			t.MaxUses, t.Uses))
	}
	op += " " + t.ID
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO registration_tokens (`+registrationTokenCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.Name, t.Hash, t.CreatedBy, micros(orNow(t.CreatedAt, s.nowUTC())), nullMicros(t.ExpiresAt),
			t.MaxUses, t.Uses, nullMicros(t.LastUsedAt))
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: a registration token with this id or hash exists: %w", op, store.ErrConflict)
	}
	return wrapOp(op, err)
}

// ListRegistrationTokens lists every registration token, oldest first.
func (s *Store) ListRegistrationTokens(ctx context.Context) ([]*store.RegistrationToken, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+registrationTokenCols+` FROM registration_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list registration tokens: %w", err)
	}
	ts, err := collect(rows, scanRegistrationToken)
	if err != nil {
		return nil, fmt.Errorf("list registration tokens: %w", err)
	}
	return ts, nil
}

// DeleteRegistrationToken removes a registration token; the agents that
// registered with it stay. An unknown token → ErrNotFound.
func (s *Store) DeleteRegistrationToken(ctx context.Context, id string) error {
	op := "delete registration token " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM registration_tokens WHERE id = ?`, id)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// RegisterAgent registers agent a with the registration token whose SHA-256
// is tokenHash, in one transaction: the token is read (FOR UPDATE on
// PostgreSQL, so concurrent registrations with one token are serialised and
// can never exceed its maximum; BEGIN IMMEDIATE does the same on SQLite),
// checked (ErrNotFound if unknown; ErrRegistrationRejected if it expired at
// or before now or has no use left), its use counted (uses+1, last_used_at
// now), a stored with RegistrationTokenID set to the token's id (CreatedAt
// defaults to now), and tok stored as the agent's API token. tok's Role and
// Subject default to "agent" and a.ID; others → ErrInvalid. A used agent id,
// or a used token id or hash → ErrConflict. a and tok are not modified.
func (s *Store) RegisterAgent(ctx context.Context, tokenHash []byte, now time.Time, a *store.Agent, tok *store.APIToken) error {
	op := "register agent"
	if err := checkAgent(op, a); err != nil {
		return err
	}
	op += " " + a.ID
	if len(tokenHash) == 0 {
		return invalid(op, "no registration token hash given")
	}
	if tok == nil || tok.ID == "" || len(tok.Hash) == 0 {
		return invalid(op, "the agent's API token needs an id and a hash")
	}
	at := *tok
	if at.Role == "" {
		at.Role = "agent"
	}
	if at.Subject == "" {
		at.Subject = a.ID
	}
	if at.Role != "agent" || at.Subject != a.ID {
		return invalid(op, fmt.Sprintf("the agent's API token must have role agent and subject %s, not %s and %s",
			a.ID, at.Role, at.Subject))
	}
	now = orNow(now, s.nowUTC())
	agent := *a
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var (
			expires       sql.NullInt64
			maxUses, uses int
		)
		err := s.queryRow(ctx, tx, `SELECT id, expires_at, max_uses, uses FROM registration_tokens
			WHERE hash = ?`+s.d.forUpdate, tokenHash).Scan(&agent.RegistrationTokenID, &expires, &maxUses, &uses)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: registration token: %w", op, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		id := agent.RegistrationTokenID
		if expires.Valid && expires.Int64 <= micros(now) {
			return fmt.Errorf("registration token %s expired at %s: %w",
				id, fromMicros(expires.Int64).Format(time.RFC3339), store.ErrRegistrationRejected)
		}
		if maxUses > 0 && uses >= maxUses {
			return fmt.Errorf("registration token %s has been used %d times of %d: %w",
				id, uses, maxUses, store.ErrRegistrationRejected)
		}
		if _, err := s.exec(ctx, tx, `UPDATE registration_tokens SET uses = uses + 1, last_used_at = ? WHERE id = ?`,
			micros(now), id); err != nil {
			return err
		}
		if err := s.insertAgent(ctx, tx, op, &agent, now); err != nil {
			return err
		}
		err = s.insertToken(ctx, tx, op, &at, now)
		if s.d.isUnique(err) {
			return fmt.Errorf("%s: an API token with id %s or this hash exists: %w", op, at.ID, store.ErrConflict)
		}
		return err
	})
	return wrapOp(op, err)
}

// wrapOp prefixes err with op unless it is nil or one of the store's own
// errors, which say what failed already.
func wrapOp(op string, err error) error {
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) ||
		errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrLeaseLost) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}
