package artifact

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/runnel-ci/runnel"
)

// Run is the retention sweeper: at once, then every minute, it deletes
// expired artifacts and caches unused for the cache retention, and every six
// hours (and at once) blobs no row names. It returns nil when ctx ends.
// Every step is idempotent, so replicas sweeping the same database and bucket
// at once only repeat each other's work.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		s.sweep(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sweep runs one round of the sweeper.
func (s *Service) sweep(ctx context.Context) {
	now := s.now()
	s.sweepArtifacts(ctx, now)
	s.sweepCaches(ctx, now)
	if s.lastOrphans.IsZero() || now.Sub(s.lastOrphans) >= orphanInterval {
		s.lastOrphans = now
		s.sweepOrphans(ctx, now)
	}
}

// sweepArtifacts deletes artifacts past their expiry, in batches, until
// none is left or a batch could not be fully deleted (it is retried on the
// next round rather than read again at once).
func (s *Service) sweepArtifacts(ctx context.Context, now time.Time) {
	for ctx.Err() == nil {
		list, err := s.st.ExpiredArtifacts(ctx, now, sweepBatch)
		if err != nil {
			s.logErr(ctx, "list expired artifacts", err)
			return
		}
		done := 0
		for _, a := range list {
			if s.remove(ctx, a.BlobKey, func() error { return s.st.DeleteArtifact(ctx, a.ID) },
				"artifact_id", a.ID, "run_id", a.RunID, "name", a.Name) {
				done++
			}
		}
		if len(list) < sweepBatch || done < len(list) {
			return
		}
	}
}

// sweepCaches deletes caches not used since the retention, as sweepArtifacts.
func (s *Service) sweepCaches(ctx context.Context, now time.Time) {
	if s.cacheTTL <= 0 {
		return
	}
	for ctx.Err() == nil {
		list, err := s.st.StaleCaches(ctx, now.Add(-s.cacheTTL), sweepBatch)
		if err != nil {
			s.logErr(ctx, "list stale caches", err)
			return
		}
		done := 0
		for _, c := range list {
			if s.remove(ctx, c.BlobKey, func() error { return s.st.DeleteCache(ctx, c.ID) },
				"cache_id", c.ID, "pipeline_id", c.PipelineID, "key", c.Key) {
				done++
			}
		}
		if len(list) < sweepBatch || done < len(list) {
			return
		}
	}
}

// remove deletes a blob, then its row (deleteRow); either already gone is
// fine. It reports whether both are gone.
func (s *Service) remove(ctx context.Context, key string, deleteRow func() error, attrs ...any) bool {
	if err := s.bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		s.logErr(ctx, "delete blob", err, append(attrs, "blob_key", key)...)
		return false
	}
	if err := deleteRow(); err != nil && !errors.Is(err, runnel.ErrNotFound) {
		s.logErr(ctx, "delete record", err, attrs...)
		return false
	}
	s.log.Info("retention removed", append(attrs, "blob_key", key)...)
	return true
}

// sweepOrphans deletes blobs under artifacts/<runID>/ and
// caches/<pipelineID>/ that no row names and that are older than
// orphanGrace: those of deleted runs and pipelines, of replaced artifacts
// whose deletion failed, of uploads cut short by a crash (and fileblob's
// leftover temporary files). Blobs are compared with the rows of their
// directory, one query per run or pipeline.
func (s *Service) sweepOrphans(ctx context.Context, now time.Time) {
	cutoff := now.Add(-orphanGrace)
	s.sweepOrphansUnder(ctx, "artifacts/", cutoff, func(runID string) (map[string]bool, error) {
		list, err := s.st.ListArtifacts(ctx, runID)
		known := map[string]bool{}
		for _, a := range list {
			known[a.BlobKey] = true
		}
		return known, err
	})
	s.sweepOrphansUnder(ctx, "caches/", cutoff, func(pipelineID string) (map[string]bool, error) {
		list, err := s.st.ListCaches(ctx, pipelineID)
		known := map[string]bool{}
		for _, c := range list {
			known[c.BlobKey] = true
		}
		return known, err
	})
}

func (s *Service) sweepOrphansUnder(ctx context.Context, prefix string, cutoff time.Time, rows func(owner string) (map[string]bool, error)) {
	dirs := s.bucket.List(&blob.ListOptions{Prefix: prefix, Delimiter: "/"})
	for {
		d, err := dirs.Next(ctx)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.logErr(ctx, "list blobs", err, "prefix", prefix)
			return
		}
		if !d.IsDir {
			continue // nothing is written there; leave it alone
		}
		owner := strings.TrimSuffix(strings.TrimPrefix(d.Key, prefix), "/")
		known, err := rows(owner)
		if err != nil {
			s.logErr(ctx, "list records", err, "prefix", d.Key)
			continue
		}
		it := s.bucket.List(&blob.ListOptions{Prefix: d.Key})
		for {
			o, err := it.Next(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				s.logErr(ctx, "list blobs", err, "prefix", d.Key)
				break
			}
			if o.IsDir || known[o.Key] || o.ModTime.IsZero() || !o.ModTime.Before(cutoff) {
				continue
			}
			if err := s.bucket.Delete(ctx, o.Key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
				s.logErr(ctx, "delete orphaned blob", err, "blob_key", o.Key)
				continue
			}
			s.log.Info("removed a blob no record names", "blob_key", o.Key, "size", o.Size)
		}
	}
}

// logErr logs a failure unless it is only the sweeper being stopped.
func (s *Service) logErr(ctx context.Context, msg string, err error, attrs ...any) {
	if ctx.Err() != nil {
		return
	}
	s.log.Error(msg, append(attrs, "err", err)...)
}
