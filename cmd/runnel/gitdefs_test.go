package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/testgit"
)

const gitPipelineV1 = `version: v1
namespace: git
jobs:
  - name: build
    steps:
      - run: echo "definition=v1 commit=${{ trigger.commit }} branch=${{ trigger.branch }}"
`

// gitPipeline is the pipeline file of a given version.
func gitPipeline(v string) string {
	return strings.ReplaceAll(gitPipelineV1, "definition=v1", "definition="+v)
}

// rawDo sends a request and returns the status and the decoded envelope map.
func (c *client) rawDo(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, c.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		c.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, m
}

type runDef struct {
	RunID      string `json:"runId"`
	Status     string `json:"status"`
	Commit     string `json:"commit"`
	Reason     string `json:"reason"`
	Definition *struct {
		Source      string `json:"source"`
		SpecVersion int    `json:"specVersion"`
		File        string `json:"file"`
		CommitSHA   string `json:"commitSha"`
		Content     string `json:"content"`
	} `json:"definition"`
}

// finishedLog waits for the run and returns its definition and its first
// step's log.
func (c *client) finishedLog(runID string) (runDef, string) {
	c.t.Helper()
	c.waitRun(runID, 30*time.Second, final)
	var d runDef
	c.do("GET", "/api/v1/pipelines/runs/"+runID, nil, &d)
	jobs := c.runJobs(runID)
	log := ""
	if len(jobs.Stages) > 0 {
		log = c.stepLog(runID, jobs.job("build").Steps[0].StepRunID)
	}
	return d, log
}

