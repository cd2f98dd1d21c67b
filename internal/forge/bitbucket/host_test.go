package bitbucket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/forge"
)

const testToken = "bb-secret-token-3f9a"

// request is what the fake Bitbucket received.
type request struct {
	Method, Path, EscapedPath string
	Query                     url.Values
	Body                      map[string]any
}

// fakeBitbucket answers like Bitbucket Cloud's REST API 2.0 under /api/2.0
// (the path a stand-in server has, see APIBase), from the shapes of its
// documentation.
type fakeBitbucket struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	requests []request
	// perms is the account's permission by repository full name.
	perms map[string]string
	// hooks by UUID.
	hooks map[string]map[string]any
	// nextOverride replaces the next link of the first repositories page.
	nextOverride string
}

func newFake(t *testing.T) *fakeBitbucket {
	t.Helper()
	f := &fakeBitbucket{t: t,
		perms: map[string]string{"team/api": "admin", "team/service": "write", "team/web": "read"},
		hooks: map[string]map[string]any{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeBitbucket) conn() forge.Conn {
	u, _ := url.Parse(f.srv.URL)
	return forge.Conn{Base: Forge{}.APIBase(u.Scheme, u.Host), Token: testToken}
}

func (f *fakeBitbucket) received() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

func (f *fakeBitbucket) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]any{"type": "error", "error": map[string]any{"message": "Resource not found"}})
}

func repoJSON(fullName, lang string, private bool) map[string]any {
	slug := fullName[strings.Index(fullName, "/")+1:]
	return map[string]any{
		"type": "repository", "full_name": fullName, "name": slug, "slug": slug,
		"uuid": "{" + slug + "-uuid}", "is_private": private, "language": lang,
		"mainbranch": map[string]any{"type": "branch", "name": "main"},
		"links": map[string]any{
			"html": map[string]any{"href": "https://bitbucket.org/" + fullName},
			"clone": []any{
				map[string]any{"name": "https", "href": "https://alice@bitbucket.org/" + fullName + ".git"},
				map[string]any{"name": "ssh", "href": "git@bitbucket.org:" + fullName + ".git"},
			},
		},
	}
}

var fullNameTerm = regexp.MustCompile(`repository\.full_name="((?:[^"\\]|\\.)*)"`)

func (f *fakeBitbucket) serve(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"type": "error", "error": map[string]any{"message": "Access token expired: " + got}})
		return
	}
	req := request{Method: r.Method, Path: r.URL.Path, EscapedPath: r.URL.EscapedPath(), Query: r.URL.Query()}
	if b, _ := io.ReadAll(r.Body); len(b) > 0 {
		if r.Header.Get("Content-Type") != "application/json" {
			f.t.Errorf("%s %s: Content-Type %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		if err := json.Unmarshal(b, &req.Body); err != nil {
			f.t.Errorf("%s %s: body is not JSON: %v", r.Method, r.URL.Path, err)
		}
	}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()

	path, ok := strings.CutPrefix(r.URL.Path, "/api/2.0")
	if !ok {
		notFound(w)
		return
	}
	switch {
	case r.Method == http.MethodGet && path == "/user":
		writeJSON(w, http.StatusOK, map[string]any{
			"type": "user", "uuid": "{d301aafa-d676-4ee0-88be-962be7417567}", "username": "emma",
			"nickname": "emma", "display_name": "Emma Lopez", "account_id": "557058:1234",
			"links": map[string]any{"avatar": map[string]any{"href": "https://avatar-management.example/emma.png"}},
		})
	case r.Method == http.MethodGet && path == "/repositories":
		f.repositories(w, r)
	case r.Method == http.MethodGet && path == "/user/permissions/repositories":
		var values []any
		for _, m := range fullNameTerm.FindAllStringSubmatch(r.URL.Query().Get("q"), -1) {
			name := strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(m[1])
			if p, ok := f.perms[name]; ok {
				values = append(values, map[string]any{
					"type":       "repository_permission",
					"user":       map[string]any{"type": "user", "uuid": "{d301aafa-d676-4ee0-88be-962be7417567}"},
					"repository": map[string]any{"type": "repository", "full_name": name, "name": name[strings.Index(name, "/")+1:]},
					"permission": p,
				})
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"pagelen": 100, "page": 1, "size": len(values), "values": values})
	case r.Method == http.MethodGet && (path == "/repositories/team/service" || path == "/repositories/team/api"):
		writeJSON(w, http.StatusOK, repoJSON(strings.TrimPrefix(path, "/repositories/"), "go", true))
	case strings.HasPrefix(path, "/repositories/team/service/hooks"):
		f.hook(w, r, strings.TrimPrefix(path, "/repositories/team/service/hooks"), req.Body)
	case r.Method == http.MethodPost && strings.HasPrefix(path, "/repositories/team/service/commit/") && strings.HasSuffix(path, "/statuses/build"):
		out := map[string]any{"type": "build"}
		for k, v := range req.Body {
			out[k] = v
		}
		writeJSON(w, http.StatusCreated, out)
	default:
		notFound(w)
	}
}

