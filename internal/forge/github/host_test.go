package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/runnel-ci/runnel/internal/forge"
)

const testToken = "ghp_t0pS3cretT0kenValue"

// request is what the fake GitHub received.
type request struct {
	Method, Path string
	Query        url.Values
	Header       http.Header
	Body         []byte
}

// fakeGitHub answers like api.github.com from handlers keyed by
// "METHOD PATH", recording every request.
type fakeGitHub struct {
	*httptest.Server
	mu       sync.Mutex
	requests []request
	handlers map[string]http.HandlerFunc
}

func newFake(t *testing.T, handlers map[string]http.HandlerFunc) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{handlers: handlers}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.requests = append(f.requests, request{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), body})
		f.mu.Unlock()
		h, ok := f.handlers[r.Method+" "+r.URL.Path]
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}`)
			return
		}
		h(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeGitHub) conn() forge.Conn { return forge.Conn{Base: f.URL, Token: testToken} }

func (f *fakeGitHub) last(t *testing.T) request {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		t.Fatal("no request received")
	}
	return f.requests[len(f.requests)-1]
}

func reply(status int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func checkHeaders(t *testing.T, r request) {
	t.Helper()
	if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
		t.Errorf("%s %s: Authorization = %q", r.Method, r.Path, got)
	}
	if got := r.Header.Get("Accept"); got != "application/vnd.github+json" {
		t.Errorf("%s %s: Accept = %q", r.Method, r.Path, got)
	}
	if got := r.Header.Get("X-GitHub-Api-Version"); got != "2022-11-28" {
		t.Errorf("%s %s: X-GitHub-Api-Version = %q", r.Method, r.Path, got)
	}
}

func noToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testToken) {
		t.Errorf("error carries the token: %v", err)
	}
}

func TestAccount(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{
		"GET /user": reply(200, `{"login":"octocat","id":583231,"node_id":"MDQ6VXNlcjE=",
			"avatar_url":"https://github.com/images/error/octocat_happy.gif","type":"User","site_admin":false,
			"name":"monalisa octocat","company":"GitHub"}`),
	})
	a, err := Forge{}.Account(context.Background(), f.conn())
	if err != nil {
		t.Fatal(err)
	}
	want := &forge.Account{ID: "583231", Login: "octocat", Name: "monalisa octocat",
		AvatarURL: "https://github.com/images/error/octocat_happy.gif"}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("Account = %+v, want %+v", a, want)
	}
	checkHeaders(t, f.last(t))

	// A large id stays exact (no float64 on the way).
	f.handlers["GET /user"] = reply(200, `{"login":"big","id":9007199254740993}`)
	if a, err := (Forge{}).Account(context.Background(), f.conn()); err != nil || a.ID != "9007199254740993" {
		t.Errorf("Account = %+v, %v; want id 9007199254740993", a, err)
	}
	f.handlers["GET /user"] = reply(200, `{"message":"ok"}`)
	if _, err := (Forge{}).Account(context.Background(), f.conn()); err == nil || !strings.Contains(err.Error(), "no id") {
		t.Errorf("Account of an answer without id: %v", err)
	}
}

func repoJSON(fullName string, admin, push bool, lang string) string {
	owner, name, _ := strings.Cut(fullName, "/")
	return fmt.Sprintf(`{"id":1296269,"name":%q,"full_name":%q,"owner":{"login":%q},"private":%t,
		"html_url":"https://github.com/%s","clone_url":"https://github.com/%s.git","default_branch":"main",
		"language":%q,"permissions":{"admin":%t,"maintain":false,"push":%t,"triage":true,"pull":true}}`,
		name, fullName, owner, strings.HasPrefix(name, "private"), fullName, fullName, lang, admin, push)
}

func TestRepos(t *testing.T) {
	var f *fakeGitHub
	f = newFake(t, map[string]http.HandlerFunc{
		"GET /user/repos": func(w http.ResponseWriter, r *http.Request) {
			page := r.URL.Query().Get("page")
			link := func(p int, rel string) string {
				return fmt.Sprintf(`<%s/user/repos?per_page=2&page=%d>; rel="%s"`, f.URL, p, rel)
			}
			switch page {
			case "1":
				reply(200, "["+repoJSON("octocat/Hello-World", true, true, "Go")+","+repoJSON("acme/api", false, true, "")+"]",
					"Link", link(2, "next")+", "+link(2, "last"))(w, r)
			case "2":
				reply(200, "["+repoJSON("acme/private-web", false, false, "TypeScript")+"]",
					"Link", link(1, "prev")+", "+link(1, "first"))(w, r)
			default:
				reply(200, "[]")(w, r)
			}
		},
	})
	ctx := context.Background()
	p1, err := Forge{}.Repos(ctx, f.conn(), forge.ListOptions{PerPage: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := f.last(t)
	checkHeaders(t, r)
	for k, want := range map[string]string{"per_page": "2", "page": "1", "sort": "full_name",
		"affiliation": "owner,collaborator,organization_member"} {
		if got := r.Query.Get(k); got != want {
			t.Errorf("query %s = %q, want %q", k, got, want)
		}
	}
	if p1.Next != 2 || len(p1.Repos) != 2 {
		t.Fatalf("page 1 = %+v, want 2 repos and Next 2", p1)
	}
	want := forge.Repo{FullName: "octocat/Hello-World", URL: "https://github.com/octocat/Hello-World",
		CloneURL: "https://github.com/octocat/Hello-World.git", DefaultBranch: "main",
		Permissions: forge.Permissions{Pull: true, Push: true, Admin: true}, Language: "Go"}
	if !reflect.DeepEqual(p1.Repos[0], want) {
		t.Errorf("repo = %+v, want %+v", p1.Repos[0], want)
	}
	if got := p1.Repos[1].Permissions; got != (forge.Permissions{Pull: true, Push: true}) {
		t.Errorf("acme/api permissions = %+v", got)
	}
	p2, err := Forge{}.Repos(ctx, f.conn(), forge.ListOptions{Page: 2, PerPage: 2})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Next != 0 || len(p2.Repos) != 1 || p2.Repos[0].FullName != "acme/private-web" || !p2.Repos[0].Private ||
		p2.Repos[0].Permissions != (forge.Permissions{Pull: true}) {
		t.Errorf("page 2 = %+v, want acme/private-web (private, pull only) and no next page", p2)
	}
	// PerPage is capped at 100.
	if _, err := (Forge{}).Repos(ctx, f.conn(), forge.ListOptions{PerPage: 500}); err != nil {
		t.Fatal(err)
	}
	if got := f.last(t).Query.Get("per_page"); got != "100" {
		t.Errorf("per_page = %q, want 100", got)
	}
}

func TestReposSearch(t *testing.T) {
	var f *fakeGitHub
	pages := [][]string{
		{"octocat/Hello-World", "acme/api"},
		{"acme/API-docs", "acme/web"},
		{"zed/apiary"},
	}
	f = newFake(t, map[string]http.HandlerFunc{
		"GET /user/repos": func(w http.ResponseWriter, r *http.Request) {
			p, _ := strconv.Atoi(r.URL.Query().Get("page"))
			if p < 1 || p > len(pages) {
				reply(200, "[]")(w, r)
				return
			}
			var items []string
			for _, n := range pages[p-1] {
				items = append(items, repoJSON(n, false, false, ""))
			}
			link := ""
			if p < len(pages) {
				link = fmt.Sprintf(`<%s/user/repos?page=%d>; rel="next"`, f.URL, p+1)
			}
			reply(200, "["+strings.Join(items, ",")+"]", "Link", link)(w, r)
		},
	})
	names := func(p *forge.RepoPage) []string {
		var out []string
		for _, r := range p.Repos {
			out = append(out, r.FullName)
		}
		return out
	}
	ctx := context.Background()
	tests := []struct {
		o     forge.ListOptions
		want  []string
		next  int
		reads int
	}{
		// All pages read, nothing more to read.
		{forge.ListOptions{Search: "API"}, []string{"acme/api", "acme/API-docs", "zed/apiary"}, 0, 3},
		// Enough matches after two pages: Next is the third.
		{forge.ListOptions{Search: "api", PerPage: 2}, []string{"acme/api", "acme/API-docs"}, 3, 2},
		{forge.ListOptions{Search: "api", PerPage: 2, Page: 3}, []string{"zed/apiary"}, 0, 1},
		// The owner is part of the full name.
		{forge.ListOptions{Search: "OCTOCAT/"}, []string{"octocat/Hello-World"}, 0, 3},
		{forge.ListOptions{Search: "nothing"}, nil, 0, 3},
	}
	for _, tt := range tests {
		f.mu.Lock()
		before := len(f.requests)
		f.mu.Unlock()
		p, err := Forge{}.Repos(ctx, f.conn(), tt.o)
		if err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		reads := len(f.requests) - before
		f.mu.Unlock()
		if !reflect.DeepEqual(names(p), tt.want) || p.Next != tt.next || reads != tt.reads {
			t.Errorf("Repos(%+v) = %v next %d after %d reads, want %v next %d after %d reads",
				tt.o, names(p), p.Next, reads, tt.want, tt.next, tt.reads)
		}
		if got := f.last(t).Query.Get("per_page"); got != "100" {
			t.Errorf("search reads per_page=%s, want 100", got)
		}
	}

	// At most 10 pages are read per call.
	f.handlers["GET /user/repos"] = func(w http.ResponseWriter, r *http.Request) {
		p, _ := strconv.Atoi(r.URL.Query().Get("page"))
		reply(200, "["+repoJSON("o/r"+strconv.Itoa(p), false, false, "")+"]",
			"Link", fmt.Sprintf(`<%s/user/repos?page=%d>; rel="next"`, f.URL, p+1))(w, r)
	}
	p, err := Forge{}.Repos(ctx, f.conn(), forge.ListOptions{Search: "none", Page: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Repos) != 0 || p.Next != 14 {
		t.Errorf("bounded search = %v next %d, want nothing and next 14", names(p), p.Next)
	}
}

func TestRepo(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{
		"GET /repos/octocat/Hello-World": reply(200, repoJSON("octocat/Hello-World", false, true, "C")),
	})
	ctx := context.Background()
	r, err := Forge{}.Repo(ctx, f.conn(), "octocat/Hello-World")
	if err != nil {
		t.Fatal(err)
	}
	if r.FullName != "octocat/Hello-World" || r.Permissions != (forge.Permissions{Pull: true, Push: true}) || r.Language != "C" {
		t.Errorf("Repo = %+v", r)
	}
	checkHeaders(t, f.last(t))
	if _, err := (Forge{}).Repo(ctx, f.conn(), "octocat/gone"); !errors.Is(err, forge.ErrGone) {
		t.Errorf("Repo of a missing repository: %v, want ErrGone", err)
	}
	for _, bad := range []string{"", "octocat", "a/b/c", "/x", "x/", "../x"} {
		if _, err := (Forge{}).Repo(ctx, f.conn(), bad); err == nil {
			t.Errorf("Repo(%q): no error", bad)
		}
	}
}

func TestHooks(t *testing.T) {
	const hookJSON = `{"type":"Repository","id":12345678,"name":"web","active":true,"events":["push","pull_request"],
		"config":{"content_type":"json","insecure_ssl":"0","url":"https://runnel.example.com/hooks/github/abc","secret":"********"},
		"updated_at":"2019-06-03T00:57:16Z","created_at":"2019-06-03T00:57:16Z",
		"url":"https://api.github.com/repos/octocat/Hello-World/hooks/12345678"}`
	f := newFake(t, map[string]http.HandlerFunc{
		"POST /repos/octocat/Hello-World/hooks":            reply(201, hookJSON),
		"GET /repos/octocat/Hello-World/hooks/12345678":    reply(200, hookJSON),
		"DELETE /repos/octocat/Hello-World/hooks/12345678": reply(204, ""),
	})
	ctx := context.Background()
	want := &forge.Hook{ID: "12345678", URL: "https://runnel.example.com/hooks/github/abc",
		Events: []string{"pull_request", "push"}, Active: true}

	for _, insecure := range []bool{false, true} {
		h, err := Forge{}.CreateHook(ctx, f.conn(), "octocat/Hello-World",
			forge.HookSpec{URL: "https://runnel.example.com/hooks/github/abc", Secret: "s3cr3t", InsecureSSL: insecure})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(h, want) {
			t.Errorf("CreateHook = %+v, want %+v", h, want)
		}
		r := f.last(t)
		checkHeaders(t, r)
		var body struct {
			Name   string            `json:"name"`
			Active bool              `json:"active"`
			Events []string          `json:"events"`
			Config map[string]string `json:"config"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("request body %s: %v", r.Body, err)
		}
		wantInsecure := map[bool]string{false: "0", true: "1"}[insecure]
		if body.Name != "web" || !body.Active || !reflect.DeepEqual(body.Events, []string{"push", "pull_request"}) ||
			!reflect.DeepEqual(body.Config, map[string]string{"url": "https://runnel.example.com/hooks/github/abc",
				"content_type": "json", "secret": "s3cr3t", "insecure_ssl": wantInsecure}) {
			t.Errorf("CreateHook sent %s", r.Body)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
	}

	h, err := Forge{}.Hook(ctx, f.conn(), "octocat/Hello-World", "12345678")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("Hook = %+v, want %+v", h, want)
	}
	if err := (Forge{}).DeleteHook(ctx, f.conn(), "octocat/Hello-World", "12345678"); err != nil {
		t.Errorf("DeleteHook: %v", err)
	}
	if r := f.last(t); r.Method != http.MethodDelete || r.Path != "/repos/octocat/Hello-World/hooks/12345678" {
		t.Errorf("DeleteHook sent %s %s", r.Method, r.Path)
	}

	// Gone: the fake answers 404 for any other hook.
	_, err = Forge{}.Hook(ctx, f.conn(), "octocat/Hello-World", "999")
	if !errors.Is(err, forge.ErrGone) {
		t.Errorf("Hook of a deleted hook: %v, want ErrGone", err)
	}
	var fe *forge.Error
	if !errors.As(err, &fe) || fe.StatusCode != 404 {
		t.Errorf("Hook of a deleted hook: %#v, want a *forge.Error with 404", err)
	}
	if err := (Forge{}).DeleteHook(ctx, f.conn(), "octocat/Hello-World", "999"); err != nil {
		t.Errorf("DeleteHook of a hook already gone: %v, want nil", err)
	}
	// Other errors are not swallowed.
	f.handlers["DELETE /repos/octocat/Hello-World/hooks/1"] = reply(403, `{"message":"Must have admin rights to Repository."}`)
	if err := (Forge{}).DeleteHook(ctx, f.conn(), "octocat/Hello-World", "1"); !errors.Is(err, forge.ErrForbidden) {
		t.Errorf("DeleteHook without admin rights: %v, want ErrForbidden", err)
	}
	// A 201 without an id is an error.
	f.handlers["POST /repos/octocat/Hello-World/hooks"] = reply(201, `{"active":true}`)
	if _, err := (Forge{}).CreateHook(ctx, f.conn(), "octocat/Hello-World", forge.HookSpec{URL: "https://x", Secret: "s"}); err == nil {
		t.Error("CreateHook of an answer without id: no error")
	}
	// The secret is not quoted back in an error.
	f.handlers["POST /repos/octocat/Hello-World/hooks"] = reply(422, `{"message":"Validation Failed","errors":[{"message":"secret hook-s3cr3t-value is weak"}]}`)
	_, err = Forge{}.CreateHook(ctx, f.conn(), "octocat/Hello-World", forge.HookSpec{URL: "https://x", Secret: "hook-s3cr3t-value"})
	if err == nil || strings.Contains(err.Error(), "hook-s3cr3t-value") || !strings.Contains(err.Error(), "Validation Failed") {
		t.Errorf("CreateHook refused: %v (want an error without the secret)", err)
	}
}

