package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

// triggerBody is the body of POST …/trigger; every field is optional.
type triggerBody struct {
	Variables   map[string]string `json:"variables"`
	TriggeredBy string            `json:"triggeredBy"`
	RequestID   string            `json:"requestId"`
}

// controlBody is the body of POST …/runs/{runId}/stop|pause|resume.
type controlBody struct {
	Reason   string `json:"reason"`
	Operator string `json:"operator"`
}

// runStatuses are the PipelineRun statuses a list can filter by.
var runStatuses = []string{string(runnel.RunPending), string(runnel.RunRunning), string(runnel.RunSuccess), string(runnel.RunFailed),
	string(runnel.RunCancelled), string(runnel.RunPaused), string(runnel.RunPartial)}

func (s *Server) trigger(w http.ResponseWriter, r *http.Request) error {
	if _, err := pathID(r, pipelineID); err != nil {
		return err
	}
	data, err := apikit.ReadBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b triggerBody
	if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{Optional: true}); err != nil {
		return err
	}
	for k, v := range b.Variables {
		field := fmt.Sprintf("body.variables[%q]", k)
		if k == "" {
			return apikit.Errorf(http.StatusBadRequest, "body.variables: names must not be empty")
		}
		if err := check.Text(field, k, 100, false); err != nil {
			return err
		}
		if err := check.Text(field, v, 64<<10, true); err != nil {
			return err
		}
	}
	if err := check.Principal("body.triggeredBy", b.TriggeredBy); err != nil {
		return err
	}
	if err := check.RequestID("body.requestId", b.RequestID); err != nil {
		return err
	}
	p, err := s.loadPipeline(r)
	if err != nil {
		return err
	}
	if !s.pipelines.HasDefinition(p) {
		return apikit.Errorf(http.StatusConflict, "pipeline %s has no saved definition to run; save one with POST /api/v1/pipelines/%s/spec/save", p.ID, p.ID)
	}
	reqID := b.RequestID
	if reqID == "" {
		// As for saves: an omitted requestId must not match another omitted one.
		reqID = newID("auto_")
	}
	vars := b.Variables
	if vars == nil {
		vars = map[string]string{}
	}
	run, replayed, err := s.runs.Trigger(r.Context(), p.ID, runnel.TriggerRequest{
		Variables:     vars,
		TriggeredBy:   apikit.SubjectOr(r, b.TriggeredBy),
		TriggerUserID: apikit.PrincipalFrom(r.Context()).UserID,
		RequestID:     reqID,
		TriggerType:   runnel.TriggerManual,
	})
	if err != nil {
		if errors.Is(err, runnel.ErrInvalid) || errors.Is(err, runnel.ErrNotFound) || errors.Is(err, runnel.ErrConflict) {
			// RunControl's message says what is wrong (a variable and what it
			// accepts, a definition that no longer plans).
			return err
		}
		return fmt.Errorf("trigger pipeline %s: %w", p.ID, err)
	}
	s.ok(w, http.StatusOK, triggerJSON{RunID: run.ID, PipelineID: run.PipelineID, Number: run.Number, Status: string(run.Status), Replayed: replayed})
	return nil
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) error {
	q, err := apikit.ParseQuery(r.URL.RawQuery, "status", "page", "pageSize")
	if err != nil {
		return err
	}
	pg, err := q.Pagination()
	if err != nil {
		return err
	}
	status := q.Str("status")
	if q.Has("status") {
		if err := check.Enum("query parameter status", status, runStatuses...); err != nil {
			return err
		}
	}
	p, err := s.loadPipeline(r)
	if err != nil {
		return err
	}
	runs, total, err := s.st.ListRuns(r.Context(), store.RunFilter{PipelineID: p.ID, Status: runnel.RunStatus(status), Offset: pg.Offset(), Limit: pg.Size})
	if err != nil {
		return fmt.Errorf("list runs of pipeline %s: %w", p.ID, err)
	}
	out := apikit.List[runJSON]{Items: []runJSON{}, Total: total, Page: pg.Number, PageSize: pg.Size}
	for _, run := range runs {
		out.Items = append(out.Items, toRunJSON(run, p.ProjectID))
	}
	s.ok(w, http.StatusOK, out)
	return nil
}

