package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
)

func testRuns(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Definition", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		p.CredentialID = "cred_x"
		noErr(t, "UpdatePipeline", f.st.UpdatePipeline(f.ctx, p))
		gotP, err := f.st.GetPipeline(f.ctx, p.ID)
		noErr(t, "GetPipeline", err)
		if gotP.CredentialID != "cred_x" {
			t.Fatalf("pipeline credential = %q, want cred_x", gotP.CredentialID)
		}
		nr := newRun(p.ID, 1, 1)
		nr.Run.SpecVersion = 0
		def := &store.RunDefinition{Source: "git", File: ".runnel/pipeline.yaml", CommitSHA: "0123abcd",
			Content: []byte("version: v1\njobs: {a: {steps: [{run: 'echo é'}]}}\n")}
		nr.Definition = def
		run, _, err := f.st.CreateRun(f.ctx, nr)
		noErr(t, "CreateRun", err)
		got, err := f.st.GetRunDefinition(f.ctx, run.ID)
		noErr(t, "GetRunDefinition", err)
		def.RunID = run.ID
		sameJSON(t, "definition", got, def)
		// A run planned from a stored version has none.
		other, _, err := f.st.CreateRun(f.ctx, newRun(p.ID, 1, 1))
		noErr(t, "CreateRun", err)
		_, err = f.st.GetRunDefinition(f.ctx, other.ID)
		wantErr(t, "GetRunDefinition of a stored-version run", err, store.ErrNotFound)
	})
	t.Run("CreateAndTree", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		nr := newRun(p.ID, 3, 2)
		// Plan order is Index, whatever the order given.
		nr.Jobs[0], nr.Jobs[2] = nr.Jobs[2], nr.Jobs[0]
		j := nr.Jobs[1]
		j.Outputs = map[string]string{"version": "1.2"}
		j.Request = json.RawMessage(`{"image":"golang"}`)
		j.AllowedFailure = true
		j.RetryAt = ptr(at(5))
		steps := nr.Steps[j.ID]
		steps[0], steps[1] = steps[1], steps[0]
		steps[0].ExitCode = ptr(3)
		steps[0].StartedAt = ptr(at(2))

		run, replayed, err := f.st.CreateRun(f.ctx, nr)
		noErr(t, "CreateRun", err)
		if replayed || run.Number != 1 || run.ID != nr.Run.ID {
			t.Fatalf("CreateRun = %+v replayed=%v, want number 1", run, replayed)
		}
		got, err := f.st.GetRun(f.ctx, run.ID)
		noErr(t, "GetRun", err)
		sameJSON(t, "GetRun", got, run)
		want := *nr.Run
		want.Number = 1
		sameJSON(t, "stored run", got, &want)
		utc(t, "run", &got.CreatedAt)

		tr := f.tree(run.ID)
		sameJSON(t, "tree run", tr.Run, run)
		if len(tr.Jobs) != 3 {
			t.Fatalf("tree has %d jobs, want 3", len(tr.Jobs))
		}
		for i, jr := range tr.Jobs {
			if jr.Index != i {
				t.Fatalf("job %d has Index %d: jobs not in plan order", i, jr.Index)
			}
			if len(tr.Steps[jr.ID]) != 2 || tr.Steps[jr.ID][0].Index != 0 || tr.Steps[jr.ID][1].Index != 1 {
				t.Fatalf("steps of job %d not in order: %+v", i, tr.Steps[jr.ID])
			}
		}
		sameJSON(t, "job with every field", tr.Jobs[1], j)
		for _, st := range tr.Steps[j.ID] {
			var w *store.StepRun
			for _, s := range steps {
				if s.ID == st.ID {
					w = s
				}
			}
			sameJSON(t, "step", st, w)
		}

		_, err = f.st.GetRun(f.ctx, "nope")
		wantErr(t, "GetRun unknown", err, store.ErrNotFound)
		_, err = f.st.GetRunTree(f.ctx, "nope")
		wantErr(t, "GetRunTree unknown", err, store.ErrNotFound)

		// The timeline starts with "triggered"; the pipeline shows the run.
		tl, err := f.st.Timeline(f.ctx, run.ID)
		noErr(t, "Timeline", err)
		if len(tl) != 1 || tl[0].Action != "triggered" || tl[0].Operator != "bob" || !tl[0].Time.Equal(t0) {
			t.Fatalf("timeline = %+v, want one triggered entry by bob", tl)
		}
		_, err = f.st.Timeline(f.ctx, "nope")
		wantErr(t, "Timeline unknown", err, store.ErrNotFound)
		pl, err := f.st.GetPipeline(f.ctx, p.ID)
		noErr(t, "GetPipeline", err)
		if pl.LastExecutionID != run.ID || pl.LastRunState != "pending" {
			t.Fatalf("pipeline status = %q %q, want the new run pending", pl.LastExecutionID, pl.LastRunState)
		}
	})

	t.Run("NumbersReplayAndErrors", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		q := f.pipeline("proj", "q")
		for i := 1; i <= 3; i++ {
			nr := newRun(p.ID, 1, 1)
			nr.Run.RequestID = fmt.Sprintf("req-%d", i)
			r, replayed, err := f.st.CreateRun(f.ctx, nr)
			noErr(t, "CreateRun", err)
			if replayed || r.Number != int64(i) {
				t.Fatalf("run %d got number %d replayed=%v", i, r.Number, replayed)
			}
		}
		// Numbers are per pipeline.
		rq, _, err := f.st.CreateRun(f.ctx, newRun(q.ID, 0, 0))
		noErr(t, "CreateRun q", err)
		if rq.Number != 1 {
			t.Fatalf("first run of another pipeline has number %d", rq.Number)
		}
		// A replay returns the first run and stores nothing.
		nr := newRun(p.ID, 2, 2)
		nr.Run.RequestID = "req-2"
		r, replayed, err := f.st.CreateRun(f.ctx, nr)
		noErr(t, "replay", err)
		if !replayed || r.Number != 2 || r.ID == nr.Run.ID {
			t.Fatalf("replay returned %+v replayed=%v, want run number 2", r, replayed)
		}
		_, err = f.st.GetRun(f.ctx, nr.Run.ID)
		wantErr(t, "replayed request's own run", err, store.ErrNotFound)
		// The replay did not use up a number.
		r4, _, err := f.st.CreateRun(f.ctx, newRun(p.ID, 0, 0))
		noErr(t, "CreateRun", err)
		if r4.Number != 4 {
			t.Fatalf("run after a replay has number %d, want 4", r4.Number)
		}

		_, _, err = f.st.CreateRun(f.ctx, newRun("nope", 1, 1))
		wantErr(t, "unknown pipeline", err, store.ErrNotFound)
		dup := newRun(p.ID, 0, 0)
		dup.Run.ID = r4.ID
		_, _, err = f.st.CreateRun(f.ctx, dup)
		wantErr(t, "duplicate run id", err, store.ErrConflict)
		bad := newRun(p.ID, 1, 0)
		bad.Steps["not-a-job"] = []*store.StepRun{{ID: newID("sr")}}
		_, _, err = f.st.CreateRun(f.ctx, bad)
		wantErr(t, "steps of an unknown job", err, store.ErrInvalid)
		// A failed creation leaves no trace and no gap.
		r5, _, err := f.st.CreateRun(f.ctx, newRun(p.ID, 0, 0))
		noErr(t, "CreateRun", err)
		if r5.Number != 5 {
			t.Fatalf("run after failed creations has number %d, want 5", r5.Number)
		}
	})

	t.Run("ConcurrentSameRequest", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		const n = 50
		ids := make([]string, n)
		fresh := make([]bool, n)
		parallel(n, func(i int) {
			nr := newRun(p.ID, 1, 1)
			nr.Run.RequestID = "the-request"
			r, replayed, err := f.st.CreateRun(f.ctx, nr)
			if err != nil {
				t.Errorf("CreateRun: %v", err)
				return
			}
			ids[i], fresh[i] = r.ID, !replayed
		})
		created := 0
		for i := range n {
			if ids[i] != ids[0] {
				t.Errorf("call %d got run %s, call 0 got %s", i, ids[i], ids[0])
			}
			if fresh[i] {
				created++
			}
		}
		if created != 1 {
			t.Errorf("%d calls report a new run, want 1", created)
		}
		runs, total, err := f.st.ListRuns(f.ctx, store.RunFilter{PipelineID: p.ID})
		noErr(t, "ListRuns", err)
		if total != 1 || len(runs) != 1 || runs[0].Number != 1 {
			t.Fatalf("%d runs stored (%v), want exactly one, number 1", total, runs)
		}
	})

	t.Run("ConcurrentNumbers", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		const n = 20
		var mu sync.Mutex
		var nums []int
		parallel(n, func(i int) {
			nr := newRun(p.ID, 1, 1)
			nr.Run.RequestID = fmt.Sprintf("r%d", i)
			r, _, err := f.st.CreateRun(f.ctx, nr)
			if err != nil {
				t.Errorf("CreateRun: %v", err)
				return
			}
			mu.Lock()
			nums = append(nums, int(r.Number))
			mu.Unlock()
		})
		sort.Ints(nums)
		for i, n := range nums {
			if n != i+1 {
				t.Fatalf("numbers %v are not 1..%d", nums, len(nums))
			}
		}
	})

	t.Run("ListAndActive", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		q := f.pipeline("proj", "q")
		var ids []string
		for i := range 7 {
			nr := newRun(p.ID, 0, 0)
			nr.Run.CreatedAt = at(i)
			r, _, err := f.st.CreateRun(f.ctx, nr)
			noErr(t, "CreateRun", err)
			ids = append(ids, r.ID)
		}
		nr := newRun(q.ID, 0, 0)
		nr.Run.CreatedAt = at(100)
		rq, _, err := f.st.CreateRun(f.ctx, nr)
		noErr(t, "CreateRun", err)
		f.setRunStatus(ids[1], "success")
		f.setRunStatus(ids[2], "running")
		f.setRunStatus(ids[3], "failed")
		f.setRunStatus(ids[4], "paused")
		f.setRunStatus(ids[5], "cancelled")
		f.setRunStatus(ids[6], "partial")

		numbers := func(rs []*store.Run) []int64 {
			out := []int64{}
			for _, r := range rs {
				out = append(out, r.Number)
			}
			return out
		}
		cases := []struct {
			name  string
			f     store.RunFilter
			total int
			want  []int64
		}{
			{"newest first", store.RunFilter{PipelineID: p.ID}, 7, []int64{7, 6, 5, 4, 3, 2, 1}},
			{"first page", store.RunFilter{PipelineID: p.ID, Limit: 3}, 7, []int64{7, 6, 5}},
			{"last page", store.RunFilter{PipelineID: p.ID, Limit: 3, Offset: 6}, 7, []int64{1}},
			{"past the end", store.RunFilter{PipelineID: p.ID, Limit: 3, Offset: 7}, 7, []int64{}},
			{"by status", store.RunFilter{PipelineID: p.ID, Status: "success"}, 1, []int64{2}},
			{"status, all pipelines", store.RunFilter{Status: "pending"}, 2, []int64{1, 1}},
			{"all pipelines newest first", store.RunFilter{Limit: 2}, 8, []int64{1, 7}},
		}
		for _, c := range cases {
			rs, total, err := f.st.ListRuns(f.ctx, c.f)
			noErr(t, c.name, err)
			if total != c.total {
				t.Errorf("%s: total %d, want %d", c.name, total, c.total)
			}
			sameJSON(t, c.name, numbers(rs), c.want)
		}
		rs, _, err := f.st.ListRuns(f.ctx, store.RunFilter{Limit: 1})
		noErr(t, "ListRuns", err)
		if rs[0].ID != rq.ID {
			t.Errorf("newest run across pipelines is %s, want %s", rs[0].ID, rq.ID)
		}

		active, err := f.st.ActiveRuns(f.ctx)
		noErr(t, "ActiveRuns", err)
		var got []string
		for _, r := range active {
			got = append(got, r.ID)
		}
		sameJSON(t, "active runs, oldest first", got, []string{ids[0], ids[2], ids[4], rq.ID})
	})
}