func TestErrors(t *testing.T) {
	reset := time.Now().Add(60 * time.Second).Unix()
	tests := []struct {
		name    string
		h       http.HandlerFunc
		is      error
		not     []error
		retry   time.Duration // 0: unchecked
		message string
	}{
		{name: "bad credentials", h: reply(401, `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`),
			is: forge.ErrTokenRejected, not: []error{forge.ErrRateLimited, forge.ErrGone}, message: "Bad credentials"},
		{name: "primary rate limit", h: reply(403, `{"message":"API rate limit exceeded for user ID 1."}`,
			"X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", strconv.FormatInt(reset, 10)),
			is: forge.ErrRateLimited, not: []error{forge.ErrForbidden, forge.ErrTokenRejected}, retry: 60 * time.Second},
		{name: "secondary rate limit", h: reply(429, `{"message":"You have exceeded a secondary rate limit."}`, "Retry-After", "30"),
			is: forge.ErrRateLimited, not: []error{forge.ErrForbidden}, retry: 30 * time.Second},
		{name: "forbidden", h: reply(403, `{"message":"Resource not accessible by personal access token"}`,
			"X-RateLimit-Remaining", "4999"),
			is: forge.ErrForbidden, not: []error{forge.ErrRateLimited}},
		{name: "token echoed", h: reply(401, `{"message":"token `+testToken+` is revoked"}`),
			is: forge.ErrTokenRejected, message: "[REDACTED]"},
	}
	calls := []struct {
		name string
		call func(forge.Conn) error
	}{
		{"Account", func(c forge.Conn) error { _, err := Forge{}.Account(context.Background(), c); return err }},
		{"Repos", func(c forge.Conn) error {
			_, err := Forge{}.Repos(context.Background(), c, forge.ListOptions{})
			return err
		}},
		{"Repos search", func(c forge.Conn) error {
			_, err := Forge{}.Repos(context.Background(), c, forge.ListOptions{Search: "x"})
			return err
		}},
		{"Repo", func(c forge.Conn) error { _, err := Forge{}.Repo(context.Background(), c, "o/r"); return err }},
		{"CreateHook", func(c forge.Conn) error {
			_, err := Forge{}.CreateHook(context.Background(), c, "o/r", forge.HookSpec{URL: "https://x", Secret: "s"})
			return err
		}},
		{"Hook", func(c forge.Conn) error { _, err := Forge{}.Hook(context.Background(), c, "o/r", "1"); return err }},
		{"DeleteHook", func(c forge.Conn) error { return Forge{}.DeleteHook(context.Background(), c, "o/r", "1") }},
		{"SetStatus", func(c forge.Conn) error {
			return Forge{}.SetStatus(context.Background(), c, "o/r", "abc", forge.CommitStatus{State: forge.StatusSuccess})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.h)
			defer srv.Close()
			c := forge.Conn{Base: srv.URL + "/", Token: testToken}
			for _, call := range calls {
				err := call.call(c)
				if !errors.Is(err, tt.is) {
					t.Errorf("%s: %v, want %v", call.name, err, tt.is)
					continue
				}
				for _, n := range tt.not {
					if errors.Is(err, n) {
						t.Errorf("%s: %v matches %v too", call.name, err, n)
					}
				}
				noToken(t, err)
				if !strings.Contains(err.Error(), "github") {
					t.Errorf("%s: %q does not name github", call.name, err)
				}
				if tt.message != "" && !strings.Contains(err.Error(), tt.message) {
					t.Errorf("%s: %q does not quote %q", call.name, err, tt.message)
				}
				var fe *forge.Error
				if !errors.As(err, &fe) {
					t.Errorf("%s: %T is not a *forge.Error", call.name, err)
					continue
				}
				if tt.retry != 0 && (fe.RetryAfter < tt.retry-5*time.Second || fe.RetryAfter > tt.retry) {
					t.Errorf("%s: RetryAfter = %v, want about %v", call.name, fe.RetryAfter, tt.retry)
				}
			}
		})
	}
}

