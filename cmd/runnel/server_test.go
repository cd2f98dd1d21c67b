package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/testpg"
)

const testToken = "test-admin-token-0123456789"

// client speaks the API as curl would in docs/api.md.
type client struct {
	t    *testing.T
	base string
}

type envelope struct {
	Code   int             `json:"code"`
	Msg    string          `json:"msg"`
	ErrMsg string          `json:"errMsg"`
	Detail json.RawMessage `json:"detail"`
}

func (c *client) do(method, path string, body any, out any) envelope {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		c.t.Fatalf("%s %s: not an envelope (%d): %s", method, path, resp.StatusCode, raw)
	}
	if env.Code != 0 && env.Code != resp.StatusCode {
		c.t.Fatalf("%s %s: envelope code %d, HTTP %d", method, path, env.Code, resp.StatusCode)
	}
	if out != nil && env.Code == 0 {
		if err := json.Unmarshal(env.Detail, out); err != nil {
			c.t.Fatalf("%s %s: detail: %v: %s", method, path, err, env.Detail)
		}
	}
	return env
}

type runDetail struct {
	RunID  string `json:"runId"`
	Number int64  `json:"number"`
	Status string `json:"status"`
	Stages []struct {
		Name string `json:"name"`
		Jobs []struct {
			Key     string `json:"key"`
			Status  string `json:"status"`
			Attempt int    `json:"attempt"`
			Reason  string `json:"reason"`
			Steps   []struct {
				StepRunID string `json:"stepRunId"`
				Name      string `json:"name"`
				Status    string `json:"status"`
			} `json:"steps"`
		} `json:"jobs"`
	} `json:"stages"`
	Timeline []struct {
		Action string `json:"action"`
		Reason string `json:"reason"`
	} `json:"timeline"`
}

func (c *client) waitRun(runID string, timeout time.Duration, done func(*runDetail) bool) *runDetail {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var d runDetail
		c.do("GET", "/api/v1/pipelines/runs/"+runID, nil, &d)
		if done(&d) {
			return &d
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("run %s: still %s after %s: %+v", runID, d.Status, timeout, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func final(d *runDetail) bool {
	switch d.Status {
	case "success", "failed", "cancelled", "partial":
		return true
	}
	return false
}

// TestServerQuickStart boots the real server on port 0 and walks the quick
// start of docs/api.md: create, save a spec, trigger, poll, read the logs — on
// the embedded default (SQLite) and on PostgreSQL.
func TestServerQuickStart(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { quickStart(t, "") })
	t.Run("postgres", func(t *testing.T) { quickStart(t, testpg.NewDatabase(t)) })
}

func quickStart(t *testing.T, database string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	srv, err := startServer(ctx, serverConfig{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Database: database, AdminToken: testToken, AgentCapacity: 2,
		LeaseDuration: 30 * time.Second, LogCapBytes: 1 << 20, LogLevel: "error"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %s", time.Since(start))
	defer srv.Stop()
	c := &client{t: t, base: "http://" + srv.Addr}

	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(c.base + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, err, resp)
		}
		resp.Body.Close()
	}
	var p struct {
		PipelineID string `json:"pipelineId"`
	}
	if env := c.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "demo", "name": "hello"}, &p); env.Code != 0 {
		t.Fatalf("create: %+v", env)
	}
	specBody := map[string]any{"namespace": "demo.hello", "jobs": []any{map[string]any{"name": "hello", "steps": []any{
		map[string]any{"name": "greet", "run": "echo hello, ${{ variables.who }}"},
	}}}, "variables": map[string]any{"who": "world"}}
	var saved struct {
		HeadCommitSha string `json:"headCommitSha"`
	}
	if env := c.do("POST", "/api/v1/pipelines/"+p.PipelineID+"/spec/save", map[string]any{"spec": specBody, "format": "yaml", "commitMessage": "first", "requestId": "save-1"}, &saved); env.Code != 0 {
		t.Fatalf("save: %+v", env)
	}
	if env := c.do("POST", "/api/v1/pipelines/"+p.PipelineID+"/spec/save", map[string]any{"spec": specBody, "format": "yaml", "expectedHeadCommitSha": strings.Repeat("0", 64)}, nil); env.Code != 409 {
		t.Fatalf("stale save: %+v", env)
	}
	var tr struct {
		RunID  string `json:"runId"`
		Number int64  `json:"number"`
	}
	if env := c.do("POST", "/api/v1/pipelines/"+p.PipelineID+"/trigger", map[string]any{"variables": map[string]string{"who": "runnel"}, "requestId": "t-1"}, &tr); env.Code != 0 || tr.Number != 1 {
		t.Fatalf("trigger: %+v %+v", env, tr)
	}
	d := c.waitRun(tr.RunID, 15*time.Second, final)
	if d.Status != "success" || d.Stages[0].Jobs[0].Steps[0].Status != "success" {
		t.Fatalf("run: %+v", d)
	}
	req, _ := http.NewRequest("GET", c.base+"/api/v1/pipelines/runs/"+tr.RunID+"/steps/"+d.Stages[0].Jobs[0].Steps[0].StepRunID+"/logs?format=text", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	logText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(logText)) != "hello, runnel" {
		t.Fatalf("logs: %q", logText)
	}
}

