package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/trigger/cron"
)

// contentRejected answers the legacy raw-text field: the seed's API removed
// it, and a client still sending it should learn what replaced it.
const contentRejected = "raw definition text is not accepted; send the definition as a JSON object in \"spec\" " +
	"(for a YAML file, parse it and send the resulting object) and say in \"format\" how you write it: json, yaml or yml"

var specRejected = map[string]string{"content": contentRejected}

// specBody is the body of POST …/spec/validate.
type specBody struct {
	Spec json.RawMessage `json:"spec"`
	// Text is the definition as written, in format, instead of spec: the
	// web UI's editor sends what the user typed, and errors then point at its
	// lines. The server parses it exactly as it parses a definition file.
	Text   *string `json:"text"`
	Format string  `json:"format"`
}

func textOf(t *string) string {
	if t == nil {
		return ""
	}
	return *t
}

// source returns the definition to parse: the text as written, or the spec
// object. Exactly one of them must be sent.
func (b *specBody) source() (data []byte, text bool, err error) {
	if b.Text == nil {
		if err := checkSpecObject(b.Spec); err != nil {
			return nil, false, err
		}
		return bytes.TrimSpace(b.Spec), false, nil
	}
	if !isNull(b.Spec) {
		return nil, true, errorf(http.StatusBadRequest, "body: send the definition either as spec (an object) or as text (as written), not both")
	}
	if len(*b.Text) > spec.MaxFileSize {
		return nil, true, errorf(http.StatusBadRequest, "body.text: %d bytes; definitions are limited to %d MiB", len(*b.Text), spec.MaxFileSize>>20)
	}
	return []byte(*b.Text), true, nil
}

// saveBody is the body of POST …/spec/save.
type saveBody struct {
	specBody
	ExpectedHeadCommitSHA string `json:"expectedHeadCommitSha"`
	CommitMessage         string `json:"commitMessage"`
	RequestID             string `json:"requestId"`
	Editor                string `json:"editor"`
}

