package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/gitdef"
	gitforge "github.com/runnel-ci/runnel/internal/gitdef/forge"
	"github.com/runnel-ci/runnel/internal/store"
)

// gitBacked reports whether the pipeline's definition lives in its
// repository and this server can reach it.
func (s *Server) gitBacked(p *store.Pipeline) bool { return p.RepoURL != "" && s.git != nil }

// gitError maps a failure to reach the repository or the forge: a refused
// credential or a missing branch is the caller's to fix (400/404), anything
// else an upstream failure (502) — never a 500, which would blame Runnel.
func gitError(p *store.Pipeline, err error) error {
	var moved *gitdef.HeadMovedError
	var fe *gitforge.Error
	switch {
	case errors.As(err, &moved):
		return &apiError{
			status: http.StatusConflict,
			msg: fmt.Sprintf("body.expectedHeadCommitSha: stale: branch %s of %s is now at %s; load the spec again, reapply your change and save with that head",
				moved.Branch, gitdef.RedactURL(p.RepoURL), moved.Current),
			currentHead: moved.Current,
		}
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, gitdef.ErrNotFound):
		return errorf(http.StatusNotFound, "%v", err)
	case errors.Is(err, gitdef.ErrAccess):
		return errorf(http.StatusBadGateway, "%v; check the pipeline's credentialId", err)
	case errors.Is(err, gitdef.ErrNoForge):
		return errorf(http.StatusBadRequest, "%s", strings.TrimSuffix(err.Error(), ": "+gitdef.ErrNoForge.Error()))
	case gitdef.IsBranchExists(err):
		return errorf(http.StatusConflict, "%v", err)
	case errors.As(err, &fe):
		return errorf(http.StatusBadGateway, "%v", err)
	case errors.Is(err, runnel.ErrNotFound):
		return errorf(http.StatusBadRequest, "body.credentialId: %v", err)
	}
	return errorf(http.StatusBadGateway, "%v", err)
}

// getGitSpec answers GET …/spec for a Git-backed pipeline: the file at the
// head of the default branch, whose commit is the headCommitSha a save
// passes back.
func (s *Server) getGitSpec(w http.ResponseWriter, r *http.Request, p *store.Pipeline, render bool) error {
	repo, err := s.git.RepoOf(r.Context(), p)
	if err != nil {
		return gitError(p, err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), gitdef.DefaultReadTimeout)
	defer cancel()
	f, err := repo.Read(ctx, gitdef.ReadRequest{Ref: gitdef.BranchOf(p), Path: gitdef.FileOf(p)})
	if err != nil {
		return gitError(p, err)
	}
	format := "yaml"
	if strings.HasSuffix(strings.ToLower(f.Path), ".json") {
		format = "json"
	}
	obj := bytes.TrimSpace(f.Content)
	if format == "yaml" {
		if obj, err = yaml.YAMLToJSON(f.Content); err != nil {
			return errorf(http.StatusUnprocessableEntity, "%s at commit %s is not valid YAML: %v", f.Path, f.Commit, err)
		}
	}
	if !json.Valid(obj) || len(bytes.TrimSpace(obj)) == 0 || bytes.TrimSpace(obj)[0] != '{' {
		return errorf(http.StatusUnprocessableEntity, "%s at commit %s does not hold a definition object", f.Path, f.Commit)
	}
	out := specJSON{
		Spec: json.RawMessage(obj), Format: format, HeadCommitSHA: f.Commit, CommitSHA: f.Commit,
		Source: "git", File: f.Path, Branch: gitdef.BranchOf(p),
	}
	if render {
		text := string(f.Content)
		out.Text = &text
	}
	s.ok(w, http.StatusOK, out)
	return nil
}

