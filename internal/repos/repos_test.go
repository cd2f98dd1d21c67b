package repos_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/forge/gitea"
	"github.com/runnel-ci/runnel/internal/pipeline"
	"github.com/runnel-ci/runnel/internal/repos"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/sso"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
)

// The service against a fake Gitea (the endpoints internal/forge/gitea
// calls, in Gitea's API shape) and a real SQLite store.

const (
	token       = "gitea_tok_0123456789"
	providerApp = "gitea-app"
	externalURL = "https://ci.example.com"
	sha         = "0123456789abcdef0123456789abcdef01234567"
)

// failure is how the fake answers a route instead of doing its work.
type failure struct {
	status int
	header map[string]string
	body   string
	// delay holds the answer back (until the client gives up).
	delay time.Duration
}

type hookRec struct {
	ID     int      `json:"id"`
	Type   string   `json:"type"`
	Active bool     `json:"active"`
	Events []string `json:"events"`
	Config struct {
		URL         string `json:"url"`
		ContentType string `json:"content_type"`
		Secret      string `json:"secret,omitempty"`
	} `json:"config"`
}

type statusRec struct {
	Repo, SHA   string
	State       string `json:"state"`
	TargetURL   string `json:"target_url"`
	Description string `json:"description"`
	Context     string `json:"context"`
}

// fakeGitea is a Gitea's API: repositories with permissions, their hooks
// and commit statuses. Routes: repos, repo, createHook, hook, deleteHook,
// status.
type fakeGitea struct {
	srv *httptest.Server

	mu       sync.Mutex
	repos    []map[string]any // in list order; "full_name" keys them
	hooks    map[string]map[int]*hookRec
	nextHook int
	statuses []statusRec
	calls    map[string]int
	fail     map[string]failure
}

func newFakeGitea(t *testing.T) *fakeGitea {
	t.Helper()
	g := &fakeGitea{hooks: map[string]map[int]*hookRec{}, nextHook: 100, calls: map[string]int{}, fail: map[string]failure{}}
	mux := http.NewServeMux()
	route := func(pattern, name string, h func(w http.ResponseWriter, r *http.Request)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			g.mu.Lock()
			g.calls[name]++
			f, failing := g.fail[name]
			g.mu.Unlock()
			if r.Header.Get("Authorization") != "token "+token {
				writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "token is required"})
				return
			}
			if failing {
				// Read the request first: the server notices a client that
				// gave up only once the body is consumed.
				_, _ = io.Copy(io.Discard, r.Body)
				if f.delay > 0 {
					select {
					case <-time.After(f.delay):
					case <-r.Context().Done():
						return
					}
				}
				for k, v := range f.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(f.status)
				_, _ = io.WriteString(w, f.body)
				return
			}
			h(w, r)
		})
	}
	route("GET /api/v1/user/repos", "repos", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		defer g.mu.Unlock()
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if limit <= 0 || page <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": "bad paging"})
			return
		}
		from := min((page-1)*limit, len(g.repos))
		to := min(from+limit, len(g.repos))
		if to < len(g.repos) {
			w.Header().Set("Link", fmt.Sprintf(`<%s/api/v1/user/repos?limit=%d&page=%d>; rel="next"`, g.srv.URL, limit, page+1))
		}
		writeJSON(w, http.StatusOK, g.repos[from:to])
	})
	route("GET /api/v1/repos/{owner}/{name}", "repo", func(w http.ResponseWriter, r *http.Request) {
		if repo := g.repo(r); repo != nil {
			writeJSON(w, http.StatusOK, repo)
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "The target couldn't be found."})
	})
	route("POST /api/v1/repos/{owner}/{name}/hooks", "createHook", func(w http.ResponseWriter, r *http.Request) {
		if g.repo(r) == nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "The target couldn't be found."})
			return
		}
		var h hookRec
		if err := json.NewDecoder(r.Body).Decode(&h); err != nil || h.Config.URL == "" || h.Type != "gitea" {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": "invalid hook"})
			return
		}
		g.mu.Lock()
		g.nextHook++
		h.ID = g.nextHook
		full := fullName(r)
		if g.hooks[full] == nil {
			g.hooks[full] = map[int]*hookRec{}
		}
		g.hooks[full][h.ID] = &h
		out := h
		out.Config.Secret = "" // Gitea does not show it
		g.mu.Unlock()
		writeJSON(w, http.StatusCreated, out)
	})
	route("GET /api/v1/repos/{owner}/{name}/hooks/{id}", "hook", func(w http.ResponseWriter, r *http.Request) {
		if h := g.hook(r); h != nil {
			out := *h
			out.Config.Secret = ""
			writeJSON(w, http.StatusOK, out)
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "The target couldn't be found."})
	})
	route("DELETE /api/v1/repos/{owner}/{name}/hooks/{id}", "deleteHook", func(w http.ResponseWriter, r *http.Request) {
		h := g.hook(r)
		if h == nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "The target couldn't be found."})
			return
		}
		g.mu.Lock()
		delete(g.hooks[fullName(r)], h.ID)
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	route("POST /api/v1/repos/{owner}/{name}/statuses/{sha}", "status", func(w http.ResponseWriter, r *http.Request) {
		var s statusRec
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": err.Error()})
			return
		}
		s.Repo, s.SHA = fullName(r), r.PathValue("sha")
		g.mu.Lock()
		g.statuses = append(g.statuses, s)
		g.mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]any{"id": 1, "status": s.State, "context": s.Context})
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fullName(r *http.Request) string { return r.PathValue("owner") + "/" + r.PathValue("name") }

func (g *fakeGitea) repo(r *http.Request) map[string]any {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, repo := range g.repos {
		if repo["full_name"] == fullName(r) {
			return repo
		}
	}
	return nil
}

func (g *fakeGitea) hook(r *http.Request) *hookRec {
	id, _ := strconv.Atoi(r.PathValue("id"))
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hooks[fullName(r)][id]
}

// addRepo adds a repository the account reaches with admin (or only write)
// permission.
func (g *fakeGitea) addRepo(full string, admin bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.repos = append(g.repos, map[string]any{
		"id": len(g.repos) + 1, "full_name": full, "html_url": g.srv.URL + "/" + full, "clone_url": g.srv.URL + "/" + full + ".git",
		"default_branch": "main", "private": true, "language": "Go",
		"permissions": map[string]bool{"admin": admin, "push": true, "pull": true},
	})
}

