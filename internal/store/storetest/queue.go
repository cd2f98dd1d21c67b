package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// linux is the RunsOn of the job runs newRun makes, so the route they wait on.
const linux = `["linux"]`

func testQueue(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("OrderRoutesAndRetry", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		_, err := f.st.ClaimJob(f.ctx, "agent", []string{linux}, time.Minute)
		wantErr(t, "empty queue", err, store.ErrNotFound)
		f.wantRoutes("empty queue", time.Now())

		tr := f.run(p.ID, 4, 1)
		j := tr.Jobs
		now := time.Now().UTC()
		f.queue(tr.Run.ID, now.Add(-time.Minute), nil, j[2].ID)
		f.queueOn(tr.Run.ID, `["gpu"]`, now.Add(-2*time.Minute), nil, j[1].ID)
		f.queue(tr.Run.ID, now.Add(-3*time.Minute), ptr(now.Add(time.Hour)), j[0].ID) // oldest, but retries later
		// j[3] stays pending: not claimable.
		f.wantRoutes("queued", time.Now(), `["gpu"]`, linux)

		// The oldest claimable job of the route asked for, not of another route.
		c, err := f.st.ClaimJob(f.ctx, "linux-agent", []string{linux}, time.Minute)
		noErr(t, "ClaimJob", err)
		if c.ID != j[2].ID {
			t.Fatalf("claimed %s, want %s, the only claimable job of route %s", c.ID, j[2].ID, linux)
		}
		if c.Status != "running" || c.AgentID != "linux-agent" || c.LeaseID == "" || c.StartedAt == nil ||
			c.LeaseExpiresAt == nil || c.LeaseExpiresAt.Sub(*c.StartedAt) != time.Minute {
			t.Fatalf("claimed job = %+v, want running, leased to linux-agent for a minute", c)
		}
		if string(c.RunsOn) != linux || string(c.Request) == "" {
			t.Fatalf("claimed job has RunsOn %q and Request %q", c.RunsOn, c.Request)
		}
		utc(t, "claimed job", c.StartedAt, c.LeaseExpiresAt, c.QueuedAt)
		stored := f.tree(tr.Run.ID).Jobs[2]
		sameJSON(t, "stored claim", stored, c)

		_, err = f.st.ClaimJob(f.ctx, "a", []string{"x"}, time.Minute)
		wantErr(t, "a route nobody waits on", err, store.ErrNotFound)
		_, err = f.st.ClaimJob(f.ctx, "a", nil, time.Minute)
		wantErr(t, "no routes", err, store.ErrNotFound)
		_, err = f.st.ClaimJob(f.ctx, "a", []string{}, time.Minute)
		wantErr(t, "empty routes", err, store.ErrNotFound)
		_, err = f.st.ClaimJob(f.ctx, "a", []string{linux}, time.Minute)
		wantErr(t, "only a job waiting for its retry time is left", err, store.ErrNotFound)
		f.wantRoutes("a route whose only job waits for its retry time", time.Now(), `["gpu"]`)
		f.wantRoutes("QueuedRoutes after the retry time", now.Add(2*time.Hour), `["gpu"]`, linux)

		c, err = f.st.ClaimJob(f.ctx, "a", []string{`["gpu"]`, linux, `["gpu"]`}, time.Minute)
		noErr(t, "ClaimJob", err)
		if c.ID != j[1].ID {
			t.Fatalf("claimed %s, want %s", c.ID, j[1].ID)
		}

		// Once its retry time has passed, it is claimable, and it was queued first.
		f.queue(tr.Run.ID, now.Add(-3*time.Minute), ptr(now.Add(-time.Second)), j[0].ID)
		f.queue(tr.Run.ID, now.Add(-time.Second), nil, j[3].ID)
		c, err = f.st.ClaimJob(f.ctx, "a", []string{linux}, time.Minute)
		noErr(t, "ClaimJob after retry time", err)
		if c.ID != j[0].ID {
			t.Fatalf("claimed %s, want the retried job %s", c.ID, j[0].ID)
		}
		agentJobs, err := f.st.JobsOfAgent(f.ctx, "a")
		noErr(t, "JobsOfAgent", err)
		if len(agentJobs) != 2 {
			t.Fatalf("agent a has %d jobs, want 2", len(agentJobs))
		}
		_, err = f.st.ClaimJob(f.ctx, "", []string{linux}, time.Minute)
		wantErr(t, "no agent id", err, store.ErrInvalid)
		_, err = f.st.ClaimJob(f.ctx, "a", []string{linux}, 0)
		wantErr(t, "no lease duration", err, store.ErrInvalid)
	})

	t.Run("RouteBehindOthers", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 80, 0)
		now := time.Now().UTC()
		for i, j := range tr.Jobs[:79] {
			f.queue(tr.Run.ID, now.Add(time.Duration(i-100)*time.Second), nil, j.ID)
		}
		last := tr.Jobs[len(tr.Jobs)-1]
		f.queueOn(tr.Run.ID, `{"pool":"rare"}`, now, nil, last.ID)
		c, err := f.st.ClaimJob(f.ctx, "a", []string{`{"pool":"rare"}`}, time.Minute)
		noErr(t, "ClaimJob", err)
		if c.ID != last.ID {
			t.Fatalf("claimed %s, want %s, queued behind 79 others", c.ID, last.ID)
		}
	})

	t.Run("ConcurrentClaimsAreExclusive", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		const runs, perRun, workers = 4, 50, 8
		all := map[string]bool{}
		now := time.Now().UTC()
		routes := []string{"", linux}
		for i := range runs {
			tr := f.run(p.ID, perRun, 0)
			f.queueOn(tr.Run.ID, routes[i%2], now.Add(time.Duration(i)*time.Millisecond-time.Minute), nil)
			for _, j := range tr.Jobs {
				all[j.ID] = true
			}
		}
		var mu sync.Mutex
		claims := map[string]string{} // job → agent
		parallel(workers, func(w int) {
			agent := "agent-" + string(rune('a'+w))
			for {
				c, err := f.st.ClaimJob(f.ctx, agent, routes, time.Minute)
				if errors.Is(err, store.ErrNotFound) {
					return
				}
				if err != nil {
					t.Errorf("ClaimJob: %v", err)
					return
				}
				mu.Lock()
				if prev, dup := claims[c.ID]; dup {
					t.Errorf("job run %s claimed by %s and by %s", c.ID, prev, agent)
				}
				claims[c.ID] = agent
				mu.Unlock()
			}
		})
		if len(claims) != len(all) {
			t.Fatalf("%d of %d jobs claimed", len(claims), len(all))
		}
		for id := range all {
			if claims[id] == "" {
				t.Fatalf("job run %s never claimed", id)
			}
		}
		f.wantRoutes("everything claimed", time.Now())
	})
}

