// Package cdevent turns a run's recorded events (store.RunEvent) into
// CDEvents (https://cdevents.dev, spec v0.5.1) and sends them as CloudEvents
// over HTTP in binary mode.
//
// Events are built from this package's own types (model.go) and checked
// against the spec's rules before they are rendered as CloudEvents; the tests
// hold every event built to the CDEvents Go SDK (github.com/cdevents/sdk-go,
// pkg/api/v05): its struct rules, the spec's JSON schemas, and the SDK's own
// rendering of the same event. The event types produced are those of spec
// v0.5.1:
//
//	dev.cdevents.pipelinerun.queued.0.3.0
//	dev.cdevents.pipelinerun.started.0.3.0
//	dev.cdevents.pipelinerun.finished.0.3.0
//	dev.cdevents.taskrun.started.0.3.0
//	dev.cdevents.taskrun.finished.0.3.0
//
// and, for the runs that are image builds (BuildEvents, see image.go):
//
//	dev.cdevents.build.queued.0.3.0
//	dev.cdevents.build.started.0.3.0
//	dev.cdevents.build.finished.0.3.0
//	dev.cdevents.artifact.packaged.0.3.0
//	dev.cdevents.artifact.published.0.3.0
//
// # Mapping
//
// Only run.status and job.status events map to CDEvents; their data is a
// store.StatusChange. Every other event type (step.status, approvals,
// notifications, …) maps to none. For a run.status event:
//
//   - Status pending, Previous "" (a new run): pipelinerun.queued.
//   - Status running, Previous "" or pending: pipelinerun.started. Running
//     after paused is a resume and maps to none.
//   - The event that records the run's end, a final Status (success,
//     failed, cancelled, partial) with EndedAt set: pipelinerun.finished,
//     with outcome success for success, success for partial (errors says
//     that some jobs failed and were allowed to, followed by those jobs and
//     their reasons, or the Reason), failure for failed (error instead when
//     SystemError is set: the run could not be run at all; errors lists the
//     failed jobs that were not allowed to fail with their reasons, "job
//     build/test failed: step s failed with exit code 3; job lint failed",
//     from the event's FailedJobs, or is the Reason when it lists none),
//     cancel for cancelled (errors the Reason). A run stopped while jobs run
//     is cancelled at once (a final Status without EndedAt: none) and ends
//     when its last job does (cancelled again, with EndedAt): its
//     pipelinerun.finished therefore follows the taskrun.finished of every
//     job, as every run's does. It is sent once per run.
//   - Anything else (pending → paused, …) maps to none.
//
// pipelinerun.queued and .started (and taskrun.started) carry no outcome or
// errors: the spec gives them no status field, their type is their status.
//
// The subject of a pipelinerun event is the run: its id is the run id, its
// pipelineName the name given to Build (the pipeline id when that is empty),
// and its uri the run in the API (Config.APIBase + "/api/v1/pipelines/runs/"
// + run id).
//
// For a job.status event:
//
//   - Status running, Previous not running: taskrun.started.
//   - Previous running and a final Status (success, failed, cancelled):
//     taskrun.finished with outcome success, failure or cancel, and errors
//     the Reason.
//   - Previous running and Status pending or queued (the attempt failed and
//     the job is retried): taskrun.finished with outcome failure, errors the
//     Reason.
//   - Anything else maps to none; in particular jobs that never ran (skipped,
//     or cancelled while pending or queued) produce no taskrun event.
//
// The subject of a taskrun event is one attempt of the job run: its id is the
// job run id for the first attempt and jobRunID + "-" + attempt for attempt 2
// on, so each attempt starts and finishes once. Its taskName is the job's
// plan key ("build/test[go=1.22]"), its pipelineRun the run (id = run id,
// source = Config.Source) and its uri the run in the API.
//
// Every event Build returns has the CloudEvent (and CDEvent) id runID + "-" +
// seq, stable across redeliveries and unique per recorded event, the source
// Config.Source, and the time the event was recorded.
//
// # Image builds
//
// A run of the image build service (one job: checkout, then docker build and
// push) also maps, by BuildEvents and in addition to its pipelinerun events,
// to build and artifact events. For its run.status events:
//
//   - Status pending, Previous "": build.queued.
//   - Status running, Previous "" or pending: build.started.
//   - The run's end (a final Status with EndedAt, as for
//     pipelinerun.finished): build.finished. Its
//     artifactId is the image's package URL (ImageBuild.PURL,
//     "pkg:oci/<name>@sha256:<hex>?repository_url=<registry>%2F<repo>&tag=<tag>")
//     when the run ended success (or partial) and the image's digest is
//     known, and is left out otherwise (build.finished has no outcome: the
//     run's pipelinerun.finished carries it). For success and partial with a
//     digest, build.finished is followed by artifact.packaged (its change
//     the source commit) and artifact.published, whose subject id is the
//     package URL.
//   - Anything else (job and step events, paused, resumed, …) maps to none.
//
// The subject of a build event is the run (id the run id, source
// Config.Source). The ids of these events are runID-seq-build,
// runID-seq-artifact-packaged and runID-seq-artifact-published: stable across
// redeliveries and distinct from the pipelinerun event of the same recorded
// event.
package cdevent

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/safeurl"
	"github.com/runnel-ci/runnel/internal/store"
)

