package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

func testQueue(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("OrderMatchAndRetry", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		_, err := f.st.ClaimJob(f.ctx, "agent", nil, time.Minute)
		wantErr(t, "empty queue", err, store.ErrNotFound)

		tr := f.run(p.ID, 4, 1)
		j := tr.Jobs
		now := time.Now().UTC()
		f.queue(tr.Run.ID, now.Add(-time.Minute), nil, j[2].ID)
		f.queue(tr.Run.ID, now.Add(-2*time.Minute), nil, j[1].ID)
		f.queue(tr.Run.ID, now.Add(-3*time.Minute), ptr(now.Add(time.Hour)), j[0].ID) // oldest, but retries later
		// j[3] stays pending: not claimable.

		// match sees the whole job run and can refuse it.
		var offered []string
		c, err := f.st.ClaimJob(f.ctx, "gpu-agent", func(jr *store.JobRun) bool {
			offered = append(offered, jr.ID)
			return jr.ID == j[2].ID && string(jr.Request) != "" && string(jr.RunsOn) == `["linux"]`
		}, time.Minute)
		noErr(t, "ClaimJob with match", err)
		if c.ID != j[2].ID {
			t.Fatalf("claimed %s, want the job match accepts %s", c.ID, j[2].ID)
		}
		if len(offered) < 2 || offered[0] != j[1].ID {
			t.Fatalf("offered %v: want the oldest claimable job (%s) first", offered, j[1].ID)
		}
		if c.Status != "running" || c.AgentID != "gpu-agent" || c.LeaseID == "" || c.StartedAt == nil ||
			c.LeaseExpiresAt == nil || c.LeaseExpiresAt.Sub(*c.StartedAt) != time.Minute {
			t.Fatalf("claimed job = %+v, want running, leased to gpu-agent for a minute", c)
		}
		utc(t, "claimed job", c.StartedAt, c.LeaseExpiresAt, c.QueuedAt)
		stored := f.tree(tr.Run.ID).Jobs[2]
		sameJSON(t, "stored claim", stored, c)

		_, err = f.st.ClaimJob(f.ctx, "a", func(*store.JobRun) bool { return false }, time.Minute)
		wantErr(t, "nothing matches", err, store.ErrNotFound)
		c, err = f.st.ClaimJob(f.ctx, "a", nil, time.Minute)
		noErr(t, "ClaimJob", err)
		if c.ID != j[1].ID {
			t.Fatalf("claimed %s, want %s", c.ID, j[1].ID)
		}
		_, err = f.st.ClaimJob(f.ctx, "a", nil, time.Minute)
		wantErr(t, "only a job waiting for its retry time is left", err, store.ErrNotFound)

		// Once its retry time has passed, it is claimable, and it was queued first.
		f.queue(tr.Run.ID, now.Add(-3*time.Minute), ptr(now.Add(-time.Second)), j[0].ID)
		f.queue(tr.Run.ID, now.Add(-time.Second), nil, j[3].ID)
		c, err = f.st.ClaimJob(f.ctx, "a", nil, time.Minute)
		noErr(t, "ClaimJob after retry time", err)
		if c.ID != j[0].ID {
			t.Fatalf("claimed %s, want the retried job %s", c.ID, j[0].ID)
		}
		agentJobs, err := f.st.JobsOfAgent(f.ctx, "a")
		noErr(t, "JobsOfAgent", err)
		if len(agentJobs) != 2 {
			t.Fatalf("agent a has %d jobs, want 2", len(agentJobs))
		}
		_, err = f.st.ClaimJob(f.ctx, "", nil, time.Minute)
		wantErr(t, "no agent id", err, store.ErrInvalid)
	})

	t.Run("MatchBeyondFirstBatch", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 80, 0)
		now := time.Now().UTC()
		for i, j := range tr.Jobs {
			f.queue(tr.Run.ID, now.Add(time.Duration(i-100)*time.Second), nil, j.ID)
		}
		last := tr.Jobs[len(tr.Jobs)-1]
		c, err := f.st.ClaimJob(f.ctx, "a", func(j *store.JobRun) bool { return j.ID == last.ID }, time.Minute)
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
		for i := range runs {
			tr := f.run(p.ID, perRun, 0)
			f.queue(tr.Run.ID, now.Add(time.Duration(i)*time.Millisecond-time.Minute), nil)
			for _, j := range tr.Jobs {
				all[j.ID] = true
			}
		}
		var mu sync.Mutex
		claims := map[string]string{} // job → agent
		parallel(workers, func(w int) {
			agent := "agent-" + string(rune('a'+w))
			for {
				c, err := f.st.ClaimJob(f.ctx, agent, nil, time.Minute)
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
	})
}

func testLeases(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("ExtendAndFence", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 2, 2)
		f.queue(tr.Run.ID, time.Now().UTC().Add(-time.Minute), nil)
		c, err := f.st.ClaimJob(f.ctx, "a", func(j *store.JobRun) bool { return j.Index == 0 }, time.Minute)
		noErr(t, "ClaimJob", err)

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
		f.queue(tr.Run.ID, time.Now().UTC().Add(-time.Second), nil, c.ID)
		c2, err := f.st.ClaimJob(f.ctx, "b", func(j *store.JobRun) bool { return j.ID == c.ID }, time.Minute)
		noErr(t, "reclaim", err)
		if c2.LeaseID == c.LeaseID || c2.AgentID != "b" {
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
		f.queue(tr.Run.ID, time.Now().UTC().Add(-time.Minute), nil)
		short, err := f.st.ClaimJob(f.ctx, "a", func(j *store.JobRun) bool { return j.Index == 0 }, 50*time.Millisecond)
		noErr(t, "ClaimJob", err)
		long, err := f.st.ClaimJob(f.ctx, "a", nil, time.Hour)
		noErr(t, "ClaimJob", err)

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
		_, err = f.st.ClaimJob(f.ctx, "b", nil, time.Minute)
		wantErr(t, "an expired lease is not claimable until requeued", err, store.ErrNotFound)
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
