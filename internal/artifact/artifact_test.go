package artifact

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
	"github.com/runnel-ci/runnel/internal/worker"
)

// clock is a settable clock for the service; the store keeps real time
// (leases are real).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fx is a service on a fresh SQLite database and a fileblob bucket, with one
// pipeline, one run and its two jobs claimed.
type fx struct {
	t      *testing.T
	ctx    context.Context
	st     *sqlstore.Store
	dir    string
	bucket *blob.Bucket
	clock  *clock
	svc    *Service
	pl     *store.Pipeline
	run    *store.Run
	// jobs are the run's two job runs, claimed: refs[i] holds their leases.
	jobs []*store.JobRun
	refs []worker.JobRef
}

func newFx(t *testing.T, tweak func(*Options)) *fx {
	t.Helper()
	ctx := t.Context()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"), sqlstore.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	dir := filepath.Join(t.TempDir(), "blobs")
	b, err := OpenBucket(ctx, (&url.URL{Scheme: "file", Path: dir}).String())
	if err != nil {
		t.Fatalf("OpenBucket: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	f := &fx{t: t, ctx: ctx, st: st, dir: dir, bucket: b, clock: &clock{t: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)}}
	o := Options{Store: st, Bucket: b, ArtifactRetention: 24 * time.Hour, CacheRetention: 7 * 24 * time.Hour, Now: f.clock.Now}
	if tweak != nil {
		tweak(&o)
	}
	f.svc = New(o)
	f.pl = f.pipeline("p")
	f.run, f.jobs, f.refs = f.claimedRun(f.pl.ID, "build/a", "build/b")
	return f
}

func (f *fx) pipeline(name string) *store.Pipeline {
	f.t.Helper()
	p := &store.Pipeline{ID: runnel.NewID("pl"), ProjectID: "proj", Name: name}
	if err := f.st.CreatePipeline(f.ctx, p); err != nil {
		f.t.Fatalf("CreatePipeline: %v", err)
	}
	return p
}

// claimedRun creates a run of the pipeline with one queued job per key and
// claims them all.
func (f *fx) claimedRun(pipelineID string, keys ...string) (*store.Run, []*store.JobRun, []worker.JobRef) {
	f.t.Helper()
	now := time.Now().UTC()
	run := &store.Run{ID: runnel.NewID("run"), PipelineID: pipelineID, Status: "running", CreatedAt: now}
	nr := &store.NewRun{Run: run}
	for i, k := range keys {
		// Queued in order, so that they are claimed in order.
		queued := now.Add(time.Duration(i-len(keys)) * time.Millisecond)
		nr.Jobs = append(nr.Jobs, &store.JobRun{ID: runnel.NewID("jr"), RunID: run.ID, Key: k, Index: i, Status: "queued",
			Attempt: 1, QueuedAt: &queued})
	}
	if _, _, err := f.st.CreateRun(f.ctx, nr); err != nil {
		f.t.Fatalf("CreateRun: %v", err)
	}
	var jobs []*store.JobRun
	var refs []worker.JobRef
	for range keys {
		j, err := f.st.ClaimJob(f.ctx, "agent", []string{""}, time.Hour)
		if err != nil {
			f.t.Fatalf("ClaimJob: %v", err)
		}
		jobs = append(jobs, j)
		refs = append(refs, worker.JobRef{PipelineID: pipelineID, RunID: run.ID, JobRunID: j.ID, JobKey: j.Key, LeaseID: j.LeaseID})
	}
	return run, jobs, refs
}

// reclaim takes a job back and claims it again: a later attempt, with a new
// lease.
func (f *fx) reclaim(ref worker.JobRef) worker.JobRef {
	f.t.Helper()
	err := f.st.UpdateRunTx(f.ctx, ref.RunID, func(tx store.RunTx) error {
		tr, err := tx.Tree()
		if err != nil {
			return err
		}
		for _, j := range tr.Jobs {
			if j.ID == ref.JobRunID {
				now := time.Now().UTC().Add(-time.Second)
				j.Status, j.QueuedAt, j.AgentID, j.LeaseID, j.LeaseExpiresAt, j.StartedAt = "queued", &now, "", "", nil, nil
				j.Attempt++
				return tx.UpdateJob(j)
			}
		}
		return errors.New("no such job")
	})
	if err != nil {
		f.t.Fatalf("requeue: %v", err)
	}
	j, err := f.st.ClaimJob(f.ctx, "agent-2", []string{""}, time.Hour)
	if err != nil || j.ID != ref.JobRunID {
		f.t.Fatalf("reclaim: %v %+v", err, j)
	}
	ref.LeaseID = j.LeaseID
	return ref
}

// blobs lists the bucket's keys under prefix.
func (f *fx) blobs(prefix string) []string {
	f.t.Helper()
	var keys []string
	it := f.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		o, err := it.Next(f.ctx)
		if errors.Is(err, io.EOF) {
			return keys
		}
		if err != nil {
			f.t.Fatalf("list blobs: %v", err)
		}
		keys = append(keys, o.Key)
	}
}

// onlyReader hides everything but Read, so nothing can take a shortcut
// around streaming.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func readAll(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

func TestUploadDownloadRoundTrip(t *testing.T) {
	f := newFx(t, nil)
	data := randomBytes(t, 3<<20+17)
	js := f.svc.Bind(f.refs[0])
	info, err := js.UploadArtifact(f.ctx, "dist", onlyReader{bytes.NewReader(data)})
	if err != nil {
		t.Fatalf("UploadArtifact: %v", err)
	}
	if info.Name != "dist" || info.Size != int64(len(data)) || info.SHA256 != digest(data) {
		t.Fatalf("info = %+v, want size %d sha256 %s", info, len(data), digest(data))
	}

	// Another job of the run downloads it.
	rc, got, err := f.svc.Bind(f.refs[1]).DownloadArtifact(f.ctx, "dist")
	if err != nil {
		t.Fatalf("DownloadArtifact: %v", err)
	}
	if !bytes.Equal(readAll(t, rc), data) || got != info {
		t.Fatalf("downloaded info %+v, want %+v (or different bytes)", got, info)
	}

	list, err := f.svc.ListArtifacts(f.ctx, f.run.ID)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListArtifacts: %v %d", err, len(list))
	}
	a := list[0]
	if !strings.HasPrefix(a.ID, "art_") || a.BlobKey != "artifacts/"+f.run.ID+"/"+a.ID || a.JobRunID != f.jobs[0].ID ||
		a.JobKey != "build/a" || !a.CreatedAt.Equal(f.clock.Now()) || a.ExpiresAt == nil || !a.ExpiresAt.Equal(f.clock.Now().Add(24*time.Hour)) {
		t.Fatalf("stored artifact %+v", a)
	}
	if keys := f.blobs("artifacts/"); len(keys) != 1 || keys[0] != a.BlobKey {
		t.Fatalf("blobs %v, want just %s", keys, a.BlobKey)
	}
	stored, rc, err := f.svc.OpenArtifact(f.ctx, a.ID)
	if err != nil {
		t.Fatalf("OpenArtifact: %v", err)
	}
	if !bytes.Equal(readAll(t, rc), data) || stored.Name != "dist" {
		t.Fatalf("OpenArtifact: %+v", stored)
	}
	_, _, err = f.svc.OpenArtifact(f.ctx, "art_unknown")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("OpenArtifact of an unknown id: %v", err)
	}

	// A run's artifacts are its own: another run of the pipeline has none.
	other, _, refs := f.claimedRun(f.pl.ID, "build/a")
	_, _, err = f.svc.Bind(refs[0]).DownloadArtifact(f.ctx, "dist")
	if !errors.Is(err, action.ErrNoArtifact) {
		t.Fatalf("download from run %s: %v, want ErrNoArtifact", other.ID, err)
	}
	_, _, err = f.svc.Bind(f.refs[0]).DownloadArtifact(f.ctx, "nope")
	if !errors.Is(err, action.ErrNoArtifact) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("download of a missing name: %v", err)
	}
}

