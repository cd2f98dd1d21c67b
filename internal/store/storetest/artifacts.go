package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

func (f *fx) artifact(runID, jobKey, name string, created time.Time, expires *time.Time) *store.Artifact {
	f.t.Helper()
	id := newID("art")
	a := &store.Artifact{ID: id, RunID: runID, JobRunID: newID("jr"), JobKey: jobKey, Name: name, Size: 42,
		SHA256: strings.Repeat("ab", 32), BlobKey: "artifacts/" + runID + "/" + id, CreatedAt: created, ExpiresAt: expires}
	return a
}

func (f *fx) cache(pipelineID, key string, created time.Time) *store.Cache {
	f.t.Helper()
	id := newID("cac")
	c := &store.Cache{ID: id, PipelineID: pipelineID, Key: key, Size: 7, SHA256: strings.Repeat("cd", 32),
		BlobKey: "caches/" + pipelineID + "/" + id, CreatedAt: created, LastUsedAt: created}
	noErr(f.t, "PutCache "+key, f.st.PutCache(f.ctx, c))
	return c
}

func testArtifacts(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("PutReplaceConflict", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 2, 1)
		other := f.run(p.ID, 1, 1)

		a := f.artifact(tr.Run.ID, "build/job0", "dist", at(1), ptr(at(100)))
		replaced, err := f.st.PutArtifact(f.ctx, a)
		noErr(t, "PutArtifact", err)
		if replaced != "" {
			t.Fatalf("first upload replaced %q", replaced)
		}
		got, err := f.st.GetArtifact(f.ctx, tr.Run.ID, "dist")
		noErr(t, "GetArtifact", err)
		sameJSON(t, "artifact", got, a)
		utc(t, "artifact", &got.CreatedAt, got.ExpiresAt)
		got, err = f.st.GetArtifactByID(f.ctx, a.ID)
		noErr(t, "GetArtifactByID", err)
		sameJSON(t, "artifact by id", got, a)

		// Another job of the run may not take the name; the first stays.
		b := f.artifact(tr.Run.ID, "build/job1", "dist", at(2), nil)
		_, err = f.st.PutArtifact(f.ctx, b)
		wantErr(t, "another job's upload of the name", err, store.ErrConflict)
		if !strings.Contains(err.Error(), "build/job0") {
			t.Errorf("conflict message %q does not name the job holding the name", err)
		}
		_, err = f.st.GetArtifactByID(f.ctx, b.ID)
		wantErr(t, "the refused artifact", err, store.ErrNotFound)

		// A later attempt of the same job replaces its own upload.
		a2 := f.artifact(tr.Run.ID, "build/job0", "dist", at(3), nil)
		replaced, err = f.st.PutArtifact(f.ctx, a2)
		noErr(t, "PutArtifact by a later attempt", err)
		if replaced != a.BlobKey {
			t.Fatalf("replaced blob %q, want %q", replaced, a.BlobKey)
		}
		got, err = f.st.GetArtifact(f.ctx, tr.Run.ID, "dist")
		noErr(t, "GetArtifact after replacement", err)
		sameJSON(t, "replacement", got, a2)
		_, err = f.st.GetArtifactByID(f.ctx, a.ID)
		wantErr(t, "the replaced row", err, store.ErrNotFound)

		// The same name in another run is another artifact.
		c := f.artifact(other.Run.ID, "build/job1", "dist", at(4), nil)
		_, err = f.st.PutArtifact(f.ctx, c)
		noErr(t, "same name in another run", err)
		_, err = f.st.PutArtifact(f.ctx, f.artifact(tr.Run.ID, "build/job1", "coverage 100%_x", at(5), nil))
		noErr(t, "a second name", err)

		list, err := f.st.ListArtifacts(f.ctx, tr.Run.ID)
		noErr(t, "ListArtifacts", err)
		if len(list) != 2 || list[0].Name != "coverage 100%_x" || list[1].Name != "dist" {
			t.Fatalf("ListArtifacts = %+v, want coverage then dist", list)
		}
		list, err = f.st.ListArtifacts(f.ctx, "run_unknown")
		noErr(t, "ListArtifacts of an unknown run", err)
		if list == nil || len(list) != 0 {
			t.Fatalf("ListArtifacts of an unknown run = %#v, want empty", list)
		}

		_, err = f.st.PutArtifact(f.ctx, f.artifact("run_unknown", "build/job0", "x", at(1), nil))
		wantErr(t, "upload to an unknown run", err, store.ErrNotFound)
		bad := f.artifact(tr.Run.ID, "build/job0", "", at(1), nil)
		_, err = f.st.PutArtifact(f.ctx, bad)
		wantErr(t, "empty name", err, store.ErrInvalid)
		bad = f.artifact(tr.Run.ID, "build/job0", "bad\xff", at(1), nil)
		_, err = f.st.PutArtifact(f.ctx, bad)
		wantErr(t, "invalid UTF-8", err, store.ErrInvalid)

		dup := f.artifact(tr.Run.ID, "build/job0", "another", at(1), nil)
		dup.ID = a2.ID
		_, err = f.st.PutArtifact(f.ctx, dup)
		wantErr(t, "a used id", err, store.ErrConflict)

		noErr(t, "DeleteArtifact", f.st.DeleteArtifact(f.ctx, a2.ID))
		wantErr(t, "DeleteArtifact again", f.st.DeleteArtifact(f.ctx, a2.ID), store.ErrNotFound)
		_, err = f.st.GetArtifact(f.ctx, tr.Run.ID, "dist")
		wantErr(t, "deleted artifact", err, store.ErrNotFound)
		// Once deleted, the name is free for any job.
		_, err = f.st.PutArtifact(f.ctx, f.artifact(tr.Run.ID, "build/job1", "dist", at(6), nil))
		noErr(t, "upload of a freed name", err)
	})

	t.Run("ConcurrentUploads", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 1, 1)
		const n = 8
		errs := make([]error, n)
		parallel(n, func(i int) {
			_, errs[i] = f.st.PutArtifact(f.ctx, f.artifact(tr.Run.ID, "job"+string(rune('a'+i)), "same", at(i), nil))
		})
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("concurrent upload: %v, want success or ErrConflict", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d concurrent uploads of one name succeeded, want 1", won)
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		tr := f.run(p.ID, 1, 1)
		late := f.artifact(tr.Run.ID, "k", "late", at(0), ptr(at(30)))
		early := f.artifact(tr.Run.ID, "k", "early", at(0), ptr(at(10)))
		forever := f.artifact(tr.Run.ID, "k", "forever", at(0), nil)
		for _, a := range []*store.Artifact{late, early, forever} {
			_, err := f.st.PutArtifact(f.ctx, a)
			noErr(t, "PutArtifact", err)
		}
		ids := func(list []*store.Artifact) string {
			var s []string
			for _, a := range list {
				s = append(s, a.Name)
			}
			return strings.Join(s, " ")
		}
		for _, c := range []struct {
			now   time.Time
			limit int
			want  string
		}{
			{at(9), 10, ""},
			{at(10), 10, "early"},
			{at(100), 10, "early late"},
			{at(100), 1, "early"},
		} {
			got, err := f.st.ExpiredArtifacts(f.ctx, c.now, c.limit)
			noErr(t, "ExpiredArtifacts", err)
			if ids(got) != c.want {
				t.Errorf("ExpiredArtifacts(%v, %d) = %q, want %q", c.now.Sub(t0), c.limit, ids(got), c.want)
			}
		}
	})

	t.Run("GoWithTheirRun", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		keep := f.pipeline("proj", "keep")
		tr := f.run(p.ID, 1, 1)
		kept := f.run(keep.ID, 1, 1)
		a := f.artifact(tr.Run.ID, "k", "a", at(0), nil)
		b := f.artifact(kept.Run.ID, "k", "b", at(0), nil)
		for _, x := range []*store.Artifact{a, b} {
			_, err := f.st.PutArtifact(f.ctx, x)
			noErr(t, "PutArtifact", err)
		}
		f.cache(p.ID, "go-mod", at(0))
		kc := f.cache(keep.ID, "go-mod", at(0))
		f.setRunStatus(tr.Run.ID, "success")
		noErr(t, "DeletePipeline", f.st.DeletePipeline(f.ctx, p.ID))
		_, err := f.st.GetArtifactByID(f.ctx, a.ID)
		wantErr(t, "artifact of a deleted run", err, store.ErrNotFound)
		list, err := f.st.ListCaches(f.ctx, p.ID)
		noErr(t, "ListCaches", err)
		if len(list) != 0 {
			t.Fatalf("caches of a deleted pipeline: %d", len(list))
		}
		_, err = f.st.GetArtifactByID(f.ctx, b.ID)
		noErr(t, "another pipeline's artifact", err)
		list, err = f.st.ListCaches(f.ctx, keep.ID)
		noErr(t, "ListCaches", err)
		if len(list) != 1 || list[0].ID != kc.ID {
			t.Fatalf("another pipeline's caches: %+v", list)
		}
	})
}