func (g *fakeGitea) failing(route string, f failure) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail[route] = f
}

func (g *fakeGitea) healed(route string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.fail, route)
}

func (g *fakeGitea) count(route string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[route]
}

func (g *fakeGitea) sent() []statusRec {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.statuses)
}

func (g *fakeGitea) hooksOf(full string) []*hookRec {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*hookRec
	for _, h := range g.hooks[full] {
		c := *h
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *hookRec) int { return a.ID - b.ID })
	return out
}

func (g *fakeGitea) dropHooks(full string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.hooks, full)
}

// fakeTokens opens every credential to the same token; the forge
// application providerApp is the fake Gitea at url.
type fakeTokens struct{ url string }

func (f fakeTokens) AccessToken(context.Context, *store.Credential) (string, error) {
	return token, nil
}

func (f fakeTokens) Provider(_ context.Context, name string) (sso.Provider, error) {
	if name != providerApp {
		return sso.Provider{}, runnel.Errorf(runnel.ErrNotFound, "provider %s not found", name)
	}
	return sso.Provider{Name: name, Kind: sso.KindGitea, URL: f.url, ClientID: "cid", ClientSecret: "cs"}, nil
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// migrated is a new SQLite database with every migration applied, made
// once: each test's store starts as a copy (migrating takes seconds under
// the race detector).
var migrated = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "runnel-repos-test-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "runnel.db")
	st, err := sqlstore.Open(context.Background(), path, sqlstore.Options{})
	if err != nil {
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
})

type env struct {
	t     *testing.T
	ctx   context.Context
	st    *sqlstore.Store
	forge *fakeGitea
	keys  *secret.Keyring
	clock *clock
	svc   *repos.Service
	cred  *store.Credential
}

// newEnv is a service on a new store, with a connected Gitea account
// (e.cred) and the repository acme/app it administers. edit changes the
// options before the service is made.
func newEnv(t *testing.T, edit ...func(o *repos.Options)) *env {
	t.Helper()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "runnel.db")
	db, err := migrated()
	if err != nil {
		t.Fatalf("a migrated database: %v", err)
	}
	if err := os.WriteFile(path, db, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := sqlstore.Open(ctx, path, sqlstore.Options{})
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	keys, err := secret.NewKeyring(raw)
	if err != nil {
		t.Fatal(err)
	}
	g := newFakeGitea(t)
	g.addRepo("acme/app", true)
	e := &env{t: t, ctx: ctx, st: st, forge: g, keys: keys, clock: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	e.cred = &store.Credential{ID: runnel.NewID("cred"), Name: "gitea-app-gina", Kind: "gitea", Host: strings.TrimPrefix(g.srv.URL, "http://"),
		Username: "gina", Ciphertext: []byte("sealed"), KeyID: "k", CreatedBy: "gina", OwnerID: "usr_gina", Provider: providerApp,
		AccountID: "7", LoginName: "gina", CreatedAt: e.clock.now(), UpdatedAt: e.clock.now()}
	if err := st.CreateCredential(ctx, e.cred); err != nil {
		t.Fatal(err)
	}
	pipelines := pipeline.New(pipeline.Options{Store: st, Sealer: keys, Clock: e.clock.now})
	o := repos.Options{Store: st, Tokens: fakeTokens{url: g.srv.URL}, Pipelines: pipelines, Opener: keys,
		ExternalURL: externalURL, HC: &http.Client{Timeout: 5 * time.Second}, Clock: e.clock.now}
	for _, f := range edit {
		f(&o)
	}
	e.svc = repos.New(o)
	return e
}

func (e *env) activate(full string) (*store.Pipeline, *store.RepoBinding, error) {
	return e.svc.Activate(e.ctx, repos.ActivateRequest{CredentialID: e.cred.ID, FullName: full, ProjectID: "proj"})
}

// mustActivate activates acme/app.
func (e *env) mustActivate() (*store.Pipeline, *store.RepoBinding) {
	e.t.Helper()
	p, b, err := e.activate("acme/app")
	if err != nil {
		e.t.Fatalf("Activate: %v", err)
	}
	return p, b
}

// nothingLeft fails unless the store holds no pipeline, binding or webhook
// secret.
func (e *env) nothingLeft(what string) {
	e.t.Helper()
	ps, n, err := e.st.ListPipelines(e.ctx, store.PipelineFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	if n != 0 {
		e.t.Errorf("%s: %d pipelines left behind (%s)", what, n, ps[0].Name)
	}
	bs, err := e.st.ListRepoBindings(e.ctx, "", "")
	if err != nil {
		e.t.Fatal(err)
	}
	if len(bs) != 0 {
		e.t.Errorf("%s: %d repository bindings left behind", what, len(bs))
	}
	ws, err := e.st.ListWebhookSecrets(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(ws) != 0 {
		e.t.Errorf("%s: %d webhook secrets left behind", what, len(ws))
	}
}

func (e *env) binding(pipelineID string) *store.RepoBinding {
	e.t.Helper()
	b, err := e.st.GetRepoBinding(e.ctx, pipelineID)
	if err != nil {
		e.t.Fatalf("GetRepoBinding: %v", err)
	}
	return b
}

// webhookSecret is the pipeline's webhook secret in clear.
func (e *env) webhookSecret(pipelineID string) string {
	e.t.Helper()
	w, err := e.st.GetWebhookSecret(e.ctx, pipelineID)
	if err != nil {
		e.t.Fatalf("GetWebhookSecret: %v", err)
	}
	v, err := e.keys.Open(w.SealID(), w.Ciphertext, w.KeyID)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(v)
}

// wantError fails unless err is of kind and its message has every part.
func wantError(t *testing.T, what string, err, kind error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, kind)
	}
	if !errors.Is(err, kind) {
		t.Errorf("%s: error %q is not %v", what, err, kind)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not say %q", what, err, p)
		}
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("%s: error %q shows the token", what, err)
	}
}

