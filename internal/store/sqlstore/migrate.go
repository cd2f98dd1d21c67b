package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/pressly/goose/v3"
)

// migrations holds one directory of goose SQL migrations per dialect.
//
//go:embed migrations
var migrations embed.FS

// migrateLockID names the PostgreSQL advisory lock held while migrating
// (advisory locks are per database, so this only excludes other Runnel
// processes on the same database).
const migrateLockID int64 = 0x52756e6e656c // "Runnel"

// migrate applies the embedded migrations.
//
// On PostgreSQL two servers may start at once. goose's own session locker is
// not enough there: it polls for the lock every 5 s by default, and Up first
// checks for pending migrations (creating goose's version table) outside the
// lock, so concurrent starts collide on CREATE TABLE and retry after a second.
// So the whole of goose's work runs under a blocking pg_advisory_lock taken on
// a dedicated connection: the second server waits for the first, then finds
// nothing pending.
//
// On SQLite each migration is one BEGIN IMMEDIATE transaction; a second
// process racing the first fails its copy of a migration the first applied,
// so after a failure it tries again (a few times, a moment apart) until
// nothing is pending.
func (s *Store) migrate(ctx context.Context) (err error) {
	p, err := newMigrator(s.d, s.w, s.log)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if s.d.postgres {
		unlock, err := s.lockMigrations(ctx)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, unlock()) }()
	}
	for attempt := 1; ; attempt++ {
		_, err := p.Up(ctx)
		if err == nil {
			return nil
		}
		if s.d.postgres || attempt == 20 {
			return fmt.Errorf("migrate %s database: %w", s.d.name, err)
		}
		// Another process applied the migration first: done when nothing
		// is pending, else it is still applying later ones; go on after it.
		if pending, perr := p.HasPending(ctx); perr == nil && !pending {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migrate %s database: %w", s.d.name, errors.Join(err, ctx.Err()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// newMigrator returns the goose provider that applies d's embedded
// migrations to db.
func newMigrator(d dialect, db *sql.DB, log *slog.Logger) (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations/"+d.name)
	if err != nil {
		return nil, err
	}
	gd := goose.DialectSQLite3
	if d.postgres {
		gd = goose.DialectPostgres
	}
	return goose.NewProvider(gd, db, sub, goose.WithSlog(log), goose.WithDisableGlobalRegistry(true))
}

// lockMigrations takes the migration advisory lock on a connection of its
// own and returns the function that releases it.
func (s *Store) lockMigrations(ctx context.Context) (func() error, error) {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrateLockID); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	return func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, err := conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", migrateLockID)
		if err != nil {
			// The session still holds the lock: drop the connection instead
			// of returning it to the pool, which ends the session and the lock.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = fmt.Errorf("migrate: unlock: %w", err)
		}
		return errors.Join(err, conn.Close())
	}, nil
}