// checkFormat returns the format, "yaml" when omitted: definitions live in
// pipeline.yaml files unless their author says otherwise.
func checkFormat(f string) (string, error) {
	if f == "" {
		return "yaml", nil
	}
	if err := check.Enum("body.format", f, "json", "yaml", "yml"); err != nil {
		return "", err
	}
	return f, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// checkSpecObject requires the spec to be a JSON object.
func checkSpecObject(raw json.RawMessage) error {
	if isNull(raw) {
		return errorf(http.StatusBadRequest, "body.spec: required: the definition as a JSON object (namespace, version, jobs or stages)")
	}
	trimmed := bytes.TrimSpace(raw)
	if trimmed[0] == '{' {
		if len(trimmed) > spec.MaxFileSize {
			return errorf(http.StatusBadRequest, "body.spec: %d bytes; definitions are limited to %d MiB", len(trimmed), spec.MaxFileSize>>20)
		}
		return nil
	}
	var kind string
	switch trimmed[0] {
	case '"':
		return errorf(http.StatusBadRequest, "body.spec: got a string; %s", contentRejected)
	case '[':
		kind = "an array"
	case 't', 'f':
		kind = "a boolean"
	default:
		kind = "a number"
	}
	return errorf(http.StatusBadRequest, "body.spec: must be a JSON object (namespace, version, jobs or stages), got %s", kind)
}

// specErrors parses and validates a definition: a spec object (positions are
// in the spec as sent: line 1, column 1 is its opening brace) or a text as
// written (positions in the text).
func (s *Server) specErrors(data []byte) (*spec.Pipeline, []specError) {
	p, err := spec.Parse(data, spec.Options{File: "spec", Catalog: s.catalog})
	if err == nil {
		return p, s.cronErrors(p)
	}
	var list spec.ErrorList
	if !errors.As(err, &list) {
		return nil, []specError{{Message: err.Error()}}
	}
	out := make([]specError, 0, len(list))
	for _, e := range list {
		out = append(out, specError{Path: e.Path, Line: e.Line, Column: e.Column, Message: e.Msg})
	}
	return nil, out
}

// cronErrors checks what the spec's validation cannot know: that each cron
// trigger ticks no more often than the server's minimum interval.
func (s *Server) cronErrors(p *spec.Pipeline) []specError {
	var out []specError
	for i, t := range p.Triggers {
		if t.Type != runnel.TriggerCron || t.Cron == "" {
			continue
		}
		path := fmt.Sprintf("triggers[%d].cron", i)
		sched, err := cron.Parse(t.Cron, t.Timezone)
		if err == nil {
			err = sched.CheckMinInterval(s.now(), s.cronMinInterval())
		}
		if err != nil {
			pos := p.Position(path)
			out = append(out, specError{Path: path, Line: pos.Line, Column: pos.Column, Message: err.Error()})
		}
	}
	return out
}

// parseSpec checks a spec and returns its canonical JSON and content hash, or
// a 400 listing every problem. The canonical form is the parsed definition
// marshalled again (the spec types marshal deterministically), so two specs
// that differ only in layout or key order hash the same.
func (s *Server) parseSpec(raw json.RawMessage) (json.RawMessage, string, error) {
	if err := checkSpecObject(raw); err != nil {
		return nil, "", err
	}
	return s.parseDefinition(bytes.TrimSpace(raw), "body.spec")
}

// parseDefinition is parseSpec for a spec object or a text as written; field
// names the body field in errors.
func (s *Server) parseDefinition(data []byte, field string) (json.RawMessage, string, error) {
	p, errs := s.specErrors(data)
	if len(errs) > 0 {
		return nil, "", invalidSpec(field, errs)
	}
	canonical, err := json.Marshal(p)
	if err != nil {
		// Only a value JSON cannot hold could do this, and it came from the
		// client's definition: theirs to fix, not a server fault.
		return nil, "", errorf(http.StatusBadRequest, "%s: the definition cannot be stored as JSON: %v", field, err)
	}
	sum := sha256.Sum256(canonical)
	return canonical, hex.EncodeToString(sum[:]), nil
}

// invalidSpec is the 400 for an invalid definition: every problem in the
// envelope's errors, the first one and the count in the message.
func invalidSpec(field string, errs []specError) error {
	first := errs[0]
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
	if len(errs) > 1 {
		more = fmt.Sprintf(" (and %d more problems, listed in errors)", len(errs)-1)
	}
	return &apiError{
		status: http.StatusBadRequest,
		msg:    fmt.Sprintf("%s: invalid definition: %s%s%s", field, where, first.Message, more),
		errors: errs,
	}
}

func (s *Server) getSpec(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r.URL.RawQuery, "version", "render")
	if err != nil {
		return err
	}
	version, err := q.intParam("version", 0, 1, 1<<31-1)
	if err != nil {
		return err
	}
	render := q.has("render")
	if render {
		if err := check.Enum("query parameter render", q.str("render"), "text"); err != nil {
			return err
		}
	}
	p, err := s.loadPipeline(r)
	if err != nil {
		return err
	}
	if version == 0 && s.gitBacked(p) {
		return s.getGitSpec(w, r, p, render)
	}
	sv, err := s.st.GetSpec(r.Context(), p.ID, int(version))
	if errors.Is(err, runnel.ErrNotFound) {
		if version == 0 {
			return errorf(http.StatusNotFound, "pipeline %s has no saved definition yet; save one with POST /api/v1/pipelines/%s/spec/save", p.ID, p.ID)
		}
		return errorf(http.StatusNotFound, "pipeline %s has no definition version %d (its newest is %d)", p.ID, version, p.HeadVersion)
	}
	if err != nil {
		return fmt.Errorf("get spec of pipeline %s: %w", p.ID, err)
	}
	head := p.HeadCommitSHA
	if version == 0 {
		head = sv.CommitSHA // the head as read with the spec, not a moment before
	}
	out := specJSON{
		Spec: sv.Spec, Format: sv.Format, HeadCommitSHA: head, Version: sv.Version, CommitSHA: sv.CommitSHA,
		CommitMessage: sv.CommitMessage, Editor: sv.Editor, CreatedAt: isoTime(sv.CreatedAt),
	}
	if render && sv.Text != "" {
		out.Text = &sv.Text
	} else if render {
		b, err := fileContent(sv.Spec, sv.Format)
		if err != nil {
			return fmt.Errorf("render spec of pipeline %s as %s: %w", p.ID, sv.Format, err)
		}
		text := string(b)
		out.Text = &text
	}
	s.ok(w, http.StatusOK, out)
	return nil
}