// repositories serves two pages of two repositories (and one with a
// search), linked by next as Bitbucket does.
func (f *fakeBitbucket) repositories(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	all := []map[string]any{repoJSON("team/api", "go", true), repoJSON("team/service", "python", false), repoJSON("team/web", "", false)}
	if q.Get("q") != "" {
		writeJSON(w, http.StatusOK, map[string]any{"pagelen": 2, "page": 1, "size": 1, "values": all[2:]})
		return
	}
	page := q.Get("page")
	next := f.srv.URL + "/api/2.0/repositories?page=2&pagelen=2&role=member&sort=full_name"
	if f.nextOverride != "" {
		next = f.nextOverride
	}
	switch page {
	case "1":
		writeJSON(w, http.StatusOK, map[string]any{"pagelen": 2, "page": 1, "size": 3, "values": all[:2], "next": next})
	case "2":
		writeJSON(w, http.StatusOK, map[string]any{"pagelen": 2, "page": 2, "size": 3, "values": all[2:],
			"previous": f.srv.URL + "/api/2.0/repositories?page=1&pagelen=2&role=member&sort=full_name"})
	default:
		notFound(w)
	}
}

func (f *fakeBitbucket) hook(w http.ResponseWriter, r *http.Request, rest string, body map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && rest == "":
		h := map[string]any{
			"type": "webhook_subscription", "uuid": "{1a2b3c4d-0000-4e5f-8a9b-0c1d2e3f4a5b}",
			"url": body["url"], "description": body["description"], "subject_type": "repository",
			"active": body["active"], "events": body["events"], "created_at": "2024-03-13T10:50:00.000000+00:00",
			"secret_set": body["secret"] != nil,
		}
		f.hooks[h["uuid"].(string)] = h
		writeJSON(w, http.StatusCreated, h)
	case strings.HasPrefix(rest, "/"):
		id := rest[1:]
		h, ok := f.hooks[id]
		if !ok {
			notFound(w)
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, h)
		case http.MethodDelete:
			delete(f.hooks, id)
			w.WriteHeader(http.StatusNoContent)
		default:
			notFound(w)
		}
	default:
		notFound(w)
	}
}

func assertNoToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testToken) {
		t.Errorf("error carries the token: %v", err)
	}
}

func TestAPIBase(t *testing.T) {
	tests := []struct{ scheme, host, want string }{
		{"https", "bitbucket.org", "https://api.bitbucket.org/2.0"},
		{"https", "BitBucket.org", "https://api.bitbucket.org/2.0"},
		{"http", "bitbucket.org", "https://api.bitbucket.org/2.0"},
		{"http", "127.0.0.1:7990", "http://127.0.0.1:7990/api/2.0"},
		{"https", "bb.test.example", "https://bb.test.example/api/2.0"},
	}
	for _, tt := range tests {
		if got := (Forge{}).APIBase(tt.scheme, tt.host); got != tt.want {
			t.Errorf("APIBase(%q, %q) = %q, want %q", tt.scheme, tt.host, got, tt.want)
		}
	}
}

