// Package sqlstore implements store.Store over database/sql, for SQLite
// (modernc.org/sqlite, no cgo) and PostgreSQL (pgx) with one code path. The
// few differences between the two (placeholders, row locks, how a write
// transaction starts, error codes) live in dialect.go; the schema is embedded
// per dialect and migrated at Open with goose.
//
// Conventions of the stored data: times are BIGINT Unix microseconds UTC and
// come back as time.Time in UTC; JSON values are TEXT; the caller chooses the
// IDs of pipelines, runs, job runs, step runs and tokens.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	// Database drivers, registered as "pgx" and "sqlite".
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/runnel-ci/runnel/internal/store"
)

var _ store.Store = (*Store)(nil)

// Options configure a Store.
type Options struct {
	// Logger receives migration progress; nil discards it.
	Logger *slog.Logger
	// MaxOpenConns bounds each of the two PostgreSQL connection pools, one
	// for writes and one for reads (default 10 each). SQLite uses one writer
	// connection and a few readers whatever this says.
	MaxOpenConns int
	// Now is the clock for leases, for comparing RetryAt in ClaimJob and for
	// defaulted timestamps (default time.Now). A scheduler with a fake clock
	// should give the store the same one.
	Now func() time.Time
	// EventSinks are the server's CDEvents sinks: run and job events are
	// queued for each in the outbox (see store.Events).
	EventSinks []string
}

// Store is a store.Store on SQLite or PostgreSQL. It is safe for concurrent use.
type Store struct {
	// w runs writes and r reads, as two pools. On SQLite w has a single
	// connection whose transactions begin with BEGIN IMMEDIATE: writers
	// queue in Go instead of in SQLite's busy handler and never deadlock on
	// a lock upgrade, while r's connections read concurrently thanks to WAL.
	// On PostgreSQL the split keeps reads from starving: UpdateRunTx's fn
	// holds a w connection while it reads through the Store (the scheduler
	// loads pipelines and specs there), and writers waiting on its row locks
	// hold w connections too; were it one pool, enough of them would take
	// every connection and fn would wait forever. A plain read never waits on
	// a lock, so r always drains.
	w, r *sql.DB
	d    dialect
	log  *slog.Logger
	now  func() time.Time
	// sinks are the server's CDEvents sinks (Options.EventSinks).
	sinks []string
	// stmts are the prepared statements of w and r, on SQLite only (see
	// stmtCache); txPools says which pool each open transaction is on.
	stmts   map[*sql.DB]*stmtCache
	txPools sync.Map // *sql.Tx → *sql.DB
}

// Open connects to the database named by dsn and migrates it. A dsn starting
// with postgres:// or postgresql:// selects PostgreSQL; anything else is the
// path of a SQLite file (parent directories are created; query parameters
// are not accepted, the store sets its own).
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	s := &Store{log: opts.Logger, now: opts.Now, sinks: slices.Clone(opts.EventSinks)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		err = s.openPostgres(dsn, opts)
	} else {
		err = s.openSQLite(dsn)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) openPostgres(dsn string, opts Options) error {
	n := opts.MaxOpenConns
	if n <= 0 {
		n = 10
	}
	var dbs [2]*sql.DB
	for i := range dbs {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			if dbs[0] != nil {
				_ = dbs[0].Close()
			}
			return fmt.Errorf("open postgres: %w", err)
		}
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
		db.SetConnMaxIdleTime(5 * time.Minute)
		dbs[i] = db
	}
	s.w, s.r, s.d = dbs[0], dbs[1], postgresDialect
	return nil
}

func (s *Store) openSQLite(path string) error {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, '?') {
		// The store opens two pools on the file, so an in-memory database (one
		// per connection) cannot work, and its own parameters must win.
		return fmt.Errorf("open sqlite %q: need a plain file path: %w", path, store.ErrInvalid)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("open sqlite %s: %w", path, err)
		}
	}
	// busy_timeout covers other processes on the same file (this one's
	// writers queue on the single connection); synchronous=NORMAL is durable
	// across application crashes in WAL mode and much faster than FULL.
	common := "_busy_timeout=10000&_foreign_keys=on"
	w, err := sql.Open("sqlite", path+"?"+common+"&_journal_mode=WAL&_synchronous=NORMAL&_txlock=immediate")
	if err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// Readers are query_only: a write through the read pool is a bug, and
	// SQLite then says so instead of racing the writer.
	r, err := sql.Open("sqlite", path+"?"+common+"&_query_only=on")
	if err != nil {
		_ = w.Close()
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s.w, s.r, s.d = w, r, sqliteDialect
	s.stmts = map[*sql.DB]*stmtCache{w: newStmtCache(w), r: newStmtCache(r)}
	return nil
}