func TestActivate(t *testing.T) {
	e := newEnv(t)
	p, b := e.mustActivate()
	if p.Name != "app" || p.ProjectID != "proj" || p.RepoURL != e.forge.srv.URL+"/acme/app.git" || p.DefaultBranch != "main" ||
		p.CredentialID != e.cred.ID || p.PipelineFilePath != ".runnel/pipeline.yaml" || p.Deactivated {
		t.Errorf("activated pipeline: %+v", p)
	}
	hooks := e.forge.hooksOf("acme/app")
	if len(hooks) != 1 {
		t.Fatalf("the forge has %d hooks, want 1", len(hooks))
	}
	h := hooks[0]
	if h.Config.URL != externalURL+"/api/v1/webhooks/gitea/"+p.ID || !h.Active || h.Config.ContentType != "json" ||
		!slices.Equal(h.Events, gitea.HookEvents) {
		t.Errorf("hook: %+v", h)
	}
	if h.Config.Secret == "" || h.Config.Secret != e.webhookSecret(p.ID) {
		t.Errorf("the hook is signed with %q, not the pipeline's webhook secret", h.Config.Secret)
	}
	want := &store.RepoBinding{PipelineID: p.ID, Provider: providerApp, Kind: "gitea", APIBase: e.forge.srv.URL + "/api/v1",
		FullName: "acme/app", HookID: strconv.Itoa(h.ID), HookState: repos.HookActive}
	for what, got := range map[string]*store.RepoBinding{"returned": b, "stored": e.binding(p.ID)} {
		if got.PipelineID != want.PipelineID || got.Provider != want.Provider || got.Kind != want.Kind || got.APIBase != want.APIBase ||
			got.FullName != want.FullName || got.HookID != want.HookID || got.HookState != want.HookState || got.HookError != "" ||
			got.HookCheckedAt == nil || !got.HookCheckedAt.Equal(e.clock.now()) || got.StatusContext != "" || got.JobStatuses {
			t.Errorf("%s binding: %+v, want %+v", what, got, want)
		}
	}
	// The same repository again: the name is taken, and nothing more is
	// made on the forge.
	_, _, err := e.activate("acme/app")
	wantError(t, "Activate again", err, runnel.ErrConflict, "app")
	if n := len(e.forge.hooksOf("acme/app")); n != 1 {
		t.Errorf("after a refused second activation the forge has %d hooks", n)
	}
}

// TestActivateLeavesNothing: an activation that fails leaves no pipeline,
// binding or webhook secret behind, and says why.
func TestActivateLeavesNothing(t *testing.T) {
	slow := failure{status: http.StatusOK, body: "{}", delay: 3 * time.Second}
	cases := []struct {
		name  string
		setup func(e *env)
		// timeout, when set, is the forge client's.
		timeout time.Duration
		full    string
		kind    error
		parts   []string
		// hooks the forge has afterwards.
		hooks int
	}{
		{name: "no admin permission", setup: func(e *env) { e.forge.addRepo("acme/readonly", false) }, full: "acme/readonly",
			kind: runnel.ErrForbidden, parts: []string{"admin", "acme/readonly", "gitea", "gina", "write permission"}},
		{name: "unknown repository", full: "acme/nope",
			kind: runnel.ErrNotFound, parts: []string{"gitea", "acme/nope"}},
		{name: "hook creation fails", setup: func(e *env) {
			e.forge.failing("createHook", failure{status: http.StatusInternalServerError, body: `{"message":"database is locked"}`})
		}, full: "acme/app", kind: runnel.ErrUpstream, parts: []string{"gitea", "creating the webhook of acme/app", "500"}},
		{name: "hook creation times out", setup: func(e *env) { e.forge.failing("createHook", slow) }, timeout: 200 * time.Millisecond,
			full: "acme/app", kind: runnel.ErrUpstream, parts: []string{"gitea", "did not answer in time", "creating the webhook of acme/app"}},
		{name: "repository read times out", setup: func(e *env) { e.forge.failing("repo", slow) }, timeout: 200 * time.Millisecond,
			full: "acme/app", kind: runnel.ErrUpstream, parts: []string{"gitea", "did not answer in time", "reading repository acme/app"}},
		{name: "token refused", setup: func(e *env) {
			e.forge.failing("repo", failure{status: http.StatusUnauthorized, body: `{"message":"invalid token"}`})
		}, full: "acme/app", kind: runnel.ErrUpstream, parts: []string{"gitea", "refused the account's token", "connect the account again"}},
		{name: "hook creation refused", setup: func(e *env) {
			e.forge.failing("createHook", failure{status: http.StatusForbidden, body: `{"message":"token does not have at least one of required scope(s): [write:repository]"}`})
		}, full: "acme/app", kind: runnel.ErrForbidden, parts: []string{"gitea", "write:repository"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *repos.Options) {
				if c.timeout > 0 {
					o.HC = &http.Client{Timeout: c.timeout}
				}
			})
			if c.setup != nil {
				c.setup(e)
			}
			start := time.Now()
			_, _, err := e.activate(c.full)
			wantError(t, "Activate", err, c.kind, c.parts...)
			if c.timeout > 0 && time.Since(start) > 2*time.Second {
				t.Errorf("Activate took %v with a client timeout of %v", time.Since(start), c.timeout)
			}
			e.nothingLeft("after " + c.name)
			if n := len(e.forge.hooksOf(c.full)); n != c.hooks {
				t.Errorf("the forge has %d hooks, want %d", n, c.hooks)
			}
		})
	}

	t.Run("no external URL", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *repos.Options) { o.ExternalURL = "" })
		_, _, err := e.activate("acme/app")
		wantError(t, "Activate", err, runnel.ErrUnavailable, "--external-url")
		e.nothingLeft("without an external URL")
		if n := e.forge.count("createHook"); n != 0 {
			t.Errorf("a hook was asked for %d times without a URL to deliver to", n)
		}
	})
}

