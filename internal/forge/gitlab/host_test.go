package gitlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/forge"
)

const testToken = "glpat-s3cr3t-0auth-t0ken"

// request is what the fake GitLab received.
type request struct {
	Method     string
	Path       string // decoded
	RawPath    string // as sent (escaped)
	RequestURI string
	Query      map[string]string
	Auth       string
	Body       map[string]any
}

// fakeGitLab answers with handler and records every request, refusing any
// without the bearer token.
type fakeGitLab struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []request
}

func newFake(t *testing.T, handler func(w http.ResponseWriter, r *http.Request)) *fakeGitLab {
	t.Helper()
	f := &fakeGitLab{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := request{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), RequestURI: r.RequestURI,
			Query: map[string]string{}, Auth: r.Header.Get("Authorization")}
		for k := range r.URL.Query() {
			rec.Query[k] = r.URL.Query().Get(k)
		}
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			if err := json.Unmarshal(b, &rec.Body); err != nil {
				t.Errorf("request body is not JSON: %s", b)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, rec)
		f.mu.Unlock()
		if rec.Auth != "Bearer "+testToken {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"message":"401 Unauthorized"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		handler(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitLab) conn() forge.Conn {
	return forge.Conn{Base: f.srv.URL + "/api/v4", Token: testToken, HC: f.srv.Client()}
}

func (f *fakeGitLab) last() request {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		f.t.Fatal("no request received")
	}
	return f.reqs[len(f.reqs)-1]
}

func reply(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func noToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testToken) {
		t.Errorf("error text carries the token: %v", err)
	}
}

func TestAPIBase(t *testing.T) {
	if got := (Forge{}).APIBase("https", "gitlab.example.com:8443"); got != "https://gitlab.example.com:8443/api/v4" {
		t.Errorf("APIBase = %q", got)
	}
}

