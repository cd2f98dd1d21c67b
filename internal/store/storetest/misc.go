package storetest

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

func testTokens(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("ByHashTouchList", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		h1 := sha256.Sum256([]byte("secret-1"))
		h2 := sha256.Sum256([]byte("secret-2"))
		a := &store.APIToken{ID: newID("tok"), Name: "ci", Subject: "alice", Role: "admin", Hash: h1[:],
			CreatedAt: at(1), ExpiresAt: ptr(at(1000))}
		b := &store.APIToken{ID: newID("tok"), Name: "agent", Subject: "agent-1", Role: "agent", Hash: h2[:], CreatedAt: at(2)}
		noErr(t, "CreateToken", f.st.CreateToken(f.ctx, a))
		noErr(t, "CreateToken", f.st.CreateToken(f.ctx, b))

		got, err := f.st.TokenByHash(f.ctx, h1[:])
		noErr(t, "TokenByHash", err)
		sameJSON(t, "token", got, a)
		utc(t, "token", &got.CreatedAt, got.ExpiresAt)
		other := sha256.Sum256([]byte("secret-3"))
		_, err = f.st.TokenByHash(f.ctx, other[:])
		wantErr(t, "unknown hash", err, store.ErrNotFound)

		dup := &store.APIToken{ID: newID("tok"), Name: "dup", Role: "user", Hash: h1[:], CreatedAt: at(3)}
		wantErr(t, "same hash", f.st.CreateToken(f.ctx, dup), store.ErrConflict)

		noErr(t, "TouchToken", f.st.TouchToken(f.ctx, b.ID, at(50)))
		got, err = f.st.TokenByHash(f.ctx, h2[:])
		noErr(t, "TokenByHash", err)
		if got.LastUsedAt == nil || !got.LastUsedAt.Equal(at(50)) {
			t.Fatalf("LastUsedAt = %v, want %v", got.LastUsedAt, at(50))
		}
		wantErr(t, "TouchToken unknown", f.st.TouchToken(f.ctx, "nope", at(1)), store.ErrNotFound)

		list, err := f.st.ListTokens(f.ctx)
		noErr(t, "ListTokens", err)
		if len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
			t.Fatalf("ListTokens = %+v, want a then b", list)
		}
	})
}

func testDelete(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("ActiveRunConflictsThenCascade", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		keep := f.pipeline("proj", "keep")
		_, _, err := f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: p.ID, Spec: json.RawMessage(`{}`)}, "")
		noErr(t, "SaveSpec", err)
		tr := f.run(p.ID, 2, 2)
		kept := f.run(keep.ID, 1, 1)
		step := tr.Steps[tr.Jobs[0].ID][0]
		f.appendLogs(step.ID, tenBytes(1, 3), 0)
		f.appendLogs(kept.Steps[kept.Jobs[0].ID][0].ID, tenBytes(1, 3), 0)

		for _, status := range []string{"pending", "running", "paused"} {
			f.setRunStatus(tr.Run.ID, status)
			wantErr(t, "delete with a "+status+" run", f.st.DeletePipeline(f.ctx, p.ID), store.ErrConflict)
		}
		f.setRunStatus(tr.Run.ID, "success")
		noErr(t, "DeletePipeline", f.st.DeletePipeline(f.ctx, p.ID))

		_, err = f.st.GetPipeline(f.ctx, p.ID)
		wantErr(t, "pipeline", err, store.ErrNotFound)
		_, err = f.st.GetSpec(f.ctx, p.ID, 0)
		wantErr(t, "spec", err, store.ErrNotFound)
		_, err = f.st.GetRun(f.ctx, tr.Run.ID)
		wantErr(t, "run", err, store.ErrNotFound)
		_, err = f.st.GetRunTree(f.ctx, tr.Run.ID)
		wantErr(t, "run tree", err, store.ErrNotFound)
		_, err = f.st.Timeline(f.ctx, tr.Run.ID)
		wantErr(t, "timeline", err, store.ErrNotFound)
		_, err = f.st.ListLogs(f.ctx, step.ID, store.LogQuery{})
		wantErr(t, "logs", err, store.ErrNotFound)
		wantErr(t, "delete again", f.st.DeletePipeline(f.ctx, p.ID), store.ErrNotFound)

		// Nothing of the other pipeline went.
		if got := f.logs(kept.Steps[kept.Jobs[0].ID][0].ID, store.LogQuery{}); len(got) != 3 {
			t.Fatalf("the other pipeline's log has %d lines", len(got))
		}
		runs, total, err := f.st.ListRuns(f.ctx, store.RunFilter{})
		noErr(t, "ListRuns", err)
		if total != 1 || runs[0].ID != kept.Run.ID {
			t.Fatalf("runs after delete: %d", total)
		}
		// The name is free again.
		f.pipeline("proj", "p")
	})
}

func testHealth(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("PingAndOutage", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 1, 1)
		noErr(t, "Ping", f.st.Ping(f.ctx))
		noErr(t, "Close", f.st.Close())
		// An unreachable database is an error, never "not found".
		if err := f.st.Ping(f.ctx); err == nil {
			t.Fatal("Ping after Close succeeded")
		}
		checks := map[string]error{}
		_, checks["GetPipeline"] = f.st.GetPipeline(f.ctx, p.ID)
		_, checks["GetRun"] = f.st.GetRun(f.ctx, tr.Run.ID)
		_, checks["GetRunTree"] = f.st.GetRunTree(f.ctx, tr.Run.ID)
		_, checks["GetSpec"] = f.st.GetSpec(f.ctx, p.ID, 0)
		_, checks["TokenByHash"] = f.st.TokenByHash(f.ctx, []byte("h"))
		_, checks["ClaimJob"] = f.st.ClaimJob(f.ctx, "a", []string{linux}, time.Minute)
		_, checks["QueuedRoutes"] = f.st.QueuedRoutes(f.ctx, time.Now())
		checks["ReleaseJob"] = f.st.ReleaseJob(f.ctx, tr.Jobs[0].ID, "lease")
		_, checks["SetQueuedReason"] = f.st.SetQueuedReason(f.ctx, linux, "r")
		_, checks["RunningJobsByAgent"] = f.st.RunningJobsByAgent(f.ctx)
		_, checks["AppendStepLogs"] = f.st.AppendStepLogs(f.ctx, "lease", "s", tenBytes(1, 1), 0)
		_, checks["GetAgent"] = f.st.GetAgent(f.ctx, "a")
		_, checks["ListAgents"] = f.st.ListAgents(f.ctx)
		checks["DeleteAgent"] = f.st.DeleteAgent(f.ctx, "a")
		checks["RegisterAgent"] = f.st.RegisterAgent(f.ctx, []byte("h"), time.Now(), &store.Agent{ID: "a"},
			&store.APIToken{ID: "t", Hash: []byte("t")})
		_, checks["ListLogs"] = f.st.ListLogs(f.ctx, "s", store.LogQuery{})
		_, checks["Timeline"] = f.st.Timeline(f.ctx, tr.Run.ID)
		checks["UpdateRunTx"] = f.st.UpdateRunTx(f.ctx, tr.Run.ID, func(store.RunTx) error { return nil })
		checks["DeletePipeline"] = f.st.DeletePipeline(f.ctx, p.ID)
		for name, err := range checks {
			if err == nil || errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s on a closed store: %v, want an error that is not ErrNotFound", name, err)
			}
		}
	})
}
