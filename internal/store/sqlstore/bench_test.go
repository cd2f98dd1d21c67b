package sqlstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
)

// BenchmarkStore measures the hot paths on both databases:
//
//	go test -run '^$' -bench . -benchtime 2000x ./internal/store/sqlstore/
func BenchmarkStore(b *testing.B) {
	dbs := []struct {
		name string
		open func(b *testing.B) *Store
	}{
		{"sqlite", func(b *testing.B) *Store { return openSQLite(b) }},
		{"postgres", func(b *testing.B) *Store {
			pg := postgres(b)
			return pg.open(b, pg.createDB(b, ""))
		}},
	}
	for _, db := range dbs {
		b.Run(db.name+"/CreateRun", func(b *testing.B) { benchCreateRun(b, db.open(b)) })
		b.Run(db.name+"/ClaimAndComplete", func(b *testing.B) { benchClaim(b, db.open(b)) })
		// A claim by an agent of pool a, with nothing else queued and with
		// 10,000 job runs waiting for a pool it does not have; then by an
		// agent of both pools, which takes the oldest of the 10,001.
		b.Run(db.name+"/RoutedClaim/unmatched=0", func(b *testing.B) { benchRoutedClaim(b, db.open(b), 0, false) })
		b.Run(db.name+"/RoutedClaim/unmatched=10000", func(b *testing.B) { benchRoutedClaim(b, db.open(b), 10000, false) })
		b.Run(db.name+"/RoutedClaim/backlog=10000,routes=2", func(b *testing.B) { benchRoutedClaim(b, db.open(b), 10000, true) })
		b.Run(db.name+"/AppendLogs100", func(b *testing.B) { benchAppend(b, db.open(b), 10<<20) })
		// A 64 KiB cap is reached after a few appends: every later one trims.
		b.Run(db.name+"/AppendLogs100AtCap", func(b *testing.B) { benchAppend(b, db.open(b), 64<<10) })
	}
}

func benchID(prefix string) string { return prefix + "_" + rand.Text() }

func benchPipeline(b *testing.B, s *Store) string {
	p := &store.Pipeline{ID: benchID("pl"), ProjectID: "bench", Name: benchID("name")}
	if err := s.CreatePipeline(context.Background(), p); err != nil {
		b.Fatal(err)
	}
	return p.ID
}

// benchRun is a run of jobs jobs with one step each, in the given job status.
func benchRun(pipelineID string, jobs int, status string) *store.NewRun {
	runID := benchID("run")
	nr := &store.NewRun{
		Run:   &store.Run{ID: runID, PipelineID: pipelineID, TriggerType: "manual", TriggeredBy: "bench"},
		Steps: map[string][]*store.StepRun{},
	}
	now := time.Now().UTC()
	for i := range jobs {
		j := &store.JobRun{ID: benchID("jr"), Key: fmt.Sprintf("build/j%d", i), Name: "j", Index: i,
			Status: runnel.JobStatus(status), Attempt: 1, Request: []byte(`{"image":"golang:1.26","script":["go test ./..."]}`)}
		if status == "queued" {
			j.QueuedAt = &now
		}
		nr.Jobs = append(nr.Jobs, j)
		nr.Steps[j.ID] = []*store.StepRun{{ID: benchID("sr"), Index: 0, Name: "test", Run: "go test ./..."}}
	}
	return nr
}

func benchCreateRun(b *testing.B, s *Store) {
	ctx := context.Background()
	pid := benchPipeline(b, s)
	runs := make([]*store.NewRun, b.N)
	for i := range runs {
		runs[i] = benchRun(pid, 1, "pending")
	}
	b.ResetTimer()
	for i := range b.N {
		if _, _, err := s.CreateRun(ctx, runs[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// benchClaim claims a queued job and completes it the way the scheduler does:
// UpdateRunTx, read the tree, write the job and its step.
func benchClaim(b *testing.B, s *Store) {
	ctx := context.Background()
	pid := benchPipeline(b, s)
	const perRun = 4
	for n := 0; n < b.N; n += perRun {
		if _, _, err := s.CreateRun(ctx, benchRun(pid, perRun, "queued")); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		j, err := s.ClaimJob(ctx, "agent", []string{""}, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		err = s.UpdateRunTx(ctx, j.RunID, func(tx store.RunTx) error {
			tr, err := tx.Tree()
			if err != nil {
				return err
			}
			now := time.Now().UTC()
			for _, cur := range tr.Jobs {
				if cur.ID != j.ID {
					continue
				}
				cur.Status, cur.LeaseID, cur.LeaseExpiresAt, cur.EndedAt = "success", "", nil, &now
				if err := tx.UpdateJob(cur); err != nil {
					return err
				}
				st := tr.Steps[cur.ID][0]
				st.Status, st.ExitCode, st.EndedAt = "success", new(int), &now
				return tx.UpdateStep(st)
			}
			return fmt.Errorf("job %s not in its run", j.ID)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// benchRoutedClaim measures what an agent's poll costs the scheduler when
// work is there: QueuedRoutes, then ClaimJob with the routes the agent's
// labels accept. other job runs wait for labels the agent has only when
// both is set; either way they must not make the claim slower. The claimed
// job is put back with ReleaseJob (not timed) so that every iteration
// claims the same way.
func benchRoutedClaim(b *testing.B, s *Store, other int, both bool) {
	ctx := context.Background()
	pid := benchPipeline(b, s)
	const nowhere, poolA = `{"pool":"nowhere"}`, `{"pool":"a"}`
	for n := 0; n < other; n += 1000 {
		nr := benchRun(pid, min(1000, other-n), "queued")
		for _, j := range nr.Jobs {
			j.RunsOn = []byte(nowhere)
		}
		if _, _, err := s.CreateRun(ctx, nr); err != nil {
			b.Fatal(err)
		}
	}
	nr := benchRun(pid, 1, "queued")
	nr.Jobs[0].RunsOn = []byte(poolA)
	if _, _, err := s.CreateRun(ctx, nr); err != nil {
		b.Fatal(err)
	}
	wantRoutes := 1 // the routes the agent accepts
	if both && other > 0 {
		wantRoutes = 2
	}
	b.ResetTimer()
	for range b.N {
		routes, err := s.QueuedRoutes(ctx, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		accepted := slices.DeleteFunc(routes, func(r string) bool { return r != poolA && !(both && r == nowhere) })
		if len(accepted) != wantRoutes {
			b.Fatalf("the agent accepts routes %q, want %d", accepted, wantRoutes)
		}
		j, err := s.ClaimJob(ctx, "agent", accepted, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.ReleaseJob(ctx, j.ID, j.LeaseID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func benchAppend(b *testing.B, s *Store, maxBytes int64) {
	ctx := context.Background()
	pid := benchPipeline(b, s)
	nr := benchRun(pid, 1, "running")
	if _, _, err := s.CreateRun(ctx, nr); err != nil {
		b.Fatal(err)
	}
	stepID := nr.Steps[nr.Jobs[0].ID][0].ID
	lines := make([]store.LogLine, 100)
	now := time.Now().UTC()
	for i := range lines {
		lines[i] = store.LogLine{Time: now, Level: "info",
			Message: fmt.Sprintf("=== RUN   TestSomething/case_%03d %s", i, strings.Repeat(".", 40))}
	}
	b.SetBytes(int64(100 * len(lines[0].Message)))
	b.ResetTimer()
	for range b.N {
		if _, err := s.AppendLogs(ctx, stepID, lines, maxBytes); err != nil {
			b.Fatal(err)
		}
	}
}
