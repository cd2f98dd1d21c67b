package forges

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/forge"
)

const testToken = "tok-S3cr3t-0123456789abcdef"

// checkJSONBody decodes the request body and compares it with want exactly
// (same keys, same values).
func checkJSONBody(t *testing.T, r *http.Request, want map[string]any) {
	t.Helper()
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", r.Header.Get("Content-Type"))
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("reading body: %v", err)
		return
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Errorf("body is not a JSON object: %v: %s", err, raw)
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("body = %v, want %v", got, want)
	}
}

func assertNoToken(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error")
	}
	if strings.Contains(err.Error(), testToken) {
		t.Errorf("error contains the token: %v", err)
	}
}

func baseRequest(kind, repoURL string) forge.Request {
	return forge.Request{
		Kind:    kind,
		RepoURL: repoURL,
		Token:   testToken,
		Head:    "runnel/update-pipeline",
		Base:    "main",
		Title:   "Update pipeline ci.yaml",
		Body:    "Saved from Runnel.",
	}
}

func TestOpenGitHub(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Method != http.MethodPost {
			t.Errorf("method = %s, want POST", r.Method)
		}
		if r.URL.EscapedPath() != "/api/v3/repos/octo-org/hello-world/pulls" {
			t.Errorf("path = %s", r.URL.EscapedPath())
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
			t.Errorf("Authorization = %q", got)
		}
		if got := r.Header.Get("Accept"); got != "application/vnd.github+json" {
			t.Errorf("Accept = %q", got)
		}
		if got := r.Header.Get("X-GitHub-Api-Version"); got != "2022-11-28" {
			t.Errorf("X-GitHub-Api-Version = %q", got)
		}
		checkJSONBody(t, r, map[string]any{
			"title": "Update pipeline ci.yaml",
			"head":  "runnel/update-pipeline",
			"base":  "main",
			"body":  "Saved from Runnel.",
		})
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{
  "url": "https://api.github.com/repos/octo-org/hello-world/pulls/1347",
  "id": 1,
  "node_id": "MDExOlB1bGxSZXF1ZXN0MQ==",
  "html_url": "https://github.com/octo-org/hello-world/pull/1347",
  "diff_url": "https://github.com/octo-org/hello-world/pull/1347.diff",
  "number": 1347,
  "state": "open",
  "locked": false,
  "title": "Update pipeline ci.yaml",
  "user": {"login": "octocat", "id": 1, "html_url": "https://github.com/octocat"},
  "body": "Saved from Runnel.",
  "labels": [],
  "head": {"label": "octo-org:runnel/update-pipeline", "ref": "runnel/update-pipeline", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
  "base": {"label": "octo-org:main", "ref": "main", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
  "draft": false,
  "merged": false,
  "mergeable": null,
  "comments": 0,
  "commits": 1
}`)
	}))
	defer srv.Close()

	// APIURL empty: derived from the http:// repository URL (GHE layout).
	r := baseRequest("github", srv.URL+"/octo-org/hello-world.git")
	pr, err := Open(context.Background(), srv.Client(), r)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if pr.Number != 1347 || pr.URL != "https://github.com/octo-org/hello-world/pull/1347" {
		t.Errorf("got %+v", pr)
	}

	// Explicit APIURL with a trailing slash, nil client.
	r.APIURL = srv.URL + "/api/v3/"
	r.RepoURL = "git@github.com:octo-org/hello-world.git"
	pr, err = Open(context.Background(), nil, r)
	if err != nil {
		t.Fatalf("Open with APIURL: %v", err)
	}
	if pr.Number != 1347 {
		t.Errorf("got %+v", pr)
	}
	if hits.Load() != 2 {
		t.Errorf("server hit %d times, want 2", hits.Load())
	}
}

func TestOpenGitLab(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			t.Errorf("method = %s, want POST", r.Method)
		}
		if got := r.URL.EscapedPath(); got != "/api/v4/projects/platform%2Fci%2Fpipelines/merge_requests" {
			t.Errorf("escaped path = %s", got)
		}
		if r.URL.RawPath == "" {
			t.Errorf("RawPath is empty; the project path was not %%2F-escaped (path %s)", r.URL.Path)
		}
		if got := r.Header.Get("PRIVATE-TOKEN"); got != testToken {
			t.Errorf("PRIVATE-TOKEN = %q", got)
		}
		if got := r.Header.Get("Authorization"); got != "" {
			t.Errorf("unexpected Authorization header %q", got)
		}
		checkJSONBody(t, r, map[string]any{
			"source_branch": "runnel/update-pipeline",
			"target_branch": "main",
			"title":         "Update pipeline ci.yaml",
			"description":   "Saved from Runnel.",
		})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{
  "id": 90210,
  "iid": 42,
  "project_id": 3,
  "title": "Update pipeline ci.yaml",
  "description": "Saved from Runnel.",
  "state": "opened",
  "created_at": "2025-01-02T10:00:00.000Z",
  "target_branch": "main",
  "source_branch": "runnel/update-pipeline",
  "author": {"id": 1, "username": "runnel-bot", "name": "Runnel"},
  "draft": false,
  "merge_status": "checking",
  "detailed_merge_status": "checking",
  "sha": "8888888888888888888888888888888888888888",
  "references": {"short": "!42", "relative": "!42", "full": "platform/ci/pipelines!42"},
  "web_url": "https://gitlab.example.com/platform/ci/pipelines/-/merge_requests/42"
}`)
	}))
	defer srv.Close()

	r := baseRequest("gitlab", srv.URL+"/platform/ci/pipelines.git")
	pr, err := Open(context.Background(), srv.Client(), r)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if pr.Number != 42 || pr.URL != "https://gitlab.example.com/platform/ci/pipelines/-/merge_requests/42" {
		t.Errorf("got %+v", pr)
	}
}

