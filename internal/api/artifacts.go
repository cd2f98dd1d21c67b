package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

var artifactIDKind = idKind{Param: "artifactId", Prefix: "art_", Noun: "artifact"}

// artifactJSON is an artifact as the API lists it.
type artifactJSON struct {
	ArtifactID string  `json:"id"`
	Name       string  `json:"name"`
	Size       int64   `json:"size"`
	SHA256     string  `json:"sha256"`
	JobRunID   string  `json:"jobRunId"`
	JobKey     string  `json:"jobKey"`
	CreatedAt  string  `json:"createdAt"`
	ExpiresAt  *string `json:"expiresAt"`
}

func toArtifactJSON(a *store.Artifact) artifactJSON {
	return artifactJSON{ArtifactID: a.ID, Name: a.Name, Size: a.Size, SHA256: a.SHA256, JobRunID: a.JobRunID,
		JobKey: a.JobKey, CreatedAt: wire.Time(a.CreatedAt), ExpiresAt: wire.TimePtr(a.ExpiresAt)}
}

// artifactSource is the artifact service, or a 404 saying there is none: a
// server without artifact storage has no artifacts, which is no outage (a
// 5xx would page someone for a configuration choice).
func (s *Server) artifactSource() (ArtifactSource, error) {
	if s.arts == nil {
		return nil, apikit.Errorf(http.StatusNotFound, "artifacts are not available: this server has no artifact storage configured")
	}
	return s.arts, nil
}

func (s *Server) listArtifacts(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	rid, err := pathID(r, runID)
	if err != nil {
		return err
	}
	arts, err := s.artifactSource()
	if err != nil {
		return err
	}
	if _, err := s.st.GetRun(r.Context(), rid); errors.Is(err, runnel.ErrNotFound) {
		return apikit.Errorf(http.StatusNotFound, "run %s not found", rid)
	} else if err != nil {
		return fmt.Errorf("get run %s: %w", rid, err)
	}
	list, err := arts.ListArtifacts(r.Context(), rid)
	if err != nil {
		return fmt.Errorf("list artifacts of run %s: %w", rid, err)
	}
	// The whole list, as a plain array like a step's log lines: a run has
	// few artifacts, and nothing to page through.
	out := make([]artifactJSON, 0, len(list))
	for _, a := range list {
		out = append(out, toArtifactJSON(a))
	}
	s.ok(w, http.StatusOK, out)
	return nil
}

// downloadArtifact sends an artifact's bytes as they were uploaded (the
// built-in actions upload a gzip-compressed tar archive).
func (s *Server) downloadArtifact(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	rid, err := pathID(r, runID)
	if err != nil {
		return err
	}
	aid, err := pathID(r, artifactIDKind)
	if err != nil {
		return err
	}
	arts, err := s.artifactSource()
	if err != nil {
		return err
	}
	a, rc, err := arts.OpenArtifact(r.Context(), aid)
	if err == nil && a.RunID != rid {
		// Another run's artifact is reported exactly like a missing one.
		rc.Close()
		err = runnel.ErrNotFound
	}
	if errors.Is(err, runnel.ErrNotFound) {
		return apikit.Errorf(http.StatusNotFound, "artifact %s not found in run %s", aid, rid)
	}
	if err != nil {
		return fmt.Errorf("open artifact %s: %w", aid, err)
	}
	defer rc.Close()
	etag := `"` + a.SHA256 + `"`
	h := w.Header()
	h.Set("ETag", etag)
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/gzip")
	h.Set("Content-Length", strconv.FormatInt(a.Size, 10))
	h.Set("Content-Disposition", attachment(a.Name+".tar.gz"))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil && r.Context().Err() == nil {
		// The status is sent: all that is left is to cut the connection, so
		// that the client does not take a short or damaged body for the
		// artifact.
		s.log.Error("send artifact", "artifact_id", aid, "run_id", rid, "request_id", apikit.RequestID(r.Context()), "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// etagMatch reports whether an If-None-Match header names etag.
func etagMatch(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == etag || v == "*" {
			return true
		}
	}
	return false
}

// attachment is a Content-Disposition for a download saved as filename: a
// quoted ASCII name (characters outside printable ASCII, quotes and
// backslashes replaced by _) and, when that changed it, the exact name in
// RFC 5987 form.
func attachment(filename string) string {
	var b strings.Builder
	for _, r := range filename {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			b.WriteByte('_')
			continue
		}
		b.WriteRune(r)
	}
	v := `attachment; filename="` + b.String() + `"`
	if b.String() != filename {
		v += "; filename*=UTF-8''" + rfc5987(filename)
	}
	return v
}

// rfc5987 percent-encodes every byte of s but RFC 5987's attr-char.
func rfc5987(s string) string {
	const attrChar = "!#$&+-.^_`|~"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(attrChar, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
