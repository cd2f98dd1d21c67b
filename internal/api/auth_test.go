package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAuth(t *testing.T) {
	e := newEnv(t)
	past := e.clock.Now().Add(-time.Hour)
	future := e.clock.Now().Add(time.Hour)
	expired := e.addToken("old", "user_old", "user", &past)
	valid := e.addToken("soon", "user_soon", "user", &future)
	agent := e.addToken("agent-1", "agent_1", "agent", nil)
	admin := e.addToken("root", "admin_root", "admin", nil)

	tests := []struct {
		name   string
		opt    reqOpt
		status int
		msg    string
	}{
		{"missing", withToken(""), 401, "header Authorization: missing"},
		{"not bearer", withHeader("Authorization", "Basic dXNlcjpwYXNz"), 401, `must be "Bearer <token>"`},
		{"empty bearer", withHeader("Authorization", "Bearer "), 401, "header Authorization"},
		{"wrong", withToken("rn_not-a-token"), 401, "unknown or revoked token"},
		{"expired", withToken(expired), 401, "the token expired at 2026-03-02T09:00:00.000Z"},
		{"agent", withToken(agent), 403, "agent tokens (agent-1) cannot call the user API"},
		{"not yet expired", withToken(valid), 200, ""},
		{"admin", withToken(admin), 200, ""},
		{"user", withToken(e.token), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("GET", "/api/v1/pipelines", nil, tt.opt)
			if tt.status != 200 {
				r.mustErr(t, tt.status, tt.msg)
				if tt.status == 401 && r.header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
				return
			}
			r.must(t, 200)
		})
	}

	// Every /api/v1 route needs the token, whatever the method.
	for _, rt := range e.srv.routes() {
		if rt.Public {
			continue
		}
		path := samplePath(rt.Path)
		r := e.do(rt.Method, path, nil, withToken(""))
		r.mustErr(t, 401, "header Authorization")
	}

	// Health and the document are open.
	e.do("GET", "/healthz", nil, withToken("")).must(t, 200)
	e.do("GET", "/readyz", nil, withToken("")).must(t, 200)
	e.do("GET", "/api/v1/openapi.json", nil, withToken("")).must(t, 200)
}

// samplePath fills a route template with well-formed ids that do not exist.
func samplePath(tmpl string) string {
	r := map[string]string{
		"{pipelineId}":   "pl_aaaaaaaaaaaaaaaaaaaa",
		"{runId}":        "run_aaaaaaaaaaaaaaaaaaaa",
		"{stepRunId}":    "sr_aaaaaaaaaaaaaaaaaaaa",
		"{agentId}":      "agent_aaaaaaaaaaaaaaaaaaaa",
		"{tokenId}":      "rt_aaaaaaaaaaaaaaaaaaaa",
		"{secretId}":     "sec_aaaaaaaaaaaaaaaaaaaa",
		"{credentialId}": "cred_aaaaaaaaaaaaaaaaaaaa",
		"{artifactId}":   "art_aaaaaaaaaaaaaaaaaaaa",
		"{approvalId}":   "apr_aaaaaaaaaaaaaaaaaaaa",
		"{provider}":     "github",
		"{namespace}":    "nosuchns",
		"{repo_name}":    "nosuchrepo",
		"{repoName}":     "nosuchrepo",
		"{build_id}":     "run_aaaaaaaaaaaaaaaaaaaa",
		"{buildId}":      "run_aaaaaaaaaaaaaaaaaaaa",
		"{userId}":       "usr_aaaaaaaaaaaaaaaaaaaa",
		"{projectId}":    "nosuchproject",
		"{memberId}":     "usr_aaaaaaaaaaaaaaaaaaaa",
		"{teamId}":       "tm_aaaaaaaaaaaaaaaaaaaa",
		"{name}":         "nosuchprovider",
		"{sessionId}":    "ses_aaaaaaaaaaaaaaaaaaaa",
	}
	if strings.HasPrefix(tmpl, "/api/v1/tokens/") {
		r["{tokenId}"] = "tok_aaaaaaaaaaaaaaaaaaaa" // API tokens; {tokenId} elsewhere is a registration token's
	}
	for k, v := range r {
		tmpl = strings.ReplaceAll(tmpl, k, v)
	}
	return tmpl
}