func TestAccount(t *testing.T) {
	// GET /user, as the Users API documents it (abridged).
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/api/v4/user" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"id":1,"username":"john_smith","email":"john@example.com","name":"John Smith",
			"state":"active","locked":false,"avatar_url":"http://localhost:3000/uploads/user/avatar/1/index.jpg",
			"web_url":"http://localhost:3000/john_smith","created_at":"2012-05-23T08:00:58Z","is_admin":false}`)
	})
	got, err := Forge{}.Account(context.Background(), f.conn())
	if err != nil {
		t.Fatal(err)
	}
	want := &forge.Account{ID: "1", Login: "john_smith", Name: "John Smith", AvatarURL: "http://localhost:3000/uploads/user/avatar/1/index.jpg"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Account = %+v, want %+v", got, want)
	}
	if a := f.last().Auth; a != "Bearer "+testToken {
		t.Errorf("Authorization = %q", a)
	}
}

// projectJSON is a project of GET /projects?simple=false (abridged).
func projectJSON(path, visibility string, projectLevel, groupLevel int) string {
	lvl := func(n int) string {
		if n == 0 {
			return "null"
		}
		return fmt.Sprintf(`{"access_level":%d,"notification_level":3}`, n)
	}
	name := path[strings.LastIndex(path, "/")+1:]
	return fmt.Sprintf(`{"id":%d,"description":null,"name":%q,"name_with_namespace":"x","path":%q,
		"path_with_namespace":%q,"default_branch":"main","visibility":%q,
		"ssh_url_to_repo":"git@gitlab.example.com:%s.git","http_url_to_repo":"https://gitlab.example.com/%s.git",
		"web_url":"https://gitlab.example.com/%s","archived":false,
		"permissions":{"project_access":%s,"group_access":%s}}`,
		len(path), name, name, path, visibility, path, path, path, lvl(projectLevel), lvl(groupLevel))
}

func TestReposPages(t *testing.T) {
	pages := map[string][]string{
		"1": {projectJSON("diaspora/client", "private", 30, 0), projectJSON("diaspora/server", "public", 0, 50)},
		"2": {projectJSON("group/sub/name", "internal", 10, 0)},
	}
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v4/projects" {
			http.NotFound(w, r)
			return
		}
		p := r.URL.Query().Get("page")
		w.Header().Set("X-Page", p)
		w.Header().Set("X-Per-Page", "2")
		w.Header().Set("X-Total", "3")
		w.Header().Set("X-Total-Pages", "2")
		if p == "1" {
			w.Header().Set("X-Next-Page", "2")
		} else {
			w.Header().Set("X-Next-Page", "")
			w.Header().Set("X-Prev-Page", "1")
		}
		io.WriteString(w, "["+strings.Join(pages[p], ",")+"]")
	})
	ctx := context.Background()
	p1, err := Forge{}.Repos(ctx, f.conn(), forge.ListOptions{PerPage: 2})
	if err != nil {
		t.Fatal(err)
	}
	q := f.last().Query
	wantQ := map[string]string{"membership": "true", "simple": "false", "order_by": "path", "sort": "asc", "per_page": "2", "page": "1"}
	if !reflect.DeepEqual(q, wantQ) {
		t.Errorf("query = %v, want %v", q, wantQ)
	}
	if p1.Next != 2 || len(p1.Repos) != 2 {
		t.Fatalf("page 1: next %d, %d repos", p1.Next, len(p1.Repos))
	}
	want := forge.Repo{FullName: "diaspora/client", URL: "https://gitlab.example.com/diaspora/client",
		CloneURL: "https://gitlab.example.com/diaspora/client.git", DefaultBranch: "main", Private: true,
		Permissions: forge.Permissions{Pull: true, Push: true}}
	if !reflect.DeepEqual(p1.Repos[0], want) {
		t.Errorf("repo = %+v, want %+v", p1.Repos[0], want)
	}
	if r := p1.Repos[1]; r.Private || r.Permissions != (forge.Permissions{Pull: true, Push: true, Admin: true}) {
		t.Errorf("public project with group Owner: %+v", r)
	}

	p2, err := Forge{}.Repos(ctx, f.conn(), forge.ListOptions{Page: 2, PerPage: 500, Search: "name"})
	if err != nil {
		t.Fatal(err)
	}
	q = f.last().Query
	if q["page"] != "2" || q["per_page"] != "100" || q["search"] != "name" || q["search_namespaces"] != "true" {
		t.Errorf("query = %v", q)
	}
	if p2.Next != 0 || len(p2.Repos) != 1 {
		t.Fatalf("page 2: next %d, %d repos", p2.Next, len(p2.Repos))
	}
	if r := p2.Repos[0]; r.FullName != "group/sub/name" || !r.Private || r.Permissions != (forge.Permissions{Pull: true}) {
		t.Errorf("internal project with Guest: %+v", r)
	}
}

func TestPermissions(t *testing.T) {
	for _, tc := range []struct {
		visibility     string
		project, group int
		want           forge.Permissions
	}{
		{"private", 0, 0, forge.Permissions{}},
		{"private", 5, 0, forge.Permissions{}},  // minimal access
		{"private", 10, 0, forge.Permissions{}}, // guest: no code
		{"private", 15, 0, forge.Permissions{}}, // planner
		{"private", 20, 0, forge.Permissions{Pull: true}},
		{"private", 30, 0, forge.Permissions{Pull: true, Push: true}},
		{"private", 40, 0, forge.Permissions{Pull: true, Push: true, Admin: true}},
		{"private", 50, 0, forge.Permissions{Pull: true, Push: true, Admin: true}},
		{"private", 0, 30, forge.Permissions{Pull: true, Push: true}},
		{"private", 20, 40, forge.Permissions{Pull: true, Push: true, Admin: true}},
		{"private", 40, 20, forge.Permissions{Pull: true, Push: true, Admin: true}},
		{"internal", 0, 0, forge.Permissions{Pull: true}},
		{"internal", 10, 0, forge.Permissions{Pull: true}},
		{"public", 0, 0, forge.Permissions{Pull: true}},
		{"public", 30, 10, forge.Permissions{Pull: true, Push: true}},
	} {
		var p project
		if err := json.Unmarshal([]byte(projectJSON("g/p", tc.visibility, tc.project, tc.group)), &p); err != nil {
			t.Fatal(err)
		}
		r := p.repo()
		if r.Permissions != tc.want {
			t.Errorf("%s project %d group %d: %+v, want %+v", tc.visibility, tc.project, tc.group, r.Permissions, tc.want)
		}
		if r.Private != (tc.visibility != "public") {
			t.Errorf("%s: Private = %v", tc.visibility, r.Private)
		}
		if r.Language != "" {
			t.Errorf("Language = %q", r.Language)
		}
	}
}

func TestRepoNestedPath(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.EscapedPath() != "/api/v4/projects/group%2Fsub%2Fname" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, projectJSON("group/sub/name", "private", 40, 0))
	})
	got, err := Forge{}.Repo(context.Background(), f.conn(), "group/sub/name")
	if err != nil {
		t.Fatal(err)
	}
	req := f.last()
	if !strings.Contains(req.RawPath, "group%2Fsub%2Fname") || !strings.Contains(req.RequestURI, "/projects/group%2Fsub%2Fname") {
		t.Errorf("path sent: raw %q, URI %q", req.RawPath, req.RequestURI)
	}
	if got.FullName != "group/sub/name" || got.Permissions != (forge.Permissions{Pull: true, Push: true, Admin: true}) {
		t.Errorf("Repo = %+v", got)
	}
}

// hookJSON is a project hook as GET/POST /projects/:id/hooks answer it.
const hookJSON = `{"id":1,"url":"https://runnel.example.com/hooks/gitlab/abc","name":"","description":"",
	"project_id":3,"push_events":true,"push_events_branch_filter":"","issues_events":false,
	"confidential_issues_events":false,"merge_requests_events":true,"tag_push_events":true,"note_events":false,
	"confidential_note_events":false,"job_events":false,"pipeline_events":false,"wiki_page_events":false,
	"deployment_events":false,"releases_events":false,"enable_ssl_verification":true,
	"repository_update_events":false,"alert_status":"executable","disabled_until":null,"url_variables":[],
	"created_at":"2012-10-12T17:04:47Z","resource_access_token_events":false,"custom_webhook_template":""}`

func TestHooks(t *testing.T) {
	hooks := map[string]bool{"1": true}
	var mu sync.Mutex
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		const base = "/api/v4/projects/group%2Fsub%2Fname/hooks"
		p := r.URL.EscapedPath()
		switch {
		case r.Method == http.MethodPost && p == base:
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, hookJSON)
		case r.Method == http.MethodGet && p == base+"/1" && hooks["1"]:
			io.WriteString(w, hookJSON)
		case r.Method == http.MethodDelete && p == base+"/1" && hooks["1"]:
			delete(hooks, "1")
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"message":"404 Not Found"}`)
		}
	})
	ctx, c := context.Background(), f.conn()
	wantHook := &forge.Hook{ID: "1", URL: "https://runnel.example.com/hooks/gitlab/abc",
		Events: []string{"push", "tag_push", "merge_requests"}, Active: true}

	for _, insecure := range []bool{false, true} {
		h, err := Forge{}.CreateHook(ctx, c, "group/sub/name",
			forge.HookSpec{URL: "https://runnel.example.com/hooks/gitlab/abc", Secret: "whsec", InsecureSSL: insecure})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(h, wantHook) {
			t.Errorf("CreateHook = %+v, want %+v", h, wantHook)
		}
		wantBody := map[string]any{"url": "https://runnel.example.com/hooks/gitlab/abc", "token": "whsec",
			"push_events": true, "tag_push_events": true, "merge_requests_events": true, "enable_ssl_verification": !insecure}
		if got := f.last().Body; !reflect.DeepEqual(got, wantBody) {
			t.Errorf("hook sent = %v, want %v", got, wantBody)
		}
	}

	h, err := Forge{}.Hook(ctx, c, "group/sub/name", "1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h, wantHook) {
		t.Errorf("Hook = %+v, want %+v", h, wantHook)
	}
	if err := (Forge{}).DeleteHook(ctx, c, "group/sub/name", "1"); err != nil {
		t.Fatal(err)
	}
	if r := f.last(); r.Method != http.MethodDelete || r.RawPath != "/api/v4/projects/group%2Fsub%2Fname/hooks/1" {
		t.Errorf("delete sent %s %s", r.Method, r.RawPath)
	}
	// Gone now: reading is ErrGone, deleting again is fine.
	_, err = Forge{}.Hook(ctx, c, "group/sub/name", "1")
	if !errors.Is(err, forge.ErrGone) {
		t.Errorf("Hook of a deleted hook: %v, want ErrGone", err)
	}
	noToken(t, err)
	if err := (Forge{}).DeleteHook(ctx, c, "group/sub/name", "1"); err != nil {
		t.Errorf("DeleteHook of a deleted hook: %v", err)
	}
	_, err = Forge{}.Repo(ctx, c, "group/sub/none")
	if !errors.Is(err, forge.ErrGone) {
		t.Errorf("Repo of an unknown project: %v, want ErrGone", err)
	}
}

