package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/runnel-ci/runnel/internal/store"
)

func testPipelines(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("CreateGetUpdate", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "build")
		got, err := f.st.GetPipeline(f.ctx, p.ID)
		noErr(t, "GetPipeline", err)
		sameJSON(t, "stored pipeline", got, p)
		utc(t, "pipeline", &got.CreatedAt, &got.UpdatedAt)

		_, err = f.st.GetPipeline(f.ctx, "nope")
		wantErr(t, "GetPipeline unknown", err, store.ErrNotFound)

		// Editable fields change; head, status, project and creation do not.
		upd := *got
		upd.Name, upd.Description, upd.RepoURL, upd.DefaultBranch = "build2", "d2", "https://x/y.git", "dev"
		upd.PipelineFilePath, upd.SaveMode, upd.PRTargetBranch = "ci.yaml", "pr", "main"
		upd.Metadata = map[string]any{"k": "v"}
		upd.TriggerCronExpression, upd.TriggerTimezone = "0 4 * * *", "Asia/Hong_Kong"
		upd.UpdatedAt = at(60)
		upd.HeadVersion, upd.HeadCommitSHA, upd.LastRunState, upd.ProjectID = 9, "x", "running", "other"
		upd.CreatedBy, upd.CreatedAt = "mallory", at(99)
		noErr(t, "UpdatePipeline", f.st.UpdatePipeline(f.ctx, &upd))
		got, err = f.st.GetPipeline(f.ctx, p.ID)
		noErr(t, "GetPipeline", err)
		want := upd
		want.HeadVersion, want.HeadCommitSHA, want.LastRunState, want.ProjectID = 0, "", "", "proj"
		want.CreatedBy, want.CreatedAt = "alice", t0
		sameJSON(t, "updated pipeline", got, &want)

		cronP := &store.Pipeline{ID: newID("pl"), ProjectID: "proj", Name: "nightly", Metadata: map[string]any{},
			TriggerCronExpression: "30 2 * * *", TriggerTimezone: "Europe/Berlin", CreatedAt: t0, UpdatedAt: t0}
		noErr(t, "CreatePipeline with cron fields", f.st.CreatePipeline(f.ctx, cronP))
		got, err = f.st.GetPipeline(f.ctx, cronP.ID)
		noErr(t, "GetPipeline", err)
		sameJSON(t, "pipeline with cron fields", got, cronP)

		wantErr(t, "UpdatePipeline unknown",
			f.st.UpdatePipeline(f.ctx, &store.Pipeline{ID: "nope", Name: "n"}), store.ErrNotFound)
		wantErr(t, "CreatePipeline without name",
			f.st.CreatePipeline(f.ctx, &store.Pipeline{ID: newID("pl")}), store.ErrInvalid)
	})

	t.Run("DuplicateNames", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		a := f.pipeline("proj", "deploy")
		err := f.st.CreatePipeline(f.ctx, &store.Pipeline{ID: newID("pl"), ProjectID: "proj", Name: "deploy"})
		wantErr(t, "same name, same project", err, store.ErrConflict)
		err = f.st.CreatePipeline(f.ctx, &store.Pipeline{ID: a.ID, ProjectID: "proj", Name: "other"})
		wantErr(t, "same id", err, store.ErrConflict)
		f.pipeline("proj2", "deploy") // another project may use the name
		b := f.pipeline("proj", "test")
		b.Name = "deploy"
		wantErr(t, "rename onto a used name", f.st.UpdatePipeline(f.ctx, b), store.ErrConflict)
	})

	t.Run("ListAndSearch", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		for i := range 23 {
			f.pipeline("p1", fmt.Sprintf("Service-%02d", i))
		}
		for _, n := range []string{"a_b", "axb", "50%", "50x", `back\slash`, "ÜNÏCODE Straße"} {
			f.pipeline("p2", n)
		}
		cases := []struct {
			name      string
			filter    store.PipelineFilter
			wantTotal int
			wantNames []string // nil: only the count is checked
			wantCount int
		}{
			{"first page", store.PipelineFilter{ProjectID: "p1", Limit: 10}, 23,
				[]string{"Service-00", "Service-01", "Service-02", "Service-03", "Service-04", "Service-05",
					"Service-06", "Service-07", "Service-08", "Service-09"}, 10},
			{"last partial page", store.PipelineFilter{ProjectID: "p1", Limit: 10, Offset: 20}, 23,
				[]string{"Service-20", "Service-21", "Service-22"}, 3},
			{"offset at end", store.PipelineFilter{ProjectID: "p1", Limit: 10, Offset: 23}, 23, []string{}, 0},
			{"offset past end", store.PipelineFilter{ProjectID: "p1", Limit: 10, Offset: 500}, 23, []string{}, 0},
			{"no limit", store.PipelineFilter{ProjectID: "p1"}, 23, nil, 23},
			{"offset without limit", store.PipelineFilter{ProjectID: "p1", Offset: 21}, 23,
				[]string{"Service-21", "Service-22"}, 2},
			{"all projects", store.PipelineFilter{}, 29, nil, 29},
			{"search is case-insensitive", store.PipelineFilter{Search: "service-1"}, 10, nil, 10},
			{"search upper", store.PipelineFilter{Search: "SERVICE-22"}, 1, []string{"Service-22"}, 1},
			{"underscore is literal", store.PipelineFilter{Search: "_"}, 1, []string{"a_b"}, 1},
			{"percent is literal", store.PipelineFilter{Search: "%"}, 1, []string{"50%"}, 1},
			{"backslash is literal", store.PipelineFilter{Search: `\`}, 1, []string{`back\slash`}, 1},
			{"unicode case folding", store.PipelineFilter{Search: "ünïcode straße"}, 1, []string{"ÜNÏCODE Straße"}, 1},
			{"search and project", store.PipelineFilter{ProjectID: "p2", Search: "50"}, 2, []string{"50%", "50x"}, 2},
			{"no match", store.PipelineFilter{Search: "zzz"}, 0, []string{}, 0},
			{"within p2", store.PipelineFilter{Within: []string{"p2", "p9"}}, 6, nil, 6},
			{"by creator", store.PipelineFilter{CreatorID: "usr_alice"}, 29, nil, 29},
			{"by another creator", store.PipelineFilter{CreatorID: "usr_bob"}, 0, []string{}, 0},
			{"within nothing", store.PipelineFilter{Within: []string{}}, 0, []string{}, 0},
			{"within and project", store.PipelineFilter{ProjectID: "p1", Within: []string{"p2"}}, 0, []string{}, 0},
		}
		for _, c := range cases {
			ps, total, err := f.st.ListPipelines(f.ctx, c.filter)
			noErr(t, c.name, err)
			if total != c.wantTotal || len(ps) != c.wantCount {
				t.Errorf("%s: got %d of %d, want %d of %d", c.name, len(ps), total, c.wantCount, c.wantTotal)
				continue
			}
			if c.wantNames != nil {
				names := []string{}
				for _, p := range ps {
					names = append(names, p.Name)
				}
				sameJSON(t, c.name, names, c.wantNames)
			}
		}
		_, _, err := f.st.ListPipelines(f.ctx, store.PipelineFilter{Offset: -1})
		wantErr(t, "negative offset", err, store.ErrInvalid)
	})
}

func testSpecs(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("VersionsHeadAndReplay", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		_, err := f.st.GetSpec(f.ctx, p.ID, 0)
		wantErr(t, "head of a pipeline without spec", err, store.ErrNotFound)

		spec1 := json.RawMessage(`{"stages":[{"name":"a"}]}`)
		sum := sha256.Sum256(spec1)
		v1, replayed, err := f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: p.ID, Spec: spec1, Format: "yaml",
			CommitMessage: "first", Editor: "alice", RequestID: "req-1", CreatedAt: at(1)}, "")
		noErr(t, "SaveSpec v1", err)
		if replayed || v1.Version != 1 || v1.CommitSHA != hex.EncodeToString(sum[:]) {
			t.Fatalf("v1 = %+v replayed=%v; want version 1 with the spec's SHA-256", v1, replayed)
		}
		text := "# the definition as written\nv: 2 # kept\n"
		v2, _, err := f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: p.ID, Spec: json.RawMessage(`{"v":2}`),
			CommitSHA: "sha2", Format: "json", Text: text, RequestID: "req-2", CreatedAt: at(2)}, v1.CommitSHA)
		noErr(t, "SaveSpec v2 on head v1", err)
		if v2.Version != 2 || v2.CommitSHA != "sha2" {
			t.Fatalf("v2 = %+v, want version 2 sha2", v2)
		}
		// The text as written comes back as written; a version saved as an
		// object has none.
		for v, want := range map[int]string{2: text, 1: ""} {
			got, err := f.st.GetSpec(f.ctx, p.ID, v)
			noErr(t, "GetSpec", err)
			if got.Text != want {
				t.Fatalf("version %d text %q, want %q", v, got.Text, want)
			}
		}
		got, err := f.st.GetPipeline(f.ctx, p.ID)
		noErr(t, "GetPipeline", err)
		if got.HeadVersion != 2 || got.HeadCommitSHA != "sha2" {
			t.Fatalf("pipeline head = %d %q, want 2 sha2", got.HeadVersion, got.HeadCommitSHA)
		}

		// A stale head is refused with the current one.
		_, _, err = f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: p.ID, Spec: json.RawMessage(`{}`),
			CommitSHA: "sha3"}, v1.CommitSHA)
		var hc *store.HeadConflictError
		if !errors.As(err, &hc) || hc.Current != "sha2" || !errors.Is(err, store.ErrConflict) {
			t.Fatalf("stale head: got %v, want HeadConflictError{Current: sha2} wrapping ErrConflict", err)
		}

		// A replay returns the saved version, even with a head that is stale
		// by now, and writes nothing.
		again, replayed, err := f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: p.ID,
			Spec: json.RawMessage(`{"other":true}`), RequestID: "req-1"}, "")
		noErr(t, "replay", err)
		if !replayed {
			t.Fatal("replay: replayed = false")
		}
		sameJSON(t, "replayed version", again, v1)
		again, replayed, err = f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: p.ID, Spec: json.RawMessage(`{}`),
			RequestID: "req-2"}, v1.CommitSHA)
		noErr(t, "replay with stale head", err)
		if !replayed || again.Version != 2 {
			t.Fatalf("replay with stale head: %+v replayed=%v", again, replayed)
		}

		head, err := f.st.GetSpec(f.ctx, p.ID, 0)
		noErr(t, "GetSpec head", err)
		sameJSON(t, "head", head, v2)
		one, err := f.st.GetSpec(f.ctx, p.ID, 1)
		noErr(t, "GetSpec 1", err)
		sameJSON(t, "version 1", one, v1)
		utc(t, "spec", &one.CreatedAt)
		_, err = f.st.GetSpec(f.ctx, p.ID, 3)
		wantErr(t, "GetSpec missing version", err, store.ErrNotFound)

		_, _, err = f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: "nope", Spec: spec1}, "")
		wantErr(t, "SaveSpec unknown pipeline", err, store.ErrNotFound)
		_, _, err = f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: p.ID, Spec: json.RawMessage(`{`)}, "")
		wantErr(t, "SaveSpec invalid JSON", err, store.ErrInvalid)
		// The same request id on another pipeline is another request.
		q := f.pipeline("proj", "q")
		vq, replayed, err := f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: q.ID, Spec: spec1, RequestID: "req-1"}, "")
		noErr(t, "request id of another pipeline", err)
		if replayed || vq.Version != 1 {
			t.Fatalf("request id of another pipeline: %+v replayed=%v", vq, replayed)
		}
	})

	t.Run("ConcurrentSaves", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "p")
		// One request sent 20 times at once: one version.
		const n = 20
		versions := make([]int, n)
		fresh := make([]bool, n)
		parallel(n, func(i int) {
			sv, replayed, err := f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: p.ID,
				Spec: json.RawMessage(`{"same":1}`), RequestID: "once"}, "")
			if err != nil {
				t.Errorf("SaveSpec: %v", err)
				return
			}
			versions[i], fresh[i] = sv.Version, !replayed
		})
		created := 0
		for i := range n {
			if versions[i] != 1 {
				t.Errorf("call %d got version %d, want 1", i, versions[i])
			}
			if fresh[i] {
				created++
			}
		}
		if created != 1 {
			t.Errorf("%d calls created a version, want 1", created)
		}
		// Different requests at once: distinct consecutive versions.
		var mu sync.Mutex
		seen := map[int]bool{}
		parallel(10, func(i int) {
			sv, _, err := f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: p.ID,
				Spec: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), RequestID: fmt.Sprintf("r%d", i)}, "")
			if err != nil {
				t.Errorf("SaveSpec: %v", err)
				return
			}
			mu.Lock()
			seen[sv.Version] = true
			mu.Unlock()
		})
		for v := 2; v <= 11; v++ {
			if !seen[v] {
				t.Errorf("version %d missing; got %v", v, seen)
			}
		}
		// Concurrent saves that all name head 11: exactly one wins.
		head, err := f.st.GetSpec(f.ctx, p.ID, 0)
		noErr(t, "GetSpec", err)
		var wins, conflicts int
		parallel(8, func(i int) {
			_, _, err := f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: p.ID,
				Spec: json.RawMessage(fmt.Sprintf(`{"race":%d}`, i))}, head.CommitSHA)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("SaveSpec: %v", err)
			}
		})
		if wins != 1 || conflicts != 7 {
			t.Errorf("optimistic saves: %d won, %d conflicted; want 1 and 7", wins, conflicts)
		}
	})
}
