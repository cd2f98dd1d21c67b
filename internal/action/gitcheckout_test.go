package action

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/backend"
)

// testRepo is a bare repository with known history:
//
//	main:    c1 ── c2        (HEAD, default branch)
//	feature:   └── c3
//	tags:    v1 (annotated) → c1, light → c3
type testRepo struct {
	bare       string // path of the bare repository
	c1, c2, c3 string
}

// git runs git in dir with the test environment and returns its trimmed
// output.
func git(t *testing.T, env []string, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func newTestRepo(t *testing.T, env []string) *testRepo {
	t.Helper()
	requireTool(t, "git")
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	git(t, env, dir, "init", "-q", "-b", "main", work)
	commit := func(file, content, msg string) string {
		if err := os.WriteFile(filepath.Join(work, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		git(t, env, work, "add", file)
		git(t, env, work, "commit", "-q", "-m", msg)
		return git(t, env, work, "rev-parse", "HEAD")
	}
	r := &testRepo{bare: filepath.Join(dir, "srv", "repo.git")}
	r.c1 = commit("a.txt", "one\n", "first")
	git(t, env, work, "tag", "-a", "-m", "release 1", "v1")
	r.c2 = commit("a.txt", "two\n", "second")
	git(t, env, work, "checkout", "-q", "-b", "feature", r.c1)
	r.c3 = commit("b.txt", "feature\n", "feature work")
	git(t, env, work, "tag", "light")
	git(t, env, work, "checkout", "-q", "main")
	git(t, env, dir, "clone", "-q", "--bare", work, r.bare)
	return r
}

// checkCheckout verifies that dir holds a checkout of want with the given
// amount of history, and that the action reported it.
func checkCheckout(t *testing.T, env []string, dir, want string, commits int, out string, outputs map[string]string) {
	t.Helper()
	if got := git(t, env, dir, "rev-parse", "HEAD"); got != want {
		t.Errorf("HEAD is %s, want %s\n%s", got, want, out)
	}
	if got := git(t, env, dir, "rev-list", "--count", "HEAD"); got != strconv.Itoa(commits) {
		t.Errorf("history has %s commits, want %d", got, commits)
	}
	if git(t, env, dir, "status", "--porcelain", "--untracked-files=no") != "" {
		t.Errorf("checkout is not clean")
	}
	if outputs["commit"] != want {
		t.Errorf("output commit = %q, want %s", outputs["commit"], want)
	}
	if !strings.Contains(out, "checked out "+want) {
		t.Errorf("output does not name the commit:\n%s", out)
	}
}

func TestGitCheckoutFile(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	env := testEnv(t)
	repo := newTestRepo(t, env)
	url := "file://" + repo.bare
	tests := []struct {
		name    string
		args    map[string]any
		extra   map[string]string
		want    string
		commits int
	}{
		{"default branch", map[string]any{"repo": url, "path": "default"}, nil, repo.c2, 1},
		{"branch", map[string]any{"repo": url, "ref": "feature", "path": "branch"}, nil, repo.c3, 1},
		{"full ref", map[string]any{"repo": url, "ref": "refs/heads/feature", "path": "fullref"}, nil, repo.c3, 1},
		{"annotated tag", map[string]any{"repo": url, "ref": "v1", "path": "tag"}, nil, repo.c1, 1},
		{"lightweight tag", map[string]any{"repo": url, "ref": "refs/tags/light", "path": "light"}, nil, repo.c3, 1},
		{"commit ID", map[string]any{"repo": url, "ref": repo.c1, "path": "sha"}, nil, repo.c1, 1},
		{"abbreviated commit ID", map[string]any{"repo": url, "ref": repo.c3[:10], "path": "abbrev"}, nil, repo.c3, 2},
		{"depth 0", map[string]any{"repo": url, "ref": "main", "depth": 0, "path": "full"}, nil, repo.c2, 2},
		{"depth 0 commit ID", map[string]any{"repo": url, "ref": repo.c3, "depth": "0", "path": "fullsha"}, nil, repo.c3, 2},
		{"depth 2", map[string]any{"repo": url, "depth": 2, "path": "two"}, nil, repo.c2, 2},
		{"plain path", map[string]any{"repo": repo.bare, "ref": "feature", "path": "plain"}, nil, repo.c3, 1},
		{
			"pipeline source and commit",
			map[string]any{"path": "source"},
			map[string]string{"RUNNEL_REPO_URL": url, "RUNNEL_COMMIT": repo.c1, "RUNNEL_REF": "refs/heads/feature"},
			repo.c1, 1,
		},
		{
			"pipeline ref without commit",
			map[string]any{"path": "sourceref"},
			map[string]string{"RUNNEL_REPO_URL": url, "RUNNEL_REF": "refs/heads/feature"},
			repo.c3, 1,
		},
		{
			"other repo ignores the run's commit",
			map[string]any{"repo": repo.bare, "path": "other"},
			map[string]string{"RUNNEL_REPO_URL": url, "RUNNEL_COMMIT": repo.c1},
			repo.c2, 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, out := r.run(GitCheckout{}, tc.args, tc.extra)
			if res.ExitCode != 0 {
				t.Fatalf("exit %d:\n%s", res.ExitCode, out)
			}
			checkCheckout(t, env, filepath.Join(r.ws, tc.args["path"].(string)), tc.want, tc.commits, out, res.Outputs)
		})
	}

	// depth 0 brings every branch and tag, for `git describe` and friends.
	dir := filepath.Join(r.ws, "full")
	if got := git(t, env, dir, "tag", "--list"); got != "light\nv1" {
		t.Errorf("tags after depth 0: %q", got)
	}
	if got := git(t, env, dir, "describe", "--tags", repo.c2); !strings.HasPrefix(got, "v1-1-") {
		t.Errorf("describe: %q", got)
	}
	if got := git(t, env, dir, "branch", "-r"); !strings.Contains(got, "origin/feature") {
		t.Errorf("remote branches after depth 0: %q", got)
	}
	if got := git(t, env, dir, "remote", "get-url", "origin"); got != url {
		t.Errorf("origin is %q", got)
	}

	// Into the workspace itself by default; checking out again over an
	// existing checkout moves it.
	res, out := r.run(GitCheckout{}, map[string]any{"repo": url, "ref": "v1"}, nil)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, out)
	}
	checkCheckout(t, env, r.ws, repo.c1, 1, out, res.Outputs)
	res, out = r.run(GitCheckout{}, map[string]any{"repo": url, "ref": "main"}, nil)
	if res.ExitCode != 0 {
		t.Fatalf("second checkout, exit %d:\n%s", res.ExitCode, out)
	}
	if got := git(t, env, r.ws, "rev-parse", "HEAD"); got != repo.c2 {
		t.Errorf("second checkout: HEAD %s, want %s", got, repo.c2)
	}
}

