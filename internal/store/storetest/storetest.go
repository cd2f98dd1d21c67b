// Package storetest is the conformance suite of store.Store: every
// implementation runs it (sqlstore on SQLite and on PostgreSQL), so the
// server and the scheduler can rely on the contracts in package store
// whatever the database.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
)

// Run runs the suite. open must return a new, empty store for each call and
// close it with t.Cleanup (a subtest may close it first: the cleanup must
// tolerate that). The store's clock must be the real time: lease expiry is
// tested by letting a short lease run out.
//
// Subtests run in parallel with each other, each on its own store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	groups := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) store.Store)
	}{
		{"Pipelines", testPipelines},
		{"Specs", testSpecs},
		{"Runs", testRuns},
		{"RunTx", testRunTx},
		{"Queue", testQueue},
		{"Routes", testRoutes},
		{"Leases", testLeases},
		{"Release", testRelease},
		{"Logs", testLogs},
		{"StepLogs", testStepLogs},
		{"Tokens", testTokens},
		{"Users", testUsers},
		{"UserTokens", testUserTokens},
		{"Projects", testProjects},
		{"Teams", testTeams},
		{"SignIn", testSignIn},
		{"Audit", testAudit},
		{"Agents", testAgents},
		{"Registration", testRegistration},
		{"Delete", testDelete},
		{"Health", testHealth},
		{"Secrets", testSecrets},
		{"Credentials", testCredentials},
		{"Artifacts", testArtifacts},
		{"Caches", testCaches},
		{"Webhooks", testWebhooks},
		{"CheckLease", testCheckLease},
		{"Cron", testCron},
		{"Events", testEvents},
		{"Approvals", testApprovals},
		{"Images", testImages},
		{"Repos", testRepos},
		{"ForgeFields", testForgeFields},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.fn(t, open)
		})
	}
}

// fx is one subtest's store with helpers that fail the test on error.
type fx struct {
	t   *testing.T
	ctx context.Context
	st  store.Store
}

func newFx(t *testing.T, open func(t *testing.T) store.Store) *fx {
	t.Helper()
	return &fx{t: t, ctx: t.Context(), st: open(t)}
}

// t0 is the suite's reference time, with microseconds (what stores keep).
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func ptr[T any](v T) *T { return &v }

func newID(prefix string) string { return prefix + "_" + rand.Text()[:16] }

func (f *fx) pipeline(project, name string) *store.Pipeline {
	f.t.Helper()
	p := &store.Pipeline{
		ID: newID("pl"), ProjectID: project, Name: name, Description: "d", RepoURL: "https://git.example/r.git",
		DefaultBranch: "main", PipelineFilePath: ".runnel/pipeline.yaml", SaveMode: "direct",
		Metadata: map[string]any{"team": "ci", "n": 1.0}, CreatedBy: "alice", CreatorID: "usr_alice", CreatedAt: t0, UpdatedAt: t0,
	}
	if err := f.st.CreatePipeline(f.ctx, p); err != nil {
		f.t.Fatalf("CreatePipeline: %v", err)
	}
	return p
}

// newRun builds a NewRun with jobs × steps, jobs in plan order.
func newRun(pipelineID string, jobs, steps int) *store.NewRun {
	runID := newID("run")
	nr := &store.NewRun{
		Run: &store.Run{
			ID: runID, PipelineID: pipelineID, Status: "pending", TriggerType: "manual", TriggeredBy: "bob", TriggerUserID: "usr_bob",
			Variables: map[string]string{"A": "1"}, SpecVersion: 1, Commit: "abc", CreatedAt: t0,
		},
		Steps: map[string][]*store.StepRun{},
	}
	for i := range jobs {
		j := &store.JobRun{
			ID: newID("jr"), RunID: runID, Key: fmt.Sprintf("build/job%d", i), Name: fmt.Sprintf("job %d", i),
			Stage: "build", Index: i, Status: "pending", Attempt: 1,
			RunsOn: json.RawMessage(`["linux"]`),
		}
		nr.Jobs = append(nr.Jobs, j)
		for k := range steps {
			nr.Steps[j.ID] = append(nr.Steps[j.ID], &store.StepRun{
				ID: newID("sr"), JobRunID: j.ID, Index: k, Name: fmt.Sprintf("step %d", k), Run: "echo hi",
				Status: "pending",
			})
		}
	}
	return nr
}

