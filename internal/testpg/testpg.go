// Package testpg gives tests throwaway PostgreSQL databases on the server named
// by RUNNEL_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres).
// Without a reachable server the test is skipped, unless RUNNEL_TEST_ALL=1 (as
// in CI), which makes it fail: no silent skips in CI.
package testpg

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// DefaultDSN is the server tests use when RUNNEL_TEST_POSTGRES is unset.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Server is a connection to the test server with rights to create databases.
type Server struct {
	// Admin is connected to the server's maintenance database.
	Admin *sql.DB
	base  *url.URL
}

// Connect reaches the test server, or skips (fails with RUNNEL_TEST_ALL=1).
func Connect(tb testing.TB) *Server {
	tb.Helper()
	dsn := os.Getenv("RUNNEL_TEST_POSTGRES")
	if dsn == "" {
		dsn = DefaultDSN
	}
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("RUNNEL_TEST_POSTGRES: %v", err)
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		msg := "PostgreSQL is not reachable at " + u.Redacted() + ": " + err.Error()
		if os.Getenv("RUNNEL_TEST_ALL") == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg + " (set RUNNEL_TEST_POSTGRES, or RUNNEL_TEST_ALL=1 to make this a failure)")
	}
	admin.SetMaxOpenConns(4)
	tb.Cleanup(func() { admin.Close() })
	return &Server{Admin: admin, base: u}
}

// CreateDB creates a database (a copy of template when not empty), dropped
// when the test ends, and returns its name.
func (s *Server) CreateDB(tb testing.TB, template string) string {
	tb.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := "runnel_test_" + hex.EncodeToString(b)
	q := "CREATE DATABASE " + name
	if template != "" {
		q += " TEMPLATE " + template
	}
	ctx := context.Background()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if _, err = s.Admin.ExecContext(ctx, q); err == nil {
			break
		}
		// A template is briefly "being accessed by other users" while the
		// connections that migrated it, or made another copy, close.
		if !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
	tb.Cleanup(func() {
		if _, err := s.Admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
		}
	})
	return name
}

// DSN returns the URL of a database on the server.
func (s *Server) DSN(db string) string {
	u := *s.base
	u.Path = "/" + db
	return u.String()
}

// NewDatabase creates a throwaway database and returns its DSN.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	s := Connect(tb)
	return s.DSN(s.CreateDB(tb, ""))
}
