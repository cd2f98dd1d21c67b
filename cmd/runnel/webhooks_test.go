package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWebhookTriggerContext: a signed GitHub push to a running server starts
// a run whose steps see the push's branch and commit, and the run records
// its commit.
func TestWebhookTriggerContext(t *testing.T) {
	srv := startServerProc(t, "server", "", "--log-level", "info", "--embedded-agent-capacity", "1", "--embedded-agent-backend", "local")
	c := &client{t: t, base: "http://" + srv.addr}
	p := c.createPipeline("hooked", `{"namespace":"t","triggers":[{"type":"event","branches":["main"]}],
		"jobs":[{"name":"a","steps":[{"run":"echo \"branch=${{ trigger.branch }} commit=${{ trigger.commit }} by=${{ trigger.actor }}\""}]}]}`)
	var rot struct {
		Secret string `json:"secret"`
	}
	if env := c.do("POST", "/api/v1/pipelines/"+p+"/webhook/rotate", nil, &rot); env.Code != 0 || rot.Secret == "" {
		t.Fatalf("rotate: %+v", env)
	}
	const commit = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"
	body := []byte(`{"ref":"refs/heads/main","before":"1111111111111111111111111111111111111111","after":"` + commit + `",
		"repository":{"full_name":"o/r","clone_url":"https://github.com/o/r.git"},
		"head_commit":{"id":"` + commit + `","message":"fix","author":{"name":"Alice"}},"commits":[],"pusher":{"name":"alice"},"sender":{"login":"alice"}}`)
	mac := hmac.New(sha256.New, []byte(rot.Secret))
	mac.Write(body)
	req, _ := http.NewRequest("POST", c.base+"/api/v1/webhooks/github/"+p, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "e2e-1")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("delivery: %d", resp.StatusCode)
	}
	var runs struct {
		Items []struct {
			RunID  string `json:"runId"`
			Commit string `json:"commit"`
		} `json:"items"`
	}
	c.do("GET", "/api/v1/pipelines/"+p+"/runs", nil, &runs)
	if len(runs.Items) != 1 {
		t.Fatalf("runs: %+v", runs)
	}
	run := runs.Items[0].RunID
	c.waitRun(run, 20*time.Second, final)
	d := c.runJobs(run)
	log := c.stepLog(run, d.job("a").Steps[0].StepRunID)
	if d.Status != "success" || !strings.Contains(log, "branch=main commit="+commit) {
		t.Fatalf("run %s: %s; log %q", run, d.Status, log)
	}
	c.do("GET", "/api/v1/pipelines/"+p+"/runs", nil, &runs)
	if runs.Items[0].Commit != commit {
		t.Fatalf("the run should record the commit: %+v", runs)
	}
}