func testCaches(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("FindExactPrefixNewest", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		other := f.pipeline("proj", "other")
		old := f.cache(p.ID, "go-linux-aaa", at(1))
		newer := f.cache(p.ID, "go-linux-bbb", at(2))
		f.cache(p.ID, "go-darwin-ccc", at(3))
		pct := f.cache(p.ID, "100%_done", at(4))
		f.cache(p.ID, "100xxdone", at(5))
		uni := f.cache(p.ID, "ünï-κλειδί-1", at(6))
		f.cache(other.ID, "go-linux-zzz", at(9))

		wantErr(t, "a taken key", f.st.PutCache(f.ctx, &store.Cache{ID: newID("cac"), PipelineID: p.ID, Key: "go-linux-aaa", BlobKey: "x", CreatedAt: at(7)}), store.ErrConflict)
		wantErr(t, "unknown pipeline", f.st.PutCache(f.ctx, &store.Cache{ID: newID("cac"), PipelineID: "pl_unknown", Key: "k", BlobKey: "x"}), store.ErrNotFound)
		wantErr(t, "empty key", f.st.PutCache(f.ctx, &store.Cache{ID: newID("cac"), PipelineID: p.ID, BlobKey: "x"}), store.ErrInvalid)

		for _, c := range []struct {
			what     string
			exact    string
			prefixes []string
			want     *store.Cache
		}{
			{"exact", "go-linux-aaa", []string{"go-"}, old},
			{"exact wins over a newer prefix match", "go-linux-aaa", []string{"go-linux-"}, old},
			{"newest by prefix", "go-linux-nope", []string{"go-linux-"}, newer},
			{"prefixes in order", "nope", []string{"nope-", "go-linux-a", "go-"}, old},
			{"no exact given", "", []string{"go-linux"}, newer},
			{"% and _ are literal", "", []string{"100%_"}, pct},
			{"% alone matches nothing literal", "", []string{"%"}, nil},
			{"_ is not a wildcard", "", []string{"100_"}, nil},
			{"multi-byte prefix", "", []string{"ünï-κλ"}, uni},
			{"prefix longer than every key", "", []string{"go-linux-aaa-and-more"}, nil},
			{"another pipeline's key", "go-linux-zzz", []string{"go-linux-z"}, nil},
			{"miss", "x", []string{"y", "z"}, nil},
		} {
			got, err := f.st.FindCache(f.ctx, p.ID, c.exact, c.prefixes)
			if c.want == nil {
				wantErr(t, c.what, err, store.ErrNotFound)
				continue
			}
			noErr(t, c.what, err)
			if got.ID != c.want.ID {
				t.Errorf("%s: found %q, want %q", c.what, got.Key, c.want.Key)
			}
		}
		found, err := f.st.FindCache(f.ctx, p.ID, "go-linux-aaa", nil)
		noErr(t, "FindCache", err)
		sameJSON(t, "cache", found, old)
		utc(t, "cache", &found.CreatedAt, &found.LastUsedAt)

		list, err := f.st.ListCaches(f.ctx, p.ID)
		noErr(t, "ListCaches", err)
		var keys []string
		for _, c := range list {
			keys = append(keys, c.Key)
		}
		if want := "100%_done 100xxdone go-darwin-ccc go-linux-aaa go-linux-bbb ünï-κλειδί-1"; strings.Join(keys, " ") != want {
			t.Errorf("ListCaches = %s, want %s", strings.Join(keys, " "), want)
		}
	})

	t.Run("TouchStaleDelete", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		a := f.cache(p.ID, "a", at(1))
		f.cache(p.ID, "b", at(2))
		f.cache(p.ID, "c", at(3))
		noErr(t, "TouchCache", f.st.TouchCache(f.ctx, a.ID, at(50)))
		// Never back in time.
		noErr(t, "TouchCache older", f.st.TouchCache(f.ctx, a.ID, at(40)))
		got, err := f.st.FindCache(f.ctx, p.ID, "a", nil)
		noErr(t, "FindCache", err)
		if !got.LastUsedAt.Equal(at(50)) || !got.CreatedAt.Equal(at(1)) {
			t.Fatalf("after touches: used %v created %v, want used %v", got.LastUsedAt, got.CreatedAt, at(50))
		}
		wantErr(t, "TouchCache unknown", f.st.TouchCache(f.ctx, "cac_unknown", at(1)), store.ErrNotFound)

		names := func(list []*store.Cache) string {
			var s []string
			for _, c := range list {
				s = append(s, c.Key)
			}
			return strings.Join(s, " ")
		}
		for _, x := range []struct {
			before time.Time
			limit  int
			want   string
		}{
			{at(2), 10, ""},
			{at(3), 10, "b"},
			{at(50), 10, "b c"},
			{at(51), 10, "b c a"},
			{at(51), 2, "b c"},
			{time.Time{}, 10, ""},
		} {
			got, err := f.st.StaleCaches(f.ctx, x.before, x.limit)
			noErr(t, "StaleCaches", err)
			if names(got) != x.want {
				t.Errorf("StaleCaches(%v, %d) = %q, want %q", x.before.Sub(t0), x.limit, names(got), x.want)
			}
		}
		noErr(t, "DeleteCache", f.st.DeleteCache(f.ctx, a.ID))
		wantErr(t, "DeleteCache again", f.st.DeleteCache(f.ctx, a.ID), store.ErrNotFound)
		_, err = f.st.FindCache(f.ctx, p.ID, "a", nil)
		wantErr(t, "deleted cache", err, store.ErrNotFound)
		// The key is free again.
		f.cache(p.ID, "a", at(60))
	})
}