// TestForgeErrors: what the caller is told when the forge does not
// answer, refuses the token, rate-limits or fails.
func TestForgeErrors(t *testing.T) {
	cases := []struct {
		name    string
		fail    failure
		timeout time.Duration
		// down: the forge's address accepts no connection.
		down  bool
		kind  error
		parts []string
	}{
		{name: "does not answer in time", fail: failure{status: 200, body: "[]", delay: 3 * time.Second}, timeout: 200 * time.Millisecond,
			kind: runnel.ErrUpstream, parts: []string{"gitea", "did not answer in time", "listing the account's repositories"}},
		{name: "cannot be reached", down: true,
			kind: runnel.ErrUpstream, parts: []string{"gitea", "could not be reached", "listing the account's repositories"}},
		{name: "token refused", fail: failure{status: http.StatusUnauthorized, body: `{"message":"user does not exist"}`},
			kind: runnel.ErrUpstream, parts: []string{"gitea", "refused the account's token", "connect the account again"}},
		{name: "rate limited", fail: failure{status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "30"}},
			kind: runnel.ErrUnavailable, parts: []string{"gitea", "rate limit", "retry in 30s"}},
		{name: "rate limited with a 403", fail: failure{status: http.StatusForbidden,
			header: map[string]string{"X-RateLimit-Remaining": "0", "Retry-After": "90"}},
			kind: runnel.ErrUnavailable, parts: []string{"gitea", "rate limit", "retry in 1m30s"}},
		{name: "forbidden", fail: failure{status: http.StatusForbidden, body: `{"message":"token does not have at least one of required scope(s): [read:repository]"}`},
			kind: runnel.ErrForbidden, parts: []string{"gitea", "lacks a permission", "read:repository"}},
		{name: "fails", fail: failure{status: http.StatusBadGateway, body: `{"message":"upstream down"}`},
			kind: runnel.ErrUpstream, parts: []string{"gitea failed while listing the account's repositories", "502", "upstream down"}},
		{name: "answers garbage", fail: failure{status: http.StatusOK, body: `<html>login</html>`},
			kind: runnel.ErrUpstream, parts: []string{"gitea", "JSON"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *repos.Options) {
				if c.timeout > 0 {
					o.HC = &http.Client{Timeout: c.timeout}
				}
				if c.down {
					dead := httptest.NewServer(http.NotFoundHandler())
					dead.Close()
					o.Tokens = fakeTokens{url: dead.URL}
				}
			})
			e.forge.failing("repos", c.fail)
			start := time.Now()
			_, err := e.svc.Repositories(e.ctx, e.cred.ID, forge.ListOptions{}, false)
			wantError(t, "Repositories", err, c.kind, c.parts...)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Repositories took %v", took)
			}
			// A failure is not cached: once the forge is back, it answers.
			e.forge.healed("repos")
			if !c.down && c.timeout == 0 {
				page, err := e.svc.Repositories(e.ctx, e.cred.ID, forge.ListOptions{}, false)
				if err != nil || len(page.Repos) != 1 {
					t.Errorf("after the forge recovered: %v, %+v", err, page)
				}
			}
		})
	}

	t.Run("provider gone", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		c := *e.cred
		c.ID, c.Name, c.Provider = runnel.NewID("cred"), "orphan", "deleted-app"
		if err := e.st.CreateCredential(e.ctx, &c); err != nil {
			t.Fatal(err)
		}
		_, err := e.svc.Repositories(e.ctx, c.ID, forge.ListOptions{}, false)
		wantError(t, "Repositories", err, runnel.ErrUnavailable, "deleted-app", "connect the account again")
	})
}

func TestRepositoriesCache(t *testing.T) {
	e := newEnv(t)
	for i := range 3 {
		e.forge.addRepo(fmt.Sprintf("acme/lib%d", i), i%2 == 0)
	}
	list := func(what string, o forge.ListOptions, refresh bool) *repos.RepoPage {
		t.Helper()
		page, err := e.svc.Repositories(e.ctx, e.cred.ID, o, refresh)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return page
	}
	first := list("first", forge.ListOptions{PerPage: 3}, false)
	if e.forge.count("repos") != 1 {
		t.Fatalf("the first list made %d calls", e.forge.count("repos"))
	}
	var names []string
	for _, r := range first.Repos {
		names = append(names, r.FullName)
	}
	if !slices.Equal(names, []string{"acme/app", "acme/lib0", "acme/lib1"}) || first.Next != 2 ||
		!first.Repos[0].Permissions.Admin || first.Repos[2].Permissions.Admin || !first.Repos[2].Permissions.Push ||
		first.Repos[0].CloneURL != e.forge.srv.URL+"/acme/app.git" || first.Repos[0].DefaultBranch != "main" {
		t.Fatalf("first page: %+v", first)
	}

	steps := []struct {
		name    string
		o       forge.ListOptions
		refresh bool
		advance time.Duration
		calls   int // the forge's calls after the step
	}{
		{"the same page again is cached", forge.ListOptions{PerPage: 3}, false, 0, 1},
		{"page 1 spelled out is the same page", forge.ListOptions{PerPage: 3, Page: 1}, false, 0, 1},
		{"refresh asks the forge", forge.ListOptions{PerPage: 3}, true, 0, 2},
		{"and the refreshed page is cached", forge.ListOptions{PerPage: 3}, false, 30 * time.Second, 2},
		{"another page is not the cached one", forge.ListOptions{PerPage: 3, Page: 2}, false, 0, 3},
		{"another page size is not either", forge.ListOptions{PerPage: 2}, false, 0, 4},
		{"a page older than the TTL is fetched again", forge.ListOptions{PerPage: 3}, false, 31 * time.Second, 5},
	}
	for _, s := range steps {
		e.clock.advance(s.advance)
		page := list(s.name, s.o, s.refresh)
		if got := e.forge.count("repos"); got != s.calls {
			t.Fatalf("%s: the forge has had %d calls, want %d", s.name, got, s.calls)
		}
		if s.o.Page == 2 && (len(page.Repos) != 1 || page.Repos[0].FullName != "acme/lib2" || page.Next != 0) {
			t.Fatalf("%s: %+v", s.name, page)
		}
	}
	// A renewed token (the credential updated) is a new cache entry.
	e.cred.UpdatedAt = e.clock.now().Add(time.Second)
	if err := e.st.UpdateCredential(e.ctx, e.cred); err != nil {
		t.Fatal(err)
	}
	list("after the credential changed", forge.ListOptions{PerPage: 3}, false)
	if got := e.forge.count("repos"); got != 6 {
		t.Fatalf("after the credential changed the forge has had %d calls, want 6", got)
	}
}

