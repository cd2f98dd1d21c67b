package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/runnel-ci/runnel/internal/artifact"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/worker"
)

// artifactEnv is an API server with a real artifact service (SQLite and a
// fileblob bucket).
type artifactEnv struct {
	*env
	svc    *artifact.Service
	bucket *blob.Bucket
}

func newArtifactEnv(t *testing.T) *artifactEnv {
	t.Helper()
	var svc *artifact.Service
	var bucket *blob.Bucket
	e := newEnvWith(t, func(c *Config) {
		b, err := artifact.OpenBucket(context.Background(), (&url.URL{Scheme: "file", Path: filepath.Join(t.TempDir(), "blobs")}).String())
		if err != nil {
			t.Fatalf("OpenBucket: %v", err)
		}
		t.Cleanup(func() { b.Close() })
		bucket = b
		svc = artifact.New(artifact.Options{Store: c.Store, Bucket: b, ArtifactRetention: 720 * time.Hour, Now: c.Clock})
		c.Artifacts = svc
	})
	return &artifactEnv{env: e, svc: svc, bucket: bucket}
}

// claimedRun creates a run of a new pipeline with one claimed job per key
// and returns the run id and the jobs' storage.
func (e *artifactEnv) claimedRun(pipelineName string, keys ...string) (string, []worker.JobRef) {
	e.t.Helper()
	ctx := context.Background()
	pid := e.createPipeline(pipelineName, nil)
	now := time.Now().UTC()
	runID := newID("run_")
	nr := &store.NewRun{Run: &store.Run{ID: runID, PipelineID: pid, Status: "running", CreatedAt: now}}
	for i, k := range keys {
		q := now.Add(time.Duration(i-len(keys)) * time.Millisecond)
		nr.Jobs = append(nr.Jobs, &store.JobRun{ID: newID("jr_"), RunID: runID, Key: k, Index: i, Status: "queued", Attempt: 1, QueuedAt: &q})
	}
	if _, _, err := e.st.CreateRun(ctx, nr); err != nil {
		e.t.Fatalf("CreateRun: %v", err)
	}
	var refs []worker.JobRef
	for range keys {
		j, err := e.st.ClaimJob(ctx, "agent-1", []string{""}, time.Hour)
		if err != nil {
			e.t.Fatalf("ClaimJob: %v", err)
		}
		refs = append(refs, worker.JobRef{PipelineID: pid, RunID: runID, JobRunID: j.ID, JobKey: j.Key, LeaseID: j.LeaseID})
	}
	return runID, refs
}

func (e *artifactEnv) upload(ref worker.JobRef, name string, data []byte) {
	e.t.Helper()
	if _, err := e.svc.Bind(ref).UploadArtifact(context.Background(), name, bytes.NewReader(data)); err != nil {
		e.t.Fatalf("UploadArtifact %s: %v", name, err)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestArtifactsListAndDownload(t *testing.T) {
	e := newArtifactEnv(t)
	runID, refs := e.claimedRun("with-artifacts", "build/compile", "test/unit")
	dist := bytes.Repeat([]byte("tarball "), 10000)
	e.upload(refs[0], "dist", dist)
	e.clock.Advance(time.Minute)
	e.upload(refs[1], `coverage "ü"`, []byte("cov"))

	base := "/api/v1/pipelines/runs/" + runID + "/artifacts"
	r := e.do("GET", base, nil).must(t, http.StatusOK)
	var list []map[string]any
	r.into(t, &list)
	if len(list) != 2 {
		t.Fatalf("list: %s", r.body)
	}
	first := list[1] // ordered by name: `coverage "ü"` < dist
	id, _ := first["id"].(string)
	want := map[string]any{
		"id": id, "name": "dist", "size": float64(len(dist)), "sha256": sha256Hex(dist),
		"jobRunId": refs[0].JobRunID, "jobKey": "build/compile",
		"createdAt": "2026-03-02T10:00:00.000Z", "expiresAt": "2026-04-01T10:00:00.000Z",
	}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("list item %s = %v, want %v", k, first[k], v)
		}
	}
	if len(first) != len(want) || !strings.HasPrefix(id, "art_") {
		t.Errorf("list item %v, want exactly %v", first, want)
	}

	// The download is the bytes, named and digested.
	got, err := e.send("GET", base+"/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := got.header
	if got.status != http.StatusOK || !bytes.Equal(got.body, dist) {
		t.Fatalf("download: %d, %d bytes", got.status, len(got.body))
	}
	for k, v := range map[string]string{
		"Content-Type":        "application/gzip",
		"Content-Disposition": `attachment; filename="dist.tar.gz"`,
		"Content-Length":      strconv.Itoa(len(dist)),
		"ETag":                `"` + sha256Hex(dist) + `"`,
	} {
		if h.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
		}
	}
	// A client holding it already gets a 304.
	got, err = e.send("GET", base+"/"+id, nil, withHeader("If-None-Match", `"`+sha256Hex(dist)+`"`))
	if err != nil || got.status != http.StatusNotModified || len(got.body) != 0 {
		t.Fatalf("conditional download: %v %d %q", err, got.status, got.body)
	}

	// A name that is not a plain ASCII file name is kept exact in filename*.
	other := list[0]["id"].(string)
	got, err = e.send("GET", base+"/"+other, nil)
	if err != nil || got.status != http.StatusOK || string(got.body) != "cov" {
		t.Fatalf("download of the second artifact: %v %d", err, got.status)
	}
	if cd := got.header.Get("Content-Disposition"); cd != `attachment; filename="coverage ___.tar.gz"; filename*=UTF-8''coverage%20%22%C3%BC%22.tar.gz` {
		t.Errorf("Content-Disposition = %s", cd)
	}
}