// wantRoutes fails unless QueuedRoutes(now) is want, in any order.
func (f *fx) wantRoutes(what string, now time.Time, want ...string) {
	f.t.Helper()
	got, err := f.st.QueuedRoutes(f.ctx, now)
	noErr(f.t, what+": QueuedRoutes", err)
	got = slices.Clone(got)
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	sameJSON(f.t, what+": QueuedRoutes", got, want)
}

func testRoutes(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("ExactValuesAndOrder", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		const poolA, poolB = `{"pool":"a"}`, `["pool=b"]`
		tr := f.run(p.ID, 9, 0)
		j := tr.Jobs
		now := time.Now().UTC()
		f.queueOn(tr.Run.ID, "", now.Add(-5*time.Minute), nil, j[0].ID)
		f.queueOn(tr.Run.ID, poolA, now.Add(-4*time.Minute), nil, j[1].ID)
		f.queueOn(tr.Run.ID, poolB, now.Add(-6*time.Minute), nil, j[2].ID)
		f.queueOn(tr.Run.ID, "", now.Add(-3*time.Minute), nil, j[3].ID)
		f.queueOn(tr.Run.ID, poolB, now.Add(-2*time.Minute), nil, j[4].ID)
		// Waiting for its retry time: not a route yet.
		f.queueOn(tr.Run.ID, `["later"]`, now.Add(-time.Hour), ptr(now.Add(time.Hour)), j[5].ID)
		// The same labels written differently are another value: routes are
		// the stored text, which the scheduler keeps canonical.
		f.queueOn(tr.Run.ID, `{"pool": "a"}`, now.Add(-time.Minute), nil, j[6].ID)
		// j[7] and j[8] stay pending, with RunsOn ["linux"]: not routes.
		f.wantRoutes("routes", time.Now(), "", poolA, poolB, `{"pool": "a"}`)

		c, err := f.st.ClaimJob(f.ctx, "a", []string{poolA}, time.Minute)
		noErr(t, "ClaimJob pool a", err)
		if c.ID != j[1].ID || string(c.RunsOn) != poolA {
			t.Fatalf("claimed %s (RunsOn %s), want %s, the only job of route %s", c.ID, c.RunsOn, j[1].ID, poolA)
		}
		_, err = f.st.ClaimJob(f.ctx, "a", []string{poolA}, time.Minute)
		wantErr(t, "route pool a is empty", err, store.ErrNotFound)
		_, err = f.st.ClaimJob(f.ctx, "a", []string{"x", `["later"]`, `{"pool":"b"}`}, time.Minute)
		wantErr(t, "routes nobody waits on (or not yet)", err, store.ErrNotFound)
		f.wantRoutes("after the claim", time.Now(), "", poolB, `{"pool": "a"}`)

		// Oldest first across the routes accepted, whatever their order.
		var got []string
		for range 4 {
			c, err := f.st.ClaimJob(f.ctx, "a", []string{poolB, ""}, time.Minute)
			noErr(t, "ClaimJob", err)
			got = append(got, c.ID)
			if c.ID == j[0].ID && c.RunsOn != nil {
				t.Fatalf("job without runsOn claimed with RunsOn %q", c.RunsOn)
			}
		}
		sameJSON(t, "claim order", got, []string{j[2].ID, j[0].ID, j[3].ID, j[4].ID})
		_, err = f.st.ClaimJob(f.ctx, "a", []string{poolB, ""}, time.Minute)
		wantErr(t, "routes drained", err, store.ErrNotFound)
		f.wantRoutes("drained", time.Now(), `{"pool": "a"}`)
		f.wantRoutes("in two hours", time.Now().Add(2*time.Hour), `["later"]`, `{"pool": "a"}`)
	})

	t.Run("SetQueuedReason", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 5, 0)
		j := tr.Jobs
		now := time.Now().UTC()
		f.queue(tr.Run.ID, now.Add(-3*time.Minute), nil, j[0].ID)
		f.queue(tr.Run.ID, now.Add(-2*time.Minute), ptr(now.Add(time.Hour)), j[1].ID) // queued, retrying later
		f.queueOn(tr.Run.ID, `["gpu"]`, now.Add(-time.Minute), nil, j[2].ID)
		f.queue(tr.Run.ID, now.Add(-time.Minute), nil, j[3].ID)
		// j[4] is pending with the same RunsOn: not queued, never touched.
		reasons := func() []string {
			var out []string
			for _, jr := range f.tree(tr.Run.ID).Jobs {
				out = append(out, jr.Reason)
			}
			return out
		}
		set := func(runsOn, reason string, want int) {
			t.Helper()
			n, err := f.st.SetQueuedReason(f.ctx, runsOn, reason)
			noErr(t, "SetQueuedReason", err)
			if n != want {
				t.Fatalf("SetQueuedReason(%s, %q) changed %d job runs, want %d", runsOn, reason, n, want)
			}
		}
		const none = "no agent has the labels linux"
		set(linux, none, 3)
		sameJSON(t, "reasons", reasons(), []string{none, none, "", none, ""})
		set(linux, none, 0) // idempotent
		set(`["nobody"]`, none, 0)
		set(`["gpu"]`, "gpu agents are busy", 1)
		sameJSON(t, "reasons", reasons(), []string{none, none, "gpu agents are busy", none, ""})

		// A claim clears the reason; the others keep theirs.
		c, err := f.st.ClaimJob(f.ctx, "a", []string{linux}, time.Minute)
		noErr(t, "ClaimJob", err)
		if c.ID != j[0].ID || c.Reason != "" {
			t.Fatalf("claimed %s with reason %q, want %s without reason", c.ID, c.Reason, j[0].ID)
		}
		sameJSON(t, "reasons after the claim", reasons(), []string{"", none, "gpu agents are busy", none, ""})
		// A running job is not queued: not touched.
		set(linux, "", 2)
		sameJSON(t, "reasons cleared", reasons(), []string{"", "", "gpu agents are busy", "", ""})
	})

	t.Run("RunningJobsByAgent", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		running := func() map[string][]string {
			t.Helper()
			m, err := f.st.RunningJobsByAgent(f.ctx)
			noErr(t, "RunningJobsByAgent", err)
			if m == nil {
				t.Fatal("RunningJobsByAgent returned a nil map")
			}
			return m
		}
		sameJSON(t, "nothing running", running(), map[string][]string{})
		tr := f.run(p.ID, 4, 0)
		f.queue(tr.Run.ID, time.Now().UTC().Add(-time.Minute), nil)
		var got []*store.JobRun
		for _, agent := range []string{"a", "b", "a", "a"} {
			c, err := f.st.ClaimJob(f.ctx, agent, []string{linux}, time.Minute)
			noErr(t, "ClaimJob", err)
			got = append(got, c)
		}
		sameJSON(t, "running", running(), map[string][]string{
			"a": {got[0].ID, got[2].ID, got[3].ID},
			"b": {got[1].ID},
		})
		// Released or finished job runs are not running.
		noErr(t, "ReleaseJob", f.st.ReleaseJob(f.ctx, got[2].ID, got[2].LeaseID))
		err := f.st.UpdateRunTx(f.ctx, tr.Run.ID, func(tx store.RunTx) error {
			cur, err := tx.Tree()
			if err != nil {
				return err
			}
			for _, j := range cur.Jobs {
				if j.ID == got[1].ID {
					j.Status, j.LeaseID, j.LeaseExpiresAt, j.EndedAt = "success", "", nil, ptr(time.Now().UTC())
					return tx.UpdateJob(j)
				}
			}
			return errors.New("job not found")
		})
		noErr(t, "finish a job", err)
		sameJSON(t, "running after release and finish", running(), map[string][]string{
			"a": {got[0].ID, got[3].ID},
		})
	})
}