// runDetail reads a run's tree and timeline; withDefinition adds the text of
// a stored definition the run was planned from (that of a definition read
// from Git or an extension is always there).
func (s *Server) runDetail(r *http.Request, id string, withDefinition bool) (runDetailJSON, error) {
	tree, err := s.st.GetRunTree(r.Context(), id)
	if errors.Is(err, runnel.ErrNotFound) {
		return runDetailJSON{}, apikit.Errorf(http.StatusNotFound, "run %s not found", id)
	}
	if err != nil {
		return runDetailJSON{}, fmt.Errorf("get run %s: %w", id, err)
	}
	p, err := s.st.GetPipeline(r.Context(), tree.Run.PipelineID)
	if errors.Is(err, runnel.ErrNotFound) {
		// Deleted with its runs a moment ago.
		return runDetailJSON{}, apikit.Errorf(http.StatusNotFound, "run %s not found", id)
	}
	if err != nil {
		return runDetailJSON{}, fmt.Errorf("get the pipeline of run %s: %w", id, err)
	}
	timeline, err := s.st.Timeline(r.Context(), id)
	if err != nil {
		return runDetailJSON{}, fmt.Errorf("get the timeline of run %s: %w", id, err)
	}
	d := toRunDetailJSON(tree, p.ProjectID, timeline)
	if jn, ok := s.runs.(JobNeeder); ok {
		// The graph's edges; a run whose definition cannot be planned again
		// (it failed before planning) shows its jobs without them.
		if needs, err := jn.JobNeeds(r.Context(), tree.Run); err == nil {
			for i := range d.Stages {
				for k := range d.Stages[i].Jobs {
					if n := needs[d.Stages[i].Jobs[k].Key]; n != nil {
						d.Stages[i].Jobs[k].Needs = n
					}
				}
			}
		} else {
			s.log.LogAttrs(r.Context(), slog.LevelDebug, "run detail without needs", slog.String("run_id", id), slog.Any("error", err))
		}
	}
	d.Definition = &runDefinitionJSON{Source: "store", SpecVersion: tree.Run.SpecVersion}
	if tree.Run.SpecVersion > 0 && withDefinition {
		def, err := s.pipelines.GetSpec(r.Context(), p, tree.Run.SpecVersion, true)
		if err != nil {
			return runDetailJSON{}, fmt.Errorf("get the definition of run %s: %w", id, err)
		}
		d.Definition.Format = def.Format
		if def.Text != nil {
			d.Definition.Content = *def.Text
		}
	}
	if tree.Run.SpecVersion == 0 {
		rd, err := s.st.GetRunDefinition(r.Context(), id)
		switch {
		case err == nil:
			d.Definition = &runDefinitionJSON{Source: rd.Source, File: rd.File, CommitSHA: rd.CommitSHA, Content: string(rd.Content)}
		case errors.Is(err, runnel.ErrNotFound):
			// Failed before any definition was read.
			d.Definition = nil
		default:
			return runDetailJSON{}, fmt.Errorf("get the definition of run %s: %w", id, err)
		}
	}
	statuses, err := s.st.ListCommitStatuses(r.Context(), id)
	if err != nil {
		return runDetailJSON{}, err
	}
	d.CommitStatuses = make([]commitStatusJSON, 0, len(statuses))
	for _, c := range statuses {
		d.CommitStatuses = append(d.CommitStatuses, commitStatusJSON{Context: c.Context, SHA: c.SHA, State: c.State,
			Description: c.Description, TargetURL: c.TargetURL, Error: c.Error, Attempts: c.Attempts, UpdatedAt: wire.Time(c.UpdatedAt)})
	}
	return d, nil
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) error {
	q, err := apikit.ParseQuery(r.URL.RawQuery, "include")
	if err != nil {
		return err
	}
	if q.Has("include") {
		if err := check.Enum("query parameter include", q.Str("include"), "definition"); err != nil {
			return err
		}
	}
	id, err := pathID(r, runID)
	if err != nil {
		return err
	}
	d, err := s.runDetail(r, id, q.Has("include"))
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, d)
	return nil
}

// control returns the handler of one run action: stop, pause or resume.
func (s *Server) control(action string) apikit.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		pid, err := pathID(r, pipelineID)
		if err != nil {
			return err
		}
		rid, err := pathID(r, runID)
		if err != nil {
			return err
		}
		data, err := apikit.ReadBody(r, s.maxBody)
		if err != nil {
			return err
		}
		var b controlBody
		if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{Optional: true}); err != nil {
			return err
		}
		if err := check.Text("body.reason", b.Reason, 1000, true); err != nil {
			return err
		}
		if err := check.Principal("body.operator", b.Operator); err != nil {
			return err
		}
		run, err := s.st.GetRun(r.Context(), rid)
		if errors.Is(err, runnel.ErrNotFound) || (err == nil && run.PipelineID != pid) {
			// A run of another pipeline is reported exactly like a missing one:
			// the path names a run that does not exist under this pipeline.
			return apikit.Errorf(http.StatusNotFound, "run %s not found in pipeline %s", rid, pid)
		}
		if err != nil {
			return fmt.Errorf("get run %s: %w", rid, err)
		}
		op := apikit.SubjectOr(r, b.Operator)
		switch action {
		case "stop":
			_, err = s.runs.Stop(r.Context(), rid, op, b.Reason)
		case "pause":
			_, err = s.runs.Pause(r.Context(), rid, op, b.Reason)
		default:
			_, err = s.runs.Resume(r.Context(), rid, op, b.Reason)
		}
		if err != nil {
			if errors.Is(err, runnel.ErrConflict) || errors.Is(err, runnel.ErrNotFound) || errors.Is(err, runnel.ErrInvalid) {
				// RunControl's message names the run and its current status.
				return err
			}
			return fmt.Errorf("%s run %s: %w", action, rid, err)
		}
		d, err := s.runDetail(r, rid, false)
		if err != nil {
			return err
		}
		s.ok(w, http.StatusOK, d)
		return nil
	}
}

