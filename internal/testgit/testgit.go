// Package testgit serves real Git repositories over smart HTTP for tests:
// git http-backend behind Go's net/http/cgi, with HTTP basic authentication,
// pushes enabled. Repositories are bare, under a temporary directory.
package testgit

import (
	"crypto/subtle"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// Server is a Git smart-HTTP server.
type Server struct {
	URL      string // http://127.0.0.1:PORT
	Root     string // directory holding NAME.git
	User     string
	Password string
	// Anonymous, when true, lets requests without credentials read.
	Anonymous atomic.Bool
	// Requests counts the requests served.
	Requests atomic.Int64
	// API, when set, serves the paths under /api/ (a forge's REST API, as
	// GitHub Enterprise and Gitea serve it on the Git host); it does its own
	// authentication.
	API http.Handler
}

func gitCmd(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Git runs git in dir and returns its trimmed output.
func Git(t testing.TB, dir string, args ...string) string { t.Helper(); return gitCmd(t, dir, args...) }

// New starts a server; it stops with the test.
func New(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required: %v", err)
	}
	execPath := gitCmd(t, "", "--exec-path")
	backend := filepath.Join(execPath, "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("git-http-backend not found: %v", err)
	}
	s := &Server{Root: t.TempDir(), User: "runnel-bot", Password: "s3cret-token-value"}
	h := &cgi.Handler{
		Path: backend,
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + s.Root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Requests.Add(1)
		if s.API != nil && strings.HasPrefix(r.URL.Path, "/api/") {
			s.API.ServeHTTP(w, r)
			return
		}
		u, p, ok := r.BasicAuth()
		good := ok && subtle.ConstantTimeCompare([]byte(u), []byte(s.User)) == 1 &&
			subtle.ConstantTimeCompare([]byte(p), []byte(s.Password)) == 1
		if !good && !(s.Anonymous.Load() && !ok) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Init creates NAME.git with one commit on branch main holding files, and
// returns its clone URL.
func (s *Server) Init(t testing.TB, name string, files map[string]string) string {
	t.Helper()
	bare := filepath.Join(s.Root, filepath.FromSlash(name)+".git")
	gitCmd(t, s.Root, "init", "-q", "--bare", "-b", "main", bare)
	gitCmd(t, bare, "config", "http.receivepack", "true")
	s.Commit(t, name, "main", files, "initial")
	return s.URL + "/" + name + ".git"
}

// Bare is the bare repository's directory.
func (s *Server) Bare(name string) string {
	return filepath.Join(s.Root, filepath.FromSlash(name)+".git")
}

// Commit writes files on branch (created from main when missing) and pushes
// it to the bare repository directly (not over HTTP); it returns the commit.
func (s *Server) Commit(t testing.TB, name, branch string, files map[string]string, msg string) string {
	t.Helper()
	work := t.TempDir()
	bare := s.Bare(name)
	gitCmd(t, work, "init", "-q", "-b", branch)
	gitCmd(t, work, "remote", "add", "origin", bare)
	if heads := gitCmd(t, work, "ls-remote", "origin"); heads != "" {
		from := "main"
		if strings.Contains(heads, "refs/heads/"+branch+"\n") || strings.HasSuffix(heads, "refs/heads/"+branch) {
			from = branch
		}
		gitCmd(t, work, "fetch", "-q", "origin", from)
		gitCmd(t, work, "reset", "-q", "--hard", "FETCH_HEAD")
	}
	for p, content := range files {
		full := filepath.Join(work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitCmd(t, work, "add", "-A")
	gitCmd(t, work, "commit", "-q", "--allow-empty", "-m", msg)
	gitCmd(t, work, "push", "-q", "origin", "HEAD:refs/heads/"+branch)
	return gitCmd(t, work, "rev-parse", "HEAD")
}

// Tag creates an annotated tag at rev.
func (s *Server) Tag(t testing.TB, name, tag, rev string) {
	t.Helper()
	gitCmd(t, s.Bare(name), "tag", "-a", "-m", "release "+tag, tag, rev)
}

// Head returns the commit branch points at ("" when missing).
func (s *Server) Head(t testing.TB, name, branch string) string {
	t.Helper()
	cmd := exec.Command("git", "rev-parse", "--verify", "-q", "refs/heads/"+branch)
	cmd.Dir = s.Bare(name)
	out, _ := cmd.Output()
	return strings.TrimSpace(string(out))
}

// Show returns the file at rev.
func (s *Server) Show(t testing.TB, name, rev, path string) string {
	t.Helper()
	return gitCmd(t, s.Bare(name), "show", rev+":"+path)
}