func testLeases(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("ExtendAndFence", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 2, 2)
		f.queue(tr.Run.ID, time.Now().UTC().Add(-2*time.Minute), nil, tr.Jobs[0].ID)
		f.queue(tr.Run.ID, time.Now().UTC().Add(-time.Minute), nil, tr.Jobs[1].ID)
		c, err := f.st.ClaimJob(f.ctx, "a", []string{linux}, time.Minute)
		noErr(t, "ClaimJob", err)
		if c.ID != tr.Jobs[0].ID {
			t.Fatalf("claimed %s, want the oldest job %s", c.ID, tr.Jobs[0].ID)
		}

		before := time.Now()
		exp, err := f.st.ExtendLease(f.ctx, c.ID, c.LeaseID, time.Hour)
		noErr(t, "ExtendLease", err)
		if exp.Before(before.Add(time.Hour-time.Second)) || exp.After(time.Now().Add(time.Hour)) {
			t.Fatalf("extended to %v, want about an hour from now", exp)
		}
		_, err = f.st.ExtendLease(f.ctx, c.ID, "lease_wrong", time.Hour)
		wantErr(t, "ExtendLease with another lease", err, store.ErrLeaseLost)
		_, err = f.st.ExtendLease(f.ctx, "nope", c.LeaseID, time.Hour)
		wantErr(t, "ExtendLease of an unknown job", err, store.ErrLeaseLost)

		// A step report under the lease is stored.
		step := *tr.Steps[c.ID][1]
		step.Status, step.ExitCode, step.Error = "failed", ptr(2), "exit 2"
		step.StartedAt, step.EndedAt = ptr(at(1)), ptr(at(2))
		noErr(t, "UpdateStep", f.st.UpdateStep(f.ctx, c.LeaseID, &step))
		got := f.tree(tr.Run.ID).Steps[c.ID][1]
		sameJSON(t, "reported step", got, &step)
		wantErr(t, "UpdateStep with another lease",
			f.st.UpdateStep(f.ctx, "lease_wrong", &step), store.ErrLeaseLost)
		// The lease covers its own job's steps only.
		foreign := *tr.Steps[tr.Jobs[1].ID][0]
		foreign.Status = "running"
		wantErr(t, "UpdateStep of another job's step",
			f.st.UpdateStep(f.ctx, c.LeaseID, &foreign), store.ErrLeaseLost)
		wantErr(t, "UpdateStep of an unknown step",
			f.st.UpdateStep(f.ctx, c.LeaseID, &store.StepRun{ID: "nope"}), store.ErrNotFound)

		// The scheduler takes the job back (agent lost) and queues it again;
		// another agent claims it: the first agent's lease is fenced off.
		f.queueOn(tr.Run.ID, `["b"]`, time.Now().UTC().Add(-time.Second), nil, c.ID)
		c2, err := f.st.ClaimJob(f.ctx, "b", []string{`["b"]`}, time.Minute)
		noErr(t, "reclaim", err)
		if c2.ID != c.ID || c2.LeaseID == c.LeaseID || c2.AgentID != "b" {
			t.Fatalf("reclaimed job = %+v, want a new lease for b", c2)
		}
		_, err = f.st.ExtendLease(f.ctx, c.ID, c.LeaseID, time.Hour)
		wantErr(t, "ExtendLease after reassignment", err, store.ErrLeaseLost)
		wantErr(t, "UpdateStep after reassignment", f.st.UpdateStep(f.ctx, c.LeaseID, &step), store.ErrLeaseLost)
		_, err = f.st.ExtendLease(f.ctx, c2.ID, c2.LeaseID, time.Minute)
		noErr(t, "new lease", err)
		noErr(t, "UpdateStep with the new lease", f.st.UpdateStep(f.ctx, c2.LeaseID, &step))
	})

	t.Run("Expiry", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 2, 1)
		f.queue(tr.Run.ID, time.Now().UTC().Add(-2*time.Minute), nil, tr.Jobs[0].ID)
		f.queue(tr.Run.ID, time.Now().UTC().Add(-time.Minute), nil, tr.Jobs[1].ID)
		short, err := f.st.ClaimJob(f.ctx, "a", []string{linux}, 50*time.Millisecond)
		noErr(t, "ClaimJob", err)
		long, err := f.st.ClaimJob(f.ctx, "a", []string{linux}, time.Hour)
		noErr(t, "ClaimJob", err)
		if short.ID != tr.Jobs[0].ID || long.ID != tr.Jobs[1].ID {
			t.Fatalf("claimed %s then %s, want queue order", short.ID, long.ID)
		}

		exp, err := f.st.ExpiredLeases(f.ctx, time.Now())
		noErr(t, "ExpiredLeases", err)
		if len(exp) > 1 || (len(exp) == 1 && exp[0].ID != short.ID) {
			t.Fatalf("expired leases now = %+v, want at most the short one", exp)
		}
		exp, err = f.st.ExpiredLeases(f.ctx, short.LeaseExpiresAt.Add(-time.Microsecond))
		noErr(t, "ExpiredLeases", err)
		if len(exp) != 0 {
			t.Fatalf("leases expired before the short one ends: %+v", exp)
		}
		exp, err = f.st.ExpiredLeases(f.ctx, *short.LeaseExpiresAt)
		noErr(t, "ExpiredLeases", err)
		if len(exp) != 1 || exp[0].ID != short.ID || exp[0].LeaseID != short.LeaseID {
			t.Fatalf("expired at the short lease's end = %+v, want exactly it", exp)
		}
		exp, err = f.st.ExpiredLeases(f.ctx, time.Now().Add(2*time.Hour))
		noErr(t, "ExpiredLeases", err)
		if len(exp) != 2 || exp[0].ID != short.ID || exp[1].ID != long.ID {
			t.Fatalf("expired in two hours = %+v, want both, soonest first", exp)
		}

		// Let the short lease run out: renewals and reports are refused.
		waitUntil(*short.LeaseExpiresAt)
		_, err = f.st.ExtendLease(f.ctx, short.ID, short.LeaseID, time.Hour)
		wantErr(t, "ExtendLease after expiry", err, store.ErrLeaseLost)
		st := *tr.Steps[short.ID][0]
		st.Status = "running"
		wantErr(t, "UpdateStep after expiry", f.st.UpdateStep(f.ctx, short.LeaseID, &st), store.ErrLeaseLost)
		_, err = f.st.ExtendLease(f.ctx, long.ID, long.LeaseID, time.Hour)
		noErr(t, "the other lease", err)
		jobs, err := f.st.JobsOfAgent(f.ctx, "a")
		noErr(t, "JobsOfAgent", err)
		if len(jobs) != 2 {
			t.Fatalf("JobsOfAgent = %d jobs, want 2 (expired leases still count until reassigned)", len(jobs))
		}
		jobs, err = f.st.JobsOfAgent(f.ctx, "b")
		noErr(t, "JobsOfAgent", err)
		if len(jobs) != 0 {
			t.Fatalf("agent b has jobs: %+v", jobs)
		}
		_, err = f.st.ClaimJob(f.ctx, "b", []string{linux}, time.Minute)
		wantErr(t, "an expired lease is not claimable until requeued", err, store.ErrNotFound)
		f.wantRoutes("an expired lease is not a route", time.Now())
	})
}