func TestGitCheckoutFailures(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	env := testEnv(t)
	repo := newTestRepo(t, env)
	url := "file://" + repo.bare

	res, out := r.run(GitCheckout{}, map[string]any{"repo": url, "ref": "nope", "path": "bad"}, nil)
	if res.ExitCode == 0 || !strings.Contains(out, "couldn't find remote ref nope") {
		t.Errorf("bad ref: exit %d, output:\n%s", res.ExitCode, out)
	}
	res, out = r.run(GitCheckout{}, map[string]any{"repo": url, "ref": strings.Repeat("e", 40), "path": "badsha"}, nil)
	if res.ExitCode == 0 || !strings.Contains(out, "commit "+strings.Repeat("e", 40)+" not found") {
		t.Errorf("unknown commit: exit %d, output:\n%s", res.ExitCode, out)
	}
	res, out = r.run(GitCheckout{}, map[string]any{"repo": "file:///nonexistent/repo.git"}, nil)
	if res.ExitCode == 0 || !strings.Contains(out, "nonexistent/repo.git") {
		t.Errorf("missing repo: exit %d, output:\n%s", res.ExitCode, out)
	}
	res, out = r.run(GitCheckout{}, nil, nil)
	if res.ExitCode == 0 || !strings.Contains(out, "no repository to check out: set args.repo") {
		t.Errorf("no repo: exit %d, output:\n%s", res.ExitCode, out)
	}

	// Credentials in the URL are not printed.
	res, out = r.run(GitCheckout{}, map[string]any{"repo": "https://user:s3cret@127.0.0.1:1/x.git"}, nil)
	if res.ExitCode == 0 || strings.Contains(out, "s3cret") || !strings.Contains(out, "https://***@127.0.0.1:1/x.git") {
		t.Errorf("credentials printed: %q", out)
	}

	// Shell metacharacters in arguments stay data.
	res, out = r.run(GitCheckout{}, map[string]any{"repo": url, "ref": "$(touch${IFS}pwned)", "path": "x;touch pwned"}, nil)
	if res.ExitCode == 0 {
		t.Errorf("odd ref succeeded:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(r.ws, "x;touch pwned")); err != nil {
		t.Errorf("path with metacharacters was not used literally: %v", err)
	}
	filepath.Walk(filepath.Dir(r.ws), func(p string, _ os.FileInfo, _ error) error {
		if filepath.Base(p) == "pwned" {
			t.Errorf("shell injection: %s exists", p)
		}
		return nil
	})

	// No git in PATH: a clear message, not "command not found".
	bin := t.TempDir()
	if err := os.Symlink(requireTool(t, "sh"), filepath.Join(bin, "sh")); err != nil {
		t.Fatal(err)
	}
	res, out = r.run(GitCheckout{}, map[string]any{"repo": url}, map[string]string{"PATH": bin})
	if res.ExitCode == 0 || !strings.Contains(out, "actions/git-checkout@v1: git is not installed") {
		t.Errorf("without git: exit %d, output:\n%s", res.ExitCode, out)
	}
}

// TestGitCheckoutHTTP serves the repository with git http-backend (smart HTTP)
// to exercise the http(s):// transport, and through a second server that
// speaks only protocol v0, which refuses unadvertised commit IDs as older or
// stricter servers do, to exercise the full-fetch fallback.
func TestGitCheckoutHTTP(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	env := testEnv(t)
	repo := newTestRepo(t, env)
	execPath := git(t, env, "", "--exec-path")
	backend := &cgi.Handler{
		Path: filepath.Join(execPath, "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(repo.bare), "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	srv := httptest.NewServer(backend)
	defer srv.Close()
	url := srv.URL + "/repo.git"
	v0 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		req.Header.Del("Git-Protocol") // no protocol v2 negotiation
		backend.ServeHTTP(w, req)
	}))
	defer v0.Close()

	res, out := r.run(GitCheckout{}, map[string]any{"repo": url, "ref": "feature", "path": "branch"}, nil)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, out)
	}
	checkCheckout(t, env, filepath.Join(r.ws, "branch"), repo.c3, 1, out, res.Outputs)

	res, out = r.run(GitCheckout{}, map[string]any{"repo": url, "ref": repo.c3, "path": "sha-v2"}, nil)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, out)
	}
	checkCheckout(t, env, filepath.Join(r.ws, "sha-v2"), repo.c3, 1, out, res.Outputs)

	res, out = r.run(GitCheckout{}, map[string]any{"repo": v0.URL + "/repo.git", "ref": repo.c1, "path": "sha"}, nil)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, out)
	}
	if !strings.Contains(out, "fetching the full history instead") {
		t.Errorf("expected the server to refuse the commit ID and the fallback to run:\n%s", out)
	}
	checkCheckout(t, env, filepath.Join(r.ws, "sha"), repo.c1, 1, out, res.Outputs)

	res, out = r.run(GitCheckout{}, map[string]any{"repo": url, "ref": "nope", "path": "bad"}, nil)
	if res.ExitCode == 0 || !strings.Contains(out, "couldn't find remote ref nope") {
		t.Errorf("bad ref over HTTP: exit %d:\n%s", res.ExitCode, out)
	}
}

