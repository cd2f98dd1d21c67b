package storetest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/runnel-ci/runnel/internal/store"
)

// tenBytes returns n log lines of exactly ten bytes each, numbered from first.
func tenBytes(first, n int) []store.LogLine {
	out := make([]store.LogLine, n)
	for i := range out {
		out[i] = store.LogLine{Time: at(first + i), Level: "info", Message: fmt.Sprintf("line-%05d", first+i)}
	}
	return out
}

// logShape describes lines compactly: "m3" is a marker (warn) at seq 3,
// "4:line-00004" a line at seq 4.
func logShape(lines []store.LogLine) []string {
	out := []string{}
	for _, l := range lines {
		if l.Level == "warn" && strings.HasPrefix(l.Message, "[runnel:") {
			out = append(out, fmt.Sprintf("m%d", l.Seq))
			continue
		}
		out = append(out, fmt.Sprintf("%d:%s", l.Seq, l.Message))
	}
	return out
}

func shapeOf(seqFrom int, markerSeq int, first, n int) []string {
	out := []string{}
	if markerSeq > 0 {
		out = append(out, fmt.Sprintf("m%d", markerSeq))
	}
	for i := range n {
		out = append(out, fmt.Sprintf("%d:line-%05d", seqFrom+i, first+i))
	}
	return out
}

// stepFx makes a store with one run and returns its step run ids.
func stepFx(t *testing.T, open func(t *testing.T) store.Store, steps int) (*fx, *store.RunTree, []string) {
	f := newFx(t, open)
	p := f.pipeline("proj", "p")
	tr := f.run(p.ID, 1, steps)
	var ids []string
	for _, s := range tr.Steps[tr.Jobs[0].ID] {
		ids = append(ids, s.ID)
	}
	return f, tr, ids
}

func (f *fx) logBytes(runID, stepID string) int64 {
	f.t.Helper()
	for _, ss := range f.tree(runID).Steps {
		for _, s := range ss {
			if s.ID == stepID {
				return s.LogBytes
			}
		}
	}
	f.t.Fatalf("step %s not found", stepID)
	return 0
}

func (f *fx) logs(stepID string, q store.LogQuery) []store.LogLine {
	f.t.Helper()
	ls, err := f.st.ListLogs(f.ctx, stepID, q)
	noErr(f.t, "ListLogs", err)
	return ls
}

func (f *fx) appendLogs(stepID string, lines []store.LogLine, maxBytes int64) []store.LogLine {
	f.t.Helper()
	out, err := f.st.AppendLogs(f.ctx, stepID, lines, maxBytes)
	noErr(f.t, "AppendLogs", err)
	return out
}

func markers(lines []store.LogLine) []store.LogLine {
	var out []store.LogLine
	for _, l := range lines {
		if l.Level == "warn" && strings.HasPrefix(l.Message, "[runnel:") {
			out = append(out, l)
		}
	}
	return out
}

