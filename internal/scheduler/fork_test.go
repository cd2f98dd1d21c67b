package scheduler_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
	"github.com/runnel-ci/runnel/internal/worker"
)

// forkSecrets is the pipeline's secrets and credentials as the server's
// resolver would open them; it counts what it was asked for.
type forkSecrets struct {
	mu                     sync.Mutex
	secretCalls, credCalls int
	credIDs                []string
}

func (f *forkSecrets) ForPipeline(_ context.Context, _ string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secretCalls++
	return map[string]string{"DEPLOY_TOKEN": "s3cr3t-deploy", "UNUSED": "not-referenced"}, nil
}

func (f *forkSecrets) Credentials(_ context.Context, _ string, ids []string) (map[string]runnel.Credential, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.credCalls++
	f.credIDs = append(f.credIDs, ids...)
	out := map[string]runnel.Credential{}
	for _, id := range ids {
		out[id] = runnel.Credential{ID: id, Kind: "github", Host: "github.com", Username: "x-access-token", Secret: "ghp_for_" + id}
	}
	return out, nil
}

func (f *forkSecrets) calls() (secrets, creds int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.secretCalls, f.credCalls
}

const forkCred = "cred_forkcheckout00000000"

// forkSpec is a job that refers to a secret and to a credential.
const forkSpec = `namespace: t
jobs:
  - name: build
    steps:
      - name: checkout
        uses: actions/git-checkout@v1
        args: {repo: "https://github.com/acme/app.git", credential: ` + forkCred + `}
      - name: deploy
        env: {TOKEN: "${{ secrets.DEPLOY_TOKEN }}"}
        run: 'echo deploying with "$TOKEN"'
`

// newForkEnv is a scheduler over a real SQLite store with secrets and no
// agent: the tests claim jobs as an agent would.
func newForkEnv(t *testing.T) (*env, *forkSecrets) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "runnel.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sec := &forkSecrets{}
	sched := scheduler.New(scheduler.Options{Store: st, Catalog: action.Builtins(), LeaseDuration: 5 * time.Second, Secrets: sec})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sched.Run(ctx) }()
	e := &env{t: t, st: st, sched: sched}
	e.stop = func() { cancel(); wg.Wait(); st.Close() }
	t.Cleanup(e.stop)
	return e, sec
}