func TestEmptyArtifactAndBadNames(t *testing.T) {
	f := newFx(t, nil)
	js := f.svc.Bind(f.refs[0])
	info, err := js.UploadArtifact(f.ctx, "empty", strings.NewReader(""))
	if err != nil || info.Size != 0 || info.SHA256 != digest(nil) {
		t.Fatalf("empty upload: %+v %v", info, err)
	}
	for _, name := range []string{"", "a/b", `a\b`, "..", "tab\there", strings.Repeat("x", 256), "bad\xff"} {
		_, err := js.UploadArtifact(f.ctx, name, strings.NewReader("x"))
		if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "artifact name") {
			t.Errorf("name %q: %v, want an invalid name error", name, err)
		}
	}
	if keys := f.blobs(""); len(keys) != 1 {
		t.Fatalf("blobs after refused names: %v", keys)
	}
}

func TestReplacementByLaterAttempt(t *testing.T) {
	f := newFx(t, nil)
	first := f.svc.Bind(f.refs[0])
	if _, err := first.UploadArtifact(f.ctx, "dist", strings.NewReader("attempt 1")); err != nil {
		t.Fatal(err)
	}
	old := f.blobs("artifacts/")

	later := f.reclaim(f.refs[0])
	f.clock.Advance(time.Minute)
	info, err := f.svc.Bind(later).UploadArtifact(f.ctx, "dist", strings.NewReader("attempt 2"))
	if err != nil {
		t.Fatalf("upload by the later attempt: %v", err)
	}
	if info.SHA256 != digest([]byte("attempt 2")) {
		t.Fatalf("info %+v", info)
	}
	rc, _, err := f.svc.Bind(f.refs[1]).DownloadArtifact(f.ctx, "dist")
	if err != nil || string(readAll(t, rc)) != "attempt 2" {
		t.Fatalf("download after replacement: %v", err)
	}
	now := f.blobs("artifacts/")
	if len(now) != 1 || now[0] == old[0] {
		t.Fatalf("blobs after replacement %v (before %v): the replaced blob must be gone", now, old)
	}
	// The earlier attempt lost its lease: it can write nothing more.
	if _, err := first.UploadArtifact(f.ctx, "dist", strings.NewReader("zombie")); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("upload under the old lease: %v, want ErrLeaseLost", err)
	}
}