func TestSetStatus(t *testing.T) {
	const sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
	f := newFake(t, map[string]http.HandlerFunc{
		"POST /repos/octocat/Hello-World/statuses/" + sha: reply(201, `{"id":1,"state":"success"}`),
	})
	long := strings.Repeat("é", 200)
	tests := []struct {
		in   forge.CommitStatus
		want StatusPayload
	}{
		{forge.CommitStatus{State: "pending", Context: "runnel/build", Description: "Queued", TargetURL: "https://runnel.example.com/runs/1"},
			StatusPayload{State: "pending", Context: "runnel/build", Description: "Queued", TargetURL: "https://runnel.example.com/runs/1"}},
		{forge.CommitStatus{State: "running", Context: "runnel/build"},
			StatusPayload{State: "pending", Context: "runnel/build", Description: "Running"}},
		{forge.CommitStatus{State: "running", Context: "runnel/build", Description: "Step 2 of 5"},
			StatusPayload{State: "pending", Context: "runnel/build", Description: "Step 2 of 5"}},
		{forge.CommitStatus{State: "success", Context: "ci"}, StatusPayload{State: "success", Context: "ci"}},
		{forge.CommitStatus{State: "failure", Context: "ci", Description: "2 tests failed"},
			StatusPayload{State: "failure", Context: "ci", Description: "2 tests failed"}},
		{forge.CommitStatus{State: "error", Context: "ci"}, StatusPayload{State: "error", Context: "ci"}},
		{forge.CommitStatus{State: "cancelled", Context: "ci"}, StatusPayload{State: "error", Context: "ci", Description: "Cancelled"}},
		{forge.CommitStatus{State: "success"}, StatusPayload{State: "success", Context: "runnel"}},
		{forge.CommitStatus{State: "success", Context: "ci", Description: long},
			StatusPayload{State: "success", Context: "ci", Description: strings.Repeat("é", 139) + "…"}},
	}
	for _, tt := range tests {
		if err := (Forge{}).SetStatus(context.Background(), f.conn(), "octocat/Hello-World", sha, tt.in); err != nil {
			t.Errorf("SetStatus(%+v): %v", tt.in, err)
			continue
		}
		r := f.last(t)
		checkHeaders(t, r)
		var got StatusPayload
		if err := json.Unmarshal(r.Body, &got); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("SetStatus(%.60v) posted %+v, want %+v", tt.in, got, tt.want)
		}
		var raw map[string]any
		_ = json.Unmarshal(r.Body, &raw)
		if _, ok := raw["target_url"]; ok && tt.in.TargetURL == "" {
			t.Errorf("SetStatus sent an empty target_url: %s", r.Body)
		}
		if n := utf8.RuneCountInString(got.Description); n > 140 {
			t.Errorf("description of %d characters", n)
		}
	}
	for _, bad := range []string{"", "skipped", "SUCCESS"} {
		err := Forge{}.SetStatus(context.Background(), f.conn(), "octocat/Hello-World", sha, forge.CommitStatus{State: bad})
		if err == nil || !strings.Contains(err.Error(), "state") {
			t.Errorf("SetStatus state %q: %v, want an error", bad, err)
		}
	}
	if err := (Forge{}).SetStatus(context.Background(), f.conn(), "octocat/Hello-World", "", forge.CommitStatus{State: "success"}); err == nil {
		t.Error("SetStatus without a commit: no error")
	}
}