// TestServerKill9 kills a real server process (SIGKILL) while a step runs,
// restarts it on the same data directory, and checks the runs reach a final
// status with the truth in their timeline, and that the orphaned step process
// is gone.
func TestServerKill9(t *testing.T) {
	dataDir := t.TempDir()
	marker := "kill9-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	start := func() (*exec.Cmd, string) {
		cmd := exec.Command(binary, "server", "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--data-dir", dataDir, "--admin-token", testToken)
		cmd.Env = append(os.Environ(), "KILL9_MARKER="+marker)
		stderr, _ := cmd.StderrPipe()
		cmd.Stdout = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		addr := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			re := regexp.MustCompile(`addr=http://(\S+)`)
			for sc.Scan() {
				if m := re.FindStringSubmatch(sc.Text()); m != nil {
					addr <- m[1]
				}
			}
		}()
		select {
		case a := <-addr:
			return cmd, a
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatal("server did not become ready")
		}
		return nil, ""
	}
	cmd, addr := start()
	c := &client{t: t, base: "http://" + addr}
	create := func(name, yaml string) string {
		var p struct {
			PipelineID string `json:"pipelineId"`
		}
		var specObj any
		if err := json.Unmarshal([]byte(yaml), &specObj); err != nil {
			t.Fatal(err)
		}
		if env := c.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "demo", "name": name, "spec": specObj}, &p); env.Code != 0 {
			t.Fatalf("create: %+v", env)
		}
		return p.PipelineID
	}
	plain := create("plain", `{"namespace":"t","jobs":[{"name":"a","steps":[{"name":"s","run":"echo started; sleep 300"}]}]}`)
	retried := create("retried", `{"namespace":"t","jobs":[{"name":"a","retry":{"max":1},"steps":[{"name":"s","run":"echo attempt ${{ job.attempt }}; test ${{ job.attempt }} -ge 2 || sleep 300"}]}]}`)
	trigger := func(id string) string {
		var tr struct {
			RunID string `json:"runId"`
		}
		c.do("POST", "/api/v1/pipelines/"+id+"/trigger", map[string]any{}, &tr)
		return tr.RunID
	}
	run1, run2 := trigger(plain), trigger(retried)
	running := func(d *runDetail) bool {
		return len(d.Stages) > 0 && d.Stages[0].Jobs[0].Steps[0].Status == "running"
	}
	c.waitRun(run1, 15*time.Second, running)
	c.waitRun(run2, 15*time.Second, running)
	// A step is reported running as its process starts: wait for both
	// processes (the server carries the marker too).
	waitFor(t, 10*time.Second, "both step processes", func() bool { return len(processesWithEnv("KILL9_MARKER="+marker)) >= 3 })

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(processesWithEnv("KILL9_MARKER="+marker)) == 0 {
		t.Fatal("expected the step processes to outlive the killed server")
	}

	cmd2, addr2 := start()
	defer func() { cmd2.Process.Signal(syscall.SIGTERM); cmd2.Wait() }()
	c.base = "http://" + addr2
	d1 := c.waitRun(run1, 20*time.Second, final)
	if d1.Status != "failed" || !strings.Contains(d1.Stages[0].Jobs[0].Reason, "interrupted by server restart") {
		t.Fatalf("run without retry: %+v", d1)
	}
	t.Logf("run without retry: %s, reason %q", d1.Status, d1.Stages[0].Jobs[0].Reason)
	d2 := c.waitRun(run2, 20*time.Second, final)
	t.Logf("run with retry: %s after %d attempts; timeline %+v", d2.Status, d2.Stages[0].Jobs[0].Attempt, d2.Timeline)
	if d2.Status != "success" || d2.Stages[0].Jobs[0].Attempt != 2 {
		t.Fatalf("run with retry: %+v", d2)
	}
	var actions []string
	for _, e := range d1.Timeline {
		actions = append(actions, e.Action+":"+e.Reason)
	}
	if all := strings.Join(actions, ","); !strings.Contains(all, "interrupted:interrupted by server restart") || !strings.Contains(all, "finished:") {
		t.Errorf("timeline: %s", all)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(processesWithEnv("KILL9_MARKER="+marker)) > 1 { // the restarted server itself carries the marker
		if time.Now().After(deadline) {
			t.Fatalf("orphaned step processes survive the restart: %v", processesWithEnv("KILL9_MARKER="+marker))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServerGracefulShutdown: SIGTERM during a run does not cancel it; the job
// is handed back as interrupted and, with retry, finishes after the restart.
func TestServerGracefulShutdown(t *testing.T) {
	dataDir := t.TempDir()
	cfg := serverConfig{Addr: "127.0.0.1:0", DataDir: dataDir, AdminToken: testToken, AgentCapacity: 1,
		LeaseDuration: 30 * time.Second, LogCapBytes: 1 << 20, LogLevel: "error"}
	srv, err := startServer(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, base: "http://" + srv.Addr}
	var p struct {
		PipelineID string `json:"pipelineId"`
	}
	var specObj any
	_ = json.Unmarshal([]byte(`{"namespace":"t","jobs":[{"name":"a","retry":{"max":1},"steps":[{"name":"s","run":"test ${{ job.attempt }} -ge 2 || sleep 300"}]}]}`), &specObj)
	c.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "demo", "name": "graceful", "spec": specObj}, &p)
	var tr struct {
		RunID string `json:"runId"`
	}
	c.do("POST", "/api/v1/pipelines/"+p.PipelineID+"/trigger", map[string]any{}, &tr)
	c.waitRun(tr.RunID, 15*time.Second, func(d *runDetail) bool {
		return len(d.Stages) > 0 && d.Stages[0].Jobs[0].Steps[0].Status == "running"
	})
	start := time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	srv2, err := startServer(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Stop()
	c.base = "http://" + srv2.Addr
	d := c.waitRun(tr.RunID, 20*time.Second, final)
	if d.Status != "success" || d.Stages[0].Jobs[0].Attempt != 2 {
		t.Fatalf("after a graceful restart: %+v", d)
	}
}