func testLogs(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("SeqAndBytes", func(t *testing.T) {
		t.Parallel()
		f, tr, steps := stepFx(t, open, 2)
		got := f.appendLogs(steps[0], tenBytes(1, 3), 0)
		sameJSON(t, "first append", logShape(got), shapeOf(1, 0, 1, 3))
		got = f.appendLogs(steps[0], tenBytes(4, 2), 1000)
		sameJSON(t, "second append", logShape(got), shapeOf(4, 0, 4, 2))
		f.appendLogs(steps[1], tenBytes(1, 1), 0) // another step has its own seqs
		all := f.logs(steps[0], store.LogQuery{})
		sameJSON(t, "stored lines", all, withSeq(tenBytes(1, 5), 1))
		for _, l := range all {
			utc(t, "log line", &l.Time)
		}
		if b := f.logBytes(tr.Run.ID, steps[0]); b != 50 {
			t.Fatalf("LogBytes = %d, want 50", b)
		}
		// A zero time is stored as now; nothing else is invented.
		got = f.appendLogs(steps[1], []store.LogLine{{Message: "no time"}}, 0)
		if got[0].Time.IsZero() || got[0].Seq != 2 {
			t.Fatalf("line without time stored as %+v", got[0])
		}
		got = f.appendLogs(steps[1], nil, 0)
		if len(got) != 0 {
			t.Fatalf("empty append returned %v", got)
		}
		_, err := f.st.AppendLogs(f.ctx, "nope", tenBytes(1, 1), 0)
		wantErr(t, "AppendLogs unknown step", err, store.ErrNotFound)
		_, err = f.st.ListLogs(f.ctx, "nope", store.LogQuery{})
		wantErr(t, "ListLogs unknown step", err, store.ErrNotFound)
	})

	t.Run("CapDropsOldest", func(t *testing.T) {
		t.Parallel()
		f, tr, steps := stepFx(t, open, 1)
		s := steps[0]
		got := f.appendLogs(s, tenBytes(1, 10), 100)
		sameJSON(t, "exactly at the cap", logShape(got), shapeOf(1, 0, 1, 10))

		got = f.appendLogs(s, tenBytes(11, 3), 100)
		sameJSON(t, "returned with the marker first", logShape(got), shapeOf(11, 3, 11, 3))
		all := f.logs(s, store.LogQuery{})
		sameJSON(t, "after the first trim", logShape(all), shapeOf(4, 3, 4, 10))
		m := markers(all)[0]
		if !strings.Contains(m.Message, "30 bytes in 3 earlier lines were dropped") ||
			!strings.Contains(m.Message, "limited to 100 bytes") {
			t.Fatalf("marker says %q", m.Message)
		}
		if b := f.logBytes(tr.Run.ID, s); b != 100 {
			t.Fatalf("LogBytes = %d, want 100", b)
		}

		// A second trim replaces the marker and keeps the totals.
		f.appendLogs(s, tenBytes(14, 5), 100)
		all = f.logs(s, store.LogQuery{})
		sameJSON(t, "after the second trim", logShape(all), shapeOf(9, 8, 9, 10))
		if ms := markers(all); len(ms) != 1 || !strings.Contains(ms[0].Message, "80 bytes in 8 earlier lines were dropped") {
			t.Fatalf("markers = %+v, want one saying 80 bytes in 8 lines", ms)
		}
		// Readers resuming from a seq find strictly increasing seqs.
		for i := 1; i < len(all); i++ {
			if all[i].Seq <= all[i-1].Seq {
				t.Fatalf("seqs not increasing: %v", logShape(all))
			}
		}
		// An append that fits after all keeps the marker as it is.
		f.appendLogs(s, nil, 100)
		got = f.appendLogs(s, tenBytes(19, 1), 0)
		sameJSON(t, "uncapped append", logShape(got), shapeOf(19, 0, 19, 1))
		all = f.logs(s, store.LogQuery{})
		sameJSON(t, "marker kept", logShape(all), shapeOf(9, 8, 9, 11))
	})

	t.Run("BatchOverCap", func(t *testing.T) {
		t.Parallel()
		f, tr, steps := stepFx(t, open, 1)
		got := f.appendLogs(steps[0], tenBytes(1, 15), 100)
		sameJSON(t, "batch larger than the cap", logShape(got), shapeOf(6, 5, 6, 10))
		all := f.logs(steps[0], store.LogQuery{})
		sameJSON(t, "stored", logShape(all), shapeOf(6, 5, 6, 10))
		if !strings.Contains(markers(all)[0].Message, "50 bytes in 5 earlier lines were dropped") {
			t.Fatalf("marker says %q", markers(all)[0].Message)
		}
		if b := f.logBytes(tr.Run.ID, steps[0]); b != 100 {
			t.Fatalf("LogBytes = %d, want 100", b)
		}
	})

	t.Run("LongLine", func(t *testing.T) {
		t.Parallel()
		f, tr, steps := stepFx(t, open, 3)
		// The log's first line is longer than the cap: cut, after a marker.
		got := f.appendLogs(steps[0], []store.LogLine{{Time: at(1), Level: "info", Message: strings.Repeat("x", 250)}}, 100)
		if len(got) != 2 || got[0].Seq != 1 || got[0].Level != "warn" || got[1].Seq != 2 ||
			got[1].Message != strings.Repeat("x", 100) {
			t.Fatalf("huge first line stored as %v", logShape(got))
		}
		if !strings.Contains(got[0].Message, "1 line was longer than the limit, cut by 150 bytes") {
			t.Fatalf("marker says %q", got[0].Message)
		}
		if b := f.logBytes(tr.Run.ID, steps[0]); b != 100 {
			t.Fatalf("LogBytes = %d, want 100", b)
		}
		// The next line pushes the cut one out; one marker says both.
		got = f.appendLogs(steps[0], tenBytes(2, 1), 100)
		sameJSON(t, "after the cut line", logShape(got), []string{"m2", "3:line-00002"})
		all := f.logs(steps[0], store.LogQuery{})
		sameJSON(t, "stored", logShape(all), []string{"m2", "3:line-00002"})
		if m := all[0].Message; !strings.Contains(m, "100 bytes in 1 earlier line was dropped") ||
			!strings.Contains(m, "1 line was longer than the limit") {
			t.Fatalf("marker says %q", m)
		}

		// A huge line after others: they go, it is cut.
		f.appendLogs(steps[1], tenBytes(1, 3), 100)
		got = f.appendLogs(steps[1], []store.LogLine{{Time: at(9), Level: "info", Message: strings.Repeat("y", 1000)}}, 100)
		if len(got) != 2 || got[0].Seq != 3 || got[1].Seq != 4 || len(got[1].Message) != 100 {
			t.Fatalf("huge line after three stored as %v", logShape(got))
		}
		if !strings.Contains(got[0].Message, "30 bytes in 3 earlier lines were dropped") {
			t.Fatalf("marker says %q", got[0].Message)
		}

		// Cuts keep UTF-8 whole.
		got = f.appendLogs(steps[2], []store.LogLine{{Message: strings.Repeat("é", 60)}}, 51)
		if l := got[len(got)-1].Message; !utf8.ValidString(l) || len(l) != 50 {
			t.Fatalf("cut line is %d bytes, valid UTF-8 %v; want 50 bytes of é", len(l), utf8.ValidString(l))
		}
	})

	t.Run("TextIsCleaned", func(t *testing.T) {
		t.Parallel()
		f, _, steps := stepFx(t, open, 1)
		got := f.appendLogs(steps[0], []store.LogLine{{Message: "bad \xff byte and \x00 nul"}}, 0)
		all := f.logs(steps[0], store.LogQuery{})
		m := all[0].Message
		if !utf8.ValidString(m) || strings.ContainsRune(m, 0) || !strings.HasPrefix(m, "bad ") || m != got[0].Message {
			t.Fatalf("stored %q (returned %q), want valid UTF-8 without NUL", m, got[0].Message)
		}
	})

	t.Run("ConcurrentAppends", func(t *testing.T) {
		t.Parallel()
		f, tr, steps := stepFx(t, open, 2)
		const workers, rounds, per = 4, 8, 3
		var mu sync.Mutex
		seen := map[int64]bool{}
		parallel(workers, func(w int) {
			for r := range rounds {
				got, err := f.st.AppendLogs(f.ctx, steps[0], tenBytes(w*1000+r*10, per), 0)
				if err != nil {
					t.Errorf("AppendLogs: %v", err)
					return
				}
				mu.Lock()
				for i, l := range got {
					if seen[l.Seq] {
						t.Errorf("seq %d handed out twice", l.Seq)
					}
					seen[l.Seq] = true
					if i > 0 && l.Seq != got[i-1].Seq+1 {
						t.Errorf("one batch's seqs are not consecutive: %v", logShape(got))
					}
				}
				mu.Unlock()
			}
		})
		n := workers * rounds * per
		for s := int64(1); s <= int64(n); s++ {
			if !seen[s] {
				t.Fatalf("seq %d missing", s)
			}
		}
		if b := f.logBytes(tr.Run.ID, steps[0]); b != int64(n*10) {
			t.Fatalf("LogBytes = %d, want %d", b, n*10)
		}

		// Concurrent appends over a cap: one marker, first; increasing seqs;
		// the latest lines kept; LogBytes the size of what is kept.
		const capBytes = 150
		parallel(workers, func(w int) {
			for r := range rounds {
				if _, err := f.st.AppendLogs(f.ctx, steps[1], tenBytes(w*1000+r*10, per), capBytes); err != nil {
					t.Errorf("AppendLogs: %v", err)
					return
				}
			}
		})
		all := f.logs(steps[1], store.LogQuery{})
		ms := markers(all)
		if len(ms) != 1 || all[0].Level != "warn" {
			t.Fatalf("capped log %v: want exactly one marker, first", logShape(all))
		}
		var kept int64
		for i, l := range all {
			if i > 0 {
				kept += int64(len(l.Message))
				if l.Seq != all[i-1].Seq+1 {
					t.Fatalf("capped log seqs are not consecutive: %v", logShape(all))
				}
			}
		}
		if last := all[len(all)-1].Seq; last != int64(n) || kept != capBytes {
			t.Fatalf("capped log ends at seq %d with %d bytes kept, want %d and %d", last, kept, n, capBytes)
		}
		if b := f.logBytes(tr.Run.ID, steps[1]); b != kept {
			t.Fatalf("LogBytes = %d, want %d", b, kept)
		}
		dropped := fmt.Sprintf("%d bytes in %d earlier lines were dropped", n*10-capBytes, n-capBytes/10)
		if !strings.Contains(ms[0].Message, dropped) {
			t.Fatalf("marker says %q, want %q", ms[0].Message, dropped)
		}
	})

	t.Run("ListWindowAndPaging", func(t *testing.T) {
		t.Parallel()
		f, _, steps := stepFx(t, open, 2)
		f.appendLogs(steps[0], tenBytes(0, 20), 0) // line i at at(i), seq i+1
		seqs := func(ls []store.LogLine) []int64 {
			out := []int64{}
			for _, l := range ls {
				out = append(out, l.Seq)
			}
			return out
		}
		cases := []struct {
			name string
			q    store.LogQuery
			want []int64
		}{
			{"inclusive window", store.LogQuery{Start: at(5), End: at(9)}, []int64{6, 7, 8, 9, 10}},
			{"start only", store.LogQuery{Start: at(18)}, []int64{19, 20}},
			{"end only", store.LogQuery{End: at(1)}, []int64{1, 2}},
			{"window and page", store.LogQuery{Start: at(5), End: at(9), Offset: 2, Limit: 2}, []int64{8, 9}},
			{"page at the end", store.LogQuery{Offset: 18, Limit: 5}, []int64{19, 20}},
			{"offset past the end", store.LogQuery{Offset: 20}, []int64{}},
			{"empty window", store.LogQuery{Start: at(9), End: at(5)}, []int64{}},
		}
		for _, c := range cases {
			sameJSON(t, c.name, seqs(f.logs(steps[0], c.q)), c.want)
		}
		if n := len(f.logs(steps[0], store.LogQuery{})); n != 20 {
			t.Fatalf("no limit: %d lines, want 20", n)
		}
		// Limit 0 means all, up to 10,000 lines a page.
		big := make([]store.LogLine, 10003)
		for i := range big {
			big[i] = store.LogLine{Time: t0, Message: "x"}
		}
		f.appendLogs(steps[1], big, 0)
		for _, q := range []store.LogQuery{{}, {Limit: 20000}} {
			if n := len(f.logs(steps[1], q)); n != 10000 {
				t.Fatalf("limit %d: %d lines, want 10000", q.Limit, n)
			}
		}
		if got := seqs(f.logs(steps[1], store.LogQuery{Offset: 10000})); len(got) != 3 || got[0] != 10001 {
			t.Fatalf("the page after 10,000: %v", got)
		}
	})
}

