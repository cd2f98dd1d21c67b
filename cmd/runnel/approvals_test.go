package main

import (
	"strings"
	"testing"
	"time"
)

type approvalOut struct {
	ApprovalID string   `json:"approvalId"`
	Scope      string   `json:"scope"`
	Target     string   `json:"target"`
	Message    string   `json:"message"`
	Approvers  []string `json:"approvers"`
	Status     string   `json:"status"`
	DecidedBy  string   `json:"decidedBy"`
	Comment    string   `json:"comment"`
}

// pendingGate waits until the run has a pending gate of scope and returns it.
func (c *client) pendingGate(runID, scope string) approvalOut {
	c.t.Helper()
	var found approvalOut
	waitFor(c.t, 20*time.Second, "a pending "+scope+" gate of run "+runID, func() bool {
		var list []approvalOut
		c.do("GET", "/api/v1/pipelines/runs/"+runID+"/approvals", nil, &list)
		for _, a := range list {
			if a.Scope == scope && a.Status == "pending" {
				found = a
				return true
			}
		}
		return false
	})
	return found
}

// TestApprovals: gates on the pipeline, a stage and a job hold their jobs
// until an approver decides; a rejection or a timeout fails the jobs behind
// the gate; only listed approvers may decide; decisions are in the timeline
// and the run's events.
func TestApprovals(t *testing.T) {
	srv := startServerProc(t, "server", "", "--embedded-agent-capacity", "2")
	c := &client{t: t, base: "http://" + srv.addr}
	p1 := c.createPipeline("gated", `{"namespace":"t","approval":{"approvers":["admin"],"message":"start the release?"},
		"stages":[
			{"name":"build","jobs":[{"name":"compile","steps":[{"run":"echo compiled"}]}]},
			{"name":"deploy","jobs":[{"name":"ship","approval":{"approvers":["role:admin"],"message":"ship it?"},"steps":[{"run":"echo shipped"}]}]}]}`)

	// Approved all the way.
	run := c.trigger(p1, "")
	gate := c.pendingGate(run, "pipeline")
	if gate.Message != "start the release?" || len(gate.Approvers) != 1 {
		t.Fatalf("pipeline gate: %+v", gate)
	}
	d := c.runJobs(run)
	if j := d.job("compile"); j.Status != "pending" || !strings.Contains(j.Reason, "waiting for the pipeline's approval") ||
		!strings.Contains(j.Reason, "start the release?") {
		t.Fatalf("compile while the pipeline gate is pending: %+v", j)
	}
	time.Sleep(300 * time.Millisecond)
	if j := c.runJobs(run).job("compile"); j.Status != "pending" {
		t.Fatalf("compile started before the approval: %s", j.Status)
	}
	var decided approvalOut
	if env := c.do("POST", "/api/v1/approvals/"+gate.ApprovalID+"/approve", map[string]any{"comment": "go"}, &decided); env.Code != 0 ||
		decided.Status != "approved" || decided.DecidedBy != "admin" {
		t.Fatalf("approve: %+v %+v", env, decided)
	}
	if env := c.do("POST", "/api/v1/approvals/"+gate.ApprovalID+"/reject", map[string]any{}, nil); env.Code != 409 ||
		!strings.Contains(env.ErrMsg, "already approved by admin") {
		t.Fatalf("deciding twice: %+v", env)
	}
	ship := c.pendingGate(run, "job")
	if ship.Target != "deploy/ship" {
		t.Fatalf("job gate: %+v", ship)
	}
	if j := c.runJobs(run).job("compile"); j.Status != "success" {
		t.Fatalf("compile after the pipeline approval: %+v", j)
	}
	c.do("POST", "/api/v1/approvals/"+ship.ApprovalID+"/approve", map[string]any{}, nil)
	if d := c.waitRun(run, 30*time.Second, final); d.Status != "success" {
		t.Fatalf("approved run: %s", d.Status)
	}

	// Rejected at the job gate: the job fails with the reason, in the
	// timeline too.
	run2 := c.trigger(p1, "")
	c.do("POST", "/api/v1/approvals/"+c.pendingGate(run2, "pipeline").ApprovalID+"/approve", map[string]any{}, nil)
	ship2 := c.pendingGate(run2, "job")
	if env := c.do("POST", "/api/v1/approvals/"+ship2.ApprovalID+"/reject", map[string]any{"comment": "not on a Friday"}, nil); env.Code != 0 {
		t.Fatalf("reject: %+v", env)
	}
	d2 := c.waitRun(run2, 30*time.Second, final)
	if d2.Status != "failed" {
		t.Fatalf("rejected run: %s", d2.Status)
	}
	if j := c.runJobs(run2).job("ship"); j.Status != "failed" || !strings.Contains(j.Reason, "rejected by admin: not on a Friday") {
		t.Fatalf("rejected job: %+v", j)
	}
	var actions []string
	for _, e := range d2.Timeline {
		actions = append(actions, e.Action+":"+e.Reason)
	}
	tl := strings.Join(actions, "\n")
	for _, want := range []string{"approval_requested:the pipeline's approval is requested: start the release?", "approved:the pipeline's approval approved",
		"rejected:the approval of job deploy/ship rejected: not on a Friday"} {
		if !strings.Contains(tl, want) {
			t.Errorf("timeline lacks %q:\n%s", want, tl)
		}
	}

	// A stage gate only alice may decide, with a timeout: the admin is
	// refused, and the timeout rejects.
	p2 := c.createPipeline("timed", `{"namespace":"t","stages":[
		{"name":"prod","approval":{"approvers":["alice"],"timeout":"2s","message":"alice, please"},
		 "jobs":[{"name":"deploy","steps":[{"run":"echo deployed"}]}]}]}`)
	run3 := c.trigger(p2, "")
	g3 := c.pendingGate(run3, "stage")
	if env := c.do("POST", "/api/v1/approvals/"+g3.ApprovalID+"/approve", map[string]any{}, nil); env.Code != 403 ||
		!strings.Contains(env.ErrMsg, "only alice may decide, not admin") {
		t.Fatalf("a non-approver: %+v", env)
	}
	d3 := c.waitRun(run3, 30*time.Second, final)
	if j := c.runJobs(run3).job("deploy"); d3.Status != "failed" || !strings.Contains(j.Reason, "expired: no decision within 2s") {
		t.Fatalf("after the timeout: run %s, job %+v", d3.Status, j)
	}
	var list []approvalOut
	c.do("GET", "/api/v1/pipelines/runs/"+run3+"/approvals", nil, &list)
	if len(list) != 1 || list[0].Status != "expired" || list[0].DecidedBy != "runnel" {
		t.Fatalf("gates after the timeout: %+v", list)
	}
	// Stopping a run that waits at a gate ends it: the gate is cancelled,
	// and so is the job behind it, even one whose if is always().
	p3 := c.createPipeline("stopped", `{"namespace":"t","jobs":[
		{"name":"cleanup","if":"${{ always() }}","approval":{"approvers":["alice"]},"steps":[{"run":"echo never"}]}]}`)
	run4 := c.trigger(p3, "")
	g4 := c.pendingGate(run4, "job")
	if env := c.do("POST", "/api/v1/pipelines/"+p3+"/runs/"+run4+"/stop", map[string]any{"reason": "not needed"}, nil); env.Code != 0 {
		t.Fatalf("stop: %+v", env)
	}
	d4 := c.waitRun(run4, 20*time.Second, func(d *runDetail) bool { return final(d) && c.runJobs(run4).job("cleanup").Status == "cancelled" })
	if d4.Status != "cancelled" {
		t.Fatalf("stopped run: %s", d4.Status)
	}
	c.do("GET", "/api/v1/pipelines/runs/"+run4+"/approvals", nil, &list)
	if len(list) != 1 || list[0].Status != "cancelled" {
		t.Fatalf("gates of the stopped run: %+v", list)
	}
	if env := c.do("POST", "/api/v1/approvals/"+g4.ApprovalID+"/approve", map[string]any{}, nil); env.Code != 403 && env.Code != 409 {
		t.Fatalf("deciding a cancelled gate: %+v", env)
	}
	if env := c.do("POST", "/api/v1/approvals/apr_aaaaaaaaaaaaaaaaaaaa/approve", map[string]any{}, nil); env.Code != 404 {
		t.Fatalf("unknown approval: %+v", env)
	}
}