func (s *Server) validateSpec(w http.ResponseWriter, r *http.Request) error {
	if _, err := pathID(r, pipelineID); err != nil {
		return err
	}
	data, err := readBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b specBody
	if _, err := decodeJSON(data, &b, decodeOptions{rejected: specRejected}); err != nil {
		return err
	}
	if _, err := checkFormat(b.Format); err != nil {
		return err
	}
	data, _, err = b.source()
	if err != nil {
		return err
	}
	if _, err := s.loadPipeline(r); err != nil {
		return err
	}
	_, errs := s.specErrors(data)
	s.ok(w, http.StatusOK, validateJSON{Valid: len(errs) == 0, Errors: append([]specError{}, errs...)})
	return nil
}

var shaPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{1,64}$`) })

func (s *Server) saveSpec(w http.ResponseWriter, r *http.Request) error {
	if _, err := pathID(r, pipelineID); err != nil {
		return err
	}
	data, err := readBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b saveBody
	if _, err := decodeJSON(data, &b, decodeOptions{rejected: specRejected}); err != nil {
		return err
	}
	format, err := checkFormat(b.Format)
	if err != nil {
		return err
	}
	if b.ExpectedHeadCommitSHA != "" && !shaPattern().MatchString(b.ExpectedHeadCommitSHA) {
		return errorf(http.StatusBadRequest, "body.expectedHeadCommitSha: must be the lowercase hex headCommitSha that GET …/spec returned, got %q", b.ExpectedHeadCommitSHA)
	}
	if err := check.Text("body.commitMessage", b.CommitMessage, 4096, true); err != nil {
		return err
	}
	if err := check.RequestID("body.requestId", b.RequestID); err != nil {
		return err
	}
	if err := check.Principal("body.editor", b.Editor); err != nil {
		return err
	}
	def, isText, err := b.source()
	if err != nil {
		return err
	}
	p, err := s.loadPipeline(r)
	if err != nil {
		return err
	}
	field := "body.spec"
	if isText {
		field = "body.text"
	}
	canonical, sha, err := s.parseDefinition(def, field)
	if err != nil {
		return err
	}
	if s.gitBacked(p) {
		if b.ExpectedHeadCommitSHA != "" && len(b.ExpectedHeadCommitSHA) != 40 {
			return errorf(http.StatusBadRequest, "body.expectedHeadCommitSha: pipeline %s keeps its definition in Git: pass the 40-character commit that GET …/spec returned as headCommitSha, got %q", p.ID, b.ExpectedHeadCommitSHA)
		}
		return s.saveGitSpec(w, r, p, &b, format, canonical)
	}
	// Without a requestId the save still gets a unique one, so that a store
	// keying idempotency on (pipeline, requestId) never treats two anonymous
	// saves as one.
	reqID := b.RequestID
	if reqID == "" {
		reqID = newID("auto_")
	}
	sv := &store.SpecVersion{
		PipelineID:    p.ID,
		CommitSHA:     sha,
		Spec:          canonical,
		Format:        format,
		CommitMessage: b.CommitMessage,
		Editor:        subjectOr(r, b.Editor),
		RequestID:     reqID,
		Text:          textOf(b.Text),
		CreatedAt:     s.now().UTC(),
	}
	saved, replayed, err := s.st.SaveSpec(r.Context(), sv, b.ExpectedHeadCommitSHA)
	if err != nil {
		var head *store.HeadConflictError
		if errors.As(err, &head) && head.Current == "" {
			return &apiError{status: http.StatusConflict, msg: "body.expectedHeadCommitSha: pipeline " + p.ID +
				" has no saved definition yet; leave expectedHeadCommitSha out for the first save"}
		}
		if errors.As(err, &head) || errors.Is(err, runnel.ErrConflict) || errors.Is(err, runnel.ErrNotFound) {
			return err
		}
		return fmt.Errorf("save spec of pipeline %s: %w", p.ID, err)
	}
	if replayed && saved.CommitSHA != sha {
		// Answering the old result for a different definition would tell the
		// client its change was saved when it was not.
		return errorf(http.StatusConflict,
			"body.requestId: %q was already used to save a different definition (version %d, headCommitSha %s); use a new requestId for a new save",
			reqID, saved.Version, saved.CommitSHA)
	}
	s.ok(w, http.StatusOK, toSpecVersionJSON(saved, replayed))
	return nil
}
