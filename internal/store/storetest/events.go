package storetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
)

// shape is "type status<-previous" for each event, e.g. "job.status
// running<-queued", for comparing event streams.
func shape(t *testing.T, es []*store.RunEvent) []string {
	t.Helper()
	out := make([]string, len(es))
	for i, e := range es {
		var sc store.StatusChange
		if strings.HasSuffix(e.Type, ".status") {
			if err := json.Unmarshal(e.Data, &sc); err != nil {
				t.Fatalf("event %d (%s): data %s: %v", e.Seq, e.Type, e.Data, err)
			}
			out[i] = fmt.Sprintf("%s %s<-%s", e.Type, sc.Status, sc.Previous)
		} else {
			out[i] = e.Type
		}
	}
	return out
}

func (f *fx) events(runID string, after int64) []*store.RunEvent {
	f.t.Helper()
	es, err := f.st.ListRunEvents(f.ctx, runID, after, 0)
	noErr(f.t, "ListRunEvents", err)
	for i, e := range es {
		if e.Seq != after+int64(i)+1 || e.RunID != runID {
			f.t.Fatalf("event %d: seq %d of run %s, want seq %d of %s", i, e.Seq, e.RunID, after+int64(i)+1, runID)
		}
	}
	return es
}

func sameList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func testEvents(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("StatusChanges", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 1, 2)
		run, job := tr.Run, tr.Jobs[0]
		sameList(t, "after CreateRun", shape(t, f.events(run.ID, 0)), []string{"run.status pending<-"})

		f.queueOn(run.ID, "", time.Now().UTC().Add(-time.Second), nil)
		c, err := f.st.ClaimJob(f.ctx, "agent-1", []string{""}, time.Minute)
		noErr(t, "ClaimJob", err)
		// A claim is provisional: no event until the agent acknowledges it.
		sameList(t, "after the claim", shape(t, f.events(run.ID, 1)), []string{"job.status queued<-pending"})
		_, err = f.st.ExtendLease(f.ctx, c.ID, c.LeaseID, time.Minute)
		noErr(t, "ExtendLease", err)
		_, err = f.st.ExtendLease(f.ctx, c.ID, c.LeaseID, time.Minute)
		noErr(t, "ExtendLease again", err)

		step := *tr.Steps[job.ID][0]
		step.Status, step.StartedAt = "running", ptr(at(1))
		noErr(t, "UpdateStep running", f.st.UpdateStep(f.ctx, c.LeaseID, &step))
		step.Status, step.ExitCode, step.EndedAt = "success", ptr(0), ptr(at(2))
		noErr(t, "UpdateStep success", f.st.UpdateStep(f.ctx, c.LeaseID, &step))
		noErr(t, "UpdateStep success again", f.st.UpdateStep(f.ctx, c.LeaseID, &step))
		wantErr(t, "UpdateStep under a wrong lease", f.st.UpdateStep(f.ctx, "lease_wrong",
			&store.StepRun{ID: tr.Steps[job.ID][1].ID, Status: "running"}), store.ErrLeaseLost)

		noErr(t, "finish", f.st.UpdateRunTx(f.ctx, run.ID, func(tx store.RunTx) error {
			tr, err := tx.Tree()
			if err != nil {
				return err
			}
			j := tr.Jobs[0]
			j.Status, j.EndedAt, j.Reason = "failed", ptr(at(3)), "step 2 failed"
			if err := tx.UpdateJob(j); err != nil {
				return err
			}
			s2 := tr.Steps[j.ID][1]
			s2.Status = "skipped"
			if err := tx.UpdateStep(s2); err != nil {
				return err
			}
			tr.Run.Status, tr.Run.EndedAt, tr.Run.Reason = "failed", ptr(at(3)), "job failed"
			if err := tx.UpdateRun(tr.Run); err != nil {
				return err
			}
			// Writing the same again records nothing.
			if err := tx.UpdateRun(tr.Run); err != nil {
				return err
			}
			_, err = tx.AddEvent("approval.requested", json.RawMessage(`{"approvalId":"ap_1"}`))
			return err
		}))
		es := f.events(run.ID, 0)
		sameList(t, "the run's events", shape(t, es), []string{
			"run.status pending<-",
			"job.status queued<-pending",
			"job.status running<-queued",
			"step.status queued<-pending", // the claim acknowledged: the steps wait for their turn
			"step.status queued<-pending",
			"step.status running<-queued",
			"step.status success<-running",
			"job.status failed<-running",
			"step.status skipped<-queued",
			"run.status failed<-pending",
			"approval.requested",
		})
		var sc store.StatusChange
		noErr(t, "decode", json.Unmarshal(es[2].Data, &sc))
		if sc.JobRunID != job.ID || sc.Key != job.Key || sc.AgentID != "agent-1" || sc.Attempt != 1 ||
			sc.RunID != run.ID || sc.PipelineID != p.ID || sc.RunNumber != run.Number {
			t.Fatalf("job running event: %+v", sc)
		}
		noErr(t, "decode", json.Unmarshal(es[6].Data, &sc))
		if sc.StepRunID != step.ID || sc.ExitCode == nil || *sc.ExitCode != 0 || sc.Name != step.Name || sc.JobRunID != job.ID {
			t.Fatalf("step success event: %+v", sc)
		}
		noErr(t, "decode", json.Unmarshal(es[9].Data, &sc))
		if sc.Reason != "job failed" || sc.SystemError || sc.EndedAt == nil {
			t.Fatalf("run failed event: %+v (a job had started: not a system error)", sc)
		}
		if es[0].ProjectID != "proj" || es[0].PipelineID != p.ID {
			t.Fatalf("event of project %q pipeline %q", es[0].ProjectID, es[0].PipelineID)
		}
		// Resuming after a seq.
		sameList(t, "after seq 9", shape(t, f.events(run.ID, 9)), []string{"run.status failed<-pending", "approval.requested"})
		_, err = f.st.ListRunEvents(f.ctx, "run_nope", 0, 0)
		wantErr(t, "events of an unknown run", err, store.ErrNotFound)

		// The global feed, in id order, and its end.
		all, err := f.st.ListEventsAfter(f.ctx, 0, 0)
		noErr(t, "ListEventsAfter", err)
		if len(all) != len(es) || all[0].ID != es[0].ID {
			t.Fatalf("global feed has %d events, want %d", len(all), len(es))
		}
		last, err := f.st.LastEventID(f.ctx)
		noErr(t, "LastEventID", err)
		if last != es[len(es)-1].ID {
			t.Fatalf("LastEventID %d, want %d", last, es[len(es)-1].ID)
		}
		rest, err := f.st.ListEventsAfter(f.ctx, es[5].ID, 2)
		noErr(t, "ListEventsAfter", err)
		if len(rest) != 2 || rest[0].ID != es[6].ID {
			t.Fatalf("after event 6, limit 2: %d events", len(rest))
		}
		st, err := f.st.GetStepRun(f.ctx, step.ID)
		noErr(t, "GetStepRun", err)
		if st.Status != "success" {
			t.Fatalf("GetStepRun: status %s", st.Status)
		}
		_, err = f.st.GetStepRun(f.ctx, "sr_nope")
		wantErr(t, "GetStepRun of an unknown step", err, store.ErrNotFound)
		proj, err := f.st.ProjectOfStepRun(f.ctx, step.ID)
		noErr(t, "ProjectOfStepRun", err)
		if proj != p.ProjectID {
			t.Fatalf("ProjectOfStepRun = %q, want %q", proj, p.ProjectID)
		}
		_, err = f.st.ProjectOfStepRun(f.ctx, "sr_nope")
		wantErr(t, "ProjectOfStepRun of an unknown step", err, store.ErrNotFound)
	})

	t.Run("StepsQueuedWhenTheClaimIsAcknowledged", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 1, 3)
		run, job := tr.Run, tr.Jobs[0]
		steps := func() []string {
			t.Helper()
			var out []string
			for _, st := range f.tree(run.ID).Steps[job.ID] {
				out = append(out, string(st.Status))
			}
			return out
		}
		pending := []string{"pending", "pending", "pending"}
		f.queueOn(run.ID, "", time.Now().UTC().Add(-time.Second), nil)
		sameList(t, "steps of a queued job", steps(), pending)

		// A claim is provisional until the agent acknowledges it: its steps
		// stay pending, and a claim handed back leaves nothing to undo.
		c, err := f.st.ClaimJob(f.ctx, "agent-1", []string{""}, time.Minute)
		noErr(t, "ClaimJob", err)
		sameList(t, "steps of a provisional claim", steps(), pending)
		noErr(t, "ReleaseJob", f.st.ReleaseJob(f.ctx, c.ID, c.LeaseID))
		sameList(t, "steps of a claim handed back", steps(), pending)

		c, err = f.st.ClaimJob(f.ctx, "agent-1", []string{""}, time.Minute)
		noErr(t, "ClaimJob again", err)
		_, err = f.st.ExtendLease(f.ctx, c.ID, c.LeaseID, time.Minute)
		noErr(t, "ExtendLease (acknowledgement)", err)
		sameList(t, "steps of an acknowledged claim", steps(), []string{"queued", "queued", "queued"})
		_, err = f.st.ExtendLease(f.ctx, c.ID, c.LeaseID, time.Minute)
		noErr(t, "ExtendLease again", err)
		es := f.events(run.ID, 0)
		sameList(t, "events", shape(t, es), []string{
			"run.status pending<-",
			"job.status queued<-pending",
			"job.status running<-queued",
			"step.status queued<-pending",
			"step.status queued<-pending",
			"step.status queued<-pending",
		})
		for i, e := range es[3:] {
			var sc store.StatusChange
			noErr(t, "decode", json.Unmarshal(e.Data, &sc))
			st := tr.Steps[job.ID][i]
			if sc.StepRunID != st.ID || sc.StepIndex != i || sc.JobRunID != job.ID || sc.Name != st.Name {
				t.Fatalf("step event %d: %+v, want step %s (index %d) of job %s", i, sc, st.ID, i, job.ID)
			}
		}

		// The first step starts; the others are still queued.
		st := *f.tree(run.ID).Steps[job.ID][0]
		st.Status, st.StartedAt = "running", ptr(at(1))
		noErr(t, "UpdateStep running", f.st.UpdateStep(f.ctx, c.LeaseID, &st))
		sameList(t, "steps once the first started", steps(), []string{"running", "queued", "queued"})
		sameList(t, "the start's event", shape(t, f.events(run.ID, 6)), []string{"step.status running<-queued"})
	})

	t.Run("RunEndListsFailedJobs", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 4+store.MaxFailedJobs, 0)
		run := tr.Run
		ended := func(status string, endedAt *time.Time) {
			t.Helper()
			noErr(t, "UpdateRunTx", f.st.UpdateRunTx(f.ctx, run.ID, func(tx store.RunTx) error {
				tr, err := tx.Tree()
				if err != nil {
					return err
				}
				for i, j := range tr.Jobs {
					switch {
					case i == 0:
						j.Status = "success"
					case i == 1:
						j.Status, j.Reason = "failed", "step s failed with exit code 3"
					case i == 2:
						j.Status, j.Reason, j.AllowedFailure = "failed", "step lint failed with exit code 1", true
					case i == 3:
						j.Status, j.Reason = "cancelled", "run cancelled"
					default:
						j.Status, j.Reason = "failed", fmt.Sprintf("exit %d", i)
					}
					if err := tx.UpdateJob(j); err != nil {
						return err
					}
				}
				tr.Run.Status, tr.Run.EndedAt, tr.Run.Reason = runnel.RunStatus(status), endedAt, "job job 1 failed"
				return tx.UpdateRun(tr.Run)
			}))
		}
		// Stopped while jobs still ran: the status is final, the end comes
		// later and only the end lists the failed jobs.
		ended("cancelled", nil)
		es := f.events(run.ID, 0)
		var sc store.StatusChange
		noErr(t, "decode", json.Unmarshal(es[len(es)-1].Data, &sc))
		if sc.Status != "cancelled" || sc.EndedAt != nil || sc.FailedJobs != nil || sc.FailedJobCount != 0 {
			t.Fatalf("stop event: %+v, want no failed jobs before the end", sc)
		}
		ended("failed", ptr(at(9)))
		es = f.events(run.ID, 0)
		sc = store.StatusChange{}
		noErr(t, "decode", json.Unmarshal(es[len(es)-1].Data, &sc))
		if sc.Status != "failed" || sc.EndedAt == nil {
			t.Fatalf("end event: %+v", sc)
		}
		if sc.FailedJobCount != 2+store.MaxFailedJobs || len(sc.FailedJobs) != store.MaxFailedJobs {
			t.Fatalf("end event lists %d failed jobs of %d, want %d of %d", len(sc.FailedJobs), sc.FailedJobCount,
				store.MaxFailedJobs, 2+store.MaxFailedJobs)
		}
		j1, j2 := tr.Jobs[1], tr.Jobs[2]
		sameJSON(t, "the first failed jobs, in plan order", sc.FailedJobs[:3], []store.FailedJob{
			{JobRunID: j1.ID, Key: j1.Key, Name: j1.Name, Reason: "step s failed with exit code 3"},
			{JobRunID: j2.ID, Key: j2.Key, Name: j2.Name, Reason: "step lint failed with exit code 1", AllowedFailure: true},
			{JobRunID: tr.Jobs[4].ID, Key: tr.Jobs[4].Key, Name: tr.Jobs[4].Name, Reason: "exit 4"},
		})
	})

	t.Run("FailedAtCreation", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		nr := newRun(p.ID, 0, 0)
		nr.Run.Status, nr.Run.Reason, nr.Run.EndedAt = "failed", "ci.yaml: no such file", ptr(at(1))
		_, _, err := f.st.CreateRun(f.ctx, nr)
		noErr(t, "CreateRun", err)
		es := f.events(nr.Run.ID, 0)
		sameList(t, "events", shape(t, es), []string{"run.status pending<-", "run.status failed<-pending"})
		var sc store.StatusChange
		noErr(t, "decode", json.Unmarshal(es[1].Data, &sc))
		if !sc.SystemError || sc.Reason != "ci.yaml: no such file" {
			t.Fatalf("failed at creation: %+v", sc)
		}
	})

	t.Run("ConcurrentAcknowledgement", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 1, 1)
		f.queueOn(tr.Run.ID, "", time.Now().UTC().Add(-time.Second), nil)
		c, err := f.st.ClaimJob(f.ctx, "a", []string{""}, time.Minute)
		noErr(t, "ClaimJob", err)
		errs := make([]error, 8)
		parallel(len(errs), func(i int) { _, errs[i] = f.st.ExtendLease(f.ctx, c.ID, c.LeaseID, time.Minute) })
		for i, err := range errs {
			noErr(t, fmt.Sprintf("ExtendLease %d", i), err)
		}
		sameList(t, "events", shape(t, f.events(tr.Run.ID, 0)), []string{
			"run.status pending<-", "job.status queued<-pending", "job.status running<-queued", "step.status queued<-pending"})
	})

	t.Run("DeliveriesDone", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		p.EventSinks = []string{"http://sink-a.example/events"}
		noErr(t, "UpdatePipeline", f.st.UpdatePipeline(f.ctx, p))
		var runs []string
		for range 70 { // more than one statement's worth
			runs = append(runs, f.run(p.ID, 1, 1).Run.ID)
		}
		extra := f.run(p.ID, 1, 1).Run.ID
		ds, err := f.st.ClaimDeliveries(f.ctx, time.Now().UTC(), time.Minute, 1000)
		noErr(t, "ClaimDeliveries", err)
		var ids []int64
		for _, d := range ds {
			if d.Event.RunID != extra {
				ids = append(ids, d.ID)
			}
		}
		if len(ids) != len(runs) {
			t.Fatalf("claimed %d deliveries of the %d runs, want one each", len(ids), len(runs))
		}
		noErr(t, "DeliveriesDone", f.st.DeliveriesDone(f.ctx, append(ids, ids[0], 1<<40)))
		n, err := f.st.PendingDeliveries(f.ctx)
		noErr(t, "PendingDeliveries", err)
		if n != 1 {
			t.Fatalf("%d deliveries pending after DeliveriesDone, want the other run's 1", n)
		}
		noErr(t, "DeliveriesDone of none", f.st.DeliveriesDone(f.ctx, nil))
	})

	t.Run("Outbox", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		p.EventSinks = []string{"http://sink-a.example/events", "http://sink-b.example/events"}
		noErr(t, "UpdatePipeline", f.st.UpdatePipeline(f.ctx, p))
		got, err := f.st.GetPipeline(f.ctx, p.ID)
		noErr(t, "GetPipeline", err)
		sameJSON(t, "event sinks", got.EventSinks, p.EventSinks)
		r1 := f.run(p.ID, 1, 1)
		r2 := f.run(p.ID, 1, 1)
		f.setRunStatus(r1.Run.ID, "running")
		f.setRunStatus(r1.Run.ID, "success")
		// Run 1: pending, running, success for each sink, and its end for the
		// notifier; run 2: pending for each sink.
		n, err := f.st.PendingDeliveries(f.ctx)
		noErr(t, "PendingDeliveries", err)
		if n != 3*2+1+2 {
			t.Fatalf("%d deliveries pending, want 9", n)
		}
		now := time.Now().UTC()
		claim := func(what string, at time.Time) []string {
			t.Helper()
			ds, err := f.st.ClaimDeliveries(f.ctx, at, time.Minute, 100)
			noErr(t, what, err)
			var out []string
			for _, d := range ds {
				var sc store.StatusChange
				noErr(t, what, json.Unmarshal(d.Event.Data, &sc))
				run := "r1"
				if d.Event.RunID == r2.Run.ID {
					run = "r2"
				}
				out = append(out, fmt.Sprintf("%s %s %s", strings.TrimPrefix(strings.TrimSuffix(d.Sink, ".example/events"), "http://"), run, sc.Status))
			}
			return out
		}
		heads := claim("claim", now)
		sameList(t, "first claim: each (sink, run)'s oldest", sortStrings(heads), []string{
			"runnel:notify r1 success", "sink-a r1 pending", "sink-a r2 pending", "sink-b r1 pending", "sink-b r2 pending"})
		// Leased: nothing more until the lease ends or they are settled.
		sameList(t, "claim while leased", claim("claim", now), nil)
		ds, err := f.st.ClaimDeliveries(f.ctx, now.Add(2*time.Minute), time.Minute, 100)
		noErr(t, "claim after the lease", err)
		if len(ds) != 5 {
			t.Fatalf("after the lease ended, %d claimed, want the same 5 again", len(ds))
		}
		for _, d := range ds {
			switch {
			case d.Sink == "http://sink-a.example/events" && d.Event.RunID == r1.Run.ID:
				noErr(t, "DeliveryFailed", f.st.DeliveryFailed(f.ctx, d.ID, now.Add(time.Hour), "sink-a is down"))
			default:
				noErr(t, "DeliveryDone", f.st.DeliveryDone(f.ctx, d.ID))
			}
		}
		for _, d := range ds {
			if d.Sink == store.NotifySink {
				noErr(t, "DeliveryDone twice", f.st.DeliveryDone(f.ctx, d.ID))
			}
		}
		// sink-a's queue for run 1 waits for its failed head; sink-b goes on.
		sameList(t, "next claim", claim("claim", now.Add(3*time.Minute)), []string{"sink-b r1 running"})
		later, err := f.st.ClaimDeliveries(f.ctx, now.Add(2*time.Hour), time.Minute, 100)
		noErr(t, "claim when the retry is due", err)
		var retried *store.Delivery
		for _, d := range later {
			if d.Sink == "http://sink-a.example/events" {
				retried = d
			}
		}
		if retried == nil || retried.Attempts != 1 || retried.LastError != "sink-a is down" {
			t.Fatalf("the failed delivery is not due again with its attempt counted: %+v", retried)
		}

		// Deleting the pipeline drops its events and their deliveries.
		f.setRunStatus(r2.Run.ID, "cancelled")
		noErr(t, "DeletePipeline", f.st.DeletePipeline(f.ctx, p.ID))
		n, err = f.st.PendingDeliveries(f.ctx)
		noErr(t, "PendingDeliveries", err)
		if n != 0 {
			t.Fatalf("%d deliveries left after the pipeline was deleted", n)
		}
	})
}

func sortStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func testApprovals(t *testing.T, open func(t *testing.T) store.Store) {
	f := newFx(t, open)
	p := f.pipeline("proj", "p")
	tr := f.run(p.ID, 1, 1)
	list, err := f.st.ListApprovals(f.ctx, tr.Run.ID)
	noErr(t, "ListApprovals", err)
	if len(list) != 0 {
		t.Fatalf("a new run has %d gates", len(list))
	}
	_, err = f.st.ListApprovals(f.ctx, "run_nope")
	wantErr(t, "gates of an unknown run", err, store.ErrNotFound)
	timeout := at(60)
	a := &store.Approval{ID: newID("apr"), Scope: "job", Target: "build/job0", Message: "ship?",
		Approvers: []string{"alice", "role:admin"}, Status: "pending", RequestedAt: at(0), TimeoutAt: &timeout}
	noErr(t, "PutApproval", f.st.UpdateRunTx(f.ctx, tr.Run.ID, func(tx store.RunTx) error { return tx.PutApproval(a) }))
	dup := *a
	dup.ID = newID("apr")
	wantErr(t, "a second gate of the same job", f.st.UpdateRunTx(f.ctx, tr.Run.ID, func(tx store.RunTx) error { return tx.PutApproval(&dup) }),
		store.ErrConflict)
	got, err := f.st.GetApproval(f.ctx, a.ID)
	noErr(t, "GetApproval", err)
	sameJSON(t, "stored gate", got, a)
	a.Status, a.DecidedBy, a.DecidedAt, a.Comment = "rejected", "alice", ptr(at(5)), "not today"
	noErr(t, "decide", f.st.UpdateRunTx(f.ctx, tr.Run.ID, func(tx store.RunTx) error {
		list, err := tx.Approvals()
		if err != nil || len(list) != 1 {
			return fmt.Errorf("in the transaction: %d gates, %v", len(list), err)
		}
		return tx.PutApproval(a)
	}))
	list, err = f.st.ListApprovals(f.ctx, tr.Run.ID)
	noErr(t, "ListApprovals", err)
	if len(list) != 1 {
		t.Fatalf("%d gates", len(list))
	}
	sameJSON(t, "decided gate", list[0], a)
	_, err = f.st.GetApproval(f.ctx, "apr_nope")
	wantErr(t, "an unknown gate", err, store.ErrNotFound)
}
