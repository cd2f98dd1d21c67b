package sqlstore

import (
	"database/sql"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// TestSQLiteMigrateUsers upgrades a SQLite database holding tokens from
// before users existed (schema version 12) to version 13.
func TestSQLiteMigrateUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runnel.db")
	db, err := sql.Open("sqlite", path+"?_busy_timeout=10000&_foreign_keys=on")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	testMigrateUsers(t, sqliteDialect, db, func(t *testing.T) *Store {
		s, err := Open(t.Context(), path, Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestPostgresMigrateUsers is TestSQLiteMigrateUsers on PostgreSQL.
func TestPostgresMigrateUsers(t *testing.T) {
	pg := postgres(t)
	name := pg.createDB(t, "")
	db, err := sql.Open("pgx", pg.dsn(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	testMigrateUsers(t, postgresDialect, db, func(t *testing.T) *Store {
		s, err := Open(t.Context(), pg.dsn(name), Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// testMigrateUsers migrates db to version 12, stores tokens as the server did
// then (a subject and a role, no user), migrates to 13 and checks that every
// subject of admin and user tokens became a user owning its tokens, and that
// agent tokens were left alone. It then migrates down and up again. open
// opens the store on db's database (Open has nothing left to migrate).
func testMigrateUsers(t *testing.T, d dialect, db *sql.DB, open func(t *testing.T) *Store) {
	ctx := t.Context()
	p, err := newMigrator(d, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 12); err != nil {
		t.Fatalf("migrate to 12: %v", err)
	}

	base := time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	old := []struct {
		id, subject, role string
		created           time.Time
	}{
		{"tok_admin_2", "admin", "admin", at(20)},
		{"tok_admin_1", "admin", "admin", at(10)},
		{"tok_alice", "alice", "user", at(15)},
		{"tok_agent", "ag_1", "agent", at(5)},
		// Any admin token makes its subject an admin.
		{"tok_bob_user", "bob", "user", at(30)},
		{"tok_bob_admin", "bob", "admin", at(40)},
		// A token without a subject belongs to nobody.
		{"tok_nobody", "", "user", at(50)},
	}
	for _, o := range old {
		_, err := db.ExecContext(ctx, d.rebind(`INSERT INTO api_tokens (id, name, subject, role, hash, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`), o.id, o.id, o.subject, o.role, []byte(o.id), micros(o.created))
		if err != nil {
			t.Fatalf("insert token %s at version 12: %v", o.id, err)
		}
	}
	if _, err := p.UpTo(ctx, 13); err != nil {
		t.Fatalf("migrate to 13: %v", err)
	}

	check := func(t *testing.T) {
		s := open(t)
		defer func() { _ = s.Close() }()
		users, err := s.ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		type want struct {
			admin   bool
			created time.Time
			tokens  []string
		}
		wants := map[string]want{
			"admin": {true, at(10), []string{"tok_admin_1", "tok_admin_2"}},
			"alice": {false, at(15), []string{"tok_alice"}},
			"bob":   {true, at(30), []string{"tok_bob_user", "tok_bob_admin"}},
		}
		var logins []string
		ids := map[string]bool{}
		idForm := regexp.MustCompile(`^usr_[0-9a-f]{20}$`)
		for _, u := range users {
			logins = append(logins, u.Login)
			w := wants[u.Login]
			if !idForm.MatchString(u.ID) || ids[u.ID] {
				t.Errorf("user %s has the id %q, want usr_ and 20 hex digits, unique", u.Login, u.ID)
			}
			ids[u.ID] = true
			if u.Admin != w.admin || !u.CreatedAt.Equal(w.created) || u.Disabled || u.LastLoginAt != nil ||
				u.Name != "" || u.Email != "" || u.AvatarURL != "" {
				t.Errorf("user %s = %+v, want admin %v, created at %v, nothing else set", u.Login, u, w.admin, w.created)
			}
			toks, err := s.TokensOfUser(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tok := range toks {
				got = append(got, tok.ID)
				if tok.Scopes != nil {
					t.Errorf("token %s has scopes %#v after the upgrade, want nil", tok.ID, tok.Scopes)
				}
			}
			if !slices.Equal(got, w.tokens) {
				t.Errorf("tokens of %s = %v, want %v", u.Login, got, w.tokens)
			}
		}
		if !slices.Equal(logins, []string{"admin", "alice", "bob"}) {
			t.Fatalf("users after the upgrade: %v, want admin, alice and bob", logins)
		}
		for _, id := range []string{"tok_agent", "tok_nobody"} {
			tok, err := s.GetToken(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if tok.UserID != "" || tok.Scopes != nil {
				t.Errorf("token %s after the upgrade: user %q, scopes %#v, want none", id, tok.UserID, tok.Scopes)
			}
		}
		// The store works on the upgraded schema.
		u, err := s.UserByLogin(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteUser(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetToken(ctx, "tok_alice"); err == nil {
			t.Error("alice's token outlived her")
		}
		if err := s.CreateUser(ctx, &store.User{ID: "usr_new", Login: "alice", CreatedAt: at(60)}); err != nil {
			t.Fatal(err)
		}
	}
	check(t)

	// Down drops what Up added; Up again rebuilds the users from the tokens
	// (alice's is gone, and the user made since with it).
	if _, err := p.DownTo(ctx, 12); err != nil {
		t.Fatalf("migrate down to 12: %v", err)
	}
	for _, q := range []string{`SELECT COUNT(*) FROM users`, `SELECT COUNT(user_id) FROM api_tokens`,
		`SELECT COUNT(scopes) FROM api_tokens`} {
		var n int
		if err := db.QueryRowContext(ctx, q).Scan(&n); err == nil {
			t.Errorf("%s after the down migration: no error", q)
		}
	}
	_, err = db.ExecContext(ctx, d.rebind(`INSERT INTO api_tokens (id, name, subject, role, hash, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`), "tok_alice", "tok_alice", "alice", "user", []byte("tok_alice"), micros(at(15)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("migrate up again: %v", err)
	}
	t.Run("Again", check)
}
