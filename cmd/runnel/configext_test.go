package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/go-fed/httpsig"
)

// TestConfigExtension: a server configured with RUNNEL_CONFIG_EXTENSION_*
// asks the extension for each run's definition with a request signed as
// Drone signs it — verified here by an independent HTTP Signatures library
// (go-fed/httpsig), as Drone's own extension handler verifies it — and uses
// its answer (200), falls back to the stored definition (204), and fails the
// run with the reason when the extension errs or does not answer in time.
func TestConfigExtension(t *testing.T) {
	const secret = "extension-shared-secret"
	var (
		mu       sync.Mutex
		requests []map[string]any
	)
	ext := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := httpsig.NewVerifier(r)
		if err != nil || v.KeyId() != "hmac-key" || v.Verify([]byte(secret), httpsig.HMAC_SHA256) != nil {
			http.Error(w, "Invalid Signature", 400)
			return
		}
		if r.Header.Get("Accept") != "application/json" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad headers", 400)
			return
		}
		var req struct {
			Repo  map[string]any `json:"repo"`
			Build map[string]any `json:"build"`
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "Invalid Input", 400)
			return
		}
		mu.Lock()
		requests = append(requests, map[string]any{"repo": req.Repo, "build": req.Build})
		mu.Unlock()
		switch req.Repo["name"] {
		case "ext-yaml":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"data": "version: v1\nnamespace: ext\nvariables:\n  DEPLOY_ENV: dev\njobs:\n  - name: build\n    steps:\n      - run: echo \"from-extension event=${{ trigger.event }} env=${{ variables.DEPLOY_ENV }}\"\n"})
		case "ext-fallback":
			w.WriteHeader(http.StatusNoContent)
		case "ext-broken":
			http.Error(w, "config service exploded", 500)
		case "ext-slow":
			<-r.Context().Done()
		}
	}))
	t.Cleanup(ext.Close)

	args := []string{"server", "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--admin-token", testToken, "--embedded-agent-capacity", "2", "--embedded-agent-backend", "local",
		"--config-extension-timeout", "1s"}
	srv, m := startProc(t, "server", []string{"RUNNEL_CONFIG_EXTENSION_ENDPOINT=" + ext.URL, "RUNNEL_CONFIG_EXTENSION_SECRET=" + secret},
		regexp.MustCompile(`addr=http://(\S+) grpc_addr=(\S+)`), args...)
	srv.addr = m[1]
	c := &client{t: t, base: "http://" + srv.addr}
	stored := `{"version":"v1","namespace":"ext","variables":{"DEPLOY_ENV":"dev"},"jobs":[{"name":"build","steps":[{"run":"echo from-stored-spec"}]}]}`

	// 200: the extension's definition runs; the request carried Drone's fields.
	yamlP := c.createPipeline("ext-yaml", stored)
	var tr struct {
		RunID string `json:"runId"`
	}
	if env := c.do("POST", "/api/v1/pipelines/"+yamlP+"/trigger", map[string]any{"variables": map[string]string{"DEPLOY_ENV": "staging"}}, &tr); env.Code != 0 {
		t.Fatalf("trigger: %+v", env)
	}
	d, log := c.finishedLog(tr.RunID)
	if d.Status != "success" || d.Definition == nil || d.Definition.Source != "extension" || !strings.Contains(log, "from-extension event=manual env=staging") {
		t.Fatalf("extension run: %+v; log %q", d, log)
	}
	mu.Lock()
	first := requests[0]
	mu.Unlock()
	repo, build := first["repo"].(map[string]any), first["build"].(map[string]any)
	if repo["slug"] != "demo/ext-yaml" || repo["config_path"] != ".runnel/pipeline.yaml" || build["event"] != "custom" ||
		build["params"].(map[string]any)["DEPLOY_ENV"] != "staging" || build["ref"] != "refs/heads/main" {
		t.Fatalf("extension request: %v", first)
	}

	// 204: the stored definition runs.
	d, log = c.finishedLog(c.trigger(c.createPipeline("ext-fallback", stored), ""))
	if d.Status != "success" || d.Definition == nil || d.Definition.Source != "store" || !strings.Contains(log, "from-stored-spec") {
		t.Fatalf("fallback run: %+v; log %q", d, log)
	}

	// An error or a timeout fails the run, saying why.
	for name, want := range map[string]string{"ext-broken": "config service exploded", "ext-slow": "did not answer within 1s"} {
		var run runDef
		c.do("GET", "/api/v1/pipelines/runs/"+c.trigger(c.createPipeline(name, stored), ""), nil, &run)
		if run.Status != "failed" || !strings.Contains(run.Reason, "configuration extension") || !strings.Contains(run.Reason, want) ||
			strings.Contains(run.Reason, secret) {
			t.Fatalf("%s: %+v", name, run)
		}
	}
}