// Log paging bounds.
const (
	defaultLogLimit = 1000
	maxLogLimit     = 10000
)

func (s *Server) stepLogs(w http.ResponseWriter, r *http.Request) error {
	q, err := apikit.ParseQuery(r.URL.RawQuery, "startTime", "endTime", "offset", "limit", "format")
	if err != nil {
		return err
	}
	rid, err := pathID(r, runID)
	if err != nil {
		return err
	}
	sid, err := pathID(r, stepRunID)
	if err != nil {
		return err
	}
	lq := store.LogQuery{}
	start, err := q.Int("startTime", -1, 0, apikit.MaxUnix)
	if err != nil {
		return err
	}
	end, err := q.Int("endTime", -1, 0, apikit.MaxUnix)
	if err != nil {
		return err
	}
	if start >= 0 {
		lq.Start = time.Unix(start, 0).UTC()
	}
	if end >= 0 {
		if start >= 0 && end < start {
			return apikit.Errorf(http.StatusBadRequest, "query parameter endTime: %d is before startTime %d", end, start)
		}
		// endTime names a whole second: lines written during it are included.
		lq.End = time.Unix(end, 0).UTC().Add(time.Second - time.Nanosecond)
	}
	offset, err := q.Int("offset", 0, 0, 1<<31-1)
	if err != nil {
		return err
	}
	format := q.Str("format")
	if q.Has("format") {
		if err := check.Enum("query parameter format", format, "json", "text"); err != nil {
			return err
		}
	}
	var limit int64
	if format == "text" && !q.Has("limit") {
		limit = 0 // the whole log, read in pages below
	} else if limit, err = q.Int("limit", defaultLogLimit, 1, maxLogLimit); err != nil {
		return err
	}
	lq.Offset = int(offset)

	tree, err := s.st.GetRunTree(r.Context(), rid)
	if errors.Is(err, runnel.ErrNotFound) {
		return apikit.Errorf(http.StatusNotFound, "run %s not found", rid)
	}
	if err != nil {
		return fmt.Errorf("get run %s: %w", rid, err)
	}
	step := findStep(tree, sid)
	if step == nil {
		return apikit.Errorf(http.StatusNotFound, "step run %s not found in run %s", sid, rid)
	}

	if format == "text" {
		return s.textLogs(w, r, step, lq, int(limit))
	}
	lq.Limit = int(limit)
	lines, err := s.st.ListLogs(r.Context(), sid, lq)
	if err != nil {
		return fmt.Errorf("list logs of step run %s: %w", sid, err)
	}
	out := make([]logLineJSON, 0, len(lines))
	for _, l := range lines {
		out = append(out, wire.Line(l))
	}
	s.ok(w, http.StatusOK, out)
	return nil
}

// findStep returns the step run of the tree with that id, nil when it has
// none.
func findStep(tree *store.RunTree, stepRunID string) *store.StepRun {
	for _, steps := range tree.Steps {
		for _, st := range steps {
			if st.ID == stepRunID {
				return st
			}
		}
	}
	return nil
}

