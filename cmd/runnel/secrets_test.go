package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecretNeverLeaks runs a pipeline whose steps print a secret in every
// way a step might (whole, split across two writes, a multi-line value line
// by line, in a step output, in a failing step's error) on a remote agent,
// then reads every API answer about the run and both processes' own logs:
// the value must appear nowhere, its mask must.
func TestSecretNeverLeaks(t *testing.T) {
	const token = "tok-4f9c2e71b0d8a3"
	const keyLine1, keyLine2 = "-----BEGIN TEST KEY-----", "bXVsdGktbGluZS1zZWNyZXQtdmFsdWU="
	srv := startServerProc(t, "server", "", "--lease-duration", "5s", "--log-level", "debug")
	c := &client{t: t, base: "http://" + srv.addr}
	dir := t.TempDir()
	agent := startAgentProc(t, "agent", srv.grpcAddr, c.registrationToken(), "", filepath.Join(dir, "a"))

	var specObj = `{"namespace":"t","jobs":[{"name":"leaky","env":{"TOKEN":"${{ secrets.TOKEN }}","KEY":"${{ secrets.KEY }}"},
		"outputs":{"echoed":"${{ steps.out.outputs.value }}"},
		"steps":[
		{"name":"whole","run":"echo \"token=$TOKEN\""},
		{"name":"split","shell":"bash","run":"printf '%s' \"${TOKEN:0:6}\"; sleep 0.3; printf '%s\\n' \"${TOKEN:6}\""},
		{"name":"multi","run":"echo \"$KEY\""},
		{"name":"out","run":"echo \"value=$TOKEN\" >> $RUNNEL_OUTPUT"},
		{"name":"fails","continueOnError":true,"run":"echo \"failing with $TOKEN\" >&2; exit 3"}]}]}`
	p := c.createPipeline("leaky", specObj)
	for name, value := range map[string]string{"TOKEN": token, "KEY": keyLine1 + "\n" + keyLine2 + "\n"} {
		if env := c.do("POST", "/api/v1/secrets", map[string]any{"name": name, "value": value, "pipelineId": p}, nil); env.Code != 0 {
			t.Fatalf("create secret %s: %+v", name, env)
		}
	}
	run := c.trigger(p, "")
	c.waitRun(run, 20*time.Second, final)

	var bodies []string
	get := func(path string) string {
		req, _ := http.NewRequest("GET", c.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		bodies = append(bodies, path+": "+string(b))
		return string(b)
	}
	detail := get("/api/v1/pipelines/runs/" + run)
	get("/api/v1/pipelines/" + p + "/runs")
	get("/api/v1/pipelines/" + p)
	get("/api/v1/secrets?pipelineId=" + p)
	d := c.runJobs(run)
	if d.Status != "partial" && d.Status != "success" {
		t.Fatalf("run: %s", detail)
	}
	var allLogs strings.Builder
	for _, st := range d.job("leaky").Steps {
		allLogs.WriteString(get("/api/v1/pipelines/runs/" + run + "/steps/" + st.StepRunID + "/logs?format=text"))
		get("/api/v1/pipelines/runs/" + run + "/steps/" + st.StepRunID + "/logs")
	}
	logs := allLogs.String()
	for _, want := range []string{"token=***", "***\n", "failing with ***"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs should show %q:\n%s", want, logs)
		}
	}
	if strings.Count(logs, "***") < 5 {
		t.Errorf("expected every occurrence masked:\n%s", logs)
	}
	if !strings.Contains(detail, `"echoed":"***"`) && !strings.Contains(detail, `"value":"***"`) {
		t.Errorf("the job's output should be masked: %s", detail)
	}
	// The run's events (status changes with step errors and job reasons)
	// and the step logs as the live streams send them.
	ws, _, err := dialWS(t, srv.addr, http.Header{"Authorization": {"Bearer " + testToken}})
	if err != nil {
		t.Fatal(err)
	}
	ws.send(map[string]any{"action": "subscribe", "channel": "status", "params": map[string]any{"runId": run}})
	for _, st := range d.job("leaky").Steps {
		ws.send(map[string]any{"action": "subscribe", "channel": "logs", "params": map[string]any{"stepRunId": st.StepRunID}})
	}
	streamed := ws.wait("every stream's end", 20*time.Second, func(m []wsMsg) bool {
		n := 0
		for _, x := range m {
			if x.Type == "end" {
				n++
			}
		}
		return n == 1+len(d.job("leaky").Steps)
	})
	raw, _ := json.Marshal(streamed)
	if !strings.Contains(string(raw), "failing with ***") {
		t.Errorf("the streamed logs should show the masked line: %s", raw)
	}
	bodies = append(bodies, "websocket: "+string(raw))
	everything := strings.Join(bodies, "\n") + srv.tailLogs(2000) + agent.tailLogs(2000)
	for _, secret := range []string{token, keyLine1, keyLine2, token[:6] + token[6:]} {
		if strings.Contains(everything, secret) {
			i := strings.Index(everything, secret)
			t.Errorf("secret %q leaked: …%s…", secret, everything[max(0, i-200):min(len(everything), i+100)])
		}
	}
}