func TestConflictBetweenJobs(t *testing.T) {
	f := newFx(t, nil)
	if _, err := f.svc.Bind(f.refs[0]).UploadArtifact(f.ctx, "dist", strings.NewReader("from a")); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.Bind(f.refs[1]).UploadArtifact(f.ctx, "dist", strings.NewReader("from b"))
	if !errors.Is(err, action.ErrArtifactExists) || !strings.Contains(err.Error(), "job build/a uploaded it") {
		t.Fatalf("second job's upload: %v, want ErrArtifactExists naming build/a", err)
	}
	if keys := f.blobs("artifacts/"); len(keys) != 1 {
		t.Fatalf("blobs %v: the refused upload's blob must be deleted", keys)
	}
	rc, _, err := f.svc.Bind(f.refs[1]).DownloadArtifact(f.ctx, "dist")
	if err != nil || string(readAll(t, rc)) != "from a" {
		t.Fatalf("the first upload must stay: %v", err)
	}
}

func TestLeaseLostRefusesWrites(t *testing.T) {
	f := newFx(t, nil)
	stale := f.refs[0]
	stale.LeaseID = "lease_stale"
	js := f.svc.Bind(stale)
	if _, err := js.UploadArtifact(f.ctx, "dist", strings.NewReader("x")); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("upload: %v, want ErrLeaseLost", err)
	}
	if err := js.SaveCache(f.ctx, "k", strings.NewReader("x")); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("save cache: %v, want ErrLeaseLost", err)
	}

	// The lease is lost while the body streams: the blob is written, then
	// refused and deleted.
	var once sync.Once
	body := io.MultiReader(strings.NewReader(strings.Repeat("a", 1000)), readerFunc(func(p []byte) (int, error) {
		once.Do(func() { f.reclaim(f.refs[1]) })
		return 0, io.EOF
	}))
	if _, err := f.svc.Bind(f.refs[1]).UploadArtifact(f.ctx, "late", body); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("upload that lost its lease midway: %v, want ErrLeaseLost", err)
	}

	list, _ := f.st.ListArtifacts(f.ctx, f.run.ID)
	caches, _ := f.st.ListCaches(f.ctx, f.pl.ID)
	if len(list) != 0 || len(caches) != 0 {
		t.Fatalf("rows stored without a lease: %d artifacts, %d caches", len(list), len(caches))
	}
	if keys := f.blobs(""); len(keys) != 0 {
		t.Fatalf("blobs stored without a lease: %v", keys)
	}
}