func TestCheckRepairDeactivate(t *testing.T) {
	e := newEnv(t)
	p, b := e.mustActivate()
	secret := e.webhookSecret(p.ID)

	// The hook is there.
	e.clock.advance(time.Minute)
	got, err := e.svc.CheckHook(e.ctx, p.ID)
	if err != nil || got.HookState != repos.HookActive || got.HookID != b.HookID || got.HookError != "" || !got.HookCheckedAt.Equal(e.clock.now()) {
		t.Fatalf("CheckHook of a live hook: %+v, %v", got, err)
	}

	// Deleted by hand at the forge: the forge answers 404, it is missing.
	e.forge.dropHooks("acme/app")
	e.clock.advance(time.Minute)
	got, err = e.svc.CheckHook(e.ctx, p.ID)
	if err != nil {
		t.Fatalf("CheckHook of a deleted hook: %v", err)
	}
	stored := e.binding(p.ID)
	for what, x := range map[string]*store.RepoBinding{"returned": got, "stored": stored} {
		if x.HookState != repos.HookMissing || x.HookID != b.HookID || !strings.Contains(x.HookError, "repair") ||
			!x.HookCheckedAt.Equal(e.clock.now()) {
			t.Errorf("%s binding after CheckHook of a deleted hook: %+v", what, x)
		}
	}

	// A forge that fails keeps the state and records the error.
	e.forge.failing("hook", failure{status: http.StatusInternalServerError, body: `{"message":"boom"}`})
	got, err = e.svc.CheckHook(e.ctx, p.ID)
	if err != nil || got.HookState != repos.HookMissing || !strings.Contains(got.HookError, "gitea") || !strings.Contains(got.HookError, "boom") {
		t.Errorf("CheckHook while the forge fails: %+v, %v", got, err)
	}
	e.forge.healed("hook")

	// Repair creates it again, with the same secret and URL.
	got, err = e.svc.Repair(e.ctx, p.ID)
	if err != nil {
		t.Fatalf("Repair: %v", err)
	}
	hooks := e.forge.hooksOf("acme/app")
	if len(hooks) != 1 {
		t.Fatalf("after Repair the forge has %d hooks", len(hooks))
	}
	newID := strconv.Itoa(hooks[0].ID)
	if newID == b.HookID || hooks[0].Config.Secret != secret || hooks[0].Config.URL != externalURL+"/api/v1/webhooks/gitea/"+p.ID {
		t.Errorf("repaired hook %+v (old id %s)", hooks[0], b.HookID)
	}
	stored = e.binding(p.ID)
	for what, x := range map[string]*store.RepoBinding{"returned": got, "stored": stored} {
		if x.HookID != newID || x.HookState != repos.HookActive || x.HookError != "" {
			t.Errorf("%s binding after Repair: %+v", what, x)
		}
	}
	// Repairing a live hook changes nothing at the forge.
	if _, err := e.svc.Repair(e.ctx, p.ID); err != nil {
		t.Fatalf("Repair again: %v", err)
	}
	if n := e.forge.count("createHook"); n != 2 {
		t.Errorf("the forge was asked for %d hooks, want 2 (activation, repair)", n)
	}

	// Deactivate removes it and stops cron and webhook runs.
	dp, db, err := e.svc.DeactivatePipeline(e.ctx, p.ID)
	if err != nil {
		t.Fatalf("DeactivatePipeline: %v", err)
	}
	if n := len(e.forge.hooksOf("acme/app")); n != 0 {
		t.Errorf("after deactivation the forge has %d hooks", n)
	}
	if e.forge.count("deleteHook") != 1 {
		t.Errorf("the forge was asked to delete %d hooks", e.forge.count("deleteHook"))
	}
	sp, err := e.st.GetPipeline(e.ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !dp.Deactivated || !sp.Deactivated {
		t.Errorf("deactivated pipeline: returned %v, stored %v", dp.Deactivated, sp.Deactivated)
	}
	stored = e.binding(p.ID)
	for what, x := range map[string]*store.RepoBinding{"returned": db, "stored": stored} {
		if x.HookID != "" || x.HookState != "" || x.HookError != "" || x.FullName != "acme/app" {
			t.Errorf("%s binding after deactivation: %+v", what, x)
		}
	}

	// Activating the pipeline again makes a hook and lifts the deactivation.
	ap, ab, err := e.svc.ActivatePipeline(e.ctx, p.ID, repos.StatusOptions{})
	if err != nil {
		t.Fatalf("ActivatePipeline: %v", err)
	}
	if ap.Deactivated || ab.HookState != repos.HookActive || len(e.forge.hooksOf("acme/app")) != 1 {
		t.Errorf("after ActivatePipeline: deactivated %v, binding %+v, %d hooks", ap.Deactivated, ab, len(e.forge.hooksOf("acme/app")))
	}
}

// TestCheckHooks: the periodic look-up marks the hooks deleted at the forge
// as missing, counts only the newly missing, and goes on past a forge that
// fails.
func TestCheckHooks(t *testing.T) {
	e := newEnv(t)
	e.forge.addRepo("acme/lib", true)
	e.forge.addRepo("acme/web", true)
	ids := map[string]string{}
	for _, full := range []string{"acme/app", "acme/lib", "acme/web"} {
		p, _, err := e.activate(full)
		if err != nil {
			t.Fatalf("Activate %s: %v", full, err)
		}
		ids[full] = p.ID
	}
	// A pipeline whose hook was removed (deactivated) is not looked up.
	if _, _, err := e.svc.DeactivatePipeline(e.ctx, ids["acme/web"]); err != nil {
		t.Fatal(err)
	}
	e.forge.dropHooks("acme/lib")
	before := e.forge.count("hook")
	n, err := e.svc.CheckHooks(e.ctx)
	if err != nil || n != 1 {
		t.Fatalf("CheckHooks = %d, %v; want 1 missing", n, err)
	}
	if got := e.forge.count("hook") - before; got != 2 {
		t.Errorf("CheckHooks looked up %d hooks, want 2 (not the deactivated pipeline's)", got)
	}
	want := map[string]string{"acme/app": repos.HookActive, "acme/lib": repos.HookMissing, "acme/web": ""}
	for full, state := range want {
		if b := e.binding(ids[full]); b.HookState != state {
			t.Errorf("%s: hook state %q, want %q", full, b.HookState, state)
		}
	}
	// Already missing: not counted again. A failing forge is skipped.
	e.forge.failing("hook", failure{status: http.StatusBadGateway})
	n, err = e.svc.CheckHooks(e.ctx)
	if err != nil || n != 0 {
		t.Fatalf("CheckHooks again = %d, %v; want 0 newly missing", n, err)
	}
	if b := e.binding(ids["acme/app"]); b.HookState != repos.HookActive || !strings.Contains(b.HookError, "502") {
		t.Errorf("acme/app while the forge fails: %+v", b)
	}
}

// reportEnv is a pipeline "app" bound to acme/app with a run of one job
// on commit, and the service to report with.
type reportEnv struct {
	*env
	p   *store.Pipeline
	run *store.Run
}

func newReportEnv(t *testing.T, b store.RepoBinding, commit string, trigger json.RawMessage, edit ...func(o *repos.Options)) *reportEnv {
	t.Helper()
	e := newEnv(t, edit...)
	p := &store.Pipeline{ID: runnel.NewID("pl"), ProjectID: "proj", Name: "app", RepoURL: e.forge.srv.URL + "/acme/app.git",
		CredentialID: e.cred.ID, Metadata: map[string]any{}, CreatedAt: e.clock.now(), UpdatedAt: e.clock.now()}
	if err := e.st.CreatePipeline(e.ctx, p); err != nil {
		t.Fatal(err)
	}
	b.PipelineID, b.Provider, b.Kind, b.FullName = p.ID, providerApp, "gitea", "acme/app"
	if b.APIBase == "" {
		b.APIBase = e.forge.srv.URL + "/api/v1"
	}
	if err := e.st.PutRepoBinding(e.ctx, &b); err != nil {
		t.Fatal(err)
	}
	run := &store.Run{ID: runnel.NewID("run"), PipelineID: p.ID, Status: runnel.RunPending, TriggerType: "manual", TriggeredBy: "gina",
		Commit: commit, Trigger: trigger, CreatedAt: e.clock.now()}
	job := &store.JobRun{ID: runnel.NewID("jr"), RunID: run.ID, Key: "build/test", Name: "test", Stage: "build", Status: runnel.JobPending, Attempt: 1}
	created, _, err := e.st.CreateRun(e.ctx, &store.NewRun{Run: run, Jobs: []*store.JobRun{job}})
	if err != nil {
		t.Fatal(err)
	}
	return &reportEnv{env: e, p: p, run: created}
}

func (r *reportEnv) event(typ string, sc store.StatusChange) *store.RunEvent {
	sc.RunID, sc.PipelineID, sc.RunNumber = r.run.ID, r.p.ID, r.run.Number
	if typ == store.EventJobStatus {
		sc.Key, sc.Name, sc.Stage = "build/test", "test", "build"
	}
	data, _ := json.Marshal(sc)
	return &store.RunEvent{ID: 1, RunID: r.run.ID, Seq: 1, PipelineID: r.p.ID, ProjectID: "proj", Type: typ, Data: data, Time: r.clock.now()}
}

func (r *reportEnv) records() []*store.CommitStatusRecord {
	r.t.Helper()
	cs, err := r.st.ListCommitStatuses(r.ctx, r.run.ID)
	if err != nil {
		r.t.Fatal(err)
	}
	return cs
}

// TestReportStates: the commit status each run and job status reports,
// in Runnel's words (the record) and Gitea's (what is sent).
func TestReportStates(t *testing.T) {
	cases := []struct {
		name        string
		typ         string
		status      string
		reason      string
		jobStatuses bool
		// want: nothing sent when state is "".
		state, giteaState, description string
	}{
		{"run pending", store.EventRunStatus, "pending", "", false, "pending", "pending", "Run #1 queued"},
		{"run running", store.EventRunStatus, "running", "", false, "running", "pending", "Run #1 running"},
		{"run paused", store.EventRunStatus, "paused", "waits for an approval", false, "running", "pending", "Run #1 paused"},
		{"run success", store.EventRunStatus, "success", "all good", false, "success", "success", "Run #1 succeeded"},
		{"run failed", store.EventRunStatus, "failed", "job build/test failed", false, "failure", "failure", "Run #1 failed: job build/test failed"},
		{"run partial", store.EventRunStatus, "partial", "", false, "failure", "failure", "Run #1 partly failed"},
		{"run cancelled", store.EventRunStatus, "cancelled", "stopped by gina", false, "cancelled", "error", "Run #1 cancelled: stopped by gina"},
		{"run status with job statuses on", store.EventRunStatus, "success", "", true, "success", "success", "Run #1 succeeded"},
		{"job pending", store.EventJobStatus, "pending", "", true, "pending", "pending", "Job test queued"},
		{"job queued", store.EventJobStatus, "queued", "", true, "pending", "pending", "Job test queued"},
		{"job running", store.EventJobStatus, "running", "", true, "running", "pending", "Job test running"},
		{"job success", store.EventJobStatus, "success", "", true, "success", "success", "Job test succeeded"},
		{"job failed", store.EventJobStatus, "failed", "exit code 1", true, "failure", "failure", "Job test failed"},
		{"job cancelled", store.EventJobStatus, "cancelled", "", true, "cancelled", "error", "Job test cancelled"},
		{"job skipped", store.EventJobStatus, "skipped", "", true, "success", "success", "Job test skipped"},
		{"job without job statuses", store.EventJobStatus, "running", "", false, "", "", ""},
		{"job of an unknown status", store.EventJobStatus, "waiting", "", true, "", "", ""},
		{"a step is not reported", store.EventStepStatus, "running", "", true, "", "", ""},
		{"nor an approval", "approval.requested", "", "", true, "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newReportEnv(t, store.RepoBinding{JobStatuses: c.jobStatuses}, sha, nil)
			if err := r.svc.Report(r.ctx, r.event(c.typ, store.StatusChange{Status: c.status, Reason: c.reason}), 1); err != nil {
				t.Fatalf("Report: %v", err)
			}
			sent, recs := r.forge.sent(), r.records()
			if c.state == "" {
				if len(sent) != 0 || len(recs) != 0 {
					t.Fatalf("reported %+v, recorded %+v; want nothing", sent, recs)
				}
				return
			}
			wantCtx := "runnel/app"
			if c.typ == store.EventJobStatus {
				wantCtx += "/build/test"
			}
			want := statusRec{Repo: "acme/app", SHA: sha, State: c.giteaState, TargetURL: externalURL + "/runs/" + r.run.ID,
				Description: c.description, Context: wantCtx}
			if len(sent) != 1 || sent[0] != want {
				t.Fatalf("sent %+v\nwant %+v", sent, want)
			}
			wantRec := store.CommitStatusRecord{RunID: r.run.ID, Context: wantCtx, SHA: sha, State: c.state, Description: c.description,
				TargetURL: want.TargetURL, Attempts: 1, UpdatedAt: r.clock.now()}
			if len(recs) != 1 || *recs[0] != wantRec {
				t.Fatalf("recorded %+v\nwant %+v", recs, wantRec)
			}
		})
	}
}