// forkPipeline creates a pipeline of forkSpec with forkPullRequests mode.
func (e *env) forkPipeline(mode, yaml string) string {
	e.t.Helper()
	id := e.pipeline(yaml)
	ctx := context.Background()
	p, err := e.st.GetPipeline(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	p.ForkPullRequests = mode
	if err := e.st.UpdatePipeline(ctx, p); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// pullRequest is a webhook's trigger of pull request #7, from a fork or not.
func pullRequest(fork bool) runnel.TriggerRequest {
	pr := runnel.PullRequest{Number: 7, Title: "Add a feature", Head: "feature", Base: "main", Fork: fork}
	if fork {
		pr.HeadRepo = "mallory/app"
	}
	return runnel.TriggerRequest{TriggerType: runnel.TriggerEvent, TriggeredBy: "webhook", Trigger: &runnel.Trigger{
		Event: "pull_request", Action: "opened", Provider: "github", Ref: "refs/pull/7/head", Branch: "feature",
		Commit: "0123456789abcdef0123456789abcdef01234567", PullRequest: pr}}
}

func (e *env) claim(wait time.Duration) *worker.Claim {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait+5*time.Second)
	defer cancel()
	c, err := e.sched.Claim(ctx, "agent_fork", nil, wait)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) timelineEntry(runID, action string) *store.TimelineEntry {
	e.t.Helper()
	tl, err := e.st.Timeline(context.Background(), runID)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, x := range tl {
		if x.Action == action {
			return x
		}
	}
	return nil
}

func wantSecrets(t *testing.T, c *worker.Claim) {
	t.Helper()
	if want := map[string]string{"DEPLOY_TOKEN": "s3cr3t-deploy"}; !maps.Equal(c.Request.Env.Secrets, want) {
		t.Errorf("claim's secrets %v, want %v (only what the job refers to)", c.Request.Env.Secrets, want)
	}
	if cr, ok := c.Request.Credentials[forkCred]; !ok || cr.Secret != "ghp_for_"+forkCred || len(c.Request.Credentials) != 1 {
		t.Errorf("claim's credentials %+v, want %s", c.Request.Credentials, forkCred)
	}
}

// TestForkPullRequestWithheld: a pull request from a fork of a pipeline
// that says nothing (withhold) runs, but its jobs get neither secrets nor
// credentials, whatever the job refers to and whatever the trigger claims;
// its timeline says why.
func TestForkPullRequestWithheld(t *testing.T) {
	for _, tc := range []struct {
		name, mode, claimed string
	}{
		{"default", "", ""},
		{"withhold", "withhold", ""},
		// A trigger cannot grant itself the secrets: the pipeline decides.
		{"trigger says allow", "", "allow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, sec := newForkEnv(t)
			id := e.forkPipeline(tc.mode, forkSpec)
			req := pullRequest(true)
			req.Trigger.PullRequest.ForkSecrets = tc.claimed
			run, _, err := e.sched.Trigger(context.Background(), id, req)
			if err != nil {
				t.Fatal(err)
			}
			tctx := run.TriggerContext()
			if pr := tctx.PullRequest; !pr.Fork || pr.HeadRepo != "mallory/app" || pr.ForkSecrets != "withhold" || !tctx.SecretsWithheld() {
				t.Errorf("stored trigger %+v: want a fork's pull request with secrets withheld", pr)
			}
			c := e.claim(5 * time.Second)
			if c == nil || c.RunID != run.ID {
				t.Fatalf("claim %+v: want the fork's job (it runs, without secrets)", c)
			}
			if len(c.Request.Env.Secrets) != 0 || len(c.Request.Credentials) != 0 {
				t.Errorf("a fork's job got secrets %v and credentials %v", c.Request.Env.Secrets, c.Request.Credentials)
			}
			if s, cr := sec.calls(); s != 0 || cr != 0 {
				t.Errorf("the secrets were opened (%d times) and credentials (%d times) for a fork's job", s, cr)
			}
			if !strings.Contains(string(c.EncodedRequest), forkCred) || !strings.Contains(string(c.EncodedRequest), "secrets.DEPLOY_TOKEN") {
				t.Fatal("setup: the job does not refer to the secret and the credential")
			}
			x := e.timelineEntry(run.ID, "fork_pull_request")
			if x == nil {
				t.Fatal("no fork_pull_request entry on the run's timeline")
			}
			if x.Operator != "runnel" || !strings.Contains(x.Reason, "mallory/app") || !strings.Contains(x.Reason, "without the pipeline's secrets and credentials") {
				t.Errorf("timeline entry %+v", *x)
			}
			if list, err := e.st.ListApprovals(context.Background(), run.ID); err != nil || len(list) != 0 {
				t.Errorf("approvals %v, %v: a withheld fork's run waits for none", list, err)
			}
		})
	}
}

// TestForkPullRequestAllowed: a pipeline that allows forks gives their
// jobs the secrets and credentials they refer to.
func TestForkPullRequestAllowed(t *testing.T) {
	e, sec := newForkEnv(t)
	id := e.forkPipeline("allow", forkSpec)
	run, _, err := e.sched.Trigger(context.Background(), id, pullRequest(true))
	if err != nil {
		t.Fatal(err)
	}
	if run.TriggerContext().PullRequest.ForkSecrets != "allow" || run.TriggerContext().SecretsWithheld() {
		t.Errorf("stored trigger %+v", run.TriggerContext().PullRequest)
	}
	c := e.claim(5 * time.Second)
	if c == nil || c.RunID != run.ID {
		t.Fatalf("claim %+v", c)
	}
	wantSecrets(t, c)
	if s, cr := sec.calls(); s != 1 || cr != 1 {
		t.Errorf("secrets opened %d times, credentials %d times; want 1 each", s, cr)
	}
	if x := e.timelineEntry(run.ID, "fork_pull_request"); x == nil || !strings.Contains(x.Reason, "allows forks' runs its secrets") {
		t.Errorf("timeline entry %v", x)
	}
}