type readerFunc func(p []byte) (int, error)

func (r readerFunc) Read(p []byte) (int, error) { return r(p) }

func TestCaches(t *testing.T) {
	f := newFx(t, nil)
	js := f.svc.Bind(f.refs[0])
	save := func(key, content string) {
		t.Helper()
		if err := js.SaveCache(f.ctx, key, strings.NewReader(content)); err != nil {
			t.Fatalf("SaveCache %s: %v", key, err)
		}
		f.clock.Advance(time.Minute)
	}
	save("go-linux-1", "one")
	save("go-linux-2", "two")
	save("go-darwin-1", "darwin")
	save("50%_off", "percent")

	restore := func(keys ...string) (string, string, error) {
		t.Helper()
		key, rc, err := f.svc.Bind(f.refs[1]).RestoreCache(f.ctx, keys)
		if err != nil {
			return "", "", err
		}
		return key, string(readAll(t, rc)), nil
	}
	for _, c := range []struct {
		keys             []string
		wantKey, content string
	}{
		{[]string{"go-linux-1", "go-"}, "go-linux-1", "one"},
		{[]string{"go-linux-9", "go-linux-"}, "go-linux-2", "two"},
		{[]string{"go-windows-1", "go-windows-", "go-"}, "go-darwin-1", "darwin"},
		{[]string{"nope", "50%_"}, "50%_off", "percent"},
	} {
		key, content, err := restore(c.keys...)
		if err != nil || key != c.wantKey || content != c.content {
			t.Errorf("RestoreCache(%q) = %q %q %v, want %q %q", c.keys, key, content, err, c.wantKey, c.content)
		}
	}
	for _, keys := range [][]string{{"nope"}, {"nope", "5%", "go_"}} {
		if _, _, err := restore(keys...); !errors.Is(err, action.ErrCacheMiss) {
			t.Errorf("RestoreCache(%q): %v, want ErrCacheMiss", keys, err)
		}
	}

	// Entries never change: a second save is refused and writes nothing.
	before := f.blobs("caches/")
	if err := js.SaveCache(f.ctx, "go-linux-1", strings.NewReader("other")); !errors.Is(err, action.ErrCacheExists) {
		t.Fatalf("second save: %v, want ErrCacheExists", err)
	}
	if after := f.blobs("caches/"); len(after) != len(before) {
		t.Fatalf("blobs after a refused save: %d, before %d", len(after), len(before))
	}
	if _, c, _ := restore("go-linux-1"); c != "one" {
		t.Fatalf("the cache changed: %q", c)
	}

	// A restore is a use: LastUsedAt moves.
	f.clock.Advance(time.Hour)
	if _, _, err := restore("go-linux-2"); err != nil {
		t.Fatal(err)
	}
	c, err := f.st.FindCache(f.ctx, f.pl.ID, "go-linux-2", nil)
	if err != nil || !c.LastUsedAt.Equal(f.clock.Now()) || c.BlobKey != "caches/"+f.pl.ID+"/"+c.ID || !strings.HasPrefix(c.ID, "cac_") {
		t.Fatalf("after a restore: %+v %v", c, err)
	}

	// Caches are the pipeline's: another pipeline's job finds nothing.
	other := f.pipeline("other")
	_, _, refs := f.claimedRun(other.ID, "build/a")
	if _, _, err := f.svc.Bind(refs[0]).RestoreCache(f.ctx, []string{"go-linux-1", "go-"}); !errors.Is(err, action.ErrCacheMiss) {
		t.Fatalf("another pipeline's restore: %v, want ErrCacheMiss", err)
	}

	for _, key := range []string{"", strings.Repeat("k", 513), "new\nline"} {
		if err := js.SaveCache(f.ctx, key, strings.NewReader("x")); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SaveCache(%q): %v, want ErrInvalid", key, err)
		}
	}
	if _, _, err := f.svc.Bind(f.refs[0]).RestoreCache(f.ctx, nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("RestoreCache without keys: %v", err)
	}
}

