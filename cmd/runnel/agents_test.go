package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/testpg"
)

// TestRemoteAgents runs a real server and two real agents with different
// labels: jobs land on the agent their runsOn selects, a job no agent can
// take says why, a stop reaches the remote step process within 2 seconds, and
// an agent cut off from the server (SIGSTOP) past its lease cannot overwrite
// what happened meanwhile.
func TestRemoteAgents(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { remoteAgents(t, "") })
	t.Run("postgres", func(t *testing.T) { remoteAgents(t, testpg.NewDatabase(t)) })
}

func remoteAgents(t *testing.T, database string) {
	srv := startServerProc(t, "server", database, "--lease-duration", "3s", "--log-level", "info")
	c := &client{t: t, base: "http://" + srv.addr}
	tok := c.registrationToken()
	dir := t.TempDir()
	agentA := startAgentProc(t, "agent-a", srv.grpcAddr, tok, "pool=a,disk=ssd", filepath.Join(dir, "a"), "TESTDIR="+dir)
	startAgentProc(t, "agent-b", srv.grpcAddr, tok, "pool=b", filepath.Join(dir, "b"), "TESTDIR="+dir)
	agents := c.agentIDs()
	a, b := agents["agent-a"], agents["agent-b"]
	if a.Status != "online" || b.Status != "online" || a.Labels["pool"] != "a" || a.Labels["os"] == "" {
		t.Fatalf("agents: %+v", agents)
	}

	// Routing: a label map, a selector list, and no requirement.
	routed := c.createPipeline("routed", `{"namespace":"t","jobs":[
		{"name":"on-a","runsOn":{"pool":"a"},"steps":[{"run":"echo on a"}]},
		{"name":"on-b","runsOn":["pool in (b,c)","!gpu"],"steps":[{"run":"echo on b"}]},
		{"name":"ssd","runsOn":["disk=ssd"],"steps":[{"run":"echo ssd"}]},
		{"name":"anywhere","steps":[{"run":"echo anywhere"}]}]}`)
	run := c.trigger(routed, "")
	c.waitRun(run, 20*time.Second, final)
	d := c.runJobs(run)
	if d.Status != "success" {
		t.Fatalf("routed run: %+v", d)
	}
	for name, want := range map[string]string{"on-a": a.AgentID, "on-b": b.AgentID, "ssd": a.AgentID} {
		if got := d.job(name).AgentID; got != want {
			t.Errorf("job %s ran on %q, want %q", name, got, want)
		}
	}
	if got := d.job("anywhere").AgentID; got != a.AgentID && got != b.AgentID {
		t.Errorf("job anywhere ran on %q", got)
	}

	// A job no online agent can take says why, and waits.
	impossible := c.createPipeline("impossible", `{"namespace":"t","jobs":[{"name":"gpu","runsOn":{"pool":"gpu"},"steps":[{"run":"true"}]}]}`)
	run = c.trigger(impossible, "")
	var reason string
	waitFor(t, 10*time.Second, "a reason on the job no agent can take", func() bool {
		j := c.runJobs(run).job("gpu")
		reason = j.Reason
		return j.Status == "queued" && strings.Contains(reason, "no online agent matches")
	})
	t.Logf("waiting job's reason: %s", reason)
	if !strings.Contains(reason, `{"pool":"gpu"}`) {
		t.Errorf("the reason should name the requirement: %q", reason)
	}
	c.do("POST", "/api/v1/pipelines/"+impossible+"/runs/"+run+"/stop", map[string]any{}, nil)

	// Stop reaches the remote step's process within 2 seconds.
	long := c.createPipeline("long", `{"namespace":"t","jobs":[{"name":"sleep","runsOn":{"pool":"a"},"steps":[{"run":"echo $$ > $TESTDIR/long.pid; exec sleep 300"}]}]}`)
	run = c.trigger(long, "")
	pid := readPID(t, filepath.Join(dir, "long.pid"))
	start := time.Now()
	if env := c.do("POST", "/api/v1/pipelines/"+long+"/runs/"+run+"/stop", map[string]any{"reason": "test"}, nil); env.Code != 0 {
		t.Fatalf("stop: %+v", env)
	}
	waitFor(t, 5*time.Second, "the stopped step's process to end", func() bool { return !pidAlive(pid) })
	took := time.Since(start)
	t.Logf("stop → step process gone: %s", took)
	if took > 2*time.Second {
		t.Errorf("the step process outlived the stop by %s (want < 2s)", took)
	}
	c.waitRun(run, 10*time.Second, final)

	// Fencing: agent-a freezes (SIGSTOP) while its job runs; its lease
	// expires, the job is retried on agent-b; when agent-a wakes up, its
	// reports are rejected and its step is stopped.
	fenced := c.createPipeline("fenced", `{"namespace":"t","jobs":[{"name":"tick","retry":{"max":1},"runsOn":["pool in (a,b)"],
		"steps":[{"run":"if [ ${{ job.attempt }} = 1 ]; then echo $$ > $TESTDIR/tick.pid; while true; do echo tick-1; sleep 0.1; done; else echo attempt-2; fi"}]}]}`)
	// Make agent-a the only candidate for the first attempt.
	c.do("PUT", "/api/v1/agents/"+b.AgentID, map[string]any{"disabled": true}, nil)
	run = c.trigger(fenced, "")
	tickPID := readPID(t, filepath.Join(dir, "tick.pid"))
	if j := c.runJobs(run).job("tick"); j.AgentID != a.AgentID {
		t.Fatalf("first attempt on %q, want agent-a", j.AgentID)
	}
	agentA.signal(syscall.SIGSTOP)
	c.do("PUT", "/api/v1/agents/"+b.AgentID, map[string]any{"disabled": false}, nil)
	d2 := c.waitRun(run, 20*time.Second, final)
	if d2.Status != "success" {
		agentA.signal(syscall.SIGCONT)
		t.Fatalf("fenced run: %+v", d2)
	}
	j := c.runJobs(run).job("tick")
	if j.Attempt != 2 || j.AgentID != b.AgentID {
		t.Errorf("retried job: attempt %d on %s, want 2 on agent-b", j.Attempt, j.AgentID)
	}
	logsBefore := c.stepLog(run, j.Steps[0].StepRunID)
	agentA.signal(syscall.SIGCONT)
	waitFor(t, 10*time.Second, "the fenced agent to stop its stale step", func() bool { return !pidAlive(tickPID) })
	time.Sleep(time.Second) // what agent-a might still send
	logsAfter := c.stepLog(run, j.Steps[0].StepRunID)
	if logsAfter != logsBefore {
		t.Errorf("the fenced agent changed the log after losing its lease:\nbefore %q\nafter  %q", tail(logsBefore, 200), tail(logsAfter, 200))
	}
	if d := c.runJobs(run); d.Status != "success" || d.job("tick").Status != "success" {
		t.Errorf("the fenced agent changed the run: %+v", d)
	}
	if !strings.Contains(agentA.tailLogs(200), "lease lost") {
		t.Errorf("agent-a should log that it lost the lease:\n%s", agentA.tailLogs(30))
	}
}

