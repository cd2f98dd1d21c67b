package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/gitdef"
	"github.com/runnel-ci/runnel/internal/safeurl"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/trigger/cron"
)

// ContentRejected answers the legacy raw-text field: the seed's API removed
// it, and a client still sending it should learn what replaced it.
const ContentRejected = "raw definition text is not accepted; send the definition as a JSON object in \"spec\" " +
	"(for a YAML file, parse it and send the resulting object) and say in \"format\" how you write it: json, yaml or yml"

// SpecError is one problem of a definition, where it is.
type SpecError struct {
	Path    string `json:"path"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

// InvalidSpecError is a definition with problems: every one of them, the
// first and the count in the message. It is runnel.ErrInvalid.
type InvalidSpecError struct {
	// Field is the request field that held the definition (body.spec).
	Field  string
	Errors []SpecError
}

func (e *InvalidSpecError) Error() string {
	first := e.Errors[0]
	where := first.Path
	if first.Line > 0 {
		if where != "" {
			where += " "
		}
		where += fmt.Sprintf("(line %d, column %d)", first.Line, first.Column)
	}
	if where != "" {
		where += ": "
	}
	more := ""
	if len(e.Errors) > 1 {
		more = fmt.Sprintf(" (and %d more problems, listed in errors)", len(e.Errors)-1)
	}
	return fmt.Sprintf("%s: invalid definition: %s%s%s", e.Field, where, first.Message, more)
}

func (e *InvalidSpecError) Unwrap() error { return runnel.ErrInvalid }

// StaleHeadError is a save made against a head that is no longer the head:
// Current is the head now, for the client to load again.
type StaleHeadError struct {
	Msg     string
	Current string
}

func (e *StaleHeadError) Error() string { return e.Msg }
func (e *StaleHeadError) Unwrap() error { return runnel.ErrConflict }

// CheckFormat returns the format, "yaml" when omitted: definitions live in
// pipeline.yaml files unless their author says otherwise.
func CheckFormat(f string) (string, error) {
	if f == "" {
		return "yaml", nil
	}
	if err := check.Enum("body.format", f, "json", "yaml", "yml"); err != nil {
		return "", err
	}
	return f, nil
}

// IsNull reports whether a JSON value is absent or null.
func IsNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func trimSpace(raw json.RawMessage) []byte { return bytes.TrimSpace(raw) }

// CheckSpecObject requires a definition sent as JSON to be an object.
func CheckSpecObject(raw json.RawMessage) error {
	if IsNull(raw) {
		return runnel.Invalidf("body.spec: required: the definition as a JSON object (namespace, version, jobs or stages)")
	}
	trimmed := bytes.TrimSpace(raw)
	if trimmed[0] == '{' {
		if len(trimmed) > spec.MaxFileSize {
			return runnel.Invalidf("body.spec: %d bytes; definitions are limited to %d MiB", len(trimmed), spec.MaxFileSize>>20)
		}
		return nil
	}
	var kind string
	switch trimmed[0] {
	case '"':
		return runnel.Invalidf("body.spec: got a string; %s", ContentRejected)
	case '[':
		kind = "an array"
	case 't', 'f':
		kind = "a boolean"
	default:
		kind = "a number"
	}
	return runnel.Invalidf("body.spec: must be a JSON object (namespace, version, jobs or stages), got %s", kind)
}

// Check parses and validates a definition: a spec object (positions are in
// the object as sent: line 1, column 1 is its opening brace) or a text as
// written (positions in the text). It returns the definition, or every
// problem.
func (s *Service) Check(data []byte) (*spec.Pipeline, []SpecError) {
	p, err := spec.Parse(data, spec.Options{File: "spec", Catalog: s.o.Catalog})
	if err == nil {
		return p, s.cronErrors(p)
	}
	var list spec.ErrorList
	if !errors.As(err, &list) {
		return nil, []SpecError{{Message: err.Error()}}
	}
	out := make([]SpecError, 0, len(list))
	for _, e := range list {
		out = append(out, SpecError{Path: e.Path, Line: e.Line, Column: e.Column, Message: e.Msg})
	}
	return nil, out
}

// cronErrors checks what the spec's validation cannot know: that each cron
// trigger ticks no more often than the server's minimum interval.
func (s *Service) cronErrors(p *spec.Pipeline) []SpecError {
	var out []SpecError
	for i, t := range p.Triggers {
		if t.Type != runnel.TriggerCron || t.Cron == "" {
			continue
		}
		path := fmt.Sprintf("triggers[%d].cron", i)
		sched, err := cron.Parse(t.Cron, t.Timezone)
		if err == nil {
			err = sched.CheckMinInterval(s.now(), s.o.CronMinInterval)
		}
		if err != nil {
			pos := p.Position(path)
			out = append(out, SpecError{Path: path, Line: pos.Line, Column: pos.Column, Message: err.Error()})
		}
	}
	return out
}

// Parse checks a definition (a spec object or a text as written) and
// returns its canonical JSON and content hash (spec.Canonical), or an
// *InvalidSpecError naming field.
func (s *Service) Parse(data []byte, field string) (json.RawMessage, string, error) {
	p, errs := s.Check(data)
	if len(errs) > 0 {
		return nil, "", &InvalidSpecError{Field: field, Errors: errs}
	}
	canonical, sha, err := spec.Canonical(p)
	if err != nil {
		// Only a value JSON cannot hold could do this, and it came from the
		// client's definition: theirs to fix, not a server fault.
		return nil, "", runnel.Invalidf("%s: the definition cannot be stored as JSON: %v", field, err)
	}
	return canonical, sha, nil
}

// GitBacked reports whether the pipeline's definition lives in its
// repository and this server can reach it.
func (s *Service) GitBacked(p *store.Pipeline) bool { return p.RepoURL != "" && s.o.Git != nil }

// HasDefinition reports whether a run of p can find a definition: a stored
// version, its repository, or the configuration extension.
func (s *Service) HasDefinition(p *store.Pipeline) bool {
	return p.HeadVersion > 0 || s.GitBacked(p) || (s.o.Git != nil && s.o.Git.Extension != nil)
}

// gitError maps a failure to reach the repository or the forge: a refused
// credential or a missing branch is the caller's to fix, anything else an
// upstream failure — never an internal error, which would blame Runnel.
func gitError(p *store.Pipeline, err error) error {
	var moved *gitdef.HeadMovedError
	var fe *forge.Error
	switch {
	case errors.As(err, &moved):
		return &StaleHeadError{
			Msg: fmt.Sprintf("body.expectedHeadCommitSha: stale: branch %s of %s is now at %s; load the spec again, reapply your change and save with that head",
				moved.Branch, safeurl.Redact(p.RepoURL), moved.Current),
			Current: moved.Current,
		}
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, gitdef.ErrNotFound):
		return runnel.Errorf(runnel.ErrNotFound, "%v", err)
	case errors.Is(err, gitdef.ErrAccess):
		return runnel.Errorf(runnel.ErrUpstream, "%v; check the pipeline's credentialId", err)
	case errors.Is(err, gitdef.ErrNoForge):
		return runnel.Invalidf("%s", strings.TrimSuffix(err.Error(), ": "+gitdef.ErrNoForge.Error()))
	case gitdef.IsBranchExists(err):
		return runnel.Errorf(runnel.ErrConflict, "%v", err)
	case errors.As(err, &fe):
		return runnel.Errorf(runnel.ErrUpstream, "%v", err)
	case errors.Is(err, runnel.ErrNotFound):
		return runnel.Invalidf("body.credentialId: %v", err)
	}
	return runnel.Errorf(runnel.ErrUpstream, "%v", err)
}

// Definition is a pipeline's definition as GetSpec reads it: a stored
// version, or (Source "git") the file at the head of the default branch.
type Definition struct {
	Spec          json.RawMessage
	Format        string
	HeadCommitSHA string
	Version       int
	CommitSHA     string
	CommitMessage string
	Editor        string
	// CreatedAt is zero for a definition read from Git.
	CreatedAt time.Time
	// Text is the definition as written, when asked for.
	Text *string
	// Source is "git" for a definition read from the repository, with its
	// File and Branch.
	Source, File, Branch string
}

// GetSpec reads pipeline p's definition: version (0: the head), rendered as
// text when render is set. The head of a Git-backed pipeline is its file at
// the head of the default branch.
func (s *Service) GetSpec(ctx context.Context, p *store.Pipeline, version int, render bool) (*Definition, error) {
	if version == 0 && s.GitBacked(p) {
		return s.gitSpec(ctx, p, render)
	}
	sv, err := s.o.Store.GetSpec(ctx, p.ID, version)
	if errors.Is(err, runnel.ErrNotFound) {
		if version == 0 {
			return nil, runnel.Errorf(runnel.ErrNotFound, "pipeline %s has no saved definition yet; save one with POST /api/v1/pipelines/%s/spec/save", p.ID, p.ID)
		}
		return nil, runnel.Errorf(runnel.ErrNotFound, "pipeline %s has no definition version %d (its newest is %d)", p.ID, version, p.HeadVersion)
	}
	if err != nil {
		return nil, fmt.Errorf("get spec of pipeline %s: %w", p.ID, err)
	}
	head := p.HeadCommitSHA
	if version == 0 {
		head = sv.CommitSHA // the head as read with the spec, not a moment before
	}
	d := &Definition{
		Spec: sv.Spec, Format: sv.Format, HeadCommitSHA: head, Version: sv.Version, CommitSHA: sv.CommitSHA,
		CommitMessage: sv.CommitMessage, Editor: sv.Editor, CreatedAt: sv.CreatedAt,
	}
	if render && sv.Text != "" {
		d.Text = &sv.Text
	} else if render {
		b, err := FileContent(sv.Spec, sv.Format)
		if err != nil {
			return nil, fmt.Errorf("render spec of pipeline %s as %s: %w", p.ID, sv.Format, err)
		}
		text := string(b)
		d.Text = &text
	}
	return d, nil
}

// gitSpec reads a Git-backed pipeline's file at the head of its default
// branch, whose commit is the head a save passes back.
func (s *Service) gitSpec(ctx context.Context, p *store.Pipeline, render bool) (*Definition, error) {
	repo, err := s.o.Git.RepoOf(ctx, p)
	if err != nil {
		return nil, gitError(p, err)
	}
	ctx, cancel := context.WithTimeout(ctx, gitdef.DefaultReadTimeout)
	defer cancel()
	f, err := repo.Read(ctx, gitdef.ReadRequest{Ref: gitdef.BranchOf(p), Path: gitdef.FileOf(p)})
	if err != nil {
		return nil, gitError(p, err)
	}
	format := "yaml"
	if strings.HasSuffix(strings.ToLower(f.Path), ".json") {
		format = "json"
	}
	obj := bytes.TrimSpace(f.Content)
	if format == "yaml" {
		if obj, err = yaml.YAMLToJSON(f.Content); err != nil {
			return nil, runnel.Errorf(runnel.ErrUnprocessable, "%s at commit %s is not valid YAML: %v", f.Path, f.Commit, err)
		}
	}
	if !json.Valid(obj) || len(bytes.TrimSpace(obj)) == 0 || bytes.TrimSpace(obj)[0] != '{' {
		return nil, runnel.Errorf(runnel.ErrUnprocessable, "%s at commit %s does not hold a definition object", f.Path, f.Commit)
	}
	d := &Definition{
		Spec: json.RawMessage(obj), Format: format, HeadCommitSHA: f.Commit, CommitSHA: f.Commit,
		Source: "git", File: f.Path, Branch: gitdef.BranchOf(p),
	}
	if render {
		text := string(f.Content)
		d.Text = &text
	}
	return d, nil
}

// FileContent renders a saved spec object as the repository file: YAML for
// the yaml/yml formats (keys in the order sent), indented JSON for json.
func FileContent(raw json.RawMessage, format string) ([]byte, error) {
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

var shaPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{1,64}$`) })