func TestMaxSize(t *testing.T) {
	f := newFx(t, func(o *Options) { o.MaxArtifactBytes, o.MaxCacheBytes = 1000, 2<<10 })
	js := f.svc.Bind(f.refs[0])
	if _, err := js.UploadArtifact(f.ctx, "exact", bytes.NewReader(make([]byte, 1000))); err != nil {
		t.Fatalf("upload at the limit: %v", err)
	}
	_, err := js.UploadArtifact(f.ctx, "big", onlyReader{bytes.NewReader(make([]byte, 1001))})
	var tl *TooLargeError
	if !errors.As(err, &tl) || !strings.Contains(err.Error(), `artifact "big" is larger than the server's limit of 1000 bytes`) {
		t.Fatalf("upload over the limit: %v", err)
	}
	err = js.SaveCache(f.ctx, "k", bytes.NewReader(make([]byte, 3<<10)))
	if !errors.As(err, &tl) || !strings.Contains(err.Error(), "limit of 2 KiB") {
		t.Fatalf("cache over the limit: %v", err)
	}
	if keys := f.blobs(""); len(keys) != 1 {
		t.Fatalf("blobs %v: nothing of a refused upload may stay", keys)
	}
	if _, _, err := js.DownloadArtifact(f.ctx, "big"); !errors.Is(err, action.ErrNoArtifact) {
		t.Fatalf("the refused artifact: %v", err)
	}
	// Nothing is left in the bucket directory either (no temporary file).
	var files []string
	filepath.WalkDir(f.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 1 {
		t.Fatalf("files in the blob directory: %v", files)
	}
}

func TestRetentionSweep(t *testing.T) {
	f := newFx(t, func(o *Options) { o.ArtifactRetention, o.CacheRetention = time.Hour, 2*time.Hour })
	js := f.svc.Bind(f.refs[0])
	if _, err := js.UploadArtifact(f.ctx, "old", strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	if err := js.SaveCache(f.ctx, "used", strings.NewReader("u")); err != nil {
		t.Fatal(err)
	}
	if err := js.SaveCache(f.ctx, "unused", strings.NewReader("n")); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(30 * time.Minute)
	if _, err := js.UploadArtifact(f.ctx, "young", strings.NewReader("young")); err != nil {
		t.Fatal(err)
	}
	names := func() string {
		list, err := f.svc.ListArtifacts(f.ctx, f.run.ID)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, a := range list {
			s = append(s, a.Name)
		}
		caches, err := f.st.ListCaches(f.ctx, f.pl.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range caches {
			s = append(s, "cache:"+c.Key)
		}
		return strings.Join(s, " ")
	}

	f.clock.Advance(29 * time.Minute) // 59 min after the first upload
	f.svc.sweep(f.ctx)
	if got := names(); got != "old young cache:unused cache:used" {
		t.Fatalf("before expiry: %s", got)
	}
	f.clock.Advance(time.Minute) // 60 min: "old" expires
	_, rc, err := f.svc.Bind(f.refs[1]).RestoreCache(f.ctx, []string{"used"})
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	f.svc.sweep(f.ctx)
	if got := names(); got != "young cache:unused cache:used" {
		t.Fatalf("after the first expiry: %s", got)
	}
	if keys := f.blobs("artifacts/"); len(keys) != 1 {
		t.Fatalf("artifact blobs after the sweep: %v", keys)
	}
	f.svc.sweep(f.ctx)                // idempotent
	f.clock.Advance(61 * time.Minute) // 2h01 after saving; "used" was restored 61 min ago
	f.svc.sweep(f.ctx)
	if got := names(); got != "cache:used" {
		t.Fatalf("after the second sweep: %s", got)
	}
	if keys := f.blobs(""); len(keys) != 1 || !strings.HasPrefix(keys[0], "caches/") {
		t.Fatalf("blobs left: %v", keys)
	}
	if _, _, err := f.svc.Bind(f.refs[1]).DownloadArtifact(f.ctx, "old"); !errors.Is(err, action.ErrNoArtifact) {
		t.Fatalf("an expired artifact: %v", err)
	}
}

func TestRetentionZeroKeepsForever(t *testing.T) {
	f := newFx(t, func(o *Options) { o.ArtifactRetention, o.CacheRetention = 0, 0 })
	js := f.svc.Bind(f.refs[0])
	if _, err := js.UploadArtifact(f.ctx, "a", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	if err := js.SaveCache(f.ctx, "c", strings.NewReader("c")); err != nil {
		t.Fatal(err)
	}
	a, err := f.st.GetArtifact(f.ctx, f.run.ID, "a")
	if err != nil || a.ExpiresAt != nil {
		t.Fatalf("artifact without retention: %+v %v", a, err)
	}
	f.clock.Advance(10 * 365 * 24 * time.Hour)
	f.svc.sweep(f.ctx)
	if keys := f.blobs(""); len(keys) != 2 {
		t.Fatalf("blobs after ten years without retention: %v", keys)
	}
}

// TestOrphanedBlobs: blobs of deleted runs and pipelines, and leftovers no
// row names, are removed once they are older than the grace period; blobs
// with rows and young blobs stay.
func TestOrphanedBlobs(t *testing.T) {
	f := newFx(t, func(o *Options) { o.ArtifactRetention, o.CacheRetention = 0, 0 })
	// The service's clock is real time here: blob ages come from the files.
	start := time.Now()
	f.clock.t = start
	js := f.svc.Bind(f.refs[0])
	if _, err := js.UploadArtifact(f.ctx, "kept", strings.NewReader("k")); err != nil {
		t.Fatal(err)
	}
	gone := f.pipeline("gone")
	_, _, refs := f.claimedRun(gone.ID, "build/a")
	if _, err := f.svc.Bind(refs[0]).UploadArtifact(f.ctx, "a", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Bind(refs[0]).SaveCache(f.ctx, "c", strings.NewReader("c")); err != nil {
		t.Fatal(err)
	}
	if err := f.bucket.WriteAll(f.ctx, "artifacts/"+f.run.ID+"/art_leftover", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	// The pipeline goes, with its run's rows; the blobs stay behind.
	err := f.st.UpdateRunTx(f.ctx, refs[0].RunID, func(tx store.RunTx) error {
		tr, err := tx.Tree()
		if err != nil {
			return err
		}
		tr.Run.Status = "success"
		return tx.UpdateRun(tr.Run)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.DeletePipeline(f.ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	if keys := f.blobs(""); len(keys) != 4 {
		t.Fatalf("blobs before the sweep: %v", keys)
	}

	f.svc.sweep(f.ctx) // young: kept
	if keys := f.blobs(""); len(keys) != 4 {
		t.Fatalf("young orphans must stay (an upload may be writing its row): %v", keys)
	}
	f.clock.t = start.Add(orphanGrace + time.Minute)
	f.svc.sweep(f.ctx)
	a, err := f.st.GetArtifact(f.ctx, f.run.ID, "kept")
	if err != nil {
		t.Fatal(err)
	}
	if keys := f.blobs(""); len(keys) != 1 || keys[0] != a.BlobKey {
		t.Fatalf("after the orphan sweep: %v, want only %s", keys, a.BlobKey)
	}

	// The bucket is listed every few hours, not every minute.
	leftover := "caches/" + f.pl.ID + "/cac_leftover"
	if err := f.bucket.WriteAll(f.ctx, leftover, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	old := start.Add(-orphanGrace)
	if err := os.Chtimes(filepath.Join(f.dir, filepath.FromSlash(leftover)), old, old); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.svc.sweep(f.ctx)
	if keys := f.blobs("caches/"); len(keys) != 1 {
		t.Fatalf("the bucket was listed again after a minute: %v", keys)
	}
	f.clock.Advance(orphanInterval)
	f.svc.sweep(f.ctx)
	if keys := f.blobs("caches/"); len(keys) != 0 {
		t.Fatalf("an old leftover after the next orphan sweep: %v", keys)
	}
}

func TestDamagedBlobFailsTheRead(t *testing.T) {
	f := newFx(t, nil)
	if _, err := f.svc.Bind(f.refs[0]).UploadArtifact(f.ctx, "dist", strings.NewReader("good bytes")); err != nil {
		t.Fatal(err)
	}
	a, err := f.st.GetArtifact(f.ctx, f.run.ID, "dist")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.bucket.WriteAll(f.ctx, a.BlobKey, []byte("evil bytes"), nil); err != nil {
		t.Fatal(err)
	}
	rc, _, err := f.svc.Bind(f.refs[1]).DownloadArtifact(f.ctx, "dist")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("reading a damaged blob: %v, want an error", err)
	}
}

func TestRunSweepsAtOnceAndStops(t *testing.T) {
	f := newFx(t, func(o *Options) { o.ArtifactRetention = time.Minute })
	if _, err := f.svc.Bind(f.refs[0]).UploadArtifact(f.ctx, "a", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.blobs("artifacts/")) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not sweep at start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestOpenBucket(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "a", "blobs")
	b, err := OpenBucket(ctx, "file://"+dir)
	if err != nil {
		t.Fatalf("file URL: %v", err)
	}
	defer b.Close()
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("blob directory: %v %v, want mode 0700", fi.Mode(), err)
	}
	if err := b.WriteAll(ctx, "artifacts/run_x/art_y", []byte("hi"), nil); err != nil {
		t.Fatal(err)
	}
	sub, err := os.Stat(filepath.Join(dir, "artifacts", "run_x"))
	if err != nil || sub.Mode().Perm() != 0o700 {
		t.Fatalf("key directory: %v %v, want mode 0700", sub.Mode(), err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "artifacts", "run_x"))
	if len(entries) != 1 {
		t.Fatalf("files for one blob: %v (no metadata side file expected)", entries)
	}

	// S3 can only be opened here, not used: no server to talk to.
	s3, err := OpenBucket(ctx, "s3://runnel-test?region=us-east-1&endpoint=http://127.0.0.1:1&use_path_style=true")
	if err != nil {
		t.Fatalf("s3 URL: %v", err)
	}
	s3.Close()

	for _, c := range []struct{ url, want string }{
		{"file://relative/dir", "three slashes"},
		{"gs://bucket", `scheme "gs" is not supported`},
		{"mem://", `scheme "mem" is not supported`},
		{"s3://", "name the bucket"},
	} {
		b, err := OpenBucket(ctx, c.url)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("OpenBucket(%q): %v, want an error containing %q", c.url, err, c.want)
			if err == nil {
				b.Close()
			}
		}
	}
}
