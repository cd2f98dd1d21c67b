// Package artifact owns the server side of artifacts and caches: their bytes
// in a blob store (gocloud.dev/blob: a local directory or S3), their records
// in the database (store.Artifacts, store.Caches), the action.Storage a
// claimed job writes and reads through, and retention.
//
// The database is the truth about what exists. A write streams the body to a
// new blob (never buffered whole), hashing and counting it on the way, checks
// the job's lease and only then inserts the row; a failure after the blob was
// written deletes the blob. Removals delete the blob first, then the row, so
// a failure leaves a row to retry, never a row without its bytes. Blobs that
// no row names (their run or pipeline was deleted, a process died between
// the blob and the row) are found by listing the bucket and removed once
// they are a day old.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	// Blob drivers, registered for file:// and s3:// URLs.
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/s3blob"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/worker"
)

// Store is what the service needs of the database (store.Store has it).
type Store interface {
	store.Artifacts
	store.Caches
	CheckLease(ctx context.Context, jobRunID, leaseID string) error
}

// Defaults of Options.
const (
	DefaultMaxArtifactBytes = 1 << 30
	DefaultMaxCacheBytes    = 2 << 30
)

// Options configure a Service.
type Options struct {
	Store  Store
	Bucket *blob.Bucket
	// ArtifactRetention is how long an artifact is kept after its upload;
	// 0 keeps artifacts until their run is deleted.
	ArtifactRetention time.Duration
	// CacheRetention removes a cache not restored or saved for this long; 0
	// keeps caches until their pipeline is deleted.
	CacheRetention time.Duration
	// MaxArtifactBytes and MaxCacheBytes bound one upload (0: the defaults).
	MaxArtifactBytes int64
	MaxCacheBytes    int64
	// Logger receives the sweeper's work and failures; nil discards.
	Logger *slog.Logger
	// Now tells time (default time.Now); tests move it instead of sleeping.
	Now func() time.Time
}

// Service stores artifacts and caches. Build it with New; it is safe for
// concurrent use.
type Service struct {
	st          Store
	bucket      *blob.Bucket
	artifactTTL time.Duration
	cacheTTL    time.Duration
	maxArtifact int64
	maxCache    int64
	log         *slog.Logger
	now         func() time.Time
	// lastOrphans is when the sweeper last listed the bucket for blobs
	// without rows (zero: not yet). Only Run's goroutine touches it.
	lastOrphans time.Time
}

// Sweeper timing.
const (
	sweepInterval = time.Minute
	// orphanInterval spaces the listings of the whole bucket.
	orphanInterval = 6 * time.Hour
	// orphanGrace protects blobs whose row is still being written: an upload
	// in progress has a blob and no row yet. S3 dates a multipart upload from
	// its start, so the margin is generous.
	orphanGrace = 24 * time.Hour
	// sweepBatch bounds the rows read at once.
	sweepBatch = 100
	// cleanupTimeout bounds deletions that run after the caller's context
	// ended.
	cleanupTimeout = 30 * time.Second
)

// Limits of names and keys.
const (
	maxNameBytes = 255
	maxKeyBytes  = 512
)

// New returns a service for o. A nil Store or Bucket is a wiring error and
// panics.
func New(o Options) *Service {
	if o.Store == nil || o.Bucket == nil {
		panic("artifact.New: Options.Store and Options.Bucket are required")
	}
	s := &Service{
		st: o.Store, bucket: o.Bucket, artifactTTL: o.ArtifactRetention, cacheTTL: o.CacheRetention,
		maxArtifact: o.MaxArtifactBytes, maxCache: o.MaxCacheBytes, log: o.Logger, now: o.Now,
	}
	if s.maxArtifact <= 0 {
		s.maxArtifact = DefaultMaxArtifactBytes
	}
	if s.maxCache <= 0 {
		s.maxCache = DefaultMaxCacheBytes
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// OpenBucket opens the blob store named by rawURL:
//
//   - file:///abs/dir: a local directory, created (mode 0700) if missing.
//     Temporary files are written inside it (so that the final rename never
//     crosses file systems) and no metadata side files are written; query
//     parameters of gocloud's fileblob override these defaults.
//   - s3://bucket?region=…&endpoint=…&use_path_style=true: S3 or a
//     compatible server; credentials come from the AWS SDK's usual sources
//     (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, a role).
//
// The caller closes the bucket.
func OpenBucket(ctx context.Context, rawURL string) (*blob.Bucket, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("blob URL: %w", err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("blob URL %s: a file URL names a local directory: file:///abs/dir (three slashes)", u.Redacted())
		}
		dir := filepath.FromSlash(u.Path)
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("blob URL %s: the directory must be absolute, e.g. file:///var/lib/runnel/blobs", u.Redacted())
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("blob directory: %w", err)
		}
		q := u.Query()
		for k, v := range map[string]string{"dir_file_mode": "0700", "no_tmp_dir": "1", "metadata": "skip"} {
			if !q.Has(k) {
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("blob URL %s: name the bucket: s3://bucket?region=…", u.Redacted())
		}
	default:
		return nil, fmt.Errorf("blob URL %s: scheme %q is not supported; use file:///abs/dir or s3://bucket?region=…", u.Redacted(), u.Scheme)
	}
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("open blob store %s: %w", u.Redacted(), err)
	}
	return b, nil
}