func TestHookEvents(t *testing.T) {
	var h hook
	if err := json.Unmarshal([]byte(`{"id":7,"url":"u","push_events":false,"tag_push_events":true,
		"merge_requests_events":false,"alert_status":"disabled"}`), &h); err != nil {
		t.Fatal(err)
	}
	want := &forge.Hook{ID: "7", URL: "u", Events: []string{"tag_push"}, Active: false}
	if got := h.hook(); !reflect.DeepEqual(got, want) {
		t.Errorf("hook = %+v, want %+v", got, want)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	reset := time.Now().Add(90 * time.Second).Unix()
	for _, tc := range []struct {
		name    string
		handler func(http.ResponseWriter, *http.Request)
		token   string
		is      error
		retry   func(time.Duration) bool
	}{
		{name: "401", token: "glpat-wrong-token", is: forge.ErrTokenRejected},
		{name: "403", handler: reply(http.StatusForbidden, `{"message":"403 Forbidden"}`), is: forge.ErrForbidden},
		{name: "404", handler: reply(http.StatusNotFound, `{"message":"404 Project Not Found"}`), is: forge.ErrGone},
		{name: "429 Retry-After", is: forge.ErrRateLimited, handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "30")
			w.Header().Set("RateLimit-Limit", "600")
			w.Header().Set("RateLimit-Remaining", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, "Retry later\n")
		}, retry: func(d time.Duration) bool { return d == 30*time.Second }},
		{name: "429 RateLimit-Reset", is: forge.ErrRateLimited, handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("RateLimit-Limit", "600")
			w.Header().Set("RateLimit-Remaining", "0")
			w.Header().Set("RateLimit-Reset", strconv.FormatInt(reset, 10))
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, "Retry later\n")
		}, retry: func(d time.Duration) bool { return d > 80*time.Second && d <= 90*time.Second }},
		{name: "token echoed", handler: reply(http.StatusInternalServerError, `{"message":"bad token `+testToken+`"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.handler
			if h == nil {
				h = reply(http.StatusOK, `{}`)
			}
			f := newFake(t, h)
			c := f.conn()
			if tc.token != "" {
				c.Token = tc.token
			}
			calls := map[string]func() error{
				"Account": func() error { _, err := Forge{}.Account(ctx, c); return err },
				"Repos":   func() error { _, err := Forge{}.Repos(ctx, c, forge.ListOptions{}); return err },
				"Repo":    func() error { _, err := Forge{}.Repo(ctx, c, "g/p"); return err },
				"CreateHook": func() error {
					_, err := Forge{}.CreateHook(ctx, c, "g/p", forge.HookSpec{URL: "https://r", Secret: "s"})
					return err
				},
				"Hook": func() error { _, err := Forge{}.Hook(ctx, c, "g/p", "1"); return err },
				"SetStatus": func() error {
					return Forge{}.SetStatus(ctx, c, "g/p", "abc", forge.CommitStatus{State: forge.StatusSuccess, Context: "runnel"})
				},
			}
			for name, call := range calls {
				err := call()
				if err == nil {
					t.Errorf("%s: no error", name)
					continue
				}
				if strings.Contains(err.Error(), testToken) || strings.Contains(err.Error(), c.Token) {
					t.Errorf("%s: error carries the token: %v", name, err)
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("%s: %v does not match %v", name, err, tc.is)
				}
				var fe *forge.Error
				if !errors.As(err, &fe) {
					t.Errorf("%s: %T is not *forge.Error", name, err)
					continue
				}
				if tc.retry != nil && !tc.retry(fe.RetryAfter) {
					t.Errorf("%s: RetryAfter = %v", name, fe.RetryAfter)
				}
			}
		})
	}
}

func TestSetStatus(t *testing.T) {
	for _, tc := range []struct {
		state, want string
		handler     func(http.ResponseWriter, *http.Request)
		wantErr     bool
	}{
		{state: forge.StatusPending, want: "pending"},
		{state: forge.StatusRunning, want: "running"},
		{state: forge.StatusSuccess, want: "success"},
		{state: forge.StatusFailure, want: "failed"},
		{state: forge.StatusError, want: "failed"},
		{state: forge.StatusCancelled, want: "canceled"},
		// Posting the state the status already has.
		{state: forge.StatusRunning, want: "running", handler: reply(http.StatusBadRequest,
			`{"message":"Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\")"}`)},
		{state: forge.StatusPending, want: "pending", handler: reply(http.StatusBadRequest,
			`{"message":"Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\")"}`)},
		// A transition GitLab refuses from another state is an error.
		{state: forge.StatusPending, want: "pending", wantErr: true, handler: reply(http.StatusBadRequest,
			`{"message":"Cannot transition status via :enqueue from :running (Reason(s): Status cannot transition via \"enqueue\")"}`)},
		{state: forge.StatusSuccess, want: "success", wantErr: true, handler: reply(http.StatusBadRequest,
			`{"message":{"state":["is invalid"]}}`)},
	} {
		h := tc.handler
		if h == nil {
			h = reply(http.StatusCreated, `{"id":93,"sha":"18f3e63d05582537db6d183d9d557be09e1f90c8","ref":"main",
				"status":"`+tc.want+`","name":"runnel/build","target_url":"https://runnel.example.com/runs/1",
				"description":"Build","created_at":"2016-01-19T09:05:50.355Z","allow_failure":false}`)
		}
		f := newFake(t, h)
		err := Forge{}.SetStatus(context.Background(), f.conn(), "group/sub/name", "18f3e63d05582537db6d183d9d557be09e1f90c8",
			forge.CommitStatus{State: tc.state, Context: "runnel/build", Description: "Build", TargetURL: "https://runnel.example.com/runs/1"})
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err = %v, want error %v", tc.state, err, tc.wantErr)
		}
		noToken(t, err)
		r := f.last()
		if r.Method != http.MethodPost || r.RawPath != "/api/v4/projects/group%2Fsub%2Fname/statuses/18f3e63d05582537db6d183d9d557be09e1f90c8" {
			t.Errorf("%s: sent %s %s", tc.state, r.Method, r.RawPath)
		}
		wantBody := map[string]any{"state": tc.want, "name": "runnel/build", "target_url": "https://runnel.example.com/runs/1", "description": "Build"}
		if !reflect.DeepEqual(r.Body, wantBody) {
			t.Errorf("%s: sent %v, want %v", tc.state, r.Body, wantBody)
		}
	}
	if err := (Forge{}).SetStatus(context.Background(), forge.Conn{Base: "http://127.0.0.1:1", Token: testToken}, "g/p", "abc",
		forge.CommitStatus{State: "weird"}); err == nil {
		t.Error("unknown state: no error")
	}
}

// mergeRequestHook is a Merge Request Hook delivery from a fork (abridged
// from GitLab's webhook events documentation).
const mergeRequestHook = `{
  "object_kind": "merge_request",
  "event_type": "merge_request",
  "user": {"id": 1, "name": "Administrator", "username": "root"},
  "project": {"id": 1, "path_with_namespace": "gitlabhq/gitlab-test"},
  "object_attributes": {
    "id": 99, "iid": 1, "target_branch": "master", "source_branch": "ms-viewport",
    "source_project_id": %d, "target_project_id": 1,
    "title": "MS-Viewport", "state": "opened", "action": "open",
    "url": "http://example.com/diaspora/merge_requests/1",
    "source": {"name": "Awesome Project", "path_with_namespace": "%s"},
    "target": {"name": "Awesome Project", "path_with_namespace": "gitlabhq/gitlab-test"},
    "last_commit": {"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "message": "fixed readme",
      "author": {"name": "GitLab dev user", "email": "gitlabdev@dv6700.(none)"}}
  }
}`

func TestParseMergeRequestFork(t *testing.T) {
	for _, tc := range []struct {
		sourceID int
		source   string
		fork     bool
	}{
		{14, "awesome_space/awesome_project", true},
		{1, "gitlabhq/gitlab-test", false},
	} {
		h := http.Header{}
		h.Set("X-Gitlab-Event", "Merge Request Hook")
		ev, err := Forge{}.Parse(h, []byte(fmt.Sprintf(mergeRequestHook, tc.sourceID, tc.source)))
		if err != nil {
			t.Fatal(err)
		}
		pr := ev.Trigger.PullRequest
		if ev.Kind != forge.KindPullRequest || pr.Fork != tc.fork || pr.HeadRepo != tc.source || pr.Number != 1 || pr.Head != "ms-viewport" {
			t.Errorf("source %d: kind %s, %+v", tc.sourceID, ev.Kind, pr)
		}
	}
}