// TestCredentialCheckout: a pipeline checks out a repository that needs a
// token, naming a credential created through the API; the job runs on a
// remote agent, which gets the credential with the claim. The token shows up
// in no API answer and no log.
func TestCredentialCheckout(t *testing.T) {
	work := t.TempDir()
	bare := filepath.Join(work, "srv", "repo.git")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", filepath.Join(work, "w")},
		{"-C", filepath.Join(work, "w"), "commit", "-q", "--allow-empty", "-m", "first"},
		{"clone", "-q", "--bare", filepath.Join(work, "w"), bare},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	gitHTTP := &cgi.Handler{Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(bare), "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"}}
	const token = "ghp-test-7c1e9b2a44f0"
	gitSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if u, p, ok := req.BasicAuth(); !ok || u != "ci-bot" || p != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		gitHTTP.ServeHTTP(w, req)
	}))
	defer gitSrv.Close()

	srv := startServerProc(t, "server", "", "--log-level", "debug")
	c := &client{t: t, base: "http://" + srv.addr}
	agent := startAgentProc(t, "agent", srv.grpcAddr, c.registrationToken(), "", filepath.Join(work, "agent"))
	var cred struct {
		CredentialID string `json:"credentialId"`
		AccessToken  string `json:"accessToken"`
	}
	if env := c.do("POST", "/api/v1/credentials", map[string]any{"name": "ci-bot", "kind": "basic",
		"host": strings.TrimPrefix(gitSrv.URL, "http://"), "username": "ci-bot", "accessToken": token}, &cred); env.Code != 0 || cred.AccessToken != "***" {
		t.Fatalf("create credential: %+v %+v", env, cred)
	}
	p := c.createPipeline("private-repo", `{"namespace":"t","jobs":[{"name":"build","steps":[
		{"name":"checkout","uses":"actions/git-checkout@v1","args":{"repo":"`+gitSrv.URL+`/repo.git","credential":"`+cred.CredentialID+`"}},
		{"name":"show","run":"git log -1 --format=%s"}]}]}`)
	run := c.trigger(p, "")
	c.waitRun(run, 30*time.Second, final)
	d := c.runJobs(run)
	var logs strings.Builder
	for _, st := range d.job("build").Steps {
		logs.WriteString(c.stepLog(run, st.StepRunID))
	}
	if d.Status != "success" || !strings.Contains(logs.String(), "first") {
		t.Fatalf("run %s:\n%s", d.Status, logs.String())
	}
	all := logs.String() + srv.tailLogs(2000) + agent.tailLogs(2000)
	for _, path := range []string{"/api/v1/pipelines/runs/" + run, "/api/v1/credentials", "/api/v1/credentials/" + cred.CredentialID} {
		var raw json.RawMessage
		c.do("GET", path, nil, &raw)
		all += string(raw)
	}
	if strings.Contains(all, token) {
		t.Fatalf("the token leaked")
	}
}