// Bind gives a claimed job its storage (the scheduler's StorageBinder).
func (s *Service) Bind(job worker.JobRef) action.Storage {
	return &jobStorage{s: s, job: job}
}

// ListArtifacts lists a run's artifacts by name (empty for an unknown run).
func (s *Service) ListArtifacts(ctx context.Context, runID string) ([]*store.Artifact, error) {
	return s.st.ListArtifacts(ctx, runID)
}

// OpenArtifact opens an artifact by id for download. An unknown id, or an
// artifact whose bytes are gone (retention is removing it), wraps
// runnel.ErrNotFound. The reader fails at the end if the bytes read do not
// match the recorded size and digest.
func (s *Service) OpenArtifact(ctx context.Context, artifactID string) (store.Artifact, io.ReadCloser, error) {
	a, err := s.st.GetArtifactByID(ctx, artifactID)
	if err != nil {
		return store.Artifact{}, nil, err
	}
	rc, err := s.open(ctx, a.BlobKey, a.Size, a.SHA256)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return store.Artifact{}, nil, fmt.Errorf("artifact %s: its contents were deleted: %w", artifactID, runnel.ErrNotFound)
	}
	if err != nil {
		return store.Artifact{}, nil, fmt.Errorf("open artifact %s: %w", artifactID, err)
	}
	return *a, rc, nil
}

// open opens a blob whose reader checks size and digest at the end.
func (s *Service) open(ctx context.Context, key string, size int64, sum string) (io.ReadCloser, error) {
	r, err := s.bucket.NewReader(ctx, key, nil)
	if err != nil {
		return nil, err
	}
	return &verifyingReader{r: r, h: sha256.New(), key: key, size: size, sum: sum}, nil
}

// jobStorage is action.Storage for one claimed job.
type jobStorage struct {
	s   *Service
	job worker.JobRef
}

