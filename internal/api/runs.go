package api

import (
	"bufio"
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
		out.Items = append(out.Items, toRunJSON(run))
	}
	s.ok(w, http.StatusOK, out)
	return nil
}

// runDetail reads a run's tree and timeline.
func (s *Server) runDetail(r *http.Request, id string) (runDetailJSON, error) {
	tree, err := s.st.GetRunTree(r.Context(), id)
	if errors.Is(err, runnel.ErrNotFound) {
		return runDetailJSON{}, apikit.Errorf(http.StatusNotFound, "run %s not found", id)
	}
	if err != nil {
		return runDetailJSON{}, fmt.Errorf("get run %s: %w", id, err)
	}
	timeline, err := s.st.Timeline(r.Context(), id)
	if err != nil {
		return runDetailJSON{}, fmt.Errorf("get the timeline of run %s: %w", id, err)
	}
	d := toRunDetailJSON(tree, timeline)
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
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	id, err := pathID(r, runID)
	if err != nil {
		return err
	}
	d, err := s.runDetail(r, id)
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
		d, err := s.runDetail(r, rid)
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
	if !hasStep(tree, sid) {
		return apikit.Errorf(http.StatusNotFound, "step run %s not found in run %s", sid, rid)
	}

	if format == "text" {
		return s.textLogs(w, r, sid, lq, int(limit))
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

func hasStep(tree *store.RunTree, stepRunID string) bool {
	for _, steps := range tree.Steps {
		for _, st := range steps {
			if st.ID == stepRunID {
				return true
			}
		}
	}
	return false
}

// textLogs streams a step's log as plain text, one line per log line. With
// limit 0 the whole log is sent, read page by page so that memory stays
// bounded, and never more than the log cap (a stored log is never larger).
func (s *Server) textLogs(w http.ResponseWriter, r *http.Request, sid string, lq store.LogQuery, limit int) error {
	pageSize := maxLogLimit
	if limit > 0 && limit < pageSize {
		pageSize = limit
	}
	lq.Limit = pageSize
	first, err := s.st.ListLogs(r.Context(), sid, lq)
	if err != nil {
		return fmt.Errorf("list logs of step run %s: %w", sid, err)
	}
	// Headers go out with the first page, so a failure on the first read can
	// still be an error envelope.
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", `attachment; filename="`+sid+`.log"`)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	var sent int64
	written := 0
	lines := first
	for {
		for _, l := range lines {
			msg := oneLine.Replace(l.Message)
			if sent+int64(len(msg))+1 > s.logCap {
				fmt.Fprintf(bw, "[runnel: download stopped at the %s log cap]\n", check.Bytes(s.logCap))
				_ = bw.Flush()
				return nil
			}
			n, _ := bw.WriteString(msg + "\n")
			sent += int64(n)
			written++
		}
		if len(lines) < lq.Limit || (limit > 0 && written >= limit) {
			break
		}
		lq.Offset += len(lines)
		if limit > 0 {
			lq.Limit = min(pageSize, limit-written)
		}
		lines, err = s.st.ListLogs(r.Context(), sid, lq)
		if err != nil {
			// The status is sent; all that is left is to end the body
			// visibly, and log.
			fmt.Fprintf(bw, "[runnel: the log could not be read further (request id %s)]\n", apikit.RequestID(r.Context()))
			s.log.Error("read step log", "step_run_id", sid, "request_id", apikit.RequestID(r.Context()), "error", err)
			break
		}
	}
	// A write error means the client went away; the status is already sent,
	// so there is nothing left to answer.
	_ = bw.Flush()
	return nil
}

// oneLine keeps "one line per log line" true even if a stored message holds
// a line break.
var oneLine = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")