// SaveRequest is a save of a pipeline's definition: Spec (an object) or
// Text (as written), in Format.
type SaveRequest struct {
	Spec   json.RawMessage
	Text   *string
	Format string
	// ExpectedHeadCommitSHA is the head the change was made on ("": the
	// first save, or no check).
	ExpectedHeadCommitSHA string
	CommitMessage         string
	// RequestID makes a retried save answer what the first did.
	RequestID string
	// Editor is who saves: the request's, else the caller's.
	Editor string
}

// Saved is the outcome of a save.
type Saved struct {
	// Version is the stored version (nil for a pull request, or an
	// unchanged Git file, which store none).
	Version  *store.SpecVersion
	Replayed bool
	// Format and Editor as saved; Time of the save.
	Format, Editor string
	Time           time.Time
	// Git is set for a Git-backed pipeline: how the change reached the
	// repository.
	Git *gitdef.SaveResult
}

// CheckSave validates a save's fields other than the definition itself,
// returning the format.
func CheckSave(req *SaveRequest) (string, error) {
	format, err := CheckFormat(req.Format)
	if err != nil {
		return "", err
	}
	if req.ExpectedHeadCommitSHA != "" && !shaPattern().MatchString(req.ExpectedHeadCommitSHA) {
		return "", runnel.Invalidf("body.expectedHeadCommitSha: must be the lowercase hex headCommitSha that GET …/spec returned, got %q", req.ExpectedHeadCommitSHA)
	}
	if err := check.Text("body.commitMessage", req.CommitMessage, 4096, true); err != nil {
		return "", err
	}
	if err := check.RequestID("body.requestId", req.RequestID); err != nil {
		return "", err
	}
	if err := check.Principal("body.editor", req.Editor); err != nil {
		return "", err
	}
	return format, nil
}