// stepLog returns a step's log as text.
func (c *client) stepLog(runID, stepRunID string) string {
	c.t.Helper()
	req, _ := http.NewRequest("GET", c.base+"/api/v1/pipelines/runs/"+runID+"/steps/"+stepRunID+"/logs?format=text", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		c.t.Fatalf("logs: HTTP %d: %s", resp.StatusCode, b)
	}
	return string(b)
}

// TestAgentKill9: an agent killed mid-job loses its lease; the job is retried
// on the other agent within lease + 5 s (or fails as "agent lost" when it
// has no retry left), and the killed agent, restarted, removes the processes
// it left behind.
func TestAgentKill9(t *testing.T) {
	database := testpg.NewDatabase(t)
	const lease = 3 * time.Second
	srv := startServerProc(t, "server", database, "--lease-duration", lease.String())
	c := &client{t: t, base: "http://" + srv.addr}
	tok := c.registrationToken()
	dir := t.TempDir()
	marker := "agentkill9-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	victimDir := filepath.Join(dir, "victim")
	victim := startAgentProc(t, "victim", srv.grpcAddr, tok, "pool=x", victimDir, "TESTDIR="+dir, "KILL9_MARKER="+marker)
	agents := c.agentIDs()
	victimID := agents["victim"].AgentID

	retried := c.createPipeline("retried", `{"namespace":"t","jobs":[{"name":"j","retry":{"max":1},"runsOn":{"pool":"x"},
		"steps":[{"run":"echo attempt ${{ job.attempt }}; if [ ${{ job.attempt }} = 1 ]; then echo $$ > $TESTDIR/retried.pid; exec sleep 300; fi"}]}]}`)
	single := c.createPipeline("single", `{"namespace":"t","jobs":[{"name":"j","runsOn":{"pool":"x"},
		"steps":[{"run":"echo $$ > $TESTDIR/single.pid; exec sleep 300"}]}]}`)
	run1, run2 := c.trigger(retried, ""), c.trigger(single, "")
	pid1 := readPID(t, filepath.Join(dir, "retried.pid"))
	readPID(t, filepath.Join(dir, "single.pid"))
	// The survivor connects now, so the jobs started on the victim.
	startAgentProc(t, "survivor", srv.grpcAddr, tok, "pool=x", filepath.Join(dir, "survivor"), "TESTDIR="+dir)
	survivorID := c.agentIDs()["survivor"].AgentID

	victim.kill9()
	killed := time.Now()
	if !pidAlive(pid1) {
		t.Fatal("the step process should outlive its killed agent (it is cleaned up when the agent restarts)")
	}
	d1 := c.waitRun(run1, lease+10*time.Second, final)
	took := time.Since(killed)
	j1 := c.runJobs(run1).job("j")
	t.Logf("killed agent's job retried and finished %s after the kill: %s attempt %d on %s", took, d1.Status, j1.Attempt, j1.AgentID)
	if d1.Status != "success" || j1.Attempt != 2 || j1.AgentID != survivorID {
		t.Fatalf("retried run: %+v job %+v", d1, j1)
	}
	if took > lease+5*time.Second {
		t.Errorf("the job was re-run %s after the kill; want within lease + 5s = %s", took, lease+5*time.Second)
	}
	c.waitRun(run2, lease+10*time.Second, final)
	if j := c.runJobs(run2).job("j"); j.Status != "failed" || !strings.Contains(j.Reason, "agent lost") {
		t.Fatalf("job without retry: %+v", j)
	}
	// Restarted on the same work dir, the victim keeps its identity and
	// removes what its previous process left.
	startAgentProc(t, "victim", srv.grpcAddr, "", "pool=x", victimDir, "TESTDIR="+dir)
	if id := c.agentIDs()["victim"]; id.AgentID != victimID || id.Status != "online" {
		t.Errorf("restarted victim: %+v, want id %s online", id, victimID)
	}
	waitFor(t, 10*time.Second, "the killed agent's orphaned step processes to be removed", func() bool {
		for _, pid := range processesWithEnv("KILL9_MARKER=" + marker) {
			if pidAlive(pid) {
				return false
			}
		}
		return true
	})
	entries, _ := os.ReadDir(filepath.Join(victimDir, "workspaces"))
	if len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("workspaces left after the restart: %v", names)
	}
}