// TestReportOptions: the context, the link, and which commit.
func TestReportOptions(t *testing.T) {
	cases := []struct {
		name    string
		binding store.RepoBinding
		commit  string
		trigger json.RawMessage
		edit    func(o *repos.Options)
		typ     string
		// want: "" when nothing is reported.
		wantSHA, wantCtx, wantURL string
	}{
		{name: "context defaults to runnel/<pipeline>", commit: sha, typ: store.EventRunStatus,
			wantSHA: sha, wantCtx: "runnel/app", wantURL: externalURL + "/runs/{run}"},
		{name: "the binding's context", binding: store.RepoBinding{StatusContext: "ci/runnel", JobStatuses: true}, commit: sha,
			typ: store.EventRunStatus, wantSHA: sha, wantCtx: "ci/runnel", wantURL: externalURL + "/runs/{run}"},
		{name: "a job under the binding's context", binding: store.RepoBinding{StatusContext: "ci/runnel", JobStatuses: true}, commit: sha,
			typ: store.EventJobStatus, wantSHA: sha, wantCtx: "ci/runnel/build/test", wantURL: externalURL + "/runs/{run}"},
		{name: "the server's prefix", edit: func(o *repos.Options) { o.StatusContext = "acme-ci" }, commit: sha,
			typ: store.EventRunStatus, wantSHA: sha, wantCtx: "acme-ci/app", wantURL: externalURL + "/runs/{run}"},
		{name: "external URL with a slash", edit: func(o *repos.Options) { o.ExternalURL = externalURL + "/" }, commit: sha,
			typ: store.EventRunStatus, wantSHA: sha, wantCtx: "runnel/app", wantURL: externalURL + "/runs/{run}"},
		{name: "no external URL, no link", edit: func(o *repos.Options) { o.ExternalURL = "" }, commit: sha,
			typ: store.EventRunStatus, wantSHA: sha, wantCtx: "runnel/app", wantURL: ""},
		{name: "the trigger's commit", commit: "", trigger: json.RawMessage(`{"event":"push","commit":"abcdef1234567"}`),
			typ: store.EventRunStatus, wantSHA: "abcdef1234567", wantCtx: "runnel/app", wantURL: externalURL + "/runs/{run}"},
		{name: "no commit", commit: "", typ: store.EventRunStatus},
		{name: "a short id is no commit", commit: "abc12", typ: store.EventRunStatus},
		{name: "a branch is no commit", commit: "main", typ: store.EventRunStatus},
		{name: "upper case is no Git commit", commit: strings.ToUpper(sha), typ: store.EventRunStatus},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var edit []func(o *repos.Options)
			if c.edit != nil {
				edit = append(edit, c.edit)
			}
			r := newReportEnv(t, c.binding, c.commit, c.trigger, edit...)
			if err := r.svc.Report(r.ctx, r.event(c.typ, store.StatusChange{Status: "running"}), 2); err != nil {
				t.Fatalf("Report: %v", err)
			}
			sent, recs := r.forge.sent(), r.records()
			if c.wantSHA == "" {
				if len(sent) != 0 || len(recs) != 0 {
					t.Fatalf("reported %+v, recorded %+v; want nothing", sent, recs)
				}
				return
			}
			wantURL := strings.ReplaceAll(c.wantURL, "{run}", r.run.ID)
			if len(sent) != 1 || sent[0].SHA != c.wantSHA || sent[0].Context != c.wantCtx || sent[0].TargetURL != wantURL {
				t.Fatalf("sent %+v; want commit %s, context %s, link %q", sent, c.wantSHA, c.wantCtx, wantURL)
			}
			if len(recs) != 1 || recs[0].SHA != c.wantSHA || recs[0].Context != c.wantCtx || recs[0].TargetURL != wantURL ||
				recs[0].Attempts != 2 || recs[0].Error != "" {
				t.Fatalf("recorded %+v", recs)
			}
		})
	}
}