// SpecVersion is the CDEvents specification version of the events built.
const SpecVersion = "0.5.1"

// The CDEvents types Build produces.
const (
	TypePipelineRunQueued   = "dev.cdevents.pipelinerun.queued.0.3.0"
	TypePipelineRunStarted  = "dev.cdevents.pipelinerun.started.0.3.0"
	TypePipelineRunFinished = "dev.cdevents.pipelinerun.finished.0.3.0"
	TypeTaskRunStarted      = "dev.cdevents.taskrun.started.0.3.0"
	TypeTaskRunFinished     = "dev.cdevents.taskrun.finished.0.3.0"
)

// Outcomes of pipelinerun.finished and taskrun.finished.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeCancel  = "cancel"
	OutcomeError   = "error"
)

// PartialErrors is the errors text of a pipelinerun.finished event for a run
// that ended partial (followed by ": " and the run's Reason if it has one).
const PartialErrors = "some jobs failed and were allowed to (continueOnError)"

// RunPath is the API path of runs; a run's link is RunPath + run id.
const RunPath = "/api/v1/pipelines/runs/"

// Config says who emits.
type Config struct {
	// Source is the CloudEvents/CDEvents source of this Runnel instance (a
	// URI-reference), e.g. "https://ci.example.com" or
	// "/runnel/<instance-id>"; required.
	Source string
	// APIBase is the absolute base URL of the server (e.g.
	// "http://127.0.0.1:8080"); run links are APIBase +
	// "/api/v1/pipelines/runs/" + runID. May be empty: links are then the
	// relative paths "/api/v1/pipelines/runs/<id>" (the SDK accepts them,
	// but the spec's uri fields ask for absolute URIs, so set it).
	APIBase string
}

// RunURL is the link to run runID in the API.
func (c Config) RunURL(runID string) string {
	return strings.TrimRight(c.APIBase, "/") + RunPath + url.PathEscape(runID)
}

// runStatus and jobStatus tell whether a status of a run's or job's events
// is final, and whether it is one at all.
func runStatus(s string) (final, known bool) {
	st := runnel.RunStatus(s)
	return st.Terminal(), st.Known()
}

func jobStatus(s string) (final, known bool) {
	st := runnel.JobStatus(s)
	return st.Terminal(), st.Known()
}