// SaveSpec checks and saves a definition of pipeline p: def is the
// definition to parse (the spec object or the text), caller who asks. A
// Git-backed pipeline's definition is committed (saveMode direct) or
// proposed in a pull request (pr); any other's is stored as a version,
// compare-and-swap against ExpectedHeadCommitSHA.
func (s *Service) SaveSpec(ctx context.Context, p *store.Pipeline, req *SaveRequest, format string, def []byte, caller string) (*Saved, error) {
	field := "body.spec"
	if req.Text != nil {
		field = "body.text"
	}
	canonical, sha, err := s.Parse(def, field)
	if err != nil {
		return nil, err
	}
	if req.Editor == "" {
		req.Editor = caller
	}
	if s.GitBacked(p) {
		if req.ExpectedHeadCommitSHA != "" && len(req.ExpectedHeadCommitSHA) != 40 {
			return nil, runnel.Invalidf("body.expectedHeadCommitSha: pipeline %s keeps its definition in Git: pass the 40-character commit that GET …/spec returned as headCommitSha, got %q", p.ID, req.ExpectedHeadCommitSHA)
		}
		return s.saveGit(ctx, p, req, format, canonical)
	}
	// Without a requestId the save still gets a unique one, so that a store
	// keying idempotency on (pipeline, requestId) never treats two anonymous
	// saves as one.
	reqID := req.RequestID
	if reqID == "" {
		reqID = runnel.NewID("auto")
	}
	sv := &store.SpecVersion{
		PipelineID:    p.ID,
		CommitSHA:     sha,
		Spec:          canonical,
		Format:        format,
		CommitMessage: req.CommitMessage,
		Editor:        req.Editor,
		RequestID:     reqID,
		CreatedAt:     s.now().UTC(),
	}
	if req.Text != nil {
		sv.Text = *req.Text
	}
	saved, replayed, err := s.o.Store.SaveSpec(ctx, sv, req.ExpectedHeadCommitSHA)
	if err != nil {
		var head *store.HeadConflictError
		if errors.As(err, &head) && head.Current == "" {
			return nil, runnel.Errorf(runnel.ErrConflict, "body.expectedHeadCommitSha: pipeline %s has no saved definition yet; leave expectedHeadCommitSha out for the first save", p.ID)
		}
		if errors.As(err, &head) || errors.Is(err, runnel.ErrConflict) || errors.Is(err, runnel.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("save spec of pipeline %s: %w", p.ID, err)
	}
	if replayed && saved.CommitSHA != sha {
		// Answering the old result for a different definition would tell the
		// client its change was saved when it was not.
		return nil, runnel.Errorf(runnel.ErrConflict,
			"body.requestId: %q was already used to save a different definition (version %d, headCommitSha %s); use a new requestId for a new save",
			reqID, saved.Version, saved.CommitSHA)
	}
	return &Saved{Version: saved, Replayed: replayed, Format: format, Editor: saved.Editor, Time: saved.CreatedAt}, nil
}

// saveGit commits a checked definition to a Git-backed pipeline's repository
// (saveMode direct) or opens a pull request with it (pr).
func (s *Service) saveGit(ctx context.Context, p *store.Pipeline, req *SaveRequest, format string, canonical json.RawMessage) (*Saved, error) {
	if req.RequestID != "" && p.SaveMode != "pr" {
		// A retried save answers what the first one did, instead of
		// conflicting with its own push.
		if sv, err := s.o.Store.SpecByRequest(ctx, p.ID, req.RequestID); err == nil {
			return &Saved{Version: sv, Replayed: true, Format: sv.Format, Editor: sv.Editor, Time: sv.CreatedAt,
				Git: &gitdef.SaveResult{Mode: "direct", Commit: sv.CommitSHA, Branch: gitdef.BranchOf(p)}}, nil
		} else if !errors.Is(err, runnel.ErrNotFound) {
			return nil, err
		}
	}
	// Text as written is committed as written, comments and all.
	var content []byte
	var err error
	if req.Text != nil {
		content = []byte(*req.Text)
	} else {
		content, err = FileContent(req.Spec, format)
	}
	if err != nil {
		return nil, runnel.Invalidf("body.spec: cannot be written as %s: %v", format, err)
	}
	now := s.now().UTC()
	res, err := s.o.Git.Save(ctx, p, gitdef.SaveRequest{
		Content: content, Message: req.CommitMessage, Editor: req.Editor, Expected: req.ExpectedHeadCommitSHA, When: now,
	})
	if err != nil {
		return nil, gitError(p, err)
	}
	out := &Saved{Format: format, Editor: req.Editor, Time: now, Git: res}
	if res.Mode == "pr" || res.Unchanged {
		return out, nil
	}
	reqID := req.RequestID
	if reqID == "" {
		reqID = runnel.NewID("auto")
	}
	// The commit is pushed: record it as a version (the history of saves
	// made through the API), whatever the stored head was.
	saved, replayed, err := s.o.Store.SaveSpec(ctx, &store.SpecVersion{
		PipelineID: p.ID, CommitSHA: res.Commit, Spec: canonical, Format: format, CommitMessage: req.CommitMessage,
		Editor: req.Editor, RequestID: reqID, CreatedAt: now,
	}, "")
	if err != nil {
		return nil, fmt.Errorf("record version %s of pipeline %s (pushed to %s): %w", res.Commit, p.ID, res.Branch, err)
	}
	out.Version, out.Replayed = saved, replayed
	return out, nil
}
