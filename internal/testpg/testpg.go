// Package testpg gives tests a throwaway PostgreSQL database on the server
// named by RUNNEL_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/
// postgres). Without a reachable server the test is skipped, unless
// RUNNEL_TEST_ALL=1 (as in CI), which makes it fail: no silent skips in CI.
package testpg

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// DefaultDSN is the server tests use when RUNNEL_TEST_POSTGRES is unset.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// NewDatabase creates a database that is dropped when the test ends and
// returns its DSN.
func NewDatabase(tb testing.TB) string {
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
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := "runnel_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		admin.Close()
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
		}
		admin.Close()
	})
	db := *u
	db.Path = "/" + name
	return db.String()
}