func TestOpenGitea(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			t.Errorf("method = %s, want POST", r.Method)
		}
		if got := r.URL.EscapedPath(); got != "/api/v1/repos/alice/pipelines/pulls" {
			t.Errorf("path = %s", got)
		}
		if got := r.Header.Get("Authorization"); got != "token "+testToken {
			t.Errorf("Authorization = %q", got)
		}
		checkJSONBody(t, r, map[string]any{
			"title": "Update pipeline ci.yaml",
			"head":  "runnel/update-pipeline",
			"base":  "main",
			"body":  "Saved from Runnel.",
		})
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{
  "id": 17,
  "url": "https://gitea.example.com/alice/pipelines/pulls/7",
  "number": 7,
  "user": {"id": 2, "login": "alice"},
  "title": "Update pipeline ci.yaml",
  "body": "Saved from Runnel.",
  "labels": [],
  "state": "open",
  "html_url": "https://gitea.example.com/alice/pipelines/pulls/7",
  "diff_url": "https://gitea.example.com/alice/pipelines/pulls/7.diff",
  "mergeable": true,
  "merged": false,
  "base": {"label": "main", "ref": "main", "sha": "abc"},
  "head": {"label": "runnel/update-pipeline", "ref": "runnel/update-pipeline", "sha": "def"}
}`)
	}))
	defer srv.Close()

	r := baseRequest("gitea", srv.URL+"/alice/pipelines")
	pr, err := Open(context.Background(), srv.Client(), r)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if pr.Number != 7 || pr.URL != "https://gitea.example.com/alice/pipelines/pulls/7" {
		t.Errorf("got %+v", pr)
	}
}

// errorServer answers every request with status and body.
func errorServer(t *testing.T, status int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name       string
		kind       string
		repoPath   string
		status     int
		body       string
		wantIn     []string
		wantExists bool
	}{
		{
			name:     "github 422 already exists",
			kind:     "github",
			repoPath: "/octo-org/hello-world.git",
			status:   422,
			body: `{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom",` +
				`"message":"A pull request already exists for octo-org:runnel/update-pipeline."}],` +
				`"documentation_url":"https://docs.github.com/rest/pulls/pulls#create-a-pull-request","status":"422"}`,
			wantIn: []string{"github", "POST", "/api/v3/repos/octo-org/hello-world/pulls", "422",
				"Validation Failed", "A pull request already exists for octo-org:runnel/update-pipeline."},
			wantExists: true,
		},
		{
			name:     "github 422 other validation",
			kind:     "github",
			repoPath: "/octo-org/hello-world.git",
			status:   422,
			body:     `{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"head","code":"invalid"}]}`,
			wantIn:   []string{"github", "422", "Validation Failed", "field=head", "code=invalid"},
		},
		{
			name:     "github 401",
			kind:     "github",
			repoPath: "/octo-org/hello-world.git",
			status:   401,
			body:     `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`,
			wantIn:   []string{"github", "401", "Bad credentials"},
		},
		{
			name:     "gitlab 409",
			kind:     "gitlab",
			repoPath: "/platform/ci/pipelines.git",
			status:   409,
			body:     `{"message":["Another open merge request already exists for this source branch: !41"]}`,
			wantIn: []string{"gitlab", "POST", "/api/v4/projects/platform%2Fci%2Fpipelines/merge_requests", "409",
				"Another open merge request already exists for this source branch: !41"},
			wantExists: true,
		},
		{
			name:     "gitlab 401",
			kind:     "gitlab",
			repoPath: "/platform/ci/pipelines.git",
			status:   401,
			body:     `{"message":"401 Unauthorized"}`,
			wantIn:   []string{"gitlab", "401", "401 Unauthorized"},
		},
		{
			name:     "gitlab 400 field errors",
			kind:     "gitlab",
			repoPath: "/platform/ci/pipelines.git",
			status:   400,
			body:     `{"message":{"source_branch":["is invalid"]}}`,
			wantIn:   []string{"gitlab", "400", "source_branch is invalid"},
		},
		{
			name:     "gitea 404",
			kind:     "gitea",
			repoPath: "/alice/pipelines.git",
			status:   404,
			body:     `{"errors":["user does not exist [uid: 0, name: alice]"],"message":"The target couldn't be found.","url":"https://gitea.example.com/api/swagger"}`,
			wantIn:   []string{"gitea", "POST", "/api/v1/repos/alice/pipelines/pulls", "404", "The target couldn't be found."},
		},
		{
			name:     "gitea 401",
			kind:     "gitea",
			repoPath: "/alice/pipelines.git",
			status:   401,
			body:     `{"message":"token is required","url":"https://gitea.example.com/api/swagger"}`,
			wantIn:   []string{"gitea", "401", "token is required"},
		},
		{
			name:       "gitea 409 already exists",
			kind:       "gitea",
			repoPath:   "/alice/pipelines.git",
			status:     409,
			body:       `{"message":"pull request already exists for these targets","url":"https://gitea.example.com/api/swagger"}`,
			wantIn:     []string{"gitea", "409", "pull request already exists for these targets"},
			wantExists: true,
		},
		{
			name:     "echoed token is redacted",
			kind:     "gitea",
			repoPath: "/alice/pipelines.git",
			status:   403,
			body:     `{"message":"token ` + testToken + ` does not have scope write:repository"}`,
			wantIn:   []string{"gitea", "403", "[REDACTED] does not have scope"},
		},
		{
			name:     "non-JSON body",
			kind:     "gitlab",
			repoPath: "/platform/ci/pipelines.git",
			status:   502,
			body:     "<html>\n<body>Bad   Gateway</body>\n</html>",
			wantIn:   []string{"gitlab", "502", "<html> <body>Bad Gateway</body> </html>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := errorServer(t, tt.status, tt.body)
			pr, err := Open(context.Background(), srv.Client(), baseRequest(tt.kind, srv.URL+tt.repoPath))
			if pr != nil {
				t.Errorf("got pull request %+v, want nil", pr)
			}
			assertNoToken(t, err)
			t.Log(err)
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if got := errors.Is(err, forge.ErrAlreadyExists); got != tt.wantExists {
				t.Errorf("errors.Is(err, forge.ErrAlreadyExists) = %v, want %v", got, tt.wantExists)
			}
			var fe *forge.Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not *Error", err)
			}
			if fe.StatusCode != tt.status || fe.Kind != tt.kind || fe.Method != http.MethodPost {
				t.Errorf("Error fields = %+v", fe)
			}
		})
	}
}