// TestReplicas runs two server replicas on one PostgreSQL database and four
// agents, two on each (each can fail over to the other replica); 200 runs are
// triggered across both replicas and one replica is killed (SIGKILL) midway.
// Every run must reach a final status, once: each run's step appends the run
// id to a shared file, and each id must appear exactly once.
func TestReplicas(t *testing.T) {
	database := testpg.NewDatabase(t)
	r1 := startServerProc(t, "replica-1", database, "--lease-duration", "5s")
	r2 := startServerProc(t, "replica-2", database, "--lease-duration", "5s")
	c1 := &client{t: t, base: "http://" + r1.addr}
	c2 := &client{t: t, base: "http://" + r2.addr}
	tok := c1.registrationToken()
	dir := t.TempDir()
	ranFile := filepath.Join(dir, "ran.txt")
	for i := range 4 {
		servers := r1.grpcAddr + "," + r2.grpcAddr
		if i%2 == 1 {
			servers = r2.grpcAddr + "," + r1.grpcAddr
		}
		startAgentProc(t, fmt.Sprintf("agent-%d", i), servers, tok, "pool=x", filepath.Join(dir, fmt.Sprint(i)), "RAN_FILE="+ranFile)
	}

	// Cross-replica visibility and cancellation: created on one replica,
	// stopped through the other, the remote step still dies at once.
	long := c1.createPipeline("long", `{"namespace":"t","jobs":[{"name":"sleep","steps":[{"run":"echo $$ > `+dir+`/long.pid; exec sleep 300"}]}]}`)
	run := c1.trigger(long, "")
	pid := readPID(t, filepath.Join(dir, "long.pid"))
	start := time.Now()
	if env := c2.do("POST", "/api/v1/pipelines/"+long+"/runs/"+run+"/stop", map[string]any{}, nil); env.Code != 0 {
		t.Fatalf("stop through replica 2: %+v", env)
	}
	waitFor(t, 5*time.Second, "the step stopped through the other replica to end", func() bool { return !pidAlive(pid) })
	t.Logf("stop on replica 2 → step gone: %s", time.Since(start))
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cross-replica stop took %s (want < 2s)", took)
	}

	p := c1.createPipeline("many", `{"namespace":"t","jobs":[{"name":"j","steps":[{"run":"echo ${{ run.id }} >> $RAN_FILE"}]}]}`)
	const n = 200
	runs := make([]string, n)
	var wg sync.WaitGroup
	work := make(chan int)
	var killOnce sync.Once
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if i == n/2 {
					killOnce.Do(r1.kill9)
				}
				reqID := fmt.Sprintf("req-%d", i)
				// Alternate replicas; a trigger that fails on the killed
				// replica is repeated on the other with the same request id.
				first, second := r1, r2
				if i%2 == 1 {
					first, second = r2, r1
				}
				id, err := tryTrigger(first.addr, p, reqID)
				if err != nil {
					id, err = tryTrigger(second.addr, p, reqID)
				}
				if err != nil {
					t.Errorf("trigger %s: %v", reqID, err)
					continue
				}
				runs[i] = id
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	deadline := time.Now().Add(60 * time.Second)
	for i, id := range runs {
		for {
			d := c2.runJobs(id)
			if final(&runDetail{Status: d.Status}) {
				if d.Status != "success" {
					t.Errorf("run %d (%s): %s %+v", i, id, d.Status, d)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %d (%s) still %s: %+v", i, id, d.Status, d)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	b, err := os.ReadFile(ranFile)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, line := range strings.Fields(string(b)) {
		count[line]++
	}
	seen := map[string]bool{}
	for i, id := range runs {
		if seen[id] {
			t.Errorf("request %d got the run of another request: %s", i, id)
		}
		seen[id] = true
		if count[id] != 1 {
			t.Errorf("run %d (%s) executed %d times", i, id, count[id])
		}
	}
	if len(count) != n {
		t.Errorf("%d distinct runs executed, want %d", len(count), n)
	}
	var list struct {
		Total int `json:"total"`
	}
	c2.do("GET", "/api/v1/pipelines/"+p+"/runs", nil, &list)
	if list.Total != n {
		t.Errorf("the pipeline has %d runs, want %d", list.Total, n)
	}
}