// TestGitCheckoutSSH uses the ssh transport with GIT_SSH_COMMAND pointing to a
// script that plays the ssh hop: it runs the remote command locally.
func TestGitCheckoutSSH(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	env := testEnv(t)
	repo := newTestRepo(t, env)
	fakeSSH := filepath.Join(t.TempDir(), "fake-ssh")
	script := "#!/bin/sh\n# fake-ssh [options] host command: run command here.\nfor last; do :; done\nexec sh -c \"$last\"\n"
	if err := os.WriteFile(fakeSSH, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	extra := map[string]string{"GIT_SSH_COMMAND": fakeSSH, "GIT_SSH_VARIANT": "simple"}
	url := "ssh://git@localhost" + repo.bare

	res, out := r.run(GitCheckout{}, map[string]any{"repo": url, "ref": "v1", "path": "tag"}, extra)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, out)
	}
	checkCheckout(t, env, filepath.Join(r.ws, "tag"), repo.c1, 1, out, res.Outputs)

	res, out = r.run(GitCheckout{}, map[string]any{"repo": url, "ref": repo.c3, "depth": 0, "path": "sha"}, extra)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, out)
	}
	checkCheckout(t, env, filepath.Join(r.ws, "sha"), repo.c3, 2, out, res.Outputs)

	// scp-like syntax goes through the same transport.
	res, out = r.run(GitCheckout{}, map[string]any{"repo": "git@localhost:" + repo.bare, "path": "scp"}, extra)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, out)
	}
	checkCheckout(t, env, filepath.Join(r.ws, "scp"), repo.c2, 1, out, res.Outputs)
}