// Ping checks the database answers a query. It uses the read pool: on
// SQLite the single writer connection may be busy with a transaction, which
// says nothing about the database's health.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Close closes the pools.
func (s *Store) Close() error {
	for _, c := range s.stmts {
		c.close()
	}
	return errors.Join(s.w.Close(), s.r.Close())
}

// nowUTC is the store's clock truncated to what the database keeps, so that a
// value returned to the caller equals the one read back later.
func (s *Store) nowUTC() time.Time {
	return s.now().UTC().Truncate(time.Microsecond)
}

// errRollback ends a transaction without an error for the caller (a replayed
// request that must not consume a run number).
var errRollback = errors.New("rollback")

// writeTx runs fn in a write transaction: BEGIN IMMEDIATE on SQLite, READ
// COMMITTED with explicit row locks on PostgreSQL. A PostgreSQL deadlock or
// serialisation failure, or a SQLite busy error (another process holding the
// file past busy_timeout), is retried a few times when retry is set: fn must
// then be safe to run again, which holds for the store's own operations
// because a rolled-back attempt leaves nothing behind.
func (s *Store) writeTx(ctx context.Context, retry bool, fn func(tx *sql.Tx) error) error {
	const attempts = 5
	for i := 1; ; i++ {
		err := s.tryTx(ctx, fn)
		if err == nil || errors.Is(err, errRollback) {
			return nil
		}
		if !retry || i == attempts || !s.d.retryable(err) || ctx.Err() != nil {
			return err
		}
		// Back off a little, more each time, so that the transactions that
		// collided do not collide again in lockstep.
		t := time.NewTimer(time.Duration(i*i) * 5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Store) tryTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	tx, end, err := s.begin(ctx, s.w, nil)
	if err != nil {
		return err
	}
	defer end()
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// querier is what reads need: the read pool or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (s *Store) query(ctx context.Context, q querier, query string, args ...any) (*sql.Rows, error) {
	query = s.d.rebind(query)
	if st := s.stmt(ctx, q, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return q.QueryContext(ctx, query, args...)
}

func (s *Store) queryRow(ctx context.Context, q querier, query string, args ...any) *sql.Row {
	query = s.d.rebind(query)
	if st := s.stmt(ctx, q, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return q.QueryRowContext(ctx, query, args...)
}

func (s *Store) exec(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	query = s.d.rebind(query)
	if st := s.stmt(ctx, q, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return q.ExecContext(ctx, query, args...)
}

// stmt returns the prepared statement that runs query on q, or nil when it
// is to run unprepared (PostgreSQL, a transaction meeting the query for the
// first time, a failed preparation: the unprepared run then reports the
// error, if it is the query's).
func (s *Store) stmt(ctx context.Context, q querier, query string) *sql.Stmt {
	c, inTx := s.cacheFor(q)
	if c == nil {
		return nil
	}
	if !inTx {
		st, err := c.get(ctx, query)
		if err != nil {
			return nil
		}
		return st
	}
	st := c.lookup(query)
	if st == nil {
		c.prepareLater(query)
		return nil
	}
	return q.(*sql.Tx).StmtContext(ctx, st)
}

// lockRows runs a locking SELECT (… FOR UPDATE) and reads every row, so that
// every row is locked whatever the driver fetches lazily.
func (s *Store) lockRows(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	rows, err := s.query(ctx, tx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
	}
	return rows.Err()
}

// execOne runs a statement that must change exactly one row; it returns
// false when it changed none.
func (s *Store) execOne(ctx context.Context, q querier, query string, args ...any) (bool, error) {
	res, err := s.exec(ctx, q, query, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	return n > 0, nil
}

func notFound(op string) error { return fmt.Errorf("%s: %w", op, store.ErrNotFound) }
func invalid(op, why string) error {
	return fmt.Errorf("%s: %s: %w", op, why, store.ErrInvalid)
}
