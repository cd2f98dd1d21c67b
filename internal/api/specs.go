package api

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"unicode"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/pipeline"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/wire"
)

// Definitions: GET …/spec, POST …/spec/validate and …/spec/save decode,
// call the pipeline service and encode.

var specRejected = map[string]string{"content": pipeline.ContentRejected}

// specBody is the body of POST …/spec/validate.
type specBody struct {
	Spec json.RawMessage `json:"spec"`
	// Text is the definition as written, in format, instead of spec: the
	// web UI's editor sends what the user typed, and errors then point at its
	// lines. The server parses it exactly as it parses a definition file.
	Text   *string `json:"text"`
	Format string  `json:"format"`
}

// source returns the definition to parse: the text as written, or the spec
// object. Exactly one of them must be sent.
func (b *specBody) source() (data []byte, text bool, err error) {
	if b.Text == nil {
		if err := pipeline.CheckSpecObject(b.Spec); err != nil {
			return nil, false, err
		}
		return bytes.TrimSpace(b.Spec), false, nil
	}
	if !isNull(b.Spec) {
		return nil, true, apikit.Errorf(http.StatusBadRequest, "body: send the definition either as spec (an object) or as text (as written), not both")
	}
	if len(*b.Text) > spec.MaxFileSize {
		return nil, true, apikit.Errorf(http.StatusBadRequest, "body.text: %d bytes; definitions are limited to %d MiB", len(*b.Text), spec.MaxFileSize>>20)
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

func checkFormat(f string) (string, error)      { return pipeline.CheckFormat(f) }
func isNull(raw json.RawMessage) bool           { return pipeline.IsNull(raw) }
func checkSpecObject(raw json.RawMessage) error { return pipeline.CheckSpecObject(raw) }

func (s *Server) getSpec(w http.ResponseWriter, r *http.Request) error {
	q, err := apikit.ParseQuery(r.URL.RawQuery, "version", "render")
	if err != nil {
		return err
	}
	version, err := q.Int("version", 0, 1, 1<<31-1)
	if err != nil {
		return err
	}
	render := q.Has("render")
	if render {
		if err := check.Enum("query parameter render", q.Str("render"), "text"); err != nil {
			return err
		}
	}
	p, err := s.loadPipeline(r)
	if err != nil {
		return err
	}
	d, err := s.pipelines.GetSpec(r.Context(), p, int(version), render)
	if err != nil {
		return err
	}
	out := specJSON{
		Spec: d.Spec, Format: d.Format, HeadCommitSHA: d.HeadCommitSHA, Version: d.Version, CommitSHA: d.CommitSHA,
		CommitMessage: d.CommitMessage, Editor: d.Editor, Source: d.Source, File: d.File, Branch: d.Branch, Text: d.Text,
	}
	if !d.CreatedAt.IsZero() {
		out.CreatedAt = wire.Time(d.CreatedAt)
	}
	s.ok(w, http.StatusOK, out)
	return nil
}

// exportSpec downloads the pipeline's head definition as a YAML file (the
// seed's export link): the text as written when it was saved as YAML (its
// comments kept), else the stored definition rendered as YAML.
func (s *Server) exportSpec(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	p, err := s.loadPipeline(r)
	if err != nil {
		return err
	}
	d, err := s.pipelines.GetSpec(r.Context(), p, 0, true)
	if err != nil {
		return err
	}
	var body []byte
	if d.Text != nil && d.Format != "json" {
		body = []byte(*d.Text)
	} else if body, err = pipeline.FileContent(d.Spec, "yaml"); err != nil {
		return fmt.Errorf("render the definition of pipeline %s as YAML: %w", p.ID, err)
	}
	name := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || unicode.IsLetter(r) || unicode.IsDigit(r) {
			return r
		}
		return '-'
	}, p.Name)
	h := w.Header()
	h.Set("Content-Type", "application/yaml; charset=utf-8")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name + ".yaml"}))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

func (s *Server) validateSpec(w http.ResponseWriter, r *http.Request) error {
	if _, err := pathID(r, pipelineID); err != nil {
		return err
	}
	data, err := apikit.ReadBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b specBody
	if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{Rejected: specRejected}); err != nil {
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
	_, errs := s.pipelines.Check(data)
	s.ok(w, http.StatusOK, validateJSON{Valid: len(errs) == 0, Errors: append([]specError{}, errs...)})
	return nil
}

func (s *Server) saveSpec(w http.ResponseWriter, r *http.Request) error {
	if _, err := pathID(r, pipelineID); err != nil {
		return err
	}
	data, err := apikit.ReadBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b saveBody
	if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{Rejected: specRejected}); err != nil {
		return err
	}
	req := &pipeline.SaveRequest{Spec: b.Spec, Text: b.Text, Format: b.Format, ExpectedHeadCommitSHA: b.ExpectedHeadCommitSHA,
		CommitMessage: b.CommitMessage, RequestID: b.RequestID, Editor: b.Editor}
	format, err := pipeline.CheckSave(req)
	if err != nil {
		return err
	}
	def, _, err := b.source()
	if err != nil {
		return err
	}
	p, err := s.loadPipeline(r)
	if err != nil {
		return err
	}
	saved, err := s.pipelines.SaveSpec(r.Context(), p, req, format, def, apikit.PrincipalFrom(r.Context()).Subject)
	if err != nil {
		return err
	}
	g := saved.Git
	var out specVersionJSON
	switch {
	case g == nil:
		out = toSpecVersionJSON(saved.Version, saved.Replayed)
	case g.Mode == "pr":
		out = specVersionJSON{
			PipelineID: p.ID, HeadCommitSHA: g.Parent, Format: format, CommitMessage: req.CommitMessage,
			Editor: saved.Editor, RequestID: req.RequestID, CreatedAt: wire.Time(saved.Time), SaveMode: "pr", CommitSHA: g.Commit,
			Branch: g.Branch, TargetBranch: g.Target, Unchanged: g.Unchanged,
		}
		if pr := g.PullRequest; pr != nil {
			out.PullRequestURL, out.PullRequestNumber = pr.URL, pr.Number
		}
	case g.Unchanged:
		out = specVersionJSON{
			PipelineID: p.ID, Version: p.HeadVersion, HeadCommitSHA: g.Commit, Format: format, CommitMessage: req.CommitMessage,
			Editor: saved.Editor, RequestID: cmp.Or(req.RequestID, runnel.NewID("auto")), CreatedAt: wire.Time(saved.Time),
			SaveMode: "direct", CommitSHA: g.Commit, Branch: g.Branch, Unchanged: true,
		}
	default:
		out = toSpecVersionJSON(saved.Version, saved.Replayed)
		out.SaveMode, out.CommitSHA, out.Branch = "direct", g.Commit, g.Branch
	}
	s.ok(w, http.StatusOK, out)
	return nil
}