// TestGitCheckoutCredential fetches over HTTP from a server that demands
// basic authentication: without a credential the fetch fails; with one, git
// gets the token from the credential helper (for the credential's host
// only), and the token never appears in the output or in the checked-out
// repository's configuration. An SSH credential's key reaches ssh as a
// private file (-i), never on a command line.
func TestGitCheckoutCredential(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	env := testEnv(t)
	repo := newTestRepo(t, env)
	execPath := git(t, env, "", "--exec-path")
	gitHTTP := &cgi.Handler{
		Path: filepath.Join(execPath, "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(repo.bare), "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	const token = "tok-9d8e7f6a5b4c"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if u, p, ok := req.BasicAuth(); !ok || u != "bot" || p != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		gitHTTP.ServeHTTP(w, req)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	url := srv.URL + "/repo.git"
	cred := runnel.Credential{ID: "cred_test0000000", Kind: "basic", Host: host, Username: "bot", Secret: token}

	res, out := r.run(GitCheckout{}, map[string]any{"repo": url, "path": "anon"}, nil)
	if res.ExitCode == 0 {
		t.Fatalf("fetch without a credential should fail:\n%s", out)
	}
	run := func(c runnel.Credential, path string) (backend.Result, string) {
		ex, err := GitCheckout{}.Prepare(Call{Args: map[string]any{"repo": url, "path": path, "credential": c.ID},
			Credentials: map[string]runnel.Credential{c.ID: c}})
		if err != nil {
			t.Fatal(err)
		}
		return r.runExec(ex, nil)
	}
	res, out = run(cred, "authed")
	if res.ExitCode != 0 {
		t.Fatalf("fetch with a credential: exit %d:\n%s", res.ExitCode, out)
	}
	checkCheckout(t, env, filepath.Join(r.ws, "authed"), repo.c2, 1, out, res.Outputs)
	if strings.Contains(out, token) {
		t.Errorf("the token appears in the output:\n%s", out)
	}
	cfg, _ := os.ReadFile(filepath.Join(r.ws, "authed", ".git", "config"))
	if strings.Contains(string(cfg), token) || strings.Contains(string(cfg), "helper") {
		t.Errorf("the checkout's configuration keeps credential material:\n%s", cfg)
	}
	// A credential for another host is not offered to this one.
	other := cred
	other.Host = "git.elsewhere.invalid"
	if _, err := (GitCheckout{}).Prepare(Call{Args: map[string]any{"repo": url, "credential": other.ID},
		Credentials: map[string]runnel.Credential{other.ID: other}}); err == nil || !strings.Contains(err.Error(), "is for git.elsewhere.invalid, but the repository is on") {
		t.Errorf("a credential for another host: %v", err)
	}
	// A token is not sent over plain http:// except to this machine.
	remote := cred
	remote.Host = "git.example.com"
	if _, err := (GitCheckout{}).Prepare(Call{Args: map[string]any{"repo": "http://git.example.com/r.git", "credential": remote.ID},
		Credentials: map[string]runnel.Credential{remote.ID: remote}}); err == nil || !strings.Contains(err.Error(), "plain http://") {
		t.Errorf("a token over plain http: %v", err)
	}
	for repo, want := range map[string]string{"ssh://git@h.example:2222/x.git": "h.example:2222", "git@h.example:team/x.git": "h.example",
		"https://h.example/x": "h.example", "/srv/x.git": "", "file:///srv/x.git": "", "./a:b": ""} {
		if got := repoHost(repo); got != want {
			t.Errorf("repoHost(%q) = %q, want %q", repo, got, want)
		}
	}
	// An unknown credential id fails in Prepare with a clear message.
	if _, err := (GitCheckout{}).Prepare(Call{Args: map[string]any{"repo": url, "credential": "cred_missing0000"}}); err == nil || !strings.Contains(err.Error(), "not a credential this job may use") {
		t.Errorf("unknown credential: %v", err)
	}

	// SSH: a fake ssh in PATH checks it got the key as a 0600 file.
	bin := t.TempDir()
	fakeSSH := "#!/bin/sh\n# fake ssh: check -i KEYFILE, then run the remote command here.\n" +
		"key=; while [ $# -gt 1 ]; do case $1 in -i) key=$2; shift 2;; -o) shift 2;; *) shift;; esac; done\n" +
		"[ -f \"$key\" ] || { echo \"no key file\" >&2; exit 9; }\n" +
		"[ \"$(stat -c %a \"$key\")\" = 600 ] || { echo \"key file mode $(stat -c %a \"$key\")\" >&2; exit 9; }\n" +
		"grep -q 'TESTKEYMATERIAL' \"$key\" || { echo \"wrong key\" >&2; exit 9; }\n" +
		"exec sh -c \"$1\"\n"
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(fakeSSH), 0o755); err != nil {
		t.Fatal(err)
	}
	sshCred := runnel.Credential{ID: "cred_ssh00000000", Kind: "ssh", Username: "git",
		Secret: "-----BEGIN OPENSSH PRIVATE KEY-----\nTESTKEYMATERIAL\n-----END OPENSSH PRIVATE KEY-----\n"}
	ex, err := GitCheckout{}.Prepare(Call{Args: map[string]any{"repo": "ssh://git@localhost" + repo.bare, "path": "ssh", "credential": sshCred.ID},
		Credentials: map[string]runnel.Credential{sshCred.ID: sshCred}})
	if err != nil {
		t.Fatal(err)
	}
	res, out = r.runExec(ex, map[string]string{"PATH": bin + ":" + os.Getenv("PATH"), "GIT_SSH_VARIANT": "simple"})
	if res.ExitCode != 0 {
		t.Fatalf("ssh credential: exit %d:\n%s", res.ExitCode, out)
	}
	checkCheckout(t, env, filepath.Join(r.ws, "ssh"), repo.c2, 1, out, res.Outputs)
	if strings.Contains(out, "TESTKEYMATERIAL") {
		t.Errorf("the key appears in the output:\n%s", out)
	}
}