// TestReportFailures: a failure another attempt may cure is returned (the
// outbox retries); one it cannot is recorded and dropped. Either way the
// run's record shows the error.
func TestReportFailures(t *testing.T) {
	cases := []struct {
		name  string
		fail  failure
		down  bool
		retry bool
		parts []string
	}{
		{name: "server error", fail: failure{status: http.StatusInternalServerError, body: `{"message":"database is locked"}`}, retry: true,
			parts: []string{"gitea", "500", "database is locked"}},
		{name: "bad gateway", fail: failure{status: http.StatusBadGateway}, retry: true, parts: []string{"502"}},
		{name: "rate limited", fail: failure{status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "30"}}, retry: true,
			parts: []string{"429"}},
		{name: "request timeout", fail: failure{status: http.StatusRequestTimeout}, retry: true, parts: []string{"408"}},
		{name: "unreachable", down: true, retry: true, parts: []string{"gitea"}},
		{name: "unknown commit", fail: failure{status: http.StatusUnprocessableEntity, body: `{"message":"commit does not exist"}`},
			parts: []string{"422", "commit does not exist"}},
		{name: "token refused", fail: failure{status: http.StatusUnauthorized}, parts: []string{"401"}},
		{name: "no permission", fail: failure{status: http.StatusForbidden, body: `{"message":"no write access"}`}, parts: []string{"403", "no write access"}},
		{name: "repository gone", fail: failure{status: http.StatusNotFound}, parts: []string{"404"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := store.RepoBinding{}
			if c.down {
				dead := httptest.NewServer(http.NotFoundHandler())
				dead.Close()
				b.APIBase = dead.URL + "/api/v1"
			}
			r := newReportEnv(t, b, sha, nil)
			r.forge.failing("status", c.fail)
			err := r.svc.Report(r.ctx, r.event(store.EventRunStatus, store.StatusChange{Status: "success"}), 3)
			if c.retry && err == nil {
				t.Fatalf("Report returned nil: the outbox would not retry")
			}
			if !c.retry && err != nil {
				t.Fatalf("Report returned %v: the outbox would retry what cannot succeed", err)
			}
			recs := r.records()
			if len(recs) != 1 || recs[0].State != forge.StatusSuccess || recs[0].Attempts != 3 || recs[0].Context != "runnel/app" {
				t.Fatalf("recorded %+v", recs)
			}
			for _, p := range c.parts {
				if !strings.Contains(recs[0].Error, p) {
					t.Errorf("recorded error %q does not say %q", recs[0].Error, p)
				}
			}
			if strings.Contains(recs[0].Error, token) || (err != nil && strings.Contains(err.Error(), token)) {
				t.Errorf("the token shows in %q / %v", recs[0].Error, err)
			}
			// The next attempt succeeds and clears the error.
			r.forge.healed("status")
			if c.down {
				return
			}
			if err := r.svc.Report(r.ctx, r.event(store.EventRunStatus, store.StatusChange{Status: "success"}), 4); err != nil {
				t.Fatalf("Report once the forge is back: %v", err)
			}
			recs = r.records()
			if len(recs) != 1 || recs[0].Error != "" || recs[0].Attempts != 4 || len(r.forge.sent()) != 1 {
				t.Fatalf("after a successful attempt: recorded %+v, sent %+v", recs, r.forge.sent())
			}
		})
	}

	t.Run("no credential", func(t *testing.T) {
		t.Parallel()
		r := newReportEnv(t, store.RepoBinding{}, sha, nil)
		r.p.CredentialID = ""
		if err := r.st.UpdatePipeline(r.ctx, r.p); err != nil {
			t.Fatal(err)
		}
		if err := r.svc.Report(r.ctx, r.event(store.EventRunStatus, store.StatusChange{Status: "pending"}), 1); err != nil {
			t.Fatalf("Report: %v (a pipeline without a credential cannot be cured by a retry)", err)
		}
		if recs := r.records(); len(recs) != 1 || !strings.Contains(recs[0].Error, "credential") {
			t.Fatalf("recorded %+v", recs)
		}
	})

	t.Run("unbound pipeline", func(t *testing.T) {
		t.Parallel()
		r := newReportEnv(t, store.RepoBinding{}, sha, nil)
		if err := r.st.DeleteRepoBinding(r.ctx, r.p.ID); err != nil {
			t.Fatal(err)
		}
		if err := r.svc.Report(r.ctx, r.event(store.EventRunStatus, store.StatusChange{Status: "pending"}), 1); err != nil {
			t.Fatalf("Report: %v", err)
		}
		if len(r.forge.sent()) != 0 || len(r.records()) != 0 {
			t.Fatalf("an unbound pipeline's run reported %+v", r.forge.sent())
		}
	})
}

