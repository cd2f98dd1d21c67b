package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func testConfig(dataDir string) Config {
	return Config{Addr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", DataDir: dataDir, AdminToken: "test-admin-token-0123456789",
		AgentCapacity: 1, AgentBackend: "local", LeaseDuration: 30 * time.Second, LogCapBytes: 1 << 20, LogLevel: "error",
		OfflineAfter: 30 * time.Second, CronMinInterval: time.Minute, ConfigExtensionTimeout: time.Second,
		MaxArtifactSize: 1 << 20, MaxCacheSize: 1 << 20, EventMaxAge: time.Hour, NotifyAttempts: 1}
}

// TestLifecycle: a failed New releases what it opened (the same data dir
// opens again), Run serves until its context ends, Close releases the rest.
func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(dir)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Addr = busy.Addr().String()
	if _, err := New(context.Background(), cfg, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "listen:") {
		t.Fatalf("New on a busy port: %v", err)
	}

	cfg = testConfig(dir)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.GRPCAddr() == "" {
		t.Error("no gRPC address")
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	resp, err := http.Get("http://" + s.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %s", resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := http.Get("http://" + s.Addr() + "/readyz"); err == nil {
		t.Error("still serving after Close")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Addr = "nope" }, "--addr"},
		{func(c *Config) { c.Database = "mysql://x" }, "--database"},
		{func(c *Config) { c.AgentBackend = "podman" }, "--embedded-agent-backend"},
		{func(c *Config) { c.ConfigExtensionEndpoint = "https://ext.example.com" }, "needs --config-extension-secret"},
		{func(c *Config) { c.EventSinks = []string{"ftp://u:pw@x/y"} }, `"ftp://u:xxxxx@x/y" is not an http(s) URL`},
	} {
		c := testConfig(t.TempDir())
		tc.change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
	}
}

// TestAdminTokenUser: the --admin-token belongs to the site admin "admin",
// who can create users and tokens; a new token value restores "admin" as
// an enabled admin (the way back in when no admin is left).
func TestAdminTokenUser(t *testing.T) {
	dir := t.TempDir()
	start := func(token string) (*Server, func()) {
		cfg := testConfig(dir)
		cfg.AdminToken = token
		s, err := New(context.Background(), cfg, io.Discard, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return s, func() { s.Close() }
	}
	s, stop := start("first-admin-token-0123456789")
	u, err := s.st.UserByLogin(context.Background(), "admin")
	if err != nil || !u.Admin || u.Disabled {
		t.Fatalf("admin user: %+v %v", u, err)
	}
	toks, err := s.st.TokensOfUser(context.Background(), u.ID)
	if err != nil || len(toks) != 1 || toks[0].Role != "admin" {
		t.Fatalf("admin's tokens: %+v %v", toks, err)
	}
	u.Admin, u.Disabled = false, true
	if err := s.st.UpdateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	stop()

	s, stop = start("second-admin-token-0123456789")
	defer stop()
	u2, err := s.st.UserByLogin(context.Background(), "admin")
	if err != nil || u2.ID != u.ID || !u2.Admin || u2.Disabled {
		t.Fatalf("admin user after a new --admin-token: %+v %v", u2, err)
	}
	if toks, _ := s.st.TokensOfUser(context.Background(), u.ID); len(toks) != 2 {
		t.Fatalf("admin's tokens: %+v", toks)
	}
}