func TestAccount(t *testing.T) {
	f := newFake(t)
	got, err := Forge{}.Account(context.Background(), f.conn())
	if err != nil {
		t.Fatal(err)
	}
	want := forge.Account{ID: "{d301aafa-d676-4ee0-88be-962be7417567}", Login: "emma", Name: "Emma Lopez", AvatarURL: "https://avatar-management.example/emma.png"}
	if *got != want {
		t.Errorf("Account = %+v, want %+v", *got, want)
	}
	if r := f.received(); len(r) != 1 || r[0].Path != "/api/2.0/user" {
		t.Errorf("requests = %+v", r)
	}
}

func TestRepos(t *testing.T) {
	f := newFake(t)
	c := f.conn()
	wantRepos := map[string]forge.Repo{
		"team/api": {FullName: "team/api", URL: "https://bitbucket.org/team/api", CloneURL: "https://bitbucket.org/team/api.git",
			DefaultBranch: "main", Private: true, Language: "go", Permissions: forge.Permissions{Pull: true, Push: true, Admin: true}},
		"team/service": {FullName: "team/service", URL: "https://bitbucket.org/team/service", CloneURL: "https://bitbucket.org/team/service.git",
			DefaultBranch: "main", Language: "python", Permissions: forge.Permissions{Pull: true, Push: true}},
		"team/web": {FullName: "team/web", URL: "https://bitbucket.org/team/web", CloneURL: "https://bitbucket.org/team/web.git",
			DefaultBranch: "main", Permissions: forge.Permissions{Pull: true}},
	}
	tests := []struct {
		name      string
		opts      forge.ListOptions
		wantNames []string
		wantNext  int
		wantQuery url.Values // of the repositories request
		wantPerms string     // the permissions request's q
	}{
		{"first page", forge.ListOptions{Page: 1, PerPage: 2}, []string{"team/api", "team/service"}, 2,
			url.Values{"role": {"member"}, "pagelen": {"2"}, "page": {"1"}, "sort": {"full_name"}},
			`repository.full_name="team/api" OR repository.full_name="team/service"`},
		{"page 0 is the first", forge.ListOptions{PerPage: 2}, []string{"team/api", "team/service"}, 2,
			url.Values{"role": {"member"}, "pagelen": {"2"}, "page": {"1"}, "sort": {"full_name"}},
			`repository.full_name="team/api" OR repository.full_name="team/service"`},
		{"last page", forge.ListOptions{Page: 2, PerPage: 2}, []string{"team/web"}, 0,
			url.Values{"role": {"member"}, "pagelen": {"2"}, "page": {"2"}, "sort": {"full_name"}},
			`repository.full_name="team/web"`},
		{"page size capped", forge.ListOptions{Page: 2, PerPage: 500}, []string{"team/web"}, 0,
			url.Values{"role": {"member"}, "pagelen": {"100"}, "page": {"2"}, "sort": {"full_name"}},
			`repository.full_name="team/web"`},
		{"search quoted", forge.ListOptions{Page: 1, PerPage: 2, Search: ` we"b\ `}, []string{"team/web"}, 0,
			url.Values{"role": {"member"}, "pagelen": {"2"}, "page": {"1"}, "sort": {"full_name"}, "q": {`name~"we\"b\\"`}},
			`repository.full_name="team/web"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.reset()
			page, err := Forge{}.Repos(context.Background(), c, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if page.Next != tt.wantNext {
				t.Errorf("Next = %d, want %d", page.Next, tt.wantNext)
			}
			var names []string
			for _, r := range page.Repos {
				names = append(names, r.FullName)
				if r != wantRepos[r.FullName] {
					t.Errorf("repo %s = %+v, want %+v", r.FullName, r, wantRepos[r.FullName])
				}
			}
			if fmt.Sprint(names) != fmt.Sprint(tt.wantNames) {
				t.Errorf("repos = %v, want %v", names, tt.wantNames)
			}
			reqs := f.received()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2 (the page and one permissions call): %+v", len(reqs), reqs)
			}
			if reqs[0].Path != "/api/2.0/repositories" || reqs[0].Query.Encode() != tt.wantQuery.Encode() {
				t.Errorf("repositories request %s?%s, want ?%s", reqs[0].Path, reqs[0].Query.Encode(), tt.wantQuery.Encode())
			}
			if reqs[1].Path != "/api/2.0/user/permissions/repositories" || reqs[1].Query.Get("pagelen") != "100" || reqs[1].Query.Get("q") != tt.wantPerms {
				t.Errorf("permissions request %s?%s, want q=%s", reqs[1].Path, reqs[1].Query.Encode(), tt.wantPerms)
			}
		})
	}
}

func TestReposFollowsPagesToTheEnd(t *testing.T) {
	f := newFake(t)
	var all []string
	for p, n := 1, 0; p != 0; n++ {
		if n > 5 {
			t.Fatal("pages never end")
		}
		page, err := Forge{}.Repos(context.Background(), f.conn(), forge.ListOptions{Page: p, PerPage: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Repos {
			all = append(all, r.FullName)
		}
		p = page.Next
	}
	if got := strings.Join(all, " "); got != "team/api team/service team/web" {
		t.Errorf("repos = %s", got)
	}
}

func TestReposNextOffBase(t *testing.T) {
	f := newFake(t)
	for _, next := range []string{
		"https://evil.example/api/2.0/repositories?page=2",
		strings.Replace(f.srv.URL, "http://", "https://", 1) + "/api/2.0/repositories?page=2",
		f.srv.URL + "/elsewhere/repositories?page=2",
		f.srv.URL + "/api/2.0/repositories?after=2024-01-01",
	} {
		f.nextOverride = next
		_, err := Forge{}.Repos(context.Background(), f.conn(), forge.ListOptions{Page: 1, PerPage: 2})
		if err == nil {
			t.Errorf("next %q: no error", next)
			continue
		}
		assertNoToken(t, err)
		if !strings.Contains(err.Error(), "next page") {
			t.Errorf("next %q: error %v does not say so", next, err)
		}
	}
}

func TestRepo(t *testing.T) {
	f := newFake(t)
	c := f.conn()
	r, err := Forge{}.Repo(context.Background(), c, "team/api")
	if err != nil {
		t.Fatal(err)
	}
	want := forge.Repo{FullName: "team/api", URL: "https://bitbucket.org/team/api", CloneURL: "https://bitbucket.org/team/api.git",
		DefaultBranch: "main", Private: true, Language: "go", Permissions: forge.Permissions{Pull: true, Push: true, Admin: true}}
	if *r != want {
		t.Errorf("Repo = %+v, want %+v", *r, want)
	}
	reqs := f.received()
	if len(reqs) != 2 || reqs[0].Path != "/api/2.0/repositories/team/api" || reqs[1].Query.Get("q") != `repository.full_name="team/api"` {
		t.Errorf("requests = %+v", reqs)
	}

	_, err = Forge{}.Repo(context.Background(), c, "team/gone")
	if !errors.Is(err, forge.ErrGone) {
		t.Errorf("missing repository: err = %v, want ErrGone", err)
	}
	for _, bad := range []string{"", "team", "team/", "/x", "a/b/c"} {
		if _, err := (Forge{}).Repo(context.Background(), c, bad); err == nil {
			t.Errorf("Repo(%q): no error", bad)
		}
	}
}

func TestHooks(t *testing.T) {
	f := newFake(t)
	c := f.conn()
	ctx := context.Background()
	const hookURL = "https://ci.example.com/api/v1/webhooks/bitbucket/pl_1"
	tests := []struct {
		name     string
		spec     forge.HookSpec
		wantSkip any
	}{
		{"verified", forge.HookSpec{URL: hookURL, Secret: "s3cret"}, nil},
		{"insecure", forge.HookSpec{URL: hookURL, Secret: "s3cret", InsecureSSL: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.reset()
			h, err := Forge{}.CreateHook(ctx, c, "team/service", tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			want := forge.Hook{ID: "{1a2b3c4d-0000-4e5f-8a9b-0c1d2e3f4a5b}", URL: hookURL, Active: true,
				Events: []string{"repo:push", "pullrequest:created", "pullrequest:updated"}}
			if fmt.Sprint(*h) != fmt.Sprint(want) {
				t.Errorf("CreateHook = %+v, want %+v", *h, want)
			}
			reqs := f.received()
			if len(reqs) != 1 || reqs[0].Method != http.MethodPost || reqs[0].Path != "/api/2.0/repositories/team/service/hooks" {
				t.Fatalf("requests = %+v", reqs)
			}
			b := reqs[0].Body
			if b["description"] != "Runnel" || b["url"] != hookURL || b["active"] != true || b["secret"] != "s3cret" ||
				fmt.Sprint(b["events"]) != "[repo:push pullrequest:created pullrequest:updated]" || b["skip_cert_verification"] != tt.wantSkip {
				t.Errorf("posted %v", b)
			}

			f.reset()
			got, err := Forge{}.Hook(ctx, c, "team/service", h.ID)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(*got) != fmt.Sprint(want) {
				t.Errorf("Hook = %+v, want %+v", *got, want)
			}
			if r := f.received(); len(r) != 1 || r[0].EscapedPath != "/api/2.0/repositories/team/service/hooks/%7B1a2b3c4d-0000-4e5f-8a9b-0c1d2e3f4a5b%7D" {
				t.Errorf("requests = %+v", r)
			}

			if err := (Forge{}).DeleteHook(ctx, c, "team/service", h.ID); err != nil {
				t.Fatalf("DeleteHook: %v", err)
			}
			if _, err := (Forge{}).Hook(ctx, c, "team/service", h.ID); !errors.Is(err, forge.ErrGone) {
				t.Errorf("Hook after delete: err = %v, want ErrGone", err)
			}
			if err := (Forge{}).DeleteHook(ctx, c, "team/service", h.ID); err != nil {
				t.Errorf("DeleteHook of a hook gone: %v, want nil", err)
			}
		})
	}
	if _, err := (Forge{}).Hook(ctx, c, "team/service", ""); err == nil {
		t.Error("Hook with an empty id: no error")
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		header    map[string]string
		want      error
		notWant   error
		wantRetry time.Duration
	}{
		{"401", http.StatusUnauthorized, nil, forge.ErrTokenRejected, forge.ErrRateLimited, 0},
		{"429 retry after", http.StatusTooManyRequests, map[string]string{"Retry-After": "30"}, forge.ErrRateLimited, forge.ErrForbidden, 30 * time.Second},
		{"403", http.StatusForbidden, nil, forge.ErrForbidden, forge.ErrRateLimited, 0},
		{"404", http.StatusNotFound, nil, forge.ErrGone, forge.ErrTokenRejected, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				// Echo the credentials in the message: they must not reach the error.
				writeJSON(w, tt.status, map[string]any{"type": "error", "error": map[string]any{
					"message": "refused " + r.Header.Get("Authorization"), "detail": "token " + testToken}})
			}))
			defer srv.Close()
			c := forge.Conn{Base: srv.URL + "/api/2.0", Token: testToken}
			ctx := context.Background()
			calls := map[string]func() error{
				"Account": func() error { _, err := Forge{}.Account(ctx, c); return err },
				"Repos":   func() error { _, err := Forge{}.Repos(ctx, c, forge.ListOptions{}); return err },
				"Repo":    func() error { _, err := Forge{}.Repo(ctx, c, "team/service"); return err },
				"CreateHook": func() error {
					_, err := Forge{}.CreateHook(ctx, c, "team/service", forge.HookSpec{URL: "https://ci.example/h", Secret: "s"})
					return err
				},
				"Hook": func() error { _, err := Forge{}.Hook(ctx, c, "team/service", "{x}"); return err },
				"SetStatus": func() error {
					return Forge{}.SetStatus(ctx, c, "team/service", "abc", forge.CommitStatus{State: forge.StatusSuccess, Context: "runnel", TargetURL: "https://ci.example/r"})
				},
			}
			if tt.status != http.StatusNotFound {
				calls["DeleteHook"] = func() error { return Forge{}.DeleteHook(ctx, c, "team/service", "{x}") }
			}
			for name, call := range calls {
				err := call()
				if !errors.Is(err, tt.want) {
					t.Errorf("%s: err = %v, want %v", name, err, tt.want)
				}
				if errors.Is(err, tt.notWant) {
					t.Errorf("%s: err = %v also matches %v", name, err, tt.notWant)
				}
				var fe *forge.Error
				if !errors.As(err, &fe) || fe.RetryAfter != tt.wantRetry || fe.StatusCode != tt.status {
					t.Errorf("%s: err = %#v, want a *forge.Error %d with RetryAfter %v", name, err, tt.status, tt.wantRetry)
				}
				assertNoToken(t, err)
			}
		})
	}
}

func TestSetStatus(t *testing.T) {
	f := newFake(t)
	c := f.conn()
	ctx := context.Background()
	const sha = "d3adb33fc0ded3adb33fc0ded3adb33fc0ded3ad"
	tests := []struct{ state, want string }{
		{forge.StatusPending, "INPROGRESS"},
		{forge.StatusRunning, "INPROGRESS"},
		{forge.StatusSuccess, "SUCCESSFUL"},
		{forge.StatusFailure, "FAILED"},
		{forge.StatusError, "FAILED"},
		{forge.StatusCancelled, "STOPPED"},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			f.reset()
			s := forge.CommitStatus{State: tt.state, Context: "runnel/build", Description: "Run 7 " + tt.state, TargetURL: "https://ci.example.com/runs/7"}
			if err := (Forge{}).SetStatus(ctx, c, "team/service", sha, s); err != nil {
				t.Fatal(err)
			}
			reqs := f.received()
			if len(reqs) != 1 || reqs[0].Method != http.MethodPost || reqs[0].Path != "/api/2.0/repositories/team/service/commit/"+sha+"/statuses/build" {
				t.Fatalf("requests = %+v", reqs)
			}
			want := map[string]any{"key": "runnel/build", "state": tt.want, "name": "runnel/build", "url": "https://ci.example.com/runs/7", "description": "Run 7 " + tt.state}
			if fmt.Sprint(reqs[0].Body) != fmt.Sprint(want) {
				t.Errorf("posted %v, want %v", reqs[0].Body, want)
			}
		})
	}

	t.Run("long context", func(t *testing.T) {
		long := "runnel/" + strings.Repeat("pipeline-with-a-long-name/", 3) + "build"
		other := long + "-2"
		keys := map[string]string{}
		for _, ctxName := range []string{long, long, other} {
			f.reset()
			s := forge.CommitStatus{State: forge.StatusSuccess, Context: ctxName, TargetURL: "https://ci.example.com/runs/7"}
			if err := (Forge{}).SetStatus(ctx, c, "team/service", sha, s); err != nil {
				t.Fatal(err)
			}
			b := f.received()[0].Body
			key, _ := b["key"].(string)
			if key == "" || len(key) > 40 {
				t.Errorf("key %q: want 1 to 40 characters", key)
			}
			if b["name"] != ctxName {
				t.Errorf("name = %v, want the context %q", b["name"], ctxName)
			}
			if prev, ok := keys[ctxName]; ok && prev != key {
				t.Errorf("key of %q changed: %q then %q", ctxName, prev, key)
			}
			keys[ctxName] = key
		}
		if keys[long] == keys[other] {
			t.Errorf("two contexts share the key %q", keys[long])
		}
		if k := statusKey(strings.Repeat("x", 40)); k != strings.Repeat("x", 40) {
			t.Errorf("a 40-character context is its own key, got %q", k)
		}
	})

	t.Run("refused before sending", func(t *testing.T) {
		for name, s := range map[string]forge.CommitStatus{
			"no URL":        {State: forge.StatusSuccess, Context: "runnel"},
			"unknown state": {State: "done", Context: "runnel", TargetURL: "https://ci.example.com/runs/7"},
			"no context":    {State: forge.StatusSuccess, TargetURL: "https://ci.example.com/runs/7"},
		} {
			f.reset()
			err := Forge{}.SetStatus(ctx, c, "team/service", sha, s)
			if err == nil {
				t.Errorf("%s: no error", name)
			}
			if name == "no URL" && (err == nil || !strings.Contains(err.Error(), "URL")) {
				t.Errorf("%s: error %v does not say a URL is required", name, err)
			}
			if n := len(f.received()); n != 0 {
				t.Errorf("%s: %d requests sent", name, n)
			}
		}
	})
}

func TestParsePullRequestFork(t *testing.T) {
	payload := func(source, destination string) []byte {
		return []byte(`{"actor": {"display_name": "Emma Lopez", "nickname": "emma"},
  "repository": {"full_name": "team/service"},
  "pullrequest": {"id": 17, "title": "Retry with backoff",
    "source": {"branch": {"name": "feature/backoff"}, "commit": {"hash": "d3adb33fc0de"}, "repository": ` + source + `},
    "destination": {"branch": {"name": "main"}, "commit": {"hash": "1e65c05c1d51"}, "repository": ` + destination + `},
    "links": {"html": {"href": "https://bitbucket.org/team/service/pull-requests/17"}}}}`)
	}
	dest := `{"full_name": "team/service", "type": "repository"}`
	tests := []struct {
		name, source string
		wantFork     bool
		wantHeadRepo string
	}{
		{"fork", `{"full_name": "emma/service", "type": "repository"}`, true, "emma/service"},
		{"same repository", dest, false, ""},
		{"same repository, other case", `{"full_name": "Team/Service"}`, false, ""},
		{"deleted fork", `null`, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			h.Set("X-Event-Key", "pullrequest:updated")
			ev, err := Forge{}.Parse(h, payload(tt.source, dest))
			if err != nil {
				t.Fatal(err)
			}
			pr := ev.Trigger.PullRequest
			if ev.Kind != forge.KindPullRequest || pr.Number != 17 || pr.Head != "feature/backoff" || pr.Base != "main" {
				t.Errorf("event = %+v", ev)
			}
			if pr.Fork != tt.wantFork || pr.HeadRepo != tt.wantHeadRepo {
				t.Errorf("Fork, HeadRepo = %v, %q; want %v, %q", pr.Fork, pr.HeadRepo, tt.wantFork, tt.wantHeadRepo)
			}
		})
	}
}

func TestPermissionsSplitLongFilters(t *testing.T) {
	f := newFake(t)
	var names []string
	for i := range 100 {
		n := fmt.Sprintf("a-workspace-with-a-long-name/repository-number-%03d-of-a-long-list", i)
		names = append(names, n)
		f.perms[n] = []string{"read", "write", "admin"}[i%3]
	}
	got, err := permissionsOf(context.Background(), f.conn(), names)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if got[n] != f.perms[n] {
			t.Errorf("permission of %s = %q, want %q", n, got[n], f.perms[n])
		}
	}
	reqs := f.received()
	if len(reqs) < 2 {
		t.Errorf("%d requests: a filter of %d long names should be split", len(reqs), len(names))
	}
	for _, r := range reqs {
		if q := r.Query.Get("q"); len(q) > maxFilter {
			t.Errorf("filter of %d characters, over %d", len(q), maxFilter)
		}
	}

	f.reset()
	if got, err := permissionsOf(context.Background(), f.conn(), nil); err != nil || len(got) != 0 || len(f.received()) != 0 {
		t.Errorf("no names: %v, %v, %d requests", got, err, len(f.received()))
	}
}