func testRelease(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("BackInPlace", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 2, 1)
		now := time.Now().UTC()
		f.queue(tr.Run.ID, now.Add(-2*time.Minute), nil, tr.Jobs[0].ID)
		f.queue(tr.Run.ID, now.Add(-time.Minute), nil, tr.Jobs[1].ID)
		_, err := f.st.SetQueuedReason(f.ctx, linux, "waiting")
		noErr(t, "SetQueuedReason", err)
		before := f.tree(tr.Run.ID).Jobs[0]

		c, err := f.st.ClaimJob(f.ctx, "a", []string{linux}, time.Minute)
		noErr(t, "ClaimJob", err)
		if c.ID != before.ID {
			t.Fatalf("claimed %s, want %s", c.ID, before.ID)
		}
		wantErr(t, "ReleaseJob with another lease", f.st.ReleaseJob(f.ctx, c.ID, "lease_wrong"), store.ErrLeaseLost)
		wantErr(t, "ReleaseJob without a lease", f.st.ReleaseJob(f.ctx, c.ID, ""), store.ErrLeaseLost)
		wantErr(t, "ReleaseJob of an unknown job", f.st.ReleaseJob(f.ctx, "nope", c.LeaseID), store.ErrNotFound)
		wantErr(t, "ReleaseJob of a job not running",
			f.st.ReleaseJob(f.ctx, tr.Jobs[1].ID, c.LeaseID), store.ErrLeaseLost)
		noErr(t, "ReleaseJob", f.st.ReleaseJob(f.ctx, c.ID, c.LeaseID))

		// As before the claim, but for the reason the claim cleared.
		want := *before
		want.Reason = ""
		got := f.tree(tr.Run.ID).Jobs[0]
		sameJSON(t, "released job", got, &want)
		if got.Status != "queued" || got.AgentID != "" || got.LeaseID != "" || got.LeaseExpiresAt != nil ||
			got.StartedAt != nil || !got.QueuedAt.Equal(*before.QueuedAt) || got.Attempt != before.Attempt {
			t.Fatalf("released job = %+v", got)
		}
		wantErr(t, "ReleaseJob twice", f.st.ReleaseJob(f.ctx, c.ID, c.LeaseID), store.ErrLeaseLost)

		// The old lease is dead.
		_, err = f.st.ExtendLease(f.ctx, c.ID, c.LeaseID, time.Minute)
		wantErr(t, "ExtendLease after release", err, store.ErrLeaseLost)
		st := *tr.Steps[c.ID][0]
		st.Status = "running"
		wantErr(t, "UpdateStep after release", f.st.UpdateStep(f.ctx, c.LeaseID, &st), store.ErrLeaseLost)
		_, err = f.st.AppendStepLogs(f.ctx, c.LeaseID, st.ID, tenBytes(1, 1), 0)
		wantErr(t, "AppendStepLogs after release", err, store.ErrLeaseLost)

		// It kept its place: it is claimed again before the younger job.
		f.wantRoutes("after release", time.Now(), linux)
		c2, err := f.st.ClaimJob(f.ctx, "b", []string{linux}, time.Minute)
		noErr(t, "ClaimJob after release", err)
		if c2.ID != c.ID || c2.AgentID != "b" || c2.LeaseID == c.LeaseID {
			t.Fatalf("claimed again %+v, want %s for b with a new lease", c2, c.ID)
		}
		wantErr(t, "ReleaseJob with the old lease after a new claim",
			f.st.ReleaseJob(f.ctx, c.ID, c.LeaseID), store.ErrLeaseLost)
		noErr(t, "UpdateStep with the new lease", f.st.UpdateStep(f.ctx, c2.LeaseID, &st))
	})
}

// waitUntil returns once the wall clock is past t. It sleeps for the
// remaining time (bounded by the short leases the suite uses), polling
// rather than guessing a fixed delay.
func waitUntil(t time.Time) {
	for !time.Now().After(t) {
		time.Sleep(time.Until(t) + time.Millisecond)
	}
}