func (f *fx) run(pipelineID string, jobs, steps int) *store.RunTree {
	f.t.Helper()
	nr := newRun(pipelineID, jobs, steps)
	if _, _, err := f.st.CreateRun(f.ctx, nr); err != nil {
		f.t.Fatalf("CreateRun: %v", err)
	}
	return f.tree(nr.Run.ID)
}

func (f *fx) tree(runID string) *store.RunTree {
	f.t.Helper()
	tr, err := f.st.GetRunTree(f.ctx, runID)
	if err != nil {
		f.t.Fatalf("GetRunTree: %v", err)
	}
	return tr
}

// queue marks job runs of a run queued at the given time, as the scheduler
// does (all of them when no job run id is given). Their RunsOn is kept.
func (f *fx) queue(runID string, queuedAt time.Time, retryAt *time.Time, jobIDs ...string) {
	f.t.Helper()
	f.queueJobs(runID, nil, queuedAt, retryAt, jobIDs...)
}

// queueOn is queue that also sets the job runs' RunsOn to runsOn ("": none),
// the route they wait on.
func (f *fx) queueOn(runID, runsOn string, queuedAt time.Time, retryAt *time.Time, jobIDs ...string) {
	f.t.Helper()
	f.queueJobs(runID, &runsOn, queuedAt, retryAt, jobIDs...)
}

func (f *fx) queueJobs(runID string, runsOn *string, queuedAt time.Time, retryAt *time.Time, jobIDs ...string) {
	f.t.Helper()
	want := map[string]bool{}
	for _, id := range jobIDs {
		want[id] = true
	}
	err := f.st.UpdateRunTx(f.ctx, runID, func(tx store.RunTx) error {
		tr, err := tx.Tree()
		if err != nil {
			return err
		}
		for _, j := range tr.Jobs {
			if len(want) > 0 && !want[j.ID] {
				continue
			}
			j.Status, j.QueuedAt, j.RetryAt = "queued", ptr(queuedAt), retryAt
			j.AgentID, j.LeaseID, j.LeaseExpiresAt, j.StartedAt = "", "", nil, nil
			j.Request = json.RawMessage(`{"job":"` + j.Key + `"}`)
			if runsOn != nil {
				j.RunsOn = nil
				if *runsOn != "" {
					j.RunsOn = json.RawMessage(*runsOn)
				}
			}
			if err := tx.UpdateJob(j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.t.Fatalf("queue: %v", err)
	}
}

// finish sets a run's status through UpdateRunTx.
func (f *fx) setRunStatus(runID, status string) {
	f.t.Helper()
	err := f.st.UpdateRunTx(f.ctx, runID, func(tx store.RunTx) error {
		tr, err := tx.Tree()
		if err != nil {
			return err
		}
		tr.Run.Status = runnel.RunStatus(status)
		return tx.UpdateRun(tr.Run)
	})
	if err != nil {
		f.t.Fatalf("set run status: %v", err)
	}
}

// wantErr fails unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// sameJSON compares values by their JSON encoding, which normalises times
// (location, monotonic reading) and distinguishes nil from empty.
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	noErr(t, what, err)
	w, err := json.Marshal(want)
	noErr(t, what, err)
	if string(g) != string(w) {
		t.Fatalf("%s:\n got  %s\n want %s", what, g, w)
	}
}

// utc fails unless every non-nil time is in UTC.
func utc(t *testing.T, what string, ts ...*time.Time) {
	t.Helper()
	for _, x := range ts {
		if x != nil && x.Location() != time.UTC {
			t.Fatalf("%s: time %v is not in UTC", what, x)
		}
	}
}

// parallel runs fn(i) for i in [0, n) on n goroutines started together and
// waits for them.
func parallel(n int, fn func(i int)) {
	start := make(chan struct{})
	done := make(chan struct{}, n)
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			<-start
			fn(i)
		}()
	}
	close(start)
	for range n {
		<-done
	}
}
