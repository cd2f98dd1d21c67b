package sqlstore

import (
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect holds what differs between SQLite and PostgreSQL. Queries are
// written once with ? placeholders and row-lock clauses taken from here.
type dialect struct {
	name string
	// postgres: placeholders are $1, $2, …
	postgres bool
	// forUpdate locks the selected rows until commit. SQLite has no row
	// locks and needs none: its write transactions begin with BEGIN
	// IMMEDIATE, which already excludes every other writer.
	forUpdate string
	// skipLocked is forUpdate for queue scans: rows another claimer holds are
	// skipped instead of waited for.
	skipLocked string
	// forShare keeps a row from changing until commit without blocking other
	// readers that also share it (the lease check of UpdateStep).
	forShare string
}

var (
	sqliteDialect   = dialect{name: "sqlite"}
	postgresDialect = dialect{
		name:       "postgres",
		postgres:   true,
		forUpdate:  " FOR UPDATE",
		skipLocked: " FOR UPDATE SKIP LOCKED",
		forShare:   " FOR SHARE",
	}
)

// rebind turns ? placeholders into $n on PostgreSQL. The store's queries hold
// no ? inside string literals, so a plain scan is enough.
func (d dialect) rebind(q string) string {
	if !d.postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// isUnique reports a unique or primary key violation.
func (d dialect) isUnique(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// isForeignKey reports a foreign key violation (a parent row is missing).
func (d dialect) isForeignKey(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23503"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}

// retryable reports a transient conflict between transactions: the same
// transaction run again can succeed.
func (d dialect) retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// serialization_failure, deadlock_detected
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		// The primary code is in the low byte (SQLITE_BUSY_SNAPSHOT etc.).
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}