func TestArtifactsNotFound(t *testing.T) {
	e := newArtifactEnv(t)
	runID, refs := e.claimedRun("a", "build/compile")
	otherRun, _ := e.claimedRun("b", "build/compile")
	e.upload(refs[0], "dist", []byte("x"))
	list, err := e.svc.ListArtifacts(context.Background(), runID)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListArtifacts: %v", err)
	}
	id := list[0].ID

	// Another run's artifact is not found under this run.
	e.do("GET", "/api/v1/pipelines/runs/"+otherRun+"/artifacts/"+id, nil).
		mustErr(t, http.StatusNotFound, "artifact "+id+" not found in run "+otherRun)
	e.do("GET", "/api/v1/pipelines/runs/"+runID+"/artifacts/art_aaaaaaaaaaaaaaaaaaaa", nil).
		mustErr(t, http.StatusNotFound, "artifact art_aaaaaaaaaaaaaaaaaaaa not found")
	e.do("GET", "/api/v1/pipelines/runs/run_aaaaaaaaaaaaaaaaaaaa/artifacts", nil).
		mustErr(t, http.StatusNotFound, "run run_aaaaaaaaaaaaaaaaaaaa not found")
	e.do("GET", "/api/v1/pipelines/runs/"+runID+"/artifacts/sec_aaaaaaaaaaaaaaaaaaaa", nil).
		mustErr(t, http.StatusBadRequest, "path parameter artifactId", "art_")
	r := e.do("GET", "/api/v1/pipelines/runs/"+otherRun+"/artifacts", nil).must(t, http.StatusOK)
	if items, ok := r.env["detail"].([]any); !ok || len(items) != 0 {
		t.Fatalf("a run without artifacts: %s, want an empty array", r.body)
	}
	e.do("GET", "/api/v1/pipelines/runs/"+runID+"/artifacts?page=1", nil).
		mustErr(t, http.StatusBadRequest, "page")

	// Retention is removing it (the blob goes first): not found, not a 500.
	if err := e.bucket.Delete(context.Background(), list[0].BlobKey); err != nil {
		t.Fatal(err)
	}
	e.do("GET", "/api/v1/pipelines/runs/"+runID+"/artifacts/"+id, nil).
		mustErr(t, http.StatusNotFound, "artifact "+id+" not found in run "+runID)
}

func TestArtifactsWithoutStorage(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("p", map[string]any{"spec": goodSpec})
	rid := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string)
	for _, p := range []string{"/artifacts", "/artifacts/art_aaaaaaaaaaaaaaaaaaaa"} {
		e.do("GET", "/api/v1/pipelines/runs/"+rid+p, nil).
			mustErr(t, http.StatusNotFound, "this server has no artifact storage configured")
	}
}