// UploadArtifact stores the run's artifact name from r.
func (j *jobStorage) UploadArtifact(ctx context.Context, name string, r io.Reader) (action.ArtifactInfo, error) {
	s := j.s
	if err := checkName(name); err != nil {
		return action.ArtifactInfo{}, err
	}
	op := fmt.Sprintf("upload artifact %q", name)
	if err := s.st.CheckLease(ctx, j.job.JobRunID, j.job.LeaseID); err != nil {
		return action.ArtifactInfo{}, fmt.Errorf("%s: %w", op, err)
	}
	id := runnel.NewID("art")
	key := "artifacts/" + j.job.RunID + "/" + id
	size, sum, err := s.write(ctx, key, r, s.maxArtifact, "artifact "+strconv.Quote(name))
	if err != nil {
		return action.ArtifactInfo{}, fmt.Errorf("%s: %w", op, err)
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	a := &store.Artifact{ID: id, RunID: j.job.RunID, JobRunID: j.job.JobRunID, JobKey: j.job.JobKey, Name: name,
		Size: size, SHA256: sum, BlobKey: key, CreatedAt: now}
	if s.artifactTTL > 0 {
		exp := now.Add(s.artifactTTL)
		a.ExpiresAt = &exp
	}
	replaced, err := j.insert(ctx, func(ctx context.Context) (string, error) { return s.st.PutArtifact(ctx, a) })
	if err != nil {
		s.deleteBlob(ctx, key)
		if errors.Is(err, runnel.ErrConflict) {
			holder := "another job"
			if other, gerr := s.st.GetArtifact(ctx, j.job.RunID, name); gerr == nil && other.JobKey != j.job.JobKey {
				holder = "job " + other.JobKey
			}
			return action.ArtifactInfo{}, fmt.Errorf("%s: %w (%s uploaded it)", op, action.ErrArtifactExists, holder)
		}
		return action.ArtifactInfo{}, fmt.Errorf("%s: %w", op, err)
	}
	if replaced != "" {
		s.deleteBlob(ctx, replaced)
	}
	return action.ArtifactInfo{Name: name, Size: size, SHA256: sum}, nil
}

// insert checks the lease once more (the upload may have taken long) and
// then writes the row.
func (j *jobStorage) insert(ctx context.Context, put func(ctx context.Context) (string, error)) (string, error) {
	if err := j.s.st.CheckLease(ctx, j.job.JobRunID, j.job.LeaseID); err != nil {
		return "", err
	}
	return put(ctx)
}

// DownloadArtifact opens the run's artifact name.
func (j *jobStorage) DownloadArtifact(ctx context.Context, name string) (io.ReadCloser, action.ArtifactInfo, error) {
	s := j.s
	// Twice: a later attempt of the uploading job may replace the artifact
	// (and delete the blob) between reading the row and opening the blob.
	for try := 0; ; try++ {
		a, err := s.st.GetArtifact(ctx, j.job.RunID, name)
		if errors.Is(err, runnel.ErrNotFound) {
			return nil, action.ArtifactInfo{}, fmt.Errorf("artifact %q: %w", name, action.ErrNoArtifact)
		}
		if err != nil {
			return nil, action.ArtifactInfo{}, fmt.Errorf("download artifact %q: %w", name, err)
		}
		rc, err := s.open(ctx, a.BlobKey, a.Size, a.SHA256)
		if gcerrors.Code(err) == gcerrors.NotFound {
			if try == 0 {
				continue
			}
			return nil, action.ArtifactInfo{}, fmt.Errorf("artifact %q: its contents were deleted: %w", name, action.ErrNoArtifact)
		}
		if err != nil {
			return nil, action.ArtifactInfo{}, fmt.Errorf("download artifact %q: %w", name, err)
		}
		return rc, action.ArtifactInfo{Name: a.Name, Size: a.Size, SHA256: a.SHA256}, nil
	}
}

// RestoreCache finds the pipeline's cache for keys and opens it.
func (j *jobStorage) RestoreCache(ctx context.Context, keys []string) (string, io.ReadCloser, error) {
	s := j.s
	if len(keys) == 0 {
		return "", nil, fmt.Errorf("restore cache: no key given: %w", runnel.ErrInvalid)
	}
	c, err := s.st.FindCache(ctx, j.job.PipelineID, keys[0], keys[1:])
	if errors.Is(err, runnel.ErrNotFound) {
		return "", nil, fmt.Errorf("cache %q: %w", keys[0], action.ErrCacheMiss)
	}
	if err != nil {
		return "", nil, fmt.Errorf("restore cache %q: %w", keys[0], err)
	}
	// Touched before it is opened, so that the sweeper is unlikely to pick
	// it meanwhile; a failed touch costs nothing but an earlier expiry.
	if err := s.st.TouchCache(ctx, c.ID, s.now().UTC()); err != nil && ctx.Err() == nil {
		s.log.Warn("record a cache use", "cache_id", c.ID, "pipeline_id", c.PipelineID, "err", err)
	}
	rc, err := s.open(ctx, c.BlobKey, c.Size, c.SHA256)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return "", nil, fmt.Errorf("cache %q: its contents were deleted: %w", c.Key, action.ErrCacheMiss)
	}
	if err != nil {
		return "", nil, fmt.Errorf("restore cache %q: %w", c.Key, err)
	}
	return c.Key, rc, nil
}

