package signin

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/sso"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
)

func TestCheckReturnTo(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "/",
		"/pipelines":                   "/pipelines",
		"/runs/run_1?step=sr_2":        "/runs/run_1?step=sr_2",
		"//evil.example.com/x":         "/",
		"/\\evil.example.com":          "/",
		"https://evil.example":         "/",
		"javascript:alert(1)":          "/",
		"/api/v1/auth/session":         "/",
		"/ok\r\nSet-Cookie: x=1":       "/",
		"pipelines":                    "/",
		"/" + strings.Repeat("a", 600): "/",
	} {
		if got := CheckReturnTo(in); got != want {
			t.Errorf("CheckReturnTo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseProviderFlag(t *testing.T) {
	in, err := ParseProviderFlag("name=gitea kind=gitea url=https://git.example.com client-id=abc allowed-orgs=acme,ops display-name=Our+Gitea scopes=openid,email")
	if err != nil {
		t.Fatal(err)
	}
	if in.Name != "gitea" || *in.Kind != "gitea" || *in.URL != "https://git.example.com" || *in.ClientID != "abc" ||
		strings.Join(in.AllowedOrgs, ",") != "acme,ops" || !in.AllowedOrgsSet || *in.DisplayName != "Our Gitea" ||
		strings.Join(in.Scopes, " ") != "openid email" || in.AllowedDomainsSet {
		t.Fatalf("parsed %+v", in)
	}
	for _, bad := range []string{"", "kind=gitea", "name=x bogus", "name=x color=red", "name=x client-secret=s"} {
		if _, err := ParseProviderFlag(bad); err == nil {
			t.Errorf("ParseProviderFlag(%q) accepted", bad)
		}
	}
	if got := SecretEnv("corp-sso"); got != "RUNNEL_SSO_CORP_SSO_CLIENT_SECRET" {
		t.Errorf("SecretEnv = %s", got)
	}
}

// TestSessions: a session stands for its user until it expires, is ended,
// or its user is disabled; a value never issued is refused.
func TestSessions(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s := New(Options{Store: st, SSO: sso.New(), SessionTTL: time.Hour, Clock: func() time.Time { return now }})
	u := &store.User{ID: runnel.NewID("usr"), Login: "sam", Admin: true, CreatedAt: now}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	value, sess, err := s.NewSession(ctx, u, "", Meta{UserAgent: "test", RemoteAddr: "127.0.0.1"}, []string{"read"}, now.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !sess.ExpiresAt.Equal(now.Add(30 * time.Minute)) {
		t.Errorf("a session outlives its token: expires %v", sess.ExpiresAt)
	}
	p, err := s.Principal(ctx, value)
	if err != nil || p.Subject != "sam" || p.Role != "admin" || p.TokenID != sess.ID || strings.Join(p.Scopes, ",") != "read" {
		t.Fatalf("Principal = %+v, %v", p, err)
	}
	unauth := func(what, v string) {
		t.Helper()
		if _, err := s.Principal(ctx, v); !errors.Is(err, runnel.ErrUnauthenticated) {
			t.Errorf("%s: %v, want ErrUnauthenticated", what, err)
		}
	}
	unauth("never issued", "rns_"+strings.Repeat("x", 43))
	unauth("not a session", "rnl_token")
	u.Disabled = true
	if err := st.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	unauth("a disabled user's", value)
	u.Disabled = false
	_ = st.UpdateUser(ctx, u)
	now = now.Add(31 * time.Minute)
	unauth("expired", value)
	now = now.Add(-31 * time.Minute)
	if err := s.EndSession(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	unauth("ended", value)
}

// FuzzCheckReturnTo: whatever a sign-in link carries, the browser lands on
// a local page of the UI.
func FuzzCheckReturnTo(f *testing.F) {
	for _, s := range []string{"/pipelines", "//evil", "/\\evil", "https://x", "/api/v1/x", "/a?b=c#d", "/%2F%2Fevil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := CheckReturnTo(v)
		if got != "/" && got != v {
			t.Fatalf("CheckReturnTo(%q) = %q: neither the input nor /", v, got)
		}
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.HasPrefix(got, "/\\") || strings.ContainsAny(got, "\r\n\\") {
			t.Fatalf("CheckReturnTo(%q) = %q leaves the site", v, got)
		}
		if u, err := url.Parse(got); err != nil || u.Host != "" || u.Scheme != "" {
			t.Fatalf("CheckReturnTo(%q) = %q parses to another host", v, got)
		}
	})
}