// TestReportFromOutbox: the store queues a bound pipeline's run and job
// events for store.ForgeStatusSink; reported in order, the commit ends
// with the run's last state.
func TestReportFromOutbox(t *testing.T) {
	r := newReportEnv(t, store.RepoBinding{JobStatuses: true}, sha, nil)
	// The job starts and ends, then the run.
	now := time.Now().UTC()
	step := func(fn func(tr *store.RunTree, tx store.RunTx) error) {
		t.Helper()
		err := r.st.UpdateRunTx(r.ctx, r.run.ID, func(tx store.RunTx) error {
			tr, err := tx.Tree()
			if err != nil {
				return err
			}
			return fn(tr, tx)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	step(func(tr *store.RunTree, tx store.RunTx) error {
		tr.Run.Status, tr.Run.StartedAt = runnel.RunRunning, &now
		if err := tx.UpdateRun(tr.Run); err != nil {
			return err
		}
		j := tr.Jobs[0]
		j.Status, j.QueuedAt = runnel.JobQueued, &now
		return tx.UpdateJob(j)
	})
	j, err := r.st.ClaimJob(r.ctx, "agent", []string{""}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.ExtendLease(r.ctx, j.ID, j.LeaseID, time.Minute); err != nil {
		t.Fatal(err)
	}
	step(func(tr *store.RunTree, tx store.RunTx) error {
		j := tr.Jobs[0]
		j.Status, j.EndedAt = runnel.JobFailed, &now
		if err := tx.UpdateJob(j); err != nil {
			return err
		}
		tr.Run.Status, tr.Run.EndedAt, tr.Run.Reason = runnel.RunFailed, &now, "job build/test failed"
		return tx.UpdateRun(tr.Run)
	})

	for range 20 {
		ds, err := r.st.ClaimDeliveries(r.ctx, time.Now().UTC(), time.Minute, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			if d.Sink == store.ForgeStatusSink {
				if err := r.svc.Notify(r.ctx, d.Event, d.Attempts+1); err != nil {
					t.Fatalf("Notify: %v", err)
				}
			}
			if err := r.st.DeliveryDone(r.ctx, d.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []string
	for _, s := range r.forge.sent() {
		got = append(got, s.Context+" "+s.State+" "+s.Description)
	}
	want := []string{
		"runnel/app pending Run #1 queued",
		"runnel/app pending Run #1 running",
		"runnel/app/build/test pending Job test running",
		"runnel/app/build/test failure Job test failed",
		"runnel/app failure Run #1 failed: job build/test failed",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("sent\n %q\nwant\n %q", got, want)
	}
	recs := r.records()
	if len(recs) != 2 || recs[0].Context != "runnel/app" || recs[0].State != forge.StatusFailure ||
		recs[1].Context != "runnel/app/build/test" || recs[1].State != forge.StatusFailure {
		t.Fatalf("recorded %+v", recs)
	}
}