// SaveCache stores a new cache entry under key.
func (j *jobStorage) SaveCache(ctx context.Context, key string, r io.Reader) error {
	s := j.s
	if err := checkKey(key); err != nil {
		return err
	}
	op := fmt.Sprintf("save cache %q", key)
	if err := s.st.CheckLease(ctx, j.job.JobRunID, j.job.LeaseID); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// A taken key is refused before anything is uploaded.
	if _, err := s.st.FindCache(ctx, j.job.PipelineID, key, nil); err == nil {
		return fmt.Errorf("%s: %w", op, action.ErrCacheExists)
	} else if !errors.Is(err, runnel.ErrNotFound) {
		return fmt.Errorf("%s: %w", op, err)
	}
	id := runnel.NewID("cac")
	blobKey := "caches/" + j.job.PipelineID + "/" + id
	size, sum, err := s.write(ctx, blobKey, r, s.maxCache, "cache "+strconv.Quote(key))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	c := &store.Cache{ID: id, PipelineID: j.job.PipelineID, Key: key, Size: size, SHA256: sum, BlobKey: blobKey,
		CreatedAt: now, LastUsedAt: now}
	_, err = j.insert(ctx, func(ctx context.Context) (string, error) { return "", s.st.PutCache(ctx, c) })
	if err != nil {
		s.deleteBlob(ctx, blobKey)
		if errors.Is(err, runnel.ErrConflict) {
			return fmt.Errorf("%s: %w", op, action.ErrCacheExists)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// TooLargeError is returned when an upload exceeds the server's limit.
type TooLargeError struct {
	What  string // `artifact "dist"`, `cache "go-mod-…"`
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than the server's limit of %s", e.What, formatBytes(e.Limit))
}

// Unwrap makes the error a runnel.ErrInvalid: the input is at fault.
func (e *TooLargeError) Unwrap() error { return runnel.ErrInvalid }

// write streams r to a new blob at key, at most limit bytes, and returns its
// size and hex SHA-256. On any failure nothing is left at key.
func (s *Service) write(ctx context.Context, key string, r io.Reader, limit int64, what string) (int64, string, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.bucket.NewWriter(wctx, key, &blob.WriterOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return 0, "", fmt.Errorf("write %s: %w", what, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(r, limit+1))
	if err == nil && n > limit {
		err = &TooLargeError{What: what, Limit: limit}
	}
	if err != nil {
		// A cancelled writer's Close discards what was written.
		cancel()
		_ = w.Close()
		var tl *TooLargeError
		if errors.As(err, &tl) {
			return 0, "", err
		}
		return 0, "", fmt.Errorf("write %s: %w", what, err)
	}
	if err := w.Close(); err != nil {
		s.deleteBlob(ctx, key)
		return 0, "", fmt.Errorf("write %s: %w", what, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// deleteBlob removes a blob, also after ctx ended; a missing blob is fine.
// A failure is logged: the orphan sweep removes the blob later.
func (s *Service) deleteBlob(ctx context.Context, key string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := s.bucket.Delete(dctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		s.log.Warn("delete blob", "blob_key", key, "err", err)
	}
}

// checkName accepts artifact names: 1 to 255 bytes of printable UTF-8
// without / or \ (a name becomes a file name in downloads).
func checkName(name string) error {
	if err := checkText(name, maxNameBytes); err != nil {
		return fmt.Errorf("artifact name %q: %v: %w", name, err, runnel.ErrInvalid)
	}
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return fmt.Errorf("artifact name %q: must not contain / or \\ nor be . or ..: %w", name, runnel.ErrInvalid)
	}
	return nil
}

// checkKey accepts cache keys: 1 to 512 bytes of printable UTF-8.
func checkKey(key string) error {
	if err := checkText(key, maxKeyBytes); err != nil {
		return fmt.Errorf("cache key %q: %v: %w", key, err, runnel.ErrInvalid)
	}
	return nil
}

func checkText(v string, maxBytes int) error {
	switch {
	case v == "":
		return errors.New("must not be empty")
	case len(v) > maxBytes:
		return fmt.Errorf("longer than %d bytes", maxBytes)
	case !utf8.ValidString(v):
		return errors.New("must be valid UTF-8")
	}
	for _, r := range v {
		if !unicode.IsPrint(r) && r != ' ' {
			return errors.New("must not contain control or non-printable characters")
		}
	}
	return nil
}

// formatBytes writes a size the way limits are usually given (1 GiB, 512
// MiB), exact.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// verifyingReader checks, when the blob has been read to its end, that it
// has the recorded size and digest: a blob damaged in storage fails the
// read instead of restoring wrong files.
type verifyingReader struct {
	r    *blob.Reader
	h    hash.Hash
	key  string
	n    int64
	size int64
	sum  string
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(v.h.Sum(nil)); v.n != v.size || got != v.sum {
			return n, fmt.Errorf("blob %s is damaged: read %d bytes with SHA-256 %s, stored %d bytes with %s", v.key, v.n, got, v.size, v.sum)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.r.Close() }