func TestOpenErrorMessageBounded(t *testing.T) {
	long := strings.Repeat("é", 5000)
	srv := errorServer(t, 500, `{"message":"`+long+`"}`)
	_, err := Open(context.Background(), srv.Client(), baseRequest("github", srv.URL+"/o/r.git"))
	assertNoToken(t, err)
	var fe *forge.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %T is not *Error", err)
	}
	if len(fe.Message) > forge.MaxMessageBytes+len("…") {
		t.Errorf("message is %d bytes, want at most ~%d", len(fe.Message), forge.MaxMessageBytes)
	}
	if !strings.HasSuffix(fe.Message, "…") || !strings.HasPrefix(fe.Message, "éé") {
		t.Errorf("unexpected truncation: %q", fe.Message[:20])
	}
	if len(err.Error()) > 1024 {
		t.Errorf("error is %d bytes long", len(err.Error()))
	}
}

func TestOpenResponseTooLarge(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"number":1,"html_url":"https://x/1","pad":"`)
		io.WriteString(w, strings.Repeat("a", forge.MaxResponseBytes+10))
		io.WriteString(w, `"}`)
	}))
	defer srv.Close()
	_, err := Open(context.Background(), srv.Client(), baseRequest("gitea", srv.URL+"/o/r"))
	assertNoToken(t, err)
	if !strings.Contains(err.Error(), "larger than") {
		t.Errorf("error = %v", err)
	}
}

func TestOpenIncompleteResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":5,"state":"open"}`)
	}))
	defer srv.Close()
	_, err := Open(context.Background(), srv.Client(), baseRequest("github", srv.URL+"/o/r"))
	assertNoToken(t, err)
	if !strings.Contains(err.Error(), "lacks") {
		t.Errorf("error = %v", err)
	}
}

func TestOpenDoesNotFollowRedirects(t *testing.T) {
	var redirected atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirected.Add(1)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"number":1,"html_url":"https://evil.example/1"}`)
	}))
	defer target.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer srv.Close()

	_, err := Open(context.Background(), nil, baseRequest("github", srv.URL+"/o/r.git"))
	assertNoToken(t, err)
	if !strings.Contains(err.Error(), "307") || !strings.Contains(err.Error(), "not followed") {
		t.Errorf("error = %v", err)
	}
	if redirected.Load() != 0 {
		t.Errorf("redirect was followed")
	}
}

func TestOpenContextCanceled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Consume the body so the server notices the client going away.
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := Open(ctx, nil, baseRequest("gitlab", srv.URL+"/g/p.git"))
	assertNoToken(t, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "gitlab") || !strings.Contains(err.Error(), "POST") {
		t.Errorf("error = %v", err)
	}
}

func TestOpenTokenInRepoURLNotLeaked(t *testing.T) {
	// The credentials in the URL must not appear in errors either.
	srv := errorServer(t, 401, `{"message":"Bad credentials"}`)
	r := baseRequest("github", strings.Replace(srv.URL, "http://", "http://x-access-token:"+testToken+"@", 1)+"/o/r.git")
	_, err := Open(context.Background(), srv.Client(), r)
	assertNoToken(t, err)

	r.RepoURL = "https://x-access-token:" + testToken + "@github.com/only-owner"
	_, err = Open(context.Background(), srv.Client(), r)
	assertNoToken(t, err)
	if !strings.Contains(err.Error(), "owner/name") {
		t.Errorf("error = %v", err)
	}
}

func TestOpenValidation(t *testing.T) {
	ok := baseRequest("github", "https://github.com/o/r.git")
	tests := []struct {
		name   string
		mutate func(*forge.Request)
		wantIn []string
	}{
		{"unknown kind", func(r *forge.Request) { r.Kind = "bitbucket" }, []string{`"bitbucket"`, "github, gitlab, gitea"}},
		{"empty kind", func(r *forge.Request) { r.Kind = "" }, []string{"kind", "github, gitlab, gitea"}},
		{"no head", func(r *forge.Request) { r.Head = "" }, []string{"Head"}},
		{"no base", func(r *forge.Request) { r.Base = " " }, []string{"Base"}},
		{"no token", func(r *forge.Request) { r.Token = "" }, []string{"Token"}},
		{"no title", func(r *forge.Request) { r.Title = "" }, []string{"Title"}},
		{"no repo", func(r *forge.Request) { r.RepoURL = "" }, []string{"RepoURL"}},
		{"several", func(r *forge.Request) { r.Head, r.Base = "", "" }, []string{"Head", "Base"}},
		{"bad repo", func(r *forge.Request) { r.RepoURL = "not a url" }, []string{"github", "repository URL"}},
		{"nested github path", func(r *forge.Request) { r.RepoURL = "https://github.com/a/b/c.git" }, []string{"owner/name"}},
		{"bad api url", func(r *forge.Request) { r.APIURL = "ftp://example.com" }, []string{"API URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.mutate(&r)
			hc := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
				t.Error("no request expected")
				return nil, errors.New("unexpected request")
			})}
			_, err := Open(context.Background(), hc, r)
			assertNoToken(t, err)
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestAPIBase(t *testing.T) {
	tests := []struct {
		kind, repo, want string
	}{
		{"github", "https://github.com/octo-org/hello-world.git", "https://api.github.com"},
		{"github", "git@github.com:octo-org/hello-world.git", "https://api.github.com"},
		{"github", "ssh://git@github.com/octo-org/hello-world.git", "https://api.github.com"},
		{"GitHub", "https://GitHub.com/octo-org/hello-world", "https://api.github.com"},
		{"github", "https://ghe.corp.example/octo-org/hello-world.git", "https://ghe.corp.example/api/v3"},
		{"github", "git@ghe.corp.example:octo-org/hello-world.git", "https://ghe.corp.example/api/v3"},
		{"github", "http://127.0.0.1:41234/owner/name.git", "http://127.0.0.1:41234/api/v3"},
		{"gitlab", "https://gitlab.com/group/sub/name.git", "https://gitlab.com/api/v4"},
		{"gitlab", "ssh://git@gitlab.example.com:2222/group/sub/name.git", "https://gitlab.example.com/api/v4"},
		{"gitlab", "git@gitlab.example.com:group/sub/name.git", "https://gitlab.example.com/api/v4"},
		{"gitlab", "https://gitlab.example.com:8443/group/name.git", "https://gitlab.example.com:8443/api/v4"},
		{"gitlab", "http://127.0.0.1:8929/group/name.git", "http://127.0.0.1:8929/api/v4"},
		{"gitea", "https://gitea.example.com/alice/pipelines.git", "https://gitea.example.com/api/v1"},
		{"gitea", "ssh://git@gitea.example.com:2222/alice/pipelines.git", "https://gitea.example.com/api/v1"},
		{"gitea", "http://127.0.0.1:3000/alice/pipelines.git", "http://127.0.0.1:3000/api/v1"},
	}
	for _, tt := range tests {
		got, err := APIBase(tt.kind, tt.repo)
		if err != nil {
			t.Errorf("APIBase(%q, %q): %v", tt.kind, tt.repo, err)
			continue
		}
		if got != tt.want {
			t.Errorf("APIBase(%q, %q) = %q, want %q", tt.kind, tt.repo, got, tt.want)
		}
	}

	bad := []struct{ kind, repo string }{
		{"bitbucket", "https://bitbucket.org/o/r.git"},
		{"", "https://github.com/o/r.git"},
		{"github", ""},
		{"github", "https://github.com/"},
		{"gitlab", "file:///srv/git/o/r.git"},
		{"gitea", "/srv/git/o/r.git"},
	}
	for _, tt := range bad {
		if got, err := APIBase(tt.kind, tt.repo); err == nil {
			t.Errorf("APIBase(%q, %q) = %q, want error", tt.kind, tt.repo, got)
		}
	}
}

func TestRepoPath(t *testing.T) {
	tests := []struct {
		url, host, path string
	}{
		{"https://github.com/octo-org/hello-world.git", "github.com", "octo-org/hello-world"},
		{"https://github.com/octo-org/hello-world", "github.com", "octo-org/hello-world"},
		{"https://github.com/octo-org/hello-world/", "github.com", "octo-org/hello-world"},
		{"https://x-access-token:abc@github.com/octo-org/hello-world.git", "github.com", "octo-org/hello-world"},
		{"https://ghe.corp.example/octo-org/hello-world.git", "ghe.corp.example", "octo-org/hello-world"},
		{"https://gitlab.com/group/sub/name.git", "gitlab.com", "group/sub/name"},
		{"https://gitlab.example.com/a/b/c/d.git", "gitlab.example.com", "a/b/c/d"},
		{"https://gitlab.example.com:8443/group/name.git", "gitlab.example.com:8443", "group/name"},
		{"ssh://git@github.com/octo-org/hello-world.git", "github.com", "octo-org/hello-world"},
		{"ssh://git@gitlab.example.com:2222/group/sub/name.git", "gitlab.example.com", "group/sub/name"},
		{"ssh://git@[::1]:2222/o/r.git", "[::1]", "o/r"},
		{"git@github.com:octo-org/hello-world.git", "github.com", "octo-org/hello-world"},
		{"git@gitlab.example.com:group/sub/name.git", "gitlab.example.com", "group/sub/name"},
		{"gitlab.example.com:group/name", "gitlab.example.com", "group/name"},
		{"git@gitea.example.com:/alice/pipelines.git", "gitea.example.com", "alice/pipelines"},
		{"http://127.0.0.1:41234/owner/name.git", "127.0.0.1:41234", "owner/name"},
		{"  https://github.com/o/my.repo.git  ", "github.com", "o/my.repo"},
	}
	for _, tt := range tests {
		host, path, err := forge.RepoPath(tt.url)
		if err != nil {
			t.Errorf("RepoPath(%q): %v", tt.url, err)
			continue
		}
		if host != tt.host || path != tt.path {
			t.Errorf("RepoPath(%q) = %q, %q; want %q, %q", tt.url, host, path, tt.host, tt.path)
		}
	}

	bad := []string{
		"",
		"   ",
		"not a url",
		"github.com/o/r",
		"/srv/git/o/r.git",
		"file:///srv/git/o/r.git",
		"ftp://example.com/o/r.git",
		"https://github.com",
		"https://github.com/",
		"https://github.com/only-owner",
		"https://github.com/only-owner.git",
		"https:///o/r.git",
		"https://github.com/o//r.git",
		"https://github.com/o/../r.git",
		"https://github.com/o/r.git?x=1",
		"https://github.com:99999/o/r.git",
		"https://[bad/o/r.git",
		"git@github.com:",
		"git@github.com:only-owner",
		"git@:o/r.git",
		"git@host name:o/r.git",
		"https://github.com/o/.git",
	}
	for _, u := range bad {
		if host, path, err := forge.RepoPath(u); err == nil {
			t.Errorf("RepoPath(%q) = %q, %q; want error", u, host, path)
		}
	}
}