// Build returns the CDEvent for e as a CloudEvent, checked against the
// spec's rules, or ok=false when e maps to no CDEvent (see the package doc).
func Build(cfg Config, e *store.RunEvent, pipelineName string) (ev *Event, ok bool, err error) {
	if e == nil {
		return nil, false, errors.New("cdevent: nil run event")
	}
	if e.Type != store.EventRunStatus && e.Type != store.EventJobStatus {
		return nil, false, nil
	}
	sc, what, err := decodeStatus(cfg, e)
	if err != nil {
		return nil, false, err
	}
	b := builder{cfg: cfg, e: e, sc: sc, what: what, pipelineName: pipelineName}
	var cd *cdEvent
	if e.Type == store.EventRunStatus {
		cd, err = b.run()
	} else {
		cd, err = b.job()
	}
	if err != nil || cd == nil {
		return nil, false, err
	}
	ce, err := cd.cloudEvent()
	if err != nil {
		return nil, false, fmt.Errorf("cdevent: %s: %v", what, err)
	}
	return ce, true, nil
}

// decodeStatus checks the parts of a status event e that every CDEvent of
// it needs and decodes its data; what names e in errors.
func decodeStatus(cfg Config, e *store.RunEvent) (sc *store.StatusChange, what string, err error) {
	what = fmt.Sprintf("event %d (%s, run %s seq %d)", e.ID, e.Type, e.RunID, e.Seq)
	if cfg.Source == "" {
		return nil, what, fmt.Errorf("cdevent: %s: no source configured", what)
	}
	if e.RunID == "" {
		return nil, what, fmt.Errorf("cdevent: %s: no run id", what)
	}
	if e.Time.IsZero() {
		return nil, what, fmt.Errorf("cdevent: %s: no time", what)
	}
	if len(e.Data) == 0 {
		return nil, what, fmt.Errorf("cdevent: %s: no data", what)
	}
	sc = new(store.StatusChange)
	if err := json.Unmarshal(e.Data, sc); err != nil {
		return nil, what, fmt.Errorf("cdevent: %s: invalid status change data: %v", what, err)
	}
	return sc, what, nil
}

type builder struct {
	cfg          Config
	e            *store.RunEvent
	sc           *store.StatusChange
	what         string
	pipelineName string
}

// checkStatuses checks that the change's status and previous status (if
// any) are statuses of kind, and reports whether the status is final.
func (b *builder) checkStatuses(status func(string) (final, known bool), kind string) (final bool, err error) {
	final, ok := status(b.sc.Status)
	if !ok {
		return false, fmt.Errorf("cdevent: %s: unknown %s status %q", b.what, kind, b.sc.Status)
	}
	if b.sc.Previous != "" {
		if _, ok := status(b.sc.Previous); !ok {
			return false, fmt.Errorf("cdevent: %s: unknown previous %s status %q", b.what, kind, b.sc.Previous)
		}
	}
	return final, nil
}

// event is a CDEvent of type typ about subjectID, with the id and time of
// the recorded event b.e.
func (b *builder) event(typ, subjectID string, c any) *cdEvent {
	return newEvent(typ, fmt.Sprintf("%s-%d", b.e.RunID, b.e.Seq), b.cfg.Source, subjectID, b.e.Time, c)
}