func withSeq(ls []store.LogLine, from int64) []store.LogLine {
	out := make([]store.LogLine, len(ls))
	for i, l := range ls {
		l.Seq = from + int64(i)
		out[i] = l
	}
	return out
}

func testStepLogs(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("FencedByTheLease", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 2, 2)
		f.queue(tr.Run.ID, time.Now().UTC().Add(-2*time.Minute), nil, tr.Jobs[0].ID)
		f.queue(tr.Run.ID, time.Now().UTC().Add(-time.Minute), nil, tr.Jobs[1].ID)
		c, err := f.st.ClaimJob(f.ctx, "a", []string{linux}, time.Minute)
		noErr(t, "ClaimJob", err)
		if c.ID != tr.Jobs[0].ID {
			t.Fatalf("claimed %s, want %s", c.ID, tr.Jobs[0].ID)
		}
		step := tr.Steps[c.ID][0].ID
		appendStep := func(lease string, lines []store.LogLine) ([]store.LogLine, error) {
			return f.st.AppendStepLogs(f.ctx, lease, step, lines, 100)
		}

		// Under the lease it is AppendLogs, cap included.
		got, err := appendStep(c.LeaseID, tenBytes(1, 3))
		noErr(t, "AppendStepLogs", err)
		sameJSON(t, "appended", logShape(got), shapeOf(1, 0, 1, 3))
		got, err = appendStep(c.LeaseID, tenBytes(4, 9))
		noErr(t, "AppendStepLogs over the cap", err)
		sameJSON(t, "appended over the cap", logShape(got), shapeOf(4, 2, 4, 9))
		want := f.logs(step, store.LogQuery{})
		sameJSON(t, "stored", logShape(want), shapeOf(3, 2, 3, 10))
		got, err = appendStep(c.LeaseID, nil)
		noErr(t, "empty AppendStepLogs", err)
		if len(got) != 0 {
			t.Fatalf("empty append returned %v", got)
		}

		refused := func(what, lease string, target error) {
			t.Helper()
			_, err := appendStep(lease, tenBytes(100, 2))
			wantErr(t, what, err, target)
			_, err = appendStep(lease, nil)
			wantErr(t, what+" (empty append)", err, target)
			sameJSON(t, what+": stored lines", f.logs(step, store.LogQuery{}), want)
		}
		refused("another lease", "lease_wrong", store.ErrLeaseLost)
		refused("no lease", "", store.ErrLeaseLost)
		_, err = f.st.AppendStepLogs(f.ctx, c.LeaseID, "nope", tenBytes(1, 1), 0)
		wantErr(t, "unknown step", err, store.ErrNotFound)
		_, err = f.st.AppendStepLogs(f.ctx, c.LeaseID, "nope", nil, 0)
		wantErr(t, "unknown step (empty append)", err, store.ErrNotFound)
		// The lease covers its own job's steps only.
		other := tr.Steps[tr.Jobs[1].ID][0].ID
		_, err = f.st.AppendStepLogs(f.ctx, c.LeaseID, other, tenBytes(1, 1), 0)
		wantErr(t, "another job's step", err, store.ErrLeaseLost)
		if n := len(f.logs(other, store.LogQuery{})); n != 0 {
			t.Fatalf("another job's step has %d lines", n)
		}

		// Released and claimed by another agent: the old lease is refused,
		// the new one appends after the stored lines.
		noErr(t, "ReleaseJob", f.st.ReleaseJob(f.ctx, c.ID, c.LeaseID))
		c2, err := f.st.ClaimJob(f.ctx, "b", []string{linux}, time.Minute)
		noErr(t, "ClaimJob", err)
		if c2.ID != c.ID {
			t.Fatalf("claimed %s, want the released %s", c2.ID, c.ID)
		}
		refused("the lease of a reassigned job", c.LeaseID, store.ErrLeaseLost)
		got, err = appendStep(c2.LeaseID, tenBytes(13, 1))
		noErr(t, "AppendStepLogs with the new lease", err)
		sameJSON(t, "appended with the new lease", logShape(got), shapeOf(13, 3, 13, 1))
		want = f.logs(step, store.LogQuery{})

		// An expired lease is refused even before anyone else takes the job.
		noErr(t, "ReleaseJob", f.st.ReleaseJob(f.ctx, c2.ID, c2.LeaseID))
		// (A second: long enough for the check before expiry on a loaded
		// machine; 50 ms failed once with two CI suites on two cores.)
		c3, err := f.st.ClaimJob(f.ctx, "c", []string{linux}, time.Second)
		noErr(t, "ClaimJob", err)
		if c3.ID != c.ID {
			t.Fatalf("claimed %s, want the released %s", c3.ID, c.ID)
		}
		_, err = appendStep(c3.LeaseID, nil)
		noErr(t, "empty AppendStepLogs before expiry", err)
		waitUntil(*c3.LeaseExpiresAt)
		refused("an expired lease", c3.LeaseID, store.ErrLeaseLost)
	})
}