func testCheckLease(t *testing.T, open func(t *testing.T) store.Store) {
	f := newFx(t, open)
	p := f.pipeline("proj", "p")
	tr := f.run(p.ID, 1, 1)
	f.queue(tr.Run.ID, time.Now().UTC().Add(-time.Second), nil)
	c, err := f.st.ClaimJob(f.ctx, "a", []string{linux}, time.Minute)
	noErr(t, "ClaimJob", err)
	noErr(t, "CheckLease held", f.st.CheckLease(f.ctx, c.ID, c.LeaseID))
	wantErr(t, "another lease", f.st.CheckLease(f.ctx, c.ID, "lease_wrong"), store.ErrLeaseLost)
	wantErr(t, "no lease", f.st.CheckLease(f.ctx, c.ID, ""), store.ErrLeaseLost)
	wantErr(t, "unknown job run", f.st.CheckLease(f.ctx, "jr_unknown", c.LeaseID), store.ErrLeaseLost)
	// CheckLease renews nothing and acknowledges nothing.
	after := f.tree(tr.Run.ID).Jobs[0]
	if after.Acked || !after.LeaseExpiresAt.Equal(*c.LeaseExpiresAt) {
		t.Fatalf("CheckLease changed the job run: acked %v, lease until %v (was %v)", after.Acked, after.LeaseExpiresAt, c.LeaseExpiresAt)
	}

	// Reassigned: the first holder's lease is lost.
	f.queue(tr.Run.ID, time.Now().UTC().Add(-time.Second), nil)
	c2, err := f.st.ClaimJob(f.ctx, "b", []string{linux}, 200*time.Millisecond)
	noErr(t, "reclaim", err)
	wantErr(t, "after reassignment", f.st.CheckLease(f.ctx, c.ID, c.LeaseID), store.ErrLeaseLost)
	noErr(t, "the new holder", f.st.CheckLease(f.ctx, c2.ID, c2.LeaseID))
	// Expired: lost, even though nobody took the job yet.
	time.Sleep(time.Until(*c2.LeaseExpiresAt) + 10*time.Millisecond)
	wantErr(t, "expired", f.st.CheckLease(f.ctx, c2.ID, c2.LeaseID), store.ErrLeaseLost)
}
