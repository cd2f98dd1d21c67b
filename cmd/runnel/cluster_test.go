package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a runnel process (server or agent) started from the test binary.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	// HTTP and gRPC addresses (servers).
	addr, grpcAddr string

	mu   sync.Mutex
	logs []string
	done chan struct{}
}

// tailLogs returns the process's last log lines, for failure messages.
func (p *proc) tailLogs(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Successful requests (tests poll) would hide what matters.
	var l []string
	for _, line := range p.logs {
		if !strings.Contains(line, `msg="http request"`) || !strings.Contains(line, "status=2") {
			l = append(l, line)
		}
	}
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func (p *proc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// startProc runs `runnel args…` and waits until a stderr line matches ready
// (its first group, if any, is returned).
func startProc(t *testing.T, name string, env []string, ready *regexp.Regexp, args ...string) (*proc, []string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, done: make(chan struct{})}
	match := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		matched := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs = append(p.logs, line)
			if len(p.logs) > 2000 {
				p.logs = p.logs[1000:]
			}
			p.mu.Unlock()
			if !matched {
				if m := ready.FindStringSubmatch(line); m != nil {
					matched = true
					match <- m
				}
			}
		}
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- last log lines of %s:\n%s", name, p.tailLogs(40))
		}
	})
	select {
	case m := <-match:
		return p, m
	case <-p.done:
		t.Fatalf("%s exited before it was ready:\n%s", name, p.tailLogs(30))
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not ready after 30s:\n%s", name, p.tailLogs(30))
	}
	return nil, nil
}

// startServerProc starts `runnel server` with no embedded agent, on port 0.
func startServerProc(t *testing.T, name, database string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"server", "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--admin-token", testToken, "--embedded-agent-capacity", "0"}, extra...)
	if database != "" {
		args = append(args, "--database", database)
	}
	p, m := startProc(t, name, nil, regexp.MustCompile(`addr=http://(\S+) grpc_addr=(\S+)`), args...)
	p.addr, p.grpcAddr = m[1], m[2]
	return p
}

// startAgentProc starts `runnel agent` against servers (comma-separated).
func startAgentProc(t *testing.T, name, servers, token, labels, workdir string, env ...string) *proc {
	t.Helper()
	p, _ := startProc(t, name, env, regexp.MustCompile(`msg=connected `),
		"agent", "--server", servers, "--token", token, "--labels", labels, "--name", name,
		"--capacity", "4", "--workdir", workdir, "--grace-period", "1s")
	return p
}

// registrationToken creates one through the API.
func (c *client) registrationToken() string {
	c.t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	if env := c.do("POST", "/api/v1/registration-tokens", map[string]any{"name": "test"}, &tok); env.Code != 0 || tok.Token == "" {
		c.t.Fatalf("create registration token: %+v", env)
	}
	return tok.Token
}

type agentInfo struct {
	AgentID     string            `json:"agentId"`
	Name        string            `json:"name"`
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	RunningJobs int               `json:"runningJobs"`
}

// agentIDs maps agent names to ids.
func (c *client) agentIDs() map[string]agentInfo {
	c.t.Helper()
	var list struct {
		Items []agentInfo `json:"items"`
	}
	if env := c.do("GET", "/api/v1/agents", nil, &list); env.Code != 0 {
		c.t.Fatalf("list agents: %+v", env)
	}
	out := map[string]agentInfo{}
	for _, a := range list.Items {
		out[a.Name] = a
	}
	return out
}

// createPipeline creates a pipeline with a JSON spec and returns its id.
func (c *client) createPipeline(name, specJSON string) string {
	c.t.Helper()
	return c.createPipelineIn("demo", name, specJSON)
}

// createPipelineIn creates a pipeline in a project (a new project id
// becomes a project).
func (c *client) createPipelineIn(project, name, specJSON string) string {
	c.t.Helper()
	var specObj any
	if err := json.Unmarshal([]byte(specJSON), &specObj); err != nil {
		c.t.Fatalf("spec of %s: %v", name, err)
	}
	var p struct {
		PipelineID string `json:"pipelineId"`
	}
	if env := c.do("POST", "/api/v1/pipelines", map[string]any{"projectId": project, "name": name, "spec": specObj}, &p); env.Code != 0 {
		c.t.Fatalf("create %s: %+v", name, env)
	}
	return p.PipelineID
}

func (c *client) trigger(pipelineID, requestID string) string {
	c.t.Helper()
	var tr struct {
		RunID string `json:"runId"`
	}
	body := map[string]any{}
	if requestID != "" {
		body["requestId"] = requestID
	}
	if env := c.do("POST", "/api/v1/pipelines/"+pipelineID+"/trigger", body, &tr); env.Code != 0 {
		c.t.Fatalf("trigger: %+v", env)
	}
	return tr.RunID
}

// jobOf finds a job of a run detail by name prefix.
type jobDetail struct {
	Key     string `json:"key"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Attempt int    `json:"attempt"`
	Reason  string `json:"reason"`
	AgentID string `json:"agentId"`
	Steps   []struct {
		StepRunID string `json:"stepRunId"`
		Status    string `json:"status"`
	} `json:"steps"`
}

type runJobs struct {
	RunID  string `json:"runId"`
	Status string `json:"status"`
	Stages []struct {
		Jobs []jobDetail `json:"jobs"`
	} `json:"stages"`
}

func (c *client) runJobs(runID string) runJobs {
	c.t.Helper()
	var d runJobs
	if env := c.do("GET", "/api/v1/pipelines/runs/"+runID, nil, &d); env.Code != 0 {
		c.t.Fatalf("get run %s: %+v", runID, env)
	}
	return d
}

func (d runJobs) job(name string) jobDetail {
	for _, st := range d.Stages {
		for _, j := range st.Jobs {
			if j.Name == name || j.Key == name {
				return j
			}
		}
	}
	return jobDetail{}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// pidAlive reports whether a process exists (and is not a zombie).
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, 15*time.Second, "pid file "+filepath.Base(path), func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		_, err = fmt.Sscan(string(b), &pid)
		return err == nil && pid > 0
	})
	return pid
}

// tryTrigger triggers a run without failing the test (the replica may be
// dead): it returns the run id or the error.
func tryTrigger(addr, pipelineID, requestID string) (string, error) {
	body := strings.NewReader(`{"requestId":"` + requestID + `"}`)
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/pipelines/"+pipelineID+"/trigger", body)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var env struct {
		Code   int    `json:"code"`
		ErrMsg string `json:"errMsg"`
		Detail struct {
			RunID string `json:"runId"`
		} `json:"detail"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return "", err
	}
	if env.Code != 0 || env.Detail.RunID == "" {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, env.ErrMsg)
	}
	return env.Detail.RunID, nil
}