// TestGitBackedPipeline: a pipeline whose definition lives in a Git
// repository served over smart HTTP with authentication. Manual runs read
// the file at the default branch's head, a push event at its commit (even
// after the branch moved on); spec/save commits and pushes with a
// compare-and-swap on the head (409 with the current head when stale); a
// saveMode pr save pushes a branch and opens a pull request through the
// forge's API.
func TestGitBackedPipeline(t *testing.T) {
	gs := testgit.New(t)
	var (
		prMu  sync.Mutex
		prReq map[string]any
		prHdr http.Header
		prURL string
	)
	gs.API = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/api/v1/repos/acme/app/pulls" {
			http.Error(w, `{"message":"not found"}`, 404)
			return
		}
		if r.Header.Get("Authorization") != "token "+gs.Password {
			http.Error(w, `{"message":"token is required"}`, 401)
			return
		}
		prMu.Lock()
		defer prMu.Unlock()
		prHdr = r.Header.Clone()
		_ = json.NewDecoder(r.Body).Decode(&prReq)
		prURL = gs.URL + "/acme/app/pulls/7"
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": 99, "number": 7, "html_url": prURL, "state": "open"})
	})
	repoURL := gs.Init(t, "acme/app", map[string]string{".runnel/pipeline.yaml": gitPipelineV1, "README.md": "app\n"})
	head1 := gs.Head(t, "acme/app", "main")

	srv := startServerProc(t, "server", "", "--embedded-agent-capacity", "2", "--embedded-agent-backend", "local")
	c := &client{t: t, base: "http://" + srv.addr}
	host := strings.TrimPrefix(gs.URL, "http://")
	var cred struct {
		CredentialID string `json:"credentialId"`
	}
	if env := c.do("POST", "/api/v1/credentials", map[string]any{"name": "forge", "kind": "gitea", "host": host,
		"username": gs.User, "accessToken": gs.Password}, &cred); env.Code != 0 {
		t.Fatalf("create credential: %+v", env)
	}
	var p struct {
		PipelineID   string `json:"pipelineId"`
		CredentialID string `json:"credentialId"`
	}
	if env := c.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "proj", "name": "from-git", "repoUrl": repoURL,
		"defaultBranch": "main", "pipelineFilePath": ".runnel/pipeline.yaml", "credentialId": cred.CredentialID}, &p); env.Code != 0 {
		t.Fatalf("create pipeline: %+v", env)
	}
	if p.CredentialID != cred.CredentialID {
		t.Fatalf("pipeline credential = %q", p.CredentialID)
	}
	// A credential that does not exist is refused with the field named.
	if code, m := c.rawDo("PUT", "/api/v1/pipelines/"+p.PipelineID, map[string]any{"credentialId": "cred_nope"}); code != 400 || !strings.Contains(fmt.Sprint(m["errMsg"]), "body.credentialId") {
		t.Fatalf("unknown credential: %d %v", code, m)
	}

	// 1. A manual run reads the file at main's head and runs that commit.
	d, log := c.finishedLog(c.trigger(p.PipelineID, ""))
	if d.Status != "success" || d.Commit != head1 || d.Definition == nil || d.Definition.Source != "git" ||
		d.Definition.CommitSHA != head1 || d.Definition.File != ".runnel/pipeline.yaml" || d.Definition.Content != gitPipelineV1 {
		t.Fatalf("manual run: %+v", d)
	}
	if !strings.Contains(log, "definition=v1 commit="+head1+" branch=main") {
		t.Fatalf("manual run log: %q", log)
	}

	// 2. GET spec reads the file at the head: headCommitSha is the commit.
	var sp struct {
		Spec          map[string]any `json:"spec"`
		HeadCommitSHA string         `json:"headCommitSha"`
		Source        string         `json:"source"`
	}
	if env := c.do("GET", "/api/v1/pipelines/"+p.PipelineID+"/spec", nil, &sp); env.Code != 0 || sp.Source != "git" || sp.HeadCommitSHA != head1 || sp.Spec["namespace"] != "git" {
		t.Fatalf("get spec: %+v %+v", env, sp)
	}

	// 3. spec/save commits to main, authored by the editor.
	newSpec := sp.Spec
	steps := newSpec["jobs"].([]any)[0].(map[string]any)["steps"].([]any)
	steps[0].(map[string]any)["run"] = `echo "definition=saved commit=${{ trigger.commit }} branch=${{ trigger.branch }}"`
	var saved struct {
		Version       int    `json:"version"`
		HeadCommitSHA string `json:"headCommitSha"`
		CommitSHA     string `json:"commitSha"`
		SaveMode      string `json:"saveMode"`
		Branch        string `json:"branch"`
	}
	if env := c.do("POST", "/api/v1/pipelines/"+p.PipelineID+"/spec/save", map[string]any{"spec": newSpec, "format": "yaml",
		"expectedHeadCommitSha": head1, "commitMessage": "ci: say saved", "editor": "alice@example.com", "requestId": "save-1"}, &saved); env.Code != 0 {
		t.Fatalf("save: %+v", env)
	}
	head2 := gs.Head(t, "acme/app", "main")
	if saved.CommitSHA != head2 || saved.HeadCommitSHA != head2 || saved.SaveMode != "direct" || saved.Branch != "main" || head2 == head1 {
		t.Fatalf("save = %+v; main at %s", saved, head2)
	}
	file := gs.Show(t, "acme/app", "main", ".runnel/pipeline.yaml")
	if !strings.Contains(file, "definition=saved") || !strings.Contains(file, "namespace: git") {
		t.Fatalf("file on main after save:\n%s", file)
	}
	if meta := testgit.Git(t, gs.Bare("acme/app"), "log", "-1", "--format=%an|%ae|%s|%P", "main"); meta != "alice@example.com|alice@example.com|ci: say saved|"+head1 {
		t.Fatalf("commit = %q", meta)
	}
	// The same requestId again answers the first save, pushing nothing.
	var replay struct {
		Replayed  bool   `json:"replayed"`
		CommitSHA string `json:"commitSha"`
	}
	if env := c.do("POST", "/api/v1/pipelines/"+p.PipelineID+"/spec/save", map[string]any{"spec": newSpec,
		"expectedHeadCommitSha": head1, "requestId": "save-1"}, &replay); env.Code != 0 || !replay.Replayed || replay.CommitSHA != head2 {
		t.Fatalf("replayed save: %+v %+v", env, replay)
	}
	// A stale head: 409 with the current head; nothing is pushed.
	code, m := c.rawDo("POST", "/api/v1/pipelines/"+p.PipelineID+"/spec/save", map[string]any{"spec": newSpec, "expectedHeadCommitSha": head1})
	if code != 409 || m["currentHeadCommitSha"] != head2 || !strings.Contains(fmt.Sprint(m["errMsg"]), head2) {
		t.Fatalf("stale save: %d %v", code, m)
	}
	if gs.Head(t, "acme/app", "main") != head2 {
		t.Fatal("a stale save moved main")
	}

	// 4. A push event reads the definition at its commit, even when the
	// branch has moved on before the server reads it.
	v3 := gs.Commit(t, "acme/app", "main", map[string]string{".runnel/pipeline.yaml": gitPipeline("v3")}, "v3")
	gs.Commit(t, "acme/app", "main", map[string]string{".runnel/pipeline.yaml": gitPipeline("v4")}, "v4")
	var rot struct {
		Secret string `json:"secret"`
	}
	c.do("POST", "/api/v1/pipelines/"+p.PipelineID+"/webhook/rotate", nil, &rot)
	deliver := func(id, branch, before, after string) (int, []byte) {
		body := []byte(`{"ref":"refs/heads/` + branch + `","before":"` + before + `","after":"` + after + `",
		"repository":{"full_name":"acme/app","clone_url":"` + repoURL + `"},
		"head_commit":{"id":"` + after + `","message":"m","author":{"name":"Bob"}},"commits":[],"pusher":{"name":"bob"},"sender":{"login":"bob"}}`)
		mac := hmac.New(sha256.New, []byte(rot.Secret))
		mac.Write(body)
		req, _ := http.NewRequest("POST", c.base+"/api/v1/webhooks/github/"+p.PipelineID, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", id)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, raw
	}
	var hook struct {
		Detail struct {
			Triggered bool   `json:"triggered"`
			Reason    string `json:"reason"`
			Runs      []struct {
				RunID string `json:"runId"`
			} `json:"runs"`
		} `json:"detail"`
	}
	status, raw := deliver("git-e2e-1", "main", head2, v3)
	if err := json.Unmarshal(raw, &hook); err != nil || status != 201 || len(hook.Detail.Runs) != 1 {
		t.Fatalf("delivery: %d %s", status, raw)
	}
	d, log = c.finishedLog(hook.Detail.Runs[0].RunID)
	if d.Status != "success" || d.Commit != v3 || d.Definition.CommitSHA != v3 || !strings.Contains(log, "definition=v3 commit="+v3) {
		t.Fatalf("push run: %+v; log %q", d, log)
	}

	// The filters are those of the file at the pushed commit: this one
	// builds main only, so a push to its own branch is ignored.
	other := gs.Commit(t, "acme/app", "other", map[string]string{".runnel/pipeline.yaml": gitPipeline("other") +
		"triggers:\n  - type: event\n    branches: [main]\n"}, "only main")
	status, raw = deliver("git-e2e-2", "other", head2, other)
	hook.Detail.Runs = nil
	if err := json.Unmarshal(raw, &hook); err != nil || status != 200 || hook.Detail.Triggered || !strings.Contains(hook.Detail.Reason, "no trigger matches") {
		t.Fatalf("filtered delivery: %d %s", status, raw)
	}

	// 5. A missing file fails the run with the reason, visible in history.
	if env := c.do("PUT", "/api/v1/pipelines/"+p.PipelineID, map[string]any{"pipelineFilePath": "ci/missing.yaml"}, nil); env.Code != 0 {
		t.Fatalf("update: %+v", env)
	}
	var failed runDef
	c.do("GET", "/api/v1/pipelines/runs/"+c.trigger(p.PipelineID, ""), nil, &failed)
	if failed.Status != "failed" || !strings.Contains(failed.Reason, "ci/missing.yaml") || !strings.Contains(failed.Reason, "no such file") {
		t.Fatalf("missing file run: %+v", failed)
	}

	// 6. saveMode pr: a new branch from main and a pull request to release.
	gs.Commit(t, "acme/app", "release", map[string]string{"x": "y"}, "release branch")
	if env := c.do("PUT", "/api/v1/pipelines/"+p.PipelineID, map[string]any{"pipelineFilePath": ".runnel/pipeline.yaml",
		"saveMode": "pr", "prTargetBranch": "release"}, nil); env.Code != 0 {
		t.Fatalf("update: %+v", env)
	}
	c.do("GET", "/api/v1/pipelines/"+p.PipelineID+"/spec", nil, &sp)
	mainHead := gs.Head(t, "acme/app", "main")
	var pr struct {
		SaveMode          string `json:"saveMode"`
		PullRequestURL    string `json:"pullRequestUrl"`
		PullRequestNumber int64  `json:"pullRequestNumber"`
		Branch            string `json:"branch"`
		TargetBranch      string `json:"targetBranch"`
		CommitSHA         string `json:"commitSha"`
		HeadCommitSHA     string `json:"headCommitSha"`
	}
	sp.Spec["namespace"] = "git-pr"
	if env := c.do("POST", "/api/v1/pipelines/"+p.PipelineID+"/spec/save", map[string]any{"spec": sp.Spec,
		"expectedHeadCommitSha": sp.HeadCommitSHA, "commitMessage": "ci: rename namespace\n\nWhy: clarity", "editor": "carol"}, &pr); env.Code != 0 {
		t.Fatalf("pr save: %+v", env)
	}
	prMu.Lock()
	defer prMu.Unlock()
	if pr.SaveMode != "pr" || pr.PullRequestURL != prURL || pr.PullRequestNumber != 7 || pr.TargetBranch != "release" ||
		!strings.HasPrefix(pr.Branch, "runnel/"+p.PipelineID+"/") || pr.HeadCommitSHA != mainHead {
		t.Fatalf("pr save = %+v", pr)
	}
	if gs.Head(t, "acme/app", "main") != mainHead || gs.Head(t, "acme/app", pr.Branch) != pr.CommitSHA {
		t.Fatal("a pr save must push its own branch and leave main alone")
	}
	if !strings.Contains(gs.Show(t, "acme/app", pr.Branch, ".runnel/pipeline.yaml"), "namespace: git-pr") {
		t.Fatal("the pr branch lacks the change")
	}
	if prReq["head"] != pr.Branch || prReq["base"] != "release" || prReq["title"] != "ci: rename namespace" ||
		!strings.Contains(prReq["body"].(string), "Why: clarity") || prHdr.Get("Content-Type") != "application/json" {
		t.Fatalf("pull request sent: %v %v", prReq, prHdr)
	}
	if _, err := url.Parse(pr.PullRequestURL); err != nil {
		t.Fatal(err)
	}
}