// TestAuthSubjectDefaults: the token's subject is who created, edited and
// triggered when the body does not say.
func TestAuthSubjectDefaults(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("build-main", nil)
	p := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()
	if p["createdBy"] != "user_alice" {
		t.Errorf("createdBy = %v, want the token's subject user_alice", p["createdBy"])
	}
	saved := e.saveSpec(pid, map[string]any{"spec": goodSpec})
	if saved["editor"] != "user_alice" {
		t.Errorf("editor = %v, want user_alice", saved["editor"])
	}
	e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200)
	calls := e.runs.Calls()
	if len(calls) != 1 || !strings.Contains(calls[0], "by=user_alice") || !strings.Contains(calls[0], "type=manual") {
		t.Errorf("trigger calls = %v, want one by user_alice, manual", calls)
	}
	// An explicit value wins.
	e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", map[string]any{"triggeredBy": "user_bob"}).must(t, 200)
	if calls := e.runs.Calls(); !strings.Contains(calls[1], "by=user_bob") {
		t.Errorf("trigger call = %v, want by=user_bob", calls[1])
	}
}

// TestAuthTouchOncePerMinute: last-used is written on first use and then at
// most once a minute, not on every request.
func TestAuthTouchOncePerMinute(t *testing.T) {
	e := newEnv(t)
	lastUsed := func() time.Time {
		t.Helper()
		toks, err := e.st.ListTokens(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range toks {
			if tok.Subject == "user_alice" {
				if tok.LastUsedAt == nil {
					return time.Time{}
				}
				return tok.LastUsedAt.UTC()
			}
		}
		t.Fatal("token not found")
		return time.Time{}
	}
	if !lastUsed().IsZero() {
		t.Fatal("token used before any request")
	}
	t0 := e.clock.Now()
	e.do("GET", "/api/v1/pipelines", nil).must(t, http.StatusOK)
	if got := lastUsed(); !got.Equal(t0) {
		t.Fatalf("last used %v, want %v", got, t0)
	}
	e.clock.Advance(30 * time.Second)
	e.do("GET", "/api/v1/pipelines", nil).must(t, http.StatusOK)
	if got := lastUsed(); !got.Equal(t0) {
		t.Fatalf("last used rewritten after 30s: %v", got)
	}
	e.clock.Advance(31 * time.Second)
	e.do("GET", "/api/v1/pipelines", nil).must(t, http.StatusOK)
	if got := lastUsed(); !got.Equal(e.clock.Now()) {
		t.Fatalf("last used %v after a minute, want %v", got, e.clock.Now())
	}
}

// TestMe: GET /api/v1/me describes the caller's token.
func TestMe(t *testing.T) {
	e := newEnv(t)
	admin := e.addToken("root", "admin_root", "admin", nil)
	tokenID := func(subject string) string {
		t.Helper()
		toks, err := e.st.ListTokens(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range toks {
			if tok.Subject == subject {
				return tok.ID
			}
		}
		t.Fatalf("no token of %s", subject)
		return ""
	}

	// The user is checked apart (its times vary); tokens without scopes
	// have every scope of their role.
	me := func(tok string) map[string]any {
		t.Helper()
		d := e.do("GET", "/api/v1/me", nil, withToken(tok)).must(t, http.StatusOK).detail()
		if u, _ := d["user"].(map[string]any); u == nil || u["login"] != d["subject"] {
			t.Errorf("me: user %v, want the user %v", d["user"], d["subject"])
		}
		delete(d, "user")
		return d
	}
	got := me(admin)
	want := map[string]any{"subject": "admin_root", "role": "admin", "tokenId": tokenID("admin_root"),
		"scopes": []any{"read", "run", "write", "admin"}, "projects": []any{}}
	if !sameJSON(got, want) {
		t.Errorf("admin: %v, want %v", got, want)
	}

	got = me(e.token)
	want = map[string]any{"subject": "user_alice", "role": "user", "tokenId": tokenID("user_alice"),
		"scopes": []any{"read", "run", "write"}, "projects": []any{}}
	if !sameJSON(got, want) {
		t.Errorf("user: %v, want %v", got, want)
	}

	r := e.do("GET", "/api/v1/me", nil, withToken("")).mustErr(t, http.StatusUnauthorized, "header Authorization: missing")
	if r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate")
	}
	agent := e.addToken("agent-1", "agent_1", "agent", nil)
	e.do("GET", "/api/v1/me", nil, withToken(agent)).mustErr(t, http.StatusForbidden, "agent tokens")
}