func (b *builder) run() (*cdEvent, error) {
	sc := b.sc
	final, err := b.checkStatuses(runStatus, "run")
	if err != nil {
		return nil, err
	}
	name := b.pipelineName
	if name == "" {
		name = b.e.PipelineID
	}
	if name == "" {
		name = sc.PipelineID
	}
	c := &pipelineRunContent{PipelineName: name, URI: b.cfg.RunURL(b.e.RunID)}
	switch {
	case sc.Status == string(runnel.RunPending) && sc.Previous == "":
		return b.event(TypePipelineRunQueued, b.e.RunID, c), nil
	case sc.Status == string(runnel.RunRunning) && (sc.Previous == "" || sc.Previous == string(runnel.RunPending)):
		return b.event(TypePipelineRunStarted, b.e.RunID, c), nil
	case runEnds(final, sc):
		switch runnel.RunStatus(sc.Status) {
		case runnel.RunSuccess:
			c.Outcome, c.Errors = OutcomeSuccess, sc.Reason
		case runnel.RunPartial:
			c.Outcome, c.Errors = OutcomeSuccess, PartialErrors
			if jobs := failedJobsText(sc, true); jobs != "" {
				c.Errors += ": " + jobs
			} else if sc.Reason != "" {
				c.Errors += ": " + sc.Reason
			}
		case runnel.RunFailed:
			c.Outcome, c.Errors = OutcomeFailure, cmp.Or(failedJobsText(sc, false), sc.Reason)
			if sc.SystemError {
				c.Outcome = OutcomeError
			}
		case runnel.RunCancelled:
			c.Outcome, c.Errors = OutcomeCancel, sc.Reason
		}
		return b.event(TypePipelineRunFinished, b.e.RunID, c), nil
	}
	return nil, nil
}

// runEnds reports whether the run.status change sc records the run's end:
// a final status with its end time. A run stopped while jobs still run is
// cancelled at once but ends when its last job does (the same status again,
// with endedAt, after the jobs' own final events); every other run gets its
// final status and its end time together. Either way it happens once per
// run.
func runEnds(final bool, sc *store.StatusChange) bool {
	return final && sc.EndedAt != nil
}

