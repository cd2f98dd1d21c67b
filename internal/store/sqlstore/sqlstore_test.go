package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/storetest"
	"github.com/runnel-ci/runnel/internal/testpg"
)

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openSQLite(t)
	})
}

func openSQLite(tb testing.TB) *Store {
	tb.Helper()
	// A sub-directory that does not exist yet: Open creates it.
	s, err := Open(context.Background(), filepath.Join(tb.TempDir(), "data", "runnel.db"), Options{})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestPostgres(t *testing.T) {
	pg := postgres(t)
	// Migrate once into a template; each subtest's database is a copy of it,
	// which is much faster than migrating every one.
	tmpl := pg.createDB(t, "")
	s, err := Open(t.Context(), pg.dsn(tmpl), Options{})
	if err != nil {
		t.Fatalf("Open template: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		return pg.open(t, pg.createDB(t, tmpl))
	})
}

// TestPostgresConcurrentOpen starts several servers at once on one fresh
// database: every Open must succeed and the migrations apply once.
func TestPostgresConcurrentOpen(t *testing.T) {
	pg := postgres(t)
	db := pg.createDB(t, "")
	const n = 3
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := Open(t.Context(), pg.dsn(db), Options{})
			errs[i] = err
			if err == nil {
				errs[i] = errors.Join(s.Ping(t.Context()), s.Close())
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
	s := pg.open(t, db)
	var applied int
	if err := s.r.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM goose_db_version WHERE version_id = 1`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != 1 {
		t.Fatalf("migration 1 recorded %d times", applied)
	}
}

// TestPostgresRunTxReadsWhileWritersWait: while UpdateRunTx holds a run,
// agents' lease renewals for its job wait on the row lock, holding write
// connections, more of them than the pool has. fn must still be able to read
// through the Store (as the scheduler does), or nothing ever moves again.
func TestPostgresRunTxReadsWhileWritersWait(t *testing.T) {
	pg := postgres(t)
	db := pg.createDB(t, "")
	s, err := Open(t.Context(), pg.dsn(db), Options{MaxOpenConns: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	p := &store.Pipeline{ID: "pl", ProjectID: "p", Name: "n"}
	if err := s.CreatePipeline(ctx, p); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	nr := &store.NewRun{Run: &store.Run{ID: "run", PipelineID: "pl"},
		Jobs: []*store.JobRun{{ID: "jr", Key: "k", Status: "queued", QueuedAt: &now}}}
	if _, _, err := s.CreateRun(ctx, nr); err != nil {
		t.Fatal(err)
	}
	j, err := s.ClaimJob(ctx, "agent", []string{""}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const renewals = 6
	var wg sync.WaitGroup
	err = s.UpdateRunTx(ctx, "run", func(tx store.RunTx) error {
		for range renewals {
			wg.Go(func() {
				if _, err := s.ExtendLease(ctx, j.ID, j.LeaseID, time.Minute); err != nil {
					t.Errorf("ExtendLease: %v", err)
				}
			})
		}
		// Wait until the pool's other write connections are stuck on the lock.
		for {
			var waiting int
			err := pg.Admin.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_stat_activity
				WHERE datname = $1 AND wait_event_type = 'Lock'`, db).Scan(&waiting)
			if err != nil {
				return err
			}
			if waiting >= 2 {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
		if _, err := s.GetPipeline(ctx, "pl"); err != nil {
			return err
		}
		tr, err := tx.Tree()
		if err != nil {
			return err
		}
		tr.Run.Status = "running"
		return tx.UpdateRun(tr.Run)
	})
	if err != nil {
		t.Fatalf("UpdateRunTx: %v", err)
	}
	wg.Wait()
}

func TestSQLiteConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runnel.db")
	const n = 3
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := Open(t.Context(), path, Options{})
			errs[i] = err
			if err == nil {
				errs[i] = errors.Join(s.Ping(t.Context()), s.Close())
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
}

// TestSQLiteSettings checks the connection settings the store relies on.
func TestSQLiteSettings(t *testing.T) {
	s := openSQLite(t)
	ctx := t.Context()
	var mode string
	var fk, busy, sync int
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q %v, want wal", mode, err)
	}
	for _, db := range []*sql.DB{s.w, s.r} {
		if err := db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
			t.Fatalf("foreign_keys = %d %v, want 1", fk, err)
		}
		if err := db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil || busy < 1000 {
			t.Fatalf("busy_timeout = %d %v", busy, err)
		}
	}
	if err := s.w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil || sync != 1 {
		t.Fatalf("synchronous = %d %v, want 1 (NORMAL)", sync, err)
	}
	// The read pool refuses writes.
	if _, err := s.r.ExecContext(ctx, "DELETE FROM pipelines"); err == nil {
		t.Fatal("the read pool accepted a write")
	}
	if _, err := Open(ctx, ":memory:", Options{}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Open(:memory:) = %v, want ErrInvalid", err)
	}
}

// pgServer is the PostgreSQL test server (see internal/testpg).
type pgServer struct{ *testpg.Server }

// postgres connects to the test server, or skips the test when there is none
// (fails instead when RUNNEL_TEST_ALL=1, as in CI).
func postgres(tb testing.TB) *pgServer { return &pgServer{testpg.Connect(tb)} }

// createDB creates a database (a copy of template when not empty) that is
// dropped when the test ends.
func (pg *pgServer) createDB(tb testing.TB, template string) string { return pg.CreateDB(tb, template) }

func (pg *pgServer) dsn(db string) string { return pg.DSN(db) }

func (pg *pgServer) open(tb testing.TB, db string) *Store {
	tb.Helper()
	s, err := Open(context.Background(), pg.dsn(db), Options{MaxOpenConns: 8})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}
