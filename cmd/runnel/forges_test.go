package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/testgitea"
)

const forgePipelineOK = `version: v1
namespace: app
triggers:
  - type: event
    events: [push, pull_request]
jobs:
  - name: build
    steps:
      - run: echo "built ${{ trigger.commit }} key=[$KEY]"
        env:
          KEY: ${{ secrets.DEPLOY_KEY }}
`

// TestForgeWithGitea walks seed 001's path from a forge to a green status,
// against a real Gitea: an admin registers the OAuth application, a user
// connects their account through the authorization flow, lists the
// repositories with their permissions and activates one (the hook appears
// in Gitea with the right URL and events); a git push delivers a signed
// webhook, the run succeeds and Gitea shows the commit status with the
// run's link; a failing commit shows failure; deactivating removes the
// hook and a push starts nothing; a hook deleted in Gitea is detected and
// repaired; a pull request from a fork runs without the secrets.
func TestForgeWithGitea(t *testing.T) {
	g := testgitea.Start(t)
	g.CreateUser(t, "dev", "dev-pass-1234", "dev@example.com")
	g.CreateUser(t, "outsider", "out-pass-1234", "out@example.com")
	g.CreateRepo(t, "dev", "app")
	g.CreateRepo(t, "dev", "docs")

	port := freeTCPPort(t)
	base := "http://127.0.0.1:" + port
	srv := startServerProc(t, "server", "", "--addr", "127.0.0.1:"+port, "--external-url", base,
		"--embedded-agent-capacity", "2", "--embedded-agent-backend", "local")
	c := &client{t: t, base: "http://" + srv.addr}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string, bearer bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", u, nil)
		if bearer {
			req.Header.Set("Authorization", "Bearer "+testToken)
		}
		res, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}

	// 1. The forge application: Gitea's OAuth2 application, registered as
	// a provider that connects accounts (and does not sign in).
	clientID, clientSecret := g.CreateOAuthApp(t, "runnel", []string{base + "/api/v1/auth/providers/gitea/callback"})
	var prov struct {
		Connect    bool   `json:"connect"`
		SignIn     bool   `json:"signIn"`
		ConnectURL string `json:"connectUrl"`
	}
	if env := c.do("POST", "/api/v1/auth/providers", map[string]any{"name": "gitea", "kind": "gitea", "url": g.URL,
		"clientId": clientID, "clientSecret": clientSecret, "signIn": false, "connect": true}, &prov); env.Code != 0 ||
		!prov.Connect || prov.SignIn || prov.ConnectURL != "/api/v1/auth/providers/gitea/connect" {
		t.Fatalf("provider: %+v %+v", env, prov)
	}
	if res := get(base+"/api/v1/auth/providers/gitea/login", false); res.StatusCode != http.StatusNotFound {
		t.Fatalf("a connect-only provider signs nobody in: login answered %d", res.StatusCode)
	}

	// 2. Connect the account: the authorization code flow with state and
	// PKCE; a forged state is refused.
	connect := func() *url.URL {
		t.Helper()
		res := get(base+"/api/v1/auth/providers/gitea/connect?returnTo=/credentials", true)
		if res.StatusCode != http.StatusFound {
			t.Fatalf("connect: %d", res.StatusCode)
		}
		auth, _ := url.Parse(res.Header.Get("Location"))
		if q := auth.Query(); q.Get("code_challenge_method") != "S256" || q.Get("state") == "" {
			t.Fatalf("connect redirect: %s", auth)
		}
		return g.Authorize(t, auth.String(), "dev", "dev-pass-1234")
	}
	// An application with a wrong secret: the code exchange fails, the
	// browser lands on the sign-in page with the reason.
	c.do("PUT", "/api/v1/auth/providers/gitea", map[string]any{"clientSecret": "not-the-secret"}, nil)
	if res := get(connect().String(), false); res.StatusCode != http.StatusFound || !strings.Contains(res.Header.Get("Location"), "error=") {
		t.Fatalf("wrong client secret: %d %s", res.StatusCode, res.Header.Get("Location"))
	} else if loc, _ := url.Parse(res.Header.Get("Location")); !strings.Contains(loc.Query().Get("error"), "gitea") {
		t.Fatalf("wrong client secret: the error should name the provider: %s", loc.Query().Get("error"))
	}
	c.do("PUT", "/api/v1/auth/providers/gitea", map[string]any{"clientSecret": clientSecret}, nil)
	cb := connect()
	forged := *cb
	q := forged.Query()
	q.Set("state", "forged-"+q.Get("state"))
	forged.RawQuery = q.Encode()
	if res := get(forged.String(), false); res.StatusCode != http.StatusFound || !strings.HasPrefix(res.Header.Get("Location"), "/signin?error=") {
		t.Fatalf("a forged state: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	res := get(cb.String(), false)
	loc, _ := url.Parse(res.Header.Get("Location"))
	credID := loc.Query().Get("connected")
	if res.StatusCode != http.StatusFound || loc.Path != "/credentials" || !strings.HasPrefix(credID, "cred_") {
		t.Fatalf("callback: %d %s", res.StatusCode, loc)
	}
	var cred map[string]any
	c.do("GET", "/api/v1/credentials/"+credID, nil, &cred)
	if cred["kind"] != "gitea" || cred["loginName"] != "dev" || cred["accessToken"] != "***" || cred["provider"] != "gitea" {
		t.Fatalf("connected credential: %v", cred)
	}

	// 3. Repositories with permissions.
	var repos struct {
		Items []struct {
			FullName      string `json:"fullName"`
			CloneURL      string `json:"cloneUrl"`
			DefaultBranch string `json:"defaultBranch"`
			Permissions   struct {
				Admin, Push, Pull bool
			} `json:"permissions"`
		} `json:"items"`
	}
	c.do("GET", "/api/v1/credentials/"+credID+"/repositories?refresh=true", nil, &repos)
	found := false
	for _, r := range repos.Items {
		if r.FullName == "dev/app" {
			found = r.Permissions.Admin && r.Permissions.Push && r.DefaultBranch == "main" && strings.HasSuffix(r.CloneURL, "/dev/app.git")
		}
	}
	if !found {
		t.Fatalf("repositories: %+v", repos)
	}
	c.do("GET", "/api/v1/credentials/"+credID+"/repositories?search=doc", nil, &repos)
	if len(repos.Items) != 1 || repos.Items[0].FullName != "dev/docs" {
		t.Fatalf("search doc: %+v", repos)
	}

	// A repository the account cannot administer: refused, naming the
	// missing permission, and nothing is left behind.
	g.CreateRepo(t, "outsider", "shared")
	g.API(t, "PUT", "/repos/outsider/shared/collaborators/dev", map[string]any{"permission": "read"}, nil)
	if env := c.do("POST", "/api/v1/repositories/activate", map[string]any{"credentialId": credID, "fullName": "outsider/shared", "projectId": "demo"}, nil); env.Code != http.StatusForbidden ||
		!strings.Contains(env.ErrMsg, "admin permission") || !strings.Contains(env.ErrMsg, "outsider/shared") {
		t.Fatalf("activating a read-only repository: %+v", env)
	}

	// 4. Activate: a pipeline, and its hook in Gitea.
	var act struct {
		PipelineID string `json:"pipelineId"`
		Repository struct {
			WebhookState string `json:"webhookState"`
			WebhookURL   string `json:"webhookUrl"`
		} `json:"repository"`
	}
	if env := c.do("POST", "/api/v1/repositories/activate", map[string]any{"credentialId": credID, "fullName": "dev/app", "projectId": "demo"}, &act); env.Code != 0 {
		t.Fatalf("activate: %+v", env)
	}
	pid := act.PipelineID
	hookURL := base + "/api/v1/webhooks/gitea/" + pid
	if act.Repository.WebhookState != "active" || act.Repository.WebhookURL != hookURL {
		t.Fatalf("activation: %+v", act)
	}
	type giteaHook struct {
		ID     int64             `json:"id"`
		Events []string          `json:"events"`
		Active bool              `json:"active"`
		Config map[string]string `json:"config"`
	}
	hooks := func() []giteaHook {
		var hs []giteaHook
		g.API(t, "GET", "/repos/dev/app/hooks", nil, &hs)
		return hs
	}
	if hs := hooks(); len(hs) != 1 || hs[0].Config["url"] != hookURL || !hs[0].Active ||
		!strings.Contains(strings.Join(hs[0].Events, ","), "push") || !strings.Contains(strings.Join(hs[0].Events, ","), "pull_request") {
		t.Fatalf("hooks in Gitea: %+v", hs)
	}
	// An image repository (seed 002) with an active tag config gets its
	// webhook the same way: continuous builds need no hook made by hand.
	gu, _ := url.Parse(g.URL)
	var img struct {
		BuildConfig struct {
			WebhookCode string `json:"code_repo_webhook_code"`
		} `json:"build_config"`
	}
	if st, m := c.rawDo("POST", "/v1/repositories/demo", map[string]any{"repo_name": "docs", "build_config": map[string]any{
		"code_repo_client": "Gitea", "code_repo_namespace": "dev", "code_repo_name": "docs", "code_repo_host": gu.Host,
		"code_repo_credential": credID, "tag_configs": []any{map[string]any{"code_repo_type": "branch", "code_repo_type_value": "main",
			"docker_repo_tag": "latest", "is_active": true}}}}); st != http.StatusCreated {
		t.Fatalf("image repository: %d %v", st, m)
	} else {
		raw, _ := json.Marshal(m)
		_ = json.Unmarshal(raw, &img)
	}
	var docsHooks []giteaHook
	g.API(t, "GET", "/repos/dev/docs/hooks", nil, &docsHooks)
	if img.BuildConfig.WebhookCode == "" || len(docsHooks) != 1 || docsHooks[0].Config["url"] != base+"/api/v1/webhooks/gitea/"+img.BuildConfig.WebhookCode {
		t.Fatalf("the image repository's hook: %+v (webhook code %q)", docsHooks, img.BuildConfig.WebhookCode)
	}

	if env := c.do("POST", "/api/v1/secrets", map[string]any{"name": "DEPLOY_KEY", "value": "deploy-key-0123456789", "projectId": "demo"}, nil); env.Code != 0 {
		t.Fatalf("secret: %+v", env)
	}

	// 5. git push → signed delivery → run → status on the commit.
	work := gitClone(t, g, "dev", "dev-pass-1234", "dev/app")
	runOf := func(sha string) string {
		t.Helper()
		var id string
		waitFor(t, 30*time.Second, "a run of commit "+sha, func() bool {
			var runs struct {
				Items []struct {
					RunID  string `json:"runId"`
					Commit string `json:"commit"`
				} `json:"items"`
			}
			c.do("GET", "/api/v1/pipelines/"+pid+"/runs", nil, &runs)
			for _, r := range runs.Items {
				if r.Commit == sha {
					id = r.RunID
					return true
				}
			}
			return false
		})
		return id
	}
	type giteaStatus struct {
		Status    string `json:"status"`
		Context   string `json:"context"`
		TargetURL string `json:"target_url"`
	}
	statusOf := func(sha, want string) giteaStatus {
		t.Helper()
		var st giteaStatus
		waitFor(t, 30*time.Second, "status "+want+" on "+sha, func() bool {
			// The combined status: the latest of each context.
			var combined struct {
				Statuses []giteaStatus `json:"statuses"`
			}
			g.API(t, "GET", "/repos/dev/app/commits/"+sha+"/status", nil, &combined)
			for _, s := range combined.Statuses {
				if s.Context == "runnel/app" {
					st = s
					return s.Status == want
				}
			}
			return false
		})
		return st
	}
	sha := gitCommit(t, work, ".runnel/pipeline.yaml", forgePipelineOK, "add the pipeline", "main")
	run := runOf(sha)
	if d := c.waitRun(run, 60*time.Second, final); d.Status != "success" {
		_, m := c.rawDo("GET", "/api/v1/pipelines/runs/"+run, nil)
		t.Fatalf("run of %s: %+v: %v", sha, d, m["detail"].(map[string]any)["reason"])
	}
	if st := statusOf(sha, "success"); st.TargetURL != base+"/runs/"+run {
		t.Fatalf("status: %+v", st)
	}
	var detail struct {
		CommitStatuses []struct {
			Context, State, Error string
		} `json:"commitStatuses"`
	}
	waitFor(t, 10*time.Second, "the run's record of its commit status", func() bool {
		c.do("GET", "/api/v1/pipelines/runs/"+run, nil, &detail)
		return len(detail.CommitStatuses) == 1 && detail.CommitStatuses[0].State == "success" && detail.CommitStatuses[0].Error == ""
	})
	bad := gitCommit(t, work, ".runnel/pipeline.yaml", strings.Replace(forgePipelineOK, `echo "built`, `exit 3; echo "built`, 1), "break it", "main")
	if d := c.waitRun(runOf(bad), 60*time.Second, final); d.Status != "failed" {
		t.Fatalf("run of the failing commit: %+v", d)
	}
	statusOf(bad, "failure")
	gitCommit(t, work, ".runnel/pipeline.yaml", forgePipelineOK, "fix it", "main")

	// 6. Deactivate: the hook is gone and a push starts nothing.
	var pl struct {
		Active     bool `json:"active"`
		Repository struct {
			WebhookState string `json:"webhookState"`
			WebhookError string `json:"webhookError"`
		} `json:"repository"`
	}
	if env := c.do("POST", "/api/v1/pipelines/"+pid+"/deactivate", nil, &pl); env.Code != 0 || pl.Active || pl.Repository.WebhookState != "none" {
		t.Fatalf("deactivate: %+v %+v", env, pl)
	}
	if hs := hooks(); len(hs) != 0 {
		t.Fatalf("hooks after deactivating: %+v", hs)
	}
	quiet := gitCommit(t, work, "README.md", "quiet\n", "no run for this", "main")
	time.Sleep(3 * time.Second)
	var runs struct {
		Items []struct {
			Commit string `json:"commit"`
		} `json:"items"`
	}
	c.do("GET", "/api/v1/pipelines/"+pid+"/runs", nil, &runs)
	for _, r := range runs.Items {
		if r.Commit == quiet {
			t.Fatalf("a deactivated pipeline ran commit %s", quiet)
		}
	}

	// 7. Activate again; a hook deleted in Gitea by hand is detected and
	// repaired.
	if env := c.do("POST", "/api/v1/pipelines/"+pid+"/activate", nil, &pl); env.Code != 0 || !pl.Active || pl.Repository.WebhookState != "active" {
		t.Fatalf("activate: %+v %+v", env, pl)
	}
	hs := hooks()
	if len(hs) != 1 {
		t.Fatalf("hooks after activating: %+v", hs)
	}
	g.API(t, "DELETE", "/repos/dev/app/hooks/"+strconv.FormatInt(hs[0].ID, 10), nil, nil)
	if env := c.do("GET", "/api/v1/pipelines/"+pid+"/webhook", nil, &pl); env.Code != 0 || pl.Repository.WebhookState != "missing" {
		t.Fatalf("a deleted hook: %+v %+v", env, pl)
	}
	if env := c.do("POST", "/api/v1/pipelines/"+pid+"/webhook/repair", nil, &pl); env.Code != 0 || pl.Repository.WebhookState != "active" {
		t.Fatalf("repair: %+v %+v", env, pl)
	}
	if hs := hooks(); len(hs) != 1 || hs[0].Config["url"] != hookURL {
		t.Fatalf("hooks after repair: %+v", hs)
	}
	again := gitCommit(t, work, "README.md", "loud\n", "runs again", "main")
	if d := c.waitRun(runOf(again), 60*time.Second, final); d.Status != "success" {
		t.Fatalf("run after repair: %+v", d)
	}
	if log := c.stepLog(runOf(again), c.runJobs(runOf(again)).job("build").Steps[0].StepRunID); !strings.Contains(log, "key=[***]") {
		t.Fatalf("a push of the repository's own branch gets the secret (masked): %q", log)
	}

	// 8. A pull request from a fork runs without the secrets.
	g.As(t, "outsider", "POST", "/repos/dev/app/forks", map[string]any{}, nil)
	fork := gitClone(t, g, "outsider", "out-pass-1234", "outsider/app")
	gitRun(t, fork, "checkout", "-b", "feature")
	head := gitCommit(t, fork, "feature.txt", "from a fork\n", "a contribution", "feature")
	var pr struct {
		Number int64 `json:"number"`
	}
	g.As(t, "outsider", "POST", "/repos/dev/app/pulls", map[string]any{"head": "outsider:feature", "base": "main", "title": "contribution"}, &pr)
	prRun := runOf(head)
	if d := c.waitRun(prRun, 60*time.Second, final); d.Status != "success" || !timelineHas(d, "fork_pull_request", "without the pipeline's secrets") {
		t.Fatalf("fork's run: %+v", d)
	}
	if log := c.stepLog(prRun, c.runJobs(prRun).job("build").Steps[0].StepRunID); !strings.Contains(log, "key=[]") {
		t.Fatalf("a fork's run must not see the secret: %q", log)
	}
	statusOf(head, "success")

	// 9. Deleting the pipeline removes its hook.
	if env := c.do("DELETE", "/api/v1/pipelines/"+pid, nil, nil); env.Code != 0 {
		t.Fatalf("delete: %+v", env)
	}
	if hs := hooks(); len(hs) != 0 {
		t.Fatalf("hooks after deleting the pipeline: %+v", hs)
	}
}

func timelineHas(d *runDetail, action, words string) bool {
	for _, e := range d.Timeline {
		if e.Action == action && strings.Contains(e.Reason, words) {
			return true
		}
	}
	return false
}

// freeTCPPort is a port free on 127.0.0.1 a moment ago (for a server whose
// external URL must be known before it starts).
func freeTCPPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// gitClone clones a Gitea repository over HTTP as login.
func gitClone(t *testing.T, g *testgitea.Server, login, password, fullName string) string {
	t.Helper()
	u, _ := url.Parse(g.URL + "/" + fullName + ".git")
	u.User = url.UserPassword(login, password)
	dir := filepath.Join(t.TempDir(), "work")
	gitRun(t, "", "clone", "-q", u.String(), dir)
	gitRun(t, dir, "config", "user.email", login+"@example.com")
	gitRun(t, dir, "config", "user.name", login)
	return dir
}

// gitCommit writes a file, commits and pushes it to branch; it returns the
// commit.
func gitCommit(t *testing.T, dir, file, content, msg, branch string) string {
	t.Helper()
	path := filepath.Join(dir, file)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(t, dir, "add", file)
	gitRun(t, dir, "commit", "-q", "-m", msg)
	gitRun(t, dir, "push", "-q", "origin", "HEAD:refs/heads/"+branch)
	return strings.TrimSpace(gitRun(t, dir, "rev-parse", "HEAD"))
}

func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