// textLogs streams the selected lines of a step's log (lq's window and offset,
// at most limit lines, 0: all) as plain text, one line per log line, read page
// by page so that memory stays bounded.
//
// A download sends at most the log cap in message bytes, counted as the store
// counts them (its marker line aside), and like the stored log it keeps the
// newest lines: a log trimmed at the cap comes whole, the store's marker line
// first ("[runnel: … earlier lines were dropped …]"). Only when the selection
// is larger than the cap (the log was stored under a larger one) are its
// oldest lines left out, and a line at the top says how many.
func (s *Server) textLogs(w http.ResponseWriter, r *http.Request, step *store.StepRun, lq store.LogQuery, limit int) error {
	ctx := r.Context()
	sid := step.ID
	var (
		skip int64 // bytes of the oldest lines to leave out
		last int64 // when skipping: the newest line counted; later ones came after the count
	)
	if step.LogBytes > s.logCap {
		var total int64
		err := s.eachLogPage(ctx, sid, lq, limit, func(lines []store.LogLine) bool {
			for _, l := range lines {
				if !isTrimMarker(l) {
					total += int64(len(l.Message))
				}
				last = l.Seq
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("list logs of step run %s: %w", sid, err)
		}
		skip = total - s.logCap
	}

	var (
		bw            *bufio.Writer
		marker        *store.LogLine // the store's marker, held back while lines are skipped
		sent, skipped int64
		skippedLines  int
		stopped       string
	)
	write := func(msg string) { _, _ = bw.WriteString(oneLine.Replace(msg) + "\n") }
	err := s.eachLogPage(ctx, sid, lq, limit, func(lines []store.LogLine) bool {
		if bw == nil {
			// Headers go out with the first page, so a failure on the first
			// read can still be an error envelope.
			h := w.Header()
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Content-Disposition", `attachment; filename="`+sid+`.log"`)
			w.WriteHeader(http.StatusOK)
			bw = bufio.NewWriter(w)
		}
		for i := range lines {
			l := &lines[i]
			if last > 0 && l.Seq > last {
				return false // written after the download began
			}
			if isTrimMarker(*l) {
				if skip > 0 && skipped < skip {
					marker = l
				} else {
					write(l.Message)
				}
				continue
			}
			size := int64(len(l.Message))
			if skipped < skip {
				skipped += size
				skippedLines++
				continue
			}
			if skippedLines > 0 || marker != nil {
				if marker != nil {
					write(marker.Message)
					marker = nil
				}
				if skippedLines > 0 {
					write(fmt.Sprintf("[runnel: %d earlier %s (%d bytes) left out: a download is limited to the %s log cap]",
						skippedLines, plural(skippedLines, "line", "lines"), skipped, check.Bytes(s.logCap)))
					skippedLines = 0
				}
			}
			if sent+size > s.logCap {
				// Only a log that grew past the cap while it was read (stored
				// under a larger cap) gets here.
				stopped = fmt.Sprintf("[runnel: download stopped at the %s log cap: the log grew while it was read]", check.Bytes(s.logCap))
				return false
			}
			write(l.Message)
			sent += size
		}
		return true
	})
	if bw == nil {
		if err != nil {
			return fmt.Errorf("list logs of step run %s: %w", sid, err)
		}
		return nil
	}
	if marker != nil {
		write(marker.Message)
	}
	if skippedLines > 0 {
		// Even the newest line alone is over the cap.
		write(fmt.Sprintf("[runnel: all %d %s (%d bytes) left out: the newest alone is over the %s log cap]",
			skippedLines, plural(skippedLines, "line", "lines"), skipped, check.Bytes(s.logCap)))
	}
	if stopped != "" {
		write(stopped)
	}
	if err != nil {
		// The status is sent; all that is left is to end the body visibly,
		// and log.
		write(fmt.Sprintf("[runnel: the log could not be read further (request id %s)]", apikit.RequestID(ctx)))
		s.log.Error("read step log", "step_run_id", sid, "request_id", apikit.RequestID(ctx), "error", err)
	}
	// A write error means the client went away; the status is already sent,
	// so there is nothing left to answer.
	_ = bw.Flush()
	return nil
}

// eachLogPage reads the selected lines of a step's log in pages (lq's window,
// from lq.Offset, at most limit lines, 0: all) and hands each page to fn
// until it returns false. Pages after the first continue after the last seq
// read, so lines dropped meanwhile by the cap do not shift them.
func (s *Server) eachLogPage(ctx context.Context, sid string, lq store.LogQuery, limit int, fn func([]store.LogLine) bool) error {
	read := 0
	for {
		lq.Limit = maxLogLimit
		if limit > 0 {
			lq.Limit = min(maxLogLimit, limit-read)
		}
		lines, err := s.st.ListLogs(ctx, sid, lq)
		if err != nil {
			return err
		}
		read += len(lines)
		if !fn(lines) || len(lines) < lq.Limit || (limit > 0 && read >= limit) {
			return nil
		}
		lq.Offset = 0
		lq.AfterSeq = lines[len(lines)-1].Seq
	}
}

// isTrimMarker tells the store's marker line, which stands first in a log
// trimmed at the cap and is not counted in it.
func isTrimMarker(l store.LogLine) bool {
	return l.Level == "warn" && strings.HasPrefix(l.Message, "[runnel: ") && strings.Contains(l.Message, ": the log is limited to ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// oneLine keeps "one line per log line" true even if a stored message holds
// a line break.
var oneLine = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")