func testRunTx(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("WritesAndRollback", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 2, 2)
		other := f.run(p.ID, 1, 1)
		runID := tr.Run.ID
		j0 := tr.Jobs[0]
		st0 := tr.Steps[j0.ID][0]

		// Everything fn writes is visible after commit.
		var entry *store.TimelineEntry
		err := f.st.UpdateRunTx(f.ctx, runID, func(tx store.RunTx) error {
			tr, err := tx.Tree()
			if err != nil {
				return err
			}
			tr.Run.Status, tr.Run.StartedAt, tr.Run.Reason = "running", ptr(at(10)), "go"
			if err := tx.UpdateRun(tr.Run); err != nil {
				return err
			}
			j := tr.Jobs[0]
			j.Status, j.Attempt, j.Outputs, j.EndedAt = "success", 2, map[string]string{"o": "1"}, ptr(at(11))
			if err := tx.UpdateJob(j); err != nil {
				return err
			}
			// The transaction reads its own writes.
			again, err := tx.Tree()
			if err != nil || again.Jobs[0].Status != "success" {
				return fmt.Errorf("tree inside the transaction: %v %v", err, again)
			}
			s := tr.Steps[j.ID][0]
			s.Status, s.ExitCode, s.Error = "failed", ptr(1), "boom"
			if err := tx.UpdateStep(s); err != nil {
				return err
			}
			entry = &store.TimelineEntry{Action: "started", Operator: "op", Reason: "why", Time: at(10), JobRunID: j.ID}
			return tx.AppendTimeline(entry)
		})
		noErr(t, "UpdateRunTx", err)
		if entry.ID == 0 || entry.RunID != runID {
			t.Fatalf("AppendTimeline did not set the entry's id and run: %+v", entry)
		}
		got := f.tree(runID)
		if got.Run.Status != "running" || got.Run.Reason != "go" || !got.Run.StartedAt.Equal(at(10)) {
			t.Fatalf("run not updated: %+v", got.Run)
		}
		if got.Run.Number != tr.Run.Number || got.Run.TriggeredBy != "bob" || got.Run.TriggerUserID != "usr_bob" {
			t.Fatalf("UpdateRun changed fixed fields: %+v", got.Run)
		}
		if j := got.Jobs[0]; j.Status != "success" || j.Attempt != 2 || j.Outputs["o"] != "1" || !j.EndedAt.Equal(at(11)) {
			t.Fatalf("job not updated: %+v", j)
		}
		if s := got.Steps[j0.ID][0]; s.Status != "failed" || *s.ExitCode != 1 || s.Error != "boom" {
			t.Fatalf("step not updated: %+v", s)
		}
		tl, err := f.st.Timeline(f.ctx, runID)
		noErr(t, "Timeline", err)
		if len(tl) != 2 || tl[1].ID != entry.ID || tl[1].Action != "started" || tl[1].JobRunID != j0.ID {
			t.Fatalf("timeline = %+v", tl)
		}

		// fn's error rolls everything back and comes back as it is.
		errBoom := errors.New("boom")
		err = f.st.UpdateRunTx(f.ctx, runID, func(tx store.RunTx) error {
			tr, err := tx.Tree()
			if err != nil {
				return err
			}
			tr.Run.Status = "failed"
			if err := tx.UpdateRun(tr.Run); err != nil {
				return err
			}
			if err := tx.AppendTimeline(&store.TimelineEntry{Action: "x"}); err != nil {
				return err
			}
			return fmt.Errorf("decided: %w", errBoom)
		})
		wantErr(t, "fn error", err, errBoom)
		if r, _ := f.st.GetRun(f.ctx, runID); r.Status != "running" {
			t.Fatalf("rolled back run has status %q", r.Status)
		}
		if tl2, _ := f.st.Timeline(f.ctx, runID); len(tl2) != 2 {
			t.Fatalf("rolled back timeline has %d entries", len(tl2))
		}

		// Writes are confined to the locked run.
		err = f.st.UpdateRunTx(f.ctx, runID, func(tx store.RunTx) error {
			if err := tx.UpdateJob(other.Jobs[0]); !errors.Is(err, store.ErrInvalid) && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("UpdateJob of another run: %v", err)
			}
			if err := tx.UpdateStep(other.Steps[other.Jobs[0].ID][0]); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("UpdateStep of another run: %v", err)
			}
			if err := tx.UpdateRun(other.Run); !errors.Is(err, store.ErrInvalid) {
				return fmt.Errorf("UpdateRun of another run: %v", err)
			}
			if err := tx.SetPipelineStatus(other.Run); !errors.Is(err, store.ErrInvalid) {
				return fmt.Errorf("SetPipelineStatus of another run: %v", err)
			}
			return nil
		})
		noErr(t, "writes to another run", err)
		_ = st0

		err = f.st.UpdateRunTx(f.ctx, "nope", func(tx store.RunTx) error { return nil })
		wantErr(t, "UpdateRunTx unknown run", err, store.ErrNotFound)
	})

	t.Run("Serialised", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 1, 0)
		// Read-modify-write through the tree: no increment may be lost.
		const workers, each = 6, 8
		parallel(workers, func(int) {
			for range each {
				err := f.st.UpdateRunTx(f.ctx, tr.Run.ID, func(tx store.RunTx) error {
					tr, err := tx.Tree()
					if err != nil {
						return err
					}
					tr.Jobs[0].Attempt++
					return tx.UpdateJob(tr.Jobs[0])
				})
				if err != nil {
					t.Errorf("UpdateRunTx: %v", err)
					return
				}
			}
		})
		got := f.tree(tr.Run.ID)
		if want := 1 + workers*each; got.Jobs[0].Attempt != want {
			t.Fatalf("attempt = %d after %d increments from 1, want %d", got.Jobs[0].Attempt, workers*each, want)
		}
	})

	t.Run("PipelineStatusOrder", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		r1 := f.run(p.ID, 0, 0).Run
		r2 := f.run(p.ID, 0, 0).Run
		set := func(r *store.Run, status string, started, ended *int) {
			t.Helper()
			err := f.st.UpdateRunTx(f.ctx, r.ID, func(tx store.RunTx) error {
				tr, err := tx.Tree()
				if err != nil {
					return err
				}
				tr.Run.Status = runnel.RunStatus(status)
				if started != nil {
					tr.Run.StartedAt = ptr(at(*started))
				}
				if ended != nil {
					tr.Run.EndedAt = ptr(at(*ended))
				}
				if err := tx.UpdateRun(tr.Run); err != nil {
					return err
				}
				return tx.SetPipelineStatus(tr.Run)
			})
			noErr(t, "set status", err)
		}
		check := func(what, id, state string) {
			t.Helper()
			pl, err := f.st.GetPipeline(f.ctx, p.ID)
			noErr(t, "GetPipeline", err)
			if pl.LastExecutionID != id || pl.LastRunState != state {
				t.Fatalf("%s: pipeline shows %s %q, want %s %q", what, pl.LastExecutionID, pl.LastRunState, id, state)
			}
		}
		check("after creation", r2.ID, "pending")
		set(r2, "running", ptr(5), nil)
		check("newest run starts", r2.ID, "running")
		set(r1, "success", ptr(1), ptr(9))
		check("older run finishes late", r2.ID, "running")
		set(r2, "failed", nil, ptr(12))
		check("newest run ends", r2.ID, "failed")
		pl, _ := f.st.GetPipeline(f.ctx, p.ID)
		if pl.LastStarted == nil || !pl.LastStarted.Equal(at(5)) || pl.LastEnded == nil || !pl.LastEnded.Equal(at(12)) {
			t.Fatalf("pipeline times = %v %v, want %v %v", pl.LastStarted, pl.LastEnded, at(5), at(12))
		}
		utc(t, "pipeline status", pl.LastStarted, pl.LastEnded)
		r3 := f.run(p.ID, 0, 0).Run
		check("a new run", r3.ID, "pending")
	})
}