// TestForkPullRequestApproved: with "approve", a fork's run waits at the
// pipeline's approval, which maintainers decide; once approved its job
// gets the secrets and credentials.
func TestForkPullRequestApproved(t *testing.T) {
	e, sec := newForkEnv(t)
	ctx := context.Background()
	id := e.forkPipeline("approve", forkSpec)
	run, _, err := e.sched.Trigger(ctx, id, pullRequest(true))
	if err != nil {
		t.Fatal(err)
	}
	if pr := run.TriggerContext().PullRequest; pr.ForkSecrets != "approve" || run.TriggerContext().SecretsWithheld() {
		t.Errorf("stored trigger %+v", pr)
	}
	list, err := e.st.ListApprovals(ctx, run.ID)
	if err != nil || len(list) != 1 {
		t.Fatalf("approvals %v, %v; want the pipeline's", list, err)
	}
	a := list[0]
	if a.Scope != "pipeline" || a.Status != runnel.ApprovalPending || !slices.Equal(a.Approvers, []string{"role:maintainer"}) ||
		!strings.Contains(a.Message, "#7") || !strings.Contains(a.Message, "mallory/app") {
		t.Errorf("approval %+v: want the pipeline's, pending, for role:maintainer", *a)
	}
	if x := e.timelineEntry(run.ID, "fork_pull_request"); x == nil || !strings.Contains(x.Reason, "waits for a maintainer's approval") {
		t.Errorf("timeline entry %v", x)
	}
	if c := e.claim(300 * time.Millisecond); c != nil {
		t.Fatalf("a job of a fork's run was handed out before the approval: %+v", c)
	}
	tree, _ := e.st.GetRunTree(ctx, run.ID)
	if j := tree.Jobs[0]; j.Status != runnel.JobPending || !strings.Contains(j.Reason, "waiting for the pipeline's approval") {
		t.Errorf("job %s %q: want pending, waiting for the approval", j.Status, j.Reason)
	}

	// A scheduler that did not plan the run (another replica, a restart)
	// sees the same gate.
	other := scheduler.New(scheduler.Options{Store: e.st, Catalog: action.Builtins()})
	pl, err := other.PlanOf(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Spec.Approval == nil || !slices.Equal(pl.Spec.Approval.Approvers, []string{"role:maintainer"}) {
		t.Errorf("the run's plan, rebuilt, has approval %+v", pl.Spec.Approval)
	}

	maintainer := func(approvers []string) (bool, error) { return slices.Contains(approvers, "role:maintainer"), nil }
	nobody := func([]string) (bool, error) { return false, nil }
	if _, err := e.sched.DecideApproval(ctx, a.ID, true, "mallory", nobody, ""); !errors.Is(err, runnel.ErrForbidden) ||
		!strings.Contains(err.Error(), "role:maintainer") {
		t.Errorf("a decision by someone not a maintainer: %v, want ErrForbidden", err)
	}
	decided, err := e.sched.DecideApproval(ctx, a.ID, true, "maya", maintainer, "looked at the diff")
	if err != nil || decided.Status != runnel.ApprovalApproved {
		t.Fatalf("approve: %+v, %v", decided, err)
	}
	c := e.claim(5 * time.Second)
	if c == nil || c.RunID != run.ID {
		t.Fatalf("claim after the approval: %+v", c)
	}
	wantSecrets(t, c)
	if s, cr := sec.calls(); s != 1 || cr != 1 {
		t.Errorf("secrets opened %d times, credentials %d times; want 1 each", s, cr)
	}
}

// TestForkPullRequestRejected: a rejected fork's run does not run.
func TestForkPullRequestRejected(t *testing.T) {
	e, sec := newForkEnv(t)
	ctx := context.Background()
	run, _, err := e.sched.Trigger(ctx, e.forkPipeline("approve", forkSpec), pullRequest(true))
	if err != nil {
		t.Fatal(err)
	}
	list, err := e.st.ListApprovals(ctx, run.ID)
	if err != nil || len(list) != 1 {
		t.Fatalf("approvals %v, %v", list, err)
	}
	if _, err := e.sched.DecideApproval(ctx, list[0].ID, false, "maya", func([]string) (bool, error) { return true, nil }, "no"); err != nil {
		t.Fatal(err)
	}
	tree := e.wait(run.ID, 10*time.Second)
	if tree.Run.Status != runnel.RunFailed || tree.Jobs[0].Status != runnel.JobFailed {
		t.Errorf("after the rejection: run %s, %s", tree.Run.Status, describe(tree))
	}
	if s, cr := sec.calls(); s != 0 || cr != 0 {
		t.Errorf("secrets opened %d times, credentials %d times for a rejected fork's run", s, cr)
	}
}

// TestForkPullRequestOwnApproval: a definition with its own pipeline
// approval gets one pipeline gate, not two, and a fork's job waits for it.
// (Whose approvers decide is not asserted here: see the report on
// forkGate keeping a definition's approvers, which a fork's own head
// commit can write for a Git-backed pipeline.)
func TestForkPullRequestOwnApproval(t *testing.T) {
	e, sec := newForkEnv(t)
	ctx := context.Background()
	yaml := strings.Replace(forkSpec, "namespace: t\n", "namespace: t\napproval: {approvers: [lead], message: release gate}\n", 1)
	run, _, err := e.sched.Trigger(ctx, e.forkPipeline("approve", yaml), pullRequest(true))
	if err != nil {
		t.Fatal(err)
	}
	list, err := e.st.ListApprovals(ctx, run.ID)
	if err != nil || len(list) != 1 || list[0].Scope != "pipeline" || list[0].Status != runnel.ApprovalPending {
		t.Fatalf("approvals %v, %v; want one pending pipeline gate", list, err)
	}
	// The fork's author may have written the definition: its approvers do
	// not decide; maintainers do, under its message.
	if a := list[0]; len(a.Approvers) != 1 || a.Approvers[0] != "role:maintainer" || a.Message != "release gate" {
		t.Fatalf("the gate of a fork's run: approvers %v message %q; want role:maintainer and the definition's message", a.Approvers, a.Message)
	}
	if c := e.claim(300 * time.Millisecond); c != nil {
		t.Fatalf("a job of a fork's run was handed out before the approval: %+v", c)
	}
	if _, err := e.sched.DecideApproval(ctx, list[0].ID, true, "maya", func([]string) (bool, error) { return true, nil }, ""); err != nil {
		t.Fatal(err)
	}
	c := e.claim(5 * time.Second)
	if c == nil || c.RunID != run.ID {
		t.Fatalf("claim after the approval: %+v", c)
	}
	wantSecrets(t, c)
	if s, cr := sec.calls(); s != 1 || cr != 1 {
		t.Errorf("secrets opened %d times, credentials %d times; want 1 each", s, cr)
	}
}

// TestPullRequestNotFork: a pull request from a branch of the repository
// itself gets the secrets, whatever forkPullRequests says.
func TestPullRequestNotFork(t *testing.T) {
	for _, mode := range []string{"", "approve"} {
		t.Run("mode="+mode, func(t *testing.T) {
			e, _ := newForkEnv(t)
			run, _, err := e.sched.Trigger(context.Background(), e.forkPipeline(mode, forkSpec), pullRequest(false))
			if err != nil {
				t.Fatal(err)
			}
			if pr := run.TriggerContext().PullRequest; pr.Fork || pr.ForkSecrets != "" || run.TriggerContext().SecretsWithheld() {
				t.Errorf("stored trigger %+v", pr)
			}
			c := e.claim(5 * time.Second)
			if c == nil || c.RunID != run.ID {
				t.Fatalf("claim %+v", c)
			}
			wantSecrets(t, c)
			if x := e.timelineEntry(run.ID, "fork_pull_request"); x != nil {
				t.Errorf("a pull request of no fork has timeline entry %+v", *x)
			}
			if list, _ := e.st.ListApprovals(context.Background(), run.ID); len(list) != 0 {
				t.Errorf("approvals %v for a pull request of no fork", list)
			}
		})
	}
}