// failedJobsText lists the failed jobs of a run's end event sc that were
// (allowed) or were not allowed to fail, with their reasons:
// "job build/test failed: step s failed with exit code 3; job lint failed",
// and how many more failed than the event lists; "" when it lists none.
func failedJobsText(sc *store.StatusChange, allowed bool) string {
	var parts []string
	for _, j := range sc.FailedJobs {
		if j.AllowedFailure != allowed {
			continue
		}
		s := "job " + cmp.Or(j.Key, j.Name, j.JobRunID) + " failed"
		if j.Reason != "" {
			s += ": " + j.Reason
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return ""
	}
	if more := sc.FailedJobCount - len(sc.FailedJobs); more > 0 {
		parts = append(parts, fmt.Sprintf("and %d more failed jobs", more))
	}
	return strings.Join(parts, "; ")
}

func (b *builder) job() (*cdEvent, error) {
	sc := b.sc
	final, err := b.checkStatuses(jobStatus, "job")
	if err != nil {
		return nil, err
	}
	st, prev := runnel.JobStatus(sc.Status), runnel.JobStatus(sc.Previous)
	var outcome string
	switch {
	case st == runnel.JobRunning && prev != runnel.JobRunning:
	case prev == runnel.JobRunning && final && st != runnel.JobSkipped:
		switch st {
		case runnel.JobSuccess:
			outcome = OutcomeSuccess
		case runnel.JobFailed:
			outcome = OutcomeFailure
		case runnel.JobCancelled:
			outcome = OutcomeCancel
		}
	case prev == runnel.JobRunning && (st == runnel.JobPending || st == runnel.JobQueued):
		// This attempt failed and the job is retried: pending until its
		// retry delay passes, or queued at once.
		outcome = OutcomeFailure
	default:
		return nil, nil
	}
	if sc.JobRunID == "" {
		return nil, fmt.Errorf("cdevent: %s: job status change without jobRunId", b.what)
	}
	if sc.Attempt < 0 {
		return nil, fmt.Errorf("cdevent: %s: invalid attempt %d", b.what, sc.Attempt)
	}
	c := &taskRunContent{
		TaskName:    sc.Key,
		PipelineRun: &reference{ID: b.e.RunID, Source: b.cfg.Source},
		URI:         b.cfg.RunURL(b.e.RunID),
	}
	if outcome == "" {
		return b.event(TypeTaskRunStarted, TaskRunID(sc.JobRunID, sc.Attempt), c), nil
	}
	c.Outcome, c.Errors = outcome, sc.Reason
	return b.event(TypeTaskRunFinished, TaskRunID(sc.JobRunID, sc.Attempt), c), nil
}

// TaskRunID is the subject id of the taskrun events of an attempt of a job
// run: the job run id for the first attempt, jobRunID-attempt after it.
func TaskRunID(jobRunID string, attempt int) string {
	if attempt > 1 {
		return jobRunID + "-" + strconv.Itoa(attempt)
	}
	return jobRunID
}

// DefaultTimeout bounds a Send whose Sender has no Timeout.
const DefaultTimeout = 10 * time.Second

// Sender posts CloudEvents in the binary content mode of the CloudEvents
// HTTP protocol binding 1.0: the attributes in ce-* headers, the data as the
// body with its Content-Type.
type Sender struct {
	// HTTP is the client used (its redirect policy is replaced: redirects
	// are never followed); nil: a client with Timeout.
	HTTP *http.Client
	// Timeout bounds each Send, whichever client is used; default 10s.
	Timeout time.Duration
}

// Send posts ev to sink; any non-2xx answer or transport error is an error
// naming the sink (with any password in the URL redacted) and the HTTP
// status. A password in the sink URL is sent as HTTP basic authentication.
// Redirects are not followed (a 3xx answer is an error).
func (s *Sender) Send(ctx context.Context, sink string, ev *Event) error {
	shown := safeurl.Redact(sink)
	if ev == nil {
		return fmt.Errorf("cdevent: send to %s: nil event", shown)
	}
	what := fmt.Sprintf("cdevent: send event %s (%s) to %s", ev.ID(), ev.Type(), shown)
	u, err := url.Parse(sink)
	if err != nil {
		return fmt.Errorf("%s: invalid sink URL", what)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: invalid sink URL: want an absolute http or https URL", what)
	}
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("%s: invalid event: %v", what, err)
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var client http.Client
	if s.HTTP != nil {
		client = *s.HTTP
	} else {
		client.Timeout = timeout
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(ev.data))
	if err != nil {
		return fmt.Errorf("%s: %v", what, redactErr(err, sink, shown))
	}
	setBinaryHeaders(req.Header, ev)
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil {
			return fmt.Errorf("%s: no answer within %s", what, timeout)
		}
		return fmt.Errorf("%s: %v", what, redactErr(err, sink, shown))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := fmt.Sprintf("%s: HTTP %s", what, resp.Status)
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			msg += " (redirect to " + safeurl.Redact(loc) + ", not followed)"
		}
		if text := printable(string(body)); text != "" {
			msg += ": " + redactErrString(text, sink, shown)
		}
		return errors.New(msg)
	}
	return nil
}

// redactErr hides any copy of the raw sink URL (or of its password) in err.
func redactErr(err error, raw, shown string) error {
	return errors.New(redactErrString(err.Error(), raw, shown))
}

func redactErrString(s, raw, shown string) string {
	if raw != shown {
		s = strings.ReplaceAll(s, raw, shown)
	}
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			s = strings.ReplaceAll(s, p, "xxxxx")
		}
	}
	return s
}

// printable trims s and replaces its control characters by spaces.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// setBinaryHeaders writes ev's attributes as the binary mode's headers.
// Values are written as they are, as the CloudEvents Go SDK writes them (its
// receivers do not percent-decode): ids, types and run ids are printable
// ASCII, and a source or a package URL with a '%' arrives unchanged.
func setBinaryHeaders(h http.Header, ev *Event) {
	h.Set("Ce-Specversion", CloudEventsVersion)
	h.Set("Ce-Id", ev.id)
	h.Set("Ce-Source", ev.source)
	h.Set("Ce-Type", ev.typ)
	if ev.subject != "" {
		h.Set("Ce-Subject", ev.subject)
	}
	if !ev.time.IsZero() {
		h.Set("Ce-Time", ev.time.UTC().Format(time.RFC3339Nano))
	}
	h.Set("Content-Type", ev.DataContentType())
}