// fileContent renders a saved spec object as the repository file: YAML for
// the yaml/yml formats (keys in the order sent), indented JSON for json.
func fileContent(raw json.RawMessage, format string) ([]byte, error) {
	if format == "json" {
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
			return nil, err
		}
		buf.WriteByte('\n')
		return buf.Bytes(), nil
	}
	return yaml.JSONToYAML(bytes.TrimSpace(raw))
}

// saveGitSpec commits a checked definition to a Git-backed pipeline's
// repository (saveMode direct) or opens a pull request with it (pr).
func (s *Server) saveGitSpec(w http.ResponseWriter, r *http.Request, p *store.Pipeline, b *saveBody, format string, canonical json.RawMessage) error {
	ctx := r.Context()
	var err error
	if b.RequestID != "" && p.SaveMode != "pr" {
		// A retried save answers what the first one did, instead of
		// conflicting with its own push.
		if sv, err := s.st.SpecByRequest(ctx, p.ID, b.RequestID); err == nil {
			out := toSpecVersionJSON(sv, true)
			out.SaveMode, out.CommitSHA, out.Branch = "direct", sv.CommitSHA, gitdef.BranchOf(p)
			s.ok(w, http.StatusOK, out)
			return nil
		} else if !errors.Is(err, runnel.ErrNotFound) {
			return err
		}
	}
	// Text as written is committed as written, comments and all.
	var content []byte
	if b.Text != nil {
		content = []byte(*b.Text)
	} else {
		content, err = fileContent(b.Spec, format)
	}
	if err != nil {
		return errorf(http.StatusBadRequest, "body.spec: cannot be written as %s: %v", format, err)
	}
	editor := subjectOr(r, b.Editor)
	now := s.now().UTC()
	res, err := s.git.Save(ctx, p, gitdef.SaveRequest{
		Content: content, Message: b.CommitMessage, Editor: editor, Expected: b.ExpectedHeadCommitSHA, When: now,
	})
	if err != nil {
		return gitError(p, err)
	}
	if res.Mode == "pr" {
		out := specVersionJSON{
			PipelineID: p.ID, HeadCommitSHA: res.Parent, Format: format, CommitMessage: b.CommitMessage,
			Editor: editor, RequestID: b.RequestID, CreatedAt: isoTime(now), SaveMode: "pr", CommitSHA: res.Commit,
			Branch: res.Branch, TargetBranch: res.Target, Unchanged: res.Unchanged,
		}
		if pr := res.PullRequest; pr != nil {
			out.PullRequestURL, out.PullRequestNumber = pr.URL, pr.Number
		}
		s.ok(w, http.StatusOK, out)
		return nil
	}
	reqID := b.RequestID
	if reqID == "" {
		reqID = newID("auto_")
	}
	msg := b.CommitMessage
	sv := &store.SpecVersion{
		PipelineID: p.ID, CommitSHA: res.Commit, Spec: canonical, Format: format, CommitMessage: msg,
		Editor: editor, RequestID: reqID, CreatedAt: now,
	}
	if res.Unchanged {
		out := specVersionJSON{
			PipelineID: p.ID, Version: p.HeadVersion, HeadCommitSHA: res.Commit, Format: format, CommitMessage: msg,
			Editor: editor, RequestID: reqID, CreatedAt: isoTime(now), SaveMode: "direct", CommitSHA: res.Commit,
			Branch: res.Branch, Unchanged: true,
		}
		s.ok(w, http.StatusOK, out)
		return nil
	}
	// The commit is pushed: record it as a version (the history of saves
	// made through the API), whatever the stored head was.
	saved, replayed, err := s.st.SaveSpec(ctx, sv, "")
	if err != nil {
		return fmt.Errorf("record version %s of pipeline %s (pushed to %s): %w", res.Commit, p.ID, res.Branch, err)
	}
	out := toSpecVersionJSON(saved, replayed)
	out.SaveMode, out.CommitSHA, out.Branch = "direct", res.Commit, res.Branch
	s.ok(w, http.StatusOK, out)
	return nil
}