func TestCut(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 140, "short"},
		{"abcdef", 6, "abcdef"},
		{"abcdefg", 6, "abcde…"},
		{"日本語のテキスト", 4, "日本語…"},
		{"x", 0, ""},
	} {
		got := Cut(tt.in, tt.n)
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("Cut(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestParseForkPullRequest(t *testing.T) {
	payload := func(head, base string) []byte {
		return []byte(`{"action":"opened","number":7,"pull_request":{"number":7,"title":"Fix","html_url":"https://github.com/octo/app/pull/7",
			"head":{"label":"mallory:fix","ref":"fix","sha":"abc","repo":` + head + `},
			"base":{"label":"octo:main","ref":"main","sha":"def","repo":` + base + `}},"sender":{"login":"mallory"}}`)
	}
	h := http.Header{}
	h.Set("X-GitHub-Event", "pull_request")
	h.Set("X-GitHub-Delivery", "d1")
	tests := []struct {
		name, head, base string
		fork             bool
		headRepo         string
	}{
		{"fork", `{"full_name":"mallory/app","fork":true}`, `{"full_name":"octo/app"}`, true, "mallory/app"},
		{"same repository", `{"full_name":"octo/app"}`, `{"full_name":"octo/app"}`, false, ""},
		{"same repository, other case", `{"full_name":"Octo/App"}`, `{"full_name":"octo/app"}`, false, ""},
		{"deleted fork", `null`, `{"full_name":"octo/app"}`, true, ""},
	}
	for _, tt := range tests {
		ev, err := Forge{}.Parse(h, payload(tt.head, tt.base))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		pr := ev.Trigger.PullRequest
		if ev.Kind != forge.KindPullRequest || pr.Fork != tt.fork || pr.HeadRepo != tt.headRepo || pr.Head != "fix" || pr.Base != "main" {
			t.Errorf("%s: %s %+v, want fork %v head repo %q", tt.name, ev.Kind, pr, tt.fork, tt.headRepo)
		}
	}
	// Payloads without the repositories (older or trimmed ones) are not forks.
	ev, err := Forge{}.Parse(h, []byte(`{"action":"opened","number":7,"pull_request":{"number":7,"head":{"ref":"fix","sha":"abc"},"base":{"ref":"main"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if pr := ev.Trigger.PullRequest; pr.Fork || pr.HeadRepo != "" {
		t.Errorf("without repositories: %+v, want no fork", pr)
	}
}
