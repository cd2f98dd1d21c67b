package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/runnel-ci/runnel/internal/store"
)

const userCols = `id, login, name, email, avatar_url, admin, disabled, created_at, last_login_at`

func scanUser(sc scanner) (*store.User, error) {
	var (
		u       store.User
		created int64
		login   sql.NullInt64
	)
	if err := sc.Scan(&u.ID, &u.Login, &u.Name, &u.Email, &u.AvatarURL, &u.Admin, &u.Disabled, &created,
		&login); err != nil {
		return nil, err
	}
	u.CreatedAt = fromMicros(created)
	u.LastLoginAt = timePtr(login)
	return &u, nil
}

// CreateUser stores a new user; a zero CreatedAt becomes now. An empty id or
// login → ErrInvalid; a used id or login → ErrConflict. u is not modified.
func (s *Store) CreateUser(ctx context.Context, u *store.User) error {
	op := "create user"
	switch {
	case u == nil || u.ID == "":
		return invalid(op, "the user id must not be empty")
	case u.Login == "":
		return invalid(op+" "+u.ID, "the login must not be empty")
	}
	op += " " + u.ID
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			u.ID, u.Login, u.Name, u.Email, u.AvatarURL, u.Admin, u.Disabled,
			micros(orNow(u.CreatedAt, s.nowUTC())), nullMicros(u.LastLoginAt))
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: a user with this id or the login %s exists: %w", op, u.Login, store.ErrConflict)
	}
	return wrapOp(op, err)
}

// GetUser returns a user by id.
func (s *Store) GetUser(ctx context.Context, id string) (*store.User, error) {
	return s.userBy(ctx, "get user "+id, `id`, id)
}

// UserByLogin returns a user by login.
func (s *Store) UserByLogin(ctx context.Context, login string) (*store.User, error) {
	return s.userBy(ctx, "user by login "+login, `login`, login)
}

// userBy reads the user whose column col (a unique one) is v.
func (s *Store) userBy(ctx context.Context, op, col, v string) (*store.User, error) {
	u, err := scanUser(s.queryRow(ctx, s.r, `SELECT `+userCols+` FROM users WHERE `+col+` = ?`, v))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return u, nil
}

// ListUsers lists every user by login.
func (s *Store) ListUsers(ctx context.Context) ([]*store.User, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+userCols+` FROM users ORDER BY login`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	us, err := collect(rows, scanUser)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return us, nil
}

// UpdateUser replaces a user's name, email, avatar URL, admin and disabled
// flags and last login; its login and creation time are kept. An empty id →
// ErrInvalid, an unknown user → ErrNotFound. u is not modified.
func (s *Store) UpdateUser(ctx context.Context, u *store.User) error {
	op := "update user"
	if u == nil || u.ID == "" {
		return invalid(op, "the user id must not be empty")
	}
	op += " " + u.ID
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `UPDATE users SET name = ?, email = ?, avatar_url = ?, admin = ?,
			disabled = ?, last_login_at = ? WHERE id = ?`,
			u.Name, u.Email, u.AvatarURL, u.Admin, u.Disabled, nullMicros(u.LastLoginAt), u.ID)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// DeleteUser removes a user and, in the same transaction, every API token,
// team and project membership, identity and session of theirs, so that a deleted user cannot authenticate any more. What they did
// (the runs they triggered, the pipelines they created) keeps their login.
// An unknown user → ErrNotFound.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	op := "delete user " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM users WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if !ok {
			return notFound(op)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM api_tokens WHERE user_id = ?`, id); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM team_members WHERE user_id = ?`, id); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM user_identities WHERE user_id = ?`, id); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM sessions WHERE user_id = ?`, id); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `DELETE FROM project_members WHERE kind = 'user' AND member_id = ?`, id)
		return err
	})
	return wrapOp(op, err)
}
