package cdevent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdevents "github.com/cdevents/sdk-go/pkg/api"
	cdeventsv05 "github.com/cdevents/sdk-go/pkg/api/v05"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/runnel-ci/runnel/internal/store"
)

var (
	testCfg  = Config{Source: "https://ci.example.com", APIBase: "http://127.0.0.1:8080"}
	testTime = time.Date(2025, 3, 4, 5, 6, 7, 890000000, time.UTC)
)

const (
	runID = "run_aaaaaaaaaaaaaaaaaaaa"
	jobID = "job_bbbbbbbbbbbbbbbbbbbb"
)

func runEvent(t *testing.T, typ string, seq int64, sc store.StatusChange) *store.RunEvent {
	t.Helper()
	sc.RunID, sc.PipelineID, sc.RunNumber = runID, "pl_1", 7
	data, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	return &store.RunEvent{ID: 100 + seq, RunID: runID, Seq: seq, PipelineID: "pl_1", ProjectID: "pr_1",
		Type: typ, Data: data, Time: testTime}
}

func job(status, previous string, attempt int, reason string) store.StatusChange {
	return store.StatusChange{JobRunID: jobID, Key: "build/test[go=1.22]", Name: "test", Stage: "build",
		Status: status, Previous: previous, Attempt: attempt, Reason: reason}
}

// content is the subject content of any of the events built, read back from
// the CloudEvent's data.
type content struct {
	PipelineName string              `json:"pipelineName"`
	TaskName     string              `json:"taskName"`
	URI          string              `json:"uri"`
	Outcome      string              `json:"outcome"`
	Errors       string              `json:"errors"`
	PipelineRun  *cdevents.Reference `json:"pipelineRun"`
}

type cdJSON struct {
	Context struct {
		SpecVersion string    `json:"specversion"`
		ID          string    `json:"id"`
		Source      string    `json:"source"`
		Type        string    `json:"type"`
		Timestamp   time.Time `json:"timestamp"`
	} `json:"context"`
	Subject struct {
		ID      string  `json:"id"`
		Source  string  `json:"source"`
		Content content `json:"content"`
	} `json:"subject"`
}

func TestBuildMapping(t *testing.T) {
	const link = "http://127.0.0.1:8080/api/v1/pipelines/runs/" + runID
	runRef := &cdevents.Reference{Id: runID, Source: testCfg.Source}
	tests := []struct {
		name    string
		typ     string
		sc      store.StatusChange
		want    string // "" = no event
		subject string
		c       content
	}{
		// Runs.
		{name: "run queued", typ: store.EventRunStatus, sc: store.StatusChange{Status: "pending"},
			want: TypePipelineRunQueued, subject: runID, c: content{PipelineName: "deploy", URI: link}},
		{name: "run started from pending", typ: store.EventRunStatus, sc: store.StatusChange{Status: "running", Previous: "pending"},
			want: TypePipelineRunStarted, subject: runID, c: content{PipelineName: "deploy", URI: link}},
		{name: "run started new", typ: store.EventRunStatus, sc: store.StatusChange{Status: "running"},
			want: TypePipelineRunStarted, subject: runID, c: content{PipelineName: "deploy", URI: link}},
		{name: "run resumed", typ: store.EventRunStatus, sc: store.StatusChange{Status: "running", Previous: "paused"}},
		{name: "run paused", typ: store.EventRunStatus, sc: store.StatusChange{Status: "paused", Previous: "running"}},
		{name: "run pending again", typ: store.EventRunStatus, sc: store.StatusChange{Status: "pending", Previous: "paused"}},
		{name: "run success", typ: store.EventRunStatus, sc: store.StatusChange{Status: "success", Previous: "running", EndedAt: &testTime},
			want: TypePipelineRunFinished, subject: runID, c: content{PipelineName: "deploy", URI: link, Outcome: "success"}},
		{name: "run partial", typ: store.EventRunStatus, sc: store.StatusChange{Status: "partial", Previous: "running", EndedAt: &testTime},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "success", Errors: PartialErrors}},
		{name: "run partial with reason", typ: store.EventRunStatus, sc: store.StatusChange{Status: "partial", Previous: "running", Reason: "job lint failed", EndedAt: &testTime},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "success", Errors: PartialErrors + ": job lint failed"}},
		{name: "run failed", typ: store.EventRunStatus, sc: store.StatusChange{Status: "failed", Previous: "running", Reason: "job build/test failed", EndedAt: &testTime},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "failure", Errors: "job build/test failed"}},
		{name: "run system error", typ: store.EventRunStatus,
			sc:   store.StatusChange{Status: "failed", Previous: "pending", Reason: "cannot read runnel.yaml", SystemError: true, EndedAt: &testTime},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "error", Errors: "cannot read runnel.yaml"}},
		{name: "run failed at creation", typ: store.EventRunStatus, sc: store.StatusChange{Status: "failed", SystemError: true, Reason: "no plan", EndedAt: &testTime},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "error", Errors: "no plan"}},
		{name: "run cancelled while paused", typ: store.EventRunStatus, sc: store.StatusChange{Status: "cancelled", Previous: "paused", Reason: "cancelled by alice", EndedAt: &testTime},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "cancel", Errors: "cancelled by alice"}},
		// A run stopped while jobs still run is cancelled at once but ends
		// when its last job does: pipelinerun.finished comes with that end,
		// after the jobs' taskrun.finished.
		{name: "run stopped, jobs still running", typ: store.EventRunStatus, sc: store.StatusChange{Status: "cancelled", Previous: "running", Reason: "stopped by alice"}},
		{name: "run stopped, end recorded later", typ: store.EventRunStatus,
			sc:   store.StatusChange{Status: "cancelled", Previous: "cancelled", Reason: "stopped by alice", EndedAt: &testTime},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "cancel", Errors: "stopped by alice"}},
		{name: "run stopped, failed at its end", typ: store.EventRunStatus,
			sc:   store.StatusChange{Status: "failed", Previous: "cancelled", Reason: "cannot plan the run: x", EndedAt: &testTime},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "failure", Errors: "cannot plan the run: x"}},
		{name: "run final without its end", typ: store.EventRunStatus, sc: store.StatusChange{Status: "failed", Previous: "failed"}},
		{name: "run final to other final", typ: store.EventRunStatus, sc: store.StatusChange{Status: "cancelled", Previous: "partial"}},
		// A failed run's errors are its failed jobs and their reasons (not
		// those allowed to fail), by key.
		{name: "run failed, jobs listed", typ: store.EventRunStatus,
			sc: store.StatusChange{Status: "failed", Previous: "running", Reason: "job test failed: step s failed with exit code 3", EndedAt: &testTime,
				FailedJobCount: 3, FailedJobs: []store.FailedJob{
					{JobRunID: "job_1", Key: "build/test[go=1.22]", Name: "test", Reason: "step s failed with exit code 3"},
					{JobRunID: "job_2", Key: "build/lint", Name: "lint", Reason: "step l failed", AllowedFailure: true},
					{JobRunID: "job_3", Key: "deploy/push", Name: "push"},
				}},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "failure",
				Errors: "job build/test[go=1.22] failed: step s failed with exit code 3; job deploy/push failed"}},
		{name: "run failed, more jobs than listed", typ: store.EventRunStatus,
			sc: store.StatusChange{Status: "failed", Previous: "running", Reason: "job a failed: x", EndedAt: &testTime,
				FailedJobCount: 30, FailedJobs: []store.FailedJob{{JobRunID: "job_1", Key: "a", Name: "a", Reason: "x"}, {JobRunID: "job_2", Key: "b", Name: "b", Reason: "y"}}},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "failure", Errors: "job a failed: x; job b failed: y; and 28 more failed jobs"}},
		{name: "run failed, only allowed failures listed", typ: store.EventRunStatus,
			sc: store.StatusChange{Status: "failed", Previous: "running", Reason: "cannot plan the run: x", EndedAt: &testTime,
				FailedJobCount: 1, FailedJobs: []store.FailedJob{{JobRunID: "job_2", Key: "lint", Name: "lint", Reason: "exit 1", AllowedFailure: true}}},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "failure", Errors: "cannot plan the run: x"}},
		{name: "run partial, jobs listed", typ: store.EventRunStatus,
			sc: store.StatusChange{Status: "partial", Previous: "running", EndedAt: &testTime,
				FailedJobCount: 1, FailedJobs: []store.FailedJob{{JobRunID: "job_2", Key: "build/lint", Name: "lint", Reason: "step l failed", AllowedFailure: true}}},
			want: TypePipelineRunFinished, subject: runID,
			c: content{PipelineName: "deploy", URI: link, Outcome: "success", Errors: PartialErrors + ": job build/lint failed: step l failed"}},

		// Jobs.
		{name: "job started", typ: store.EventJobStatus, sc: job("running", "queued", 1, ""),
			want: TypeTaskRunStarted, subject: jobID, c: content{TaskName: "build/test[go=1.22]", URI: link, PipelineRun: runRef}},
		{name: "job started attempt 0", typ: store.EventJobStatus, sc: job("running", "pending", 0, ""),
			want: TypeTaskRunStarted, subject: jobID, c: content{TaskName: "build/test[go=1.22]", URI: link, PipelineRun: runRef}},
		{name: "job retry started", typ: store.EventJobStatus, sc: job("running", "queued", 2, ""),
			want: TypeTaskRunStarted, subject: jobID + "-2", c: content{TaskName: "build/test[go=1.22]", URI: link, PipelineRun: runRef}},
		{name: "job running again", typ: store.EventJobStatus, sc: job("running", "running", 1, "")},
		{name: "job success", typ: store.EventJobStatus, sc: job("success", "running", 1, ""),
			want: TypeTaskRunFinished, subject: jobID,
			c: content{TaskName: "build/test[go=1.22]", URI: link, PipelineRun: runRef, Outcome: "success"}},
		{name: "job failed", typ: store.EventJobStatus, sc: job("failed", "running", 3, "exit code 2"),
			want: TypeTaskRunFinished, subject: jobID + "-3",
			c: content{TaskName: "build/test[go=1.22]", URI: link, PipelineRun: runRef, Outcome: "failure", Errors: "exit code 2"}},
		{name: "job cancelled while running", typ: store.EventJobStatus, sc: job("cancelled", "running", 1, "run cancelled"),
			want: TypeTaskRunFinished, subject: jobID,
			c: content{TaskName: "build/test[go=1.22]", URI: link, PipelineRun: runRef, Outcome: "cancel", Errors: "run cancelled"}},
		{name: "job attempt failed, retried", typ: store.EventJobStatus, sc: job("queued", "running", 1, "agent lost"),
			want: TypeTaskRunFinished, subject: jobID,
			c: content{TaskName: "build/test[go=1.22]", URI: link, PipelineRun: runRef, Outcome: "failure", Errors: "agent lost"}},
		{name: "job attempt failed, retried after a delay", typ: store.EventJobStatus, sc: job("pending", "running", 1, "exit status 3"),
			want: TypeTaskRunFinished, subject: jobID,
			c: content{TaskName: "build/test[go=1.22]", URI: link, PipelineRun: runRef, Outcome: "failure", Errors: "exit status 3"}},
		{name: "job queued", typ: store.EventJobStatus, sc: job("queued", "pending", 1, "")},
		{name: "job created", typ: store.EventJobStatus, sc: job("pending", "", 1, "")},
		{name: "job skipped", typ: store.EventJobStatus, sc: job("skipped", "pending", 1, "needs failed")},
		{name: "job cancelled while pending", typ: store.EventJobStatus, sc: job("cancelled", "pending", 1, "")},
		{name: "job cancelled while queued", typ: store.EventJobStatus, sc: job("cancelled", "queued", 1, "")},

		// Other event types.
		{name: "step", typ: store.EventStepStatus,
			sc: store.StatusChange{JobRunID: jobID, StepRunID: "step_1", Status: "running", Previous: "pending"}},
		{name: "approval", typ: "approval.requested", sc: store.StatusChange{Status: "running"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := runEvent(t, tt.typ, int64(i+1), tt.sc)
			ev, ok, err := Build(testCfg, e, "deploy")
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if tt.want == "" {
				if ok || ev != nil {
					t.Fatalf("Build = %v, %v; want no event", ev, ok)
				}
				return
			}
			if !ok || ev == nil {
				t.Fatalf("Build = no event; want %s", tt.want)
			}
			wantID := runID + "-" + itoa(int64(i+1))
			if ev.Type() != tt.want || ev.ID() != wantID || ev.Source() != testCfg.Source ||
				ev.Subject() != tt.subject || !ev.Time().Equal(testTime) || ev.SpecVersion() != "1.0" ||
				ev.DataContentType() != "application/json" {
				t.Errorf("CloudEvent = type %s id %s source %s subject %s time %s specversion %s content type %s",
					ev.Type(), ev.ID(), ev.Source(), ev.Subject(), ev.Time(), ev.SpecVersion(), ev.DataContentType())
			}
			var cd cdJSON
			if err := json.Unmarshal(ev.Data(), &cd); err != nil {
				t.Fatal(err)
			}
			if cd.Context.SpecVersion != SpecVersion || cd.Context.ID != wantID || cd.Context.Source != testCfg.Source ||
				cd.Context.Type != tt.want || !cd.Context.Timestamp.Equal(testTime) {
				t.Errorf("CDEvent context = %+v", cd.Context)
			}
			if cd.Subject.ID != tt.subject || cd.Subject.Source != testCfg.Source {
				t.Errorf("subject = %q from %q; want %q from %q", cd.Subject.ID, cd.Subject.Source, tt.subject, testCfg.Source)
			}
			got, _ := json.Marshal(cd.Subject.Content)
			want, _ := json.Marshal(tt.c)
			if !bytes.Equal(got, want) {
				t.Errorf("subject content = %s\nwant %s", got, want)
			}
			// The SDK reads it back, renders it the same way and validates
			// it against the schema.
			back := sdkRendering(t, ev.Data())
			if err := cdevents.Validate(back); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if back.GetType().String() != tt.want || back.GetSubjectId() != tt.subject {
				t.Errorf("parsed back: %s %s", back.GetType(), back.GetSubjectId())
			}
		})
	}
}

// TestQueuedAndStartedCarryNoOutcome: the spec (v0.5.1) gives queued and
// started events no status field: their type is the status (the schema's
// content is pipelineName and uri, or taskName, pipelineRun and uri, and
// nothing else). Only finished events carry one, as outcome (success,
// failure, cancel, error), with errors. Status changes that carry a reason
// or a system error must not leak them into queued or started events.
func TestQueuedAndStartedCarryNoOutcome(t *testing.T) {
	outcomes := []string{OutcomeSuccess, OutcomeFailure, OutcomeCancel, OutcomeError}
	for _, tt := range []struct {
		name string
		typ  string
		sc   store.StatusChange
		want string
		keys []string
	}{
		{"pipelinerun queued", store.EventRunStatus,
			store.StatusChange{Status: "pending", Reason: "waiting for approval", SystemError: true},
			TypePipelineRunQueued, []string{"pipelineName", "uri"}},
		{"pipelinerun started", store.EventRunStatus,
			store.StatusChange{Status: "running", Previous: "pending", Reason: "approved by bob", StartedAt: &testTime},
			TypePipelineRunStarted, []string{"pipelineName", "uri"}},
		{"pipelinerun started new", store.EventRunStatus,
			store.StatusChange{Status: "running", Reason: "x", FailedJobCount: 1, FailedJobs: []store.FailedJob{{Key: "a"}}},
			TypePipelineRunStarted, []string{"pipelineName", "uri"}},
		{"taskrun started", store.EventJobStatus, job("running", "queued", 2, "waiting: no online agent matches any agent"),
			TypeTaskRunStarted, []string{"pipelineRun", "taskName", "uri"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok, err := Build(testCfg, runEvent(t, tt.typ, 5, tt.sc), "deploy")
			if err != nil || !ok || ev.Type() != tt.want {
				t.Fatalf("Build = %v, %v, %v; want %s", ev, ok, err, tt.want)
			}
			var raw struct {
				Subject struct {
					Content map[string]json.RawMessage `json:"content"`
				} `json:"subject"`
			}
			if err := json.Unmarshal(ev.Data(), &raw); err != nil {
				t.Fatal(err)
			}
			var keys []string
			for k := range raw.Subject.Content {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tt.keys) {
				t.Errorf("content fields %v; want %v (no outcome or errors before the end)", keys, tt.keys)
			}
			if err := cdevents.Validate(sdkRendering(t, ev.Data())); err != nil {
				t.Errorf("SDK validation: %v", err)
			}
		})
	}
	// Every finished event's outcome is one the spec lists.
	for _, st := range []string{"success", "partial", "failed", "cancelled"} {
		for _, sysErr := range []bool{false, true} {
			sc := store.StatusChange{Status: st, Previous: "running", EndedAt: &testTime, SystemError: sysErr && st == "failed"}
			ev, ok, err := Build(testCfg, runEvent(t, store.EventRunStatus, 9, sc), "deploy")
			if err != nil || !ok {
				t.Fatalf("Build(%s) = %v, %v", st, ok, err)
			}
			var cd cdJSON
			if err := json.Unmarshal(ev.Data(), &cd); err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(outcomes, cd.Subject.Content.Outcome) {
				t.Errorf("run %s: outcome %q", st, cd.Subject.Content.Outcome)
			}
		}
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestBuildLinksAndNames(t *testing.T) {
	e := runEvent(t, store.EventRunStatus, 3, store.StatusChange{Status: "running", Previous: "pending"})
	for _, tc := range []struct {
		cfg  Config
		name string
		link string
		pl   string
	}{
		{Config{Source: "/runnel/inst-1"}, "deploy", "/api/v1/pipelines/runs/" + runID, "deploy"},
		{Config{Source: "/runnel/inst-1", APIBase: "https://ci.example.com/"}, "", "https://ci.example.com/api/v1/pipelines/runs/" + runID, "pl_1"},
	} {
		ev, ok, err := Build(tc.cfg, e, tc.name)
		if err != nil || !ok {
			t.Fatalf("Build(%+v) = %v, %v", tc.cfg, ok, err)
		}
		var cd cdJSON
		if err := json.Unmarshal(ev.Data(), &cd); err != nil {
			t.Fatal(err)
		}
		if cd.Subject.Content.URI != tc.link || cd.Subject.Content.PipelineName != tc.pl || ev.Source() != tc.cfg.Source {
			t.Errorf("Build(%+v, %q): uri %q pipelineName %q source %q", tc.cfg, tc.name,
				cd.Subject.Content.URI, cd.Subject.Content.PipelineName, ev.Source())
		}
	}
}

func TestBuildErrors(t *testing.T) {
	good := runEvent(t, store.EventRunStatus, 1, store.StatusChange{Status: "pending"})
	withData := func(typ, data string) *store.RunEvent {
		e := *good
		e.Type, e.Data = typ, json.RawMessage(data)
		return &e
	}
	tests := []struct {
		name string
		cfg  Config
		e    *store.RunEvent
		want []string
	}{
		{"garbled json", testCfg, withData(store.EventRunStatus, `{"status":`), []string{"event 101", "run.status", "invalid status change data"}},
		{"wrong field type", testCfg, withData(store.EventJobStatus, `{"status":5}`), []string{"event 101", "job.status", "invalid status change data"}},
		{"not an object", testCfg, withData(store.EventRunStatus, `"running"`), []string{"event 101", "run.status"}},
		{"no data", testCfg, withData(store.EventRunStatus, ``), []string{"event 101", "run.status", "no data"}},
		{"null data", testCfg, withData(store.EventRunStatus, `null`), []string{"event 101", "run.status", `unknown run status ""`}},
		{"unknown run status", testCfg, withData(store.EventRunStatus, `{"status":"exploded"}`), []string{"event 101", "run.status", `unknown run status "exploded"`}},
		{"unknown previous", testCfg, withData(store.EventRunStatus, `{"status":"running","previous":"limbo"}`), []string{"event 101", `"limbo"`}},
		{"unknown job status", testCfg, withData(store.EventJobStatus, `{"jobRunId":"j","status":"paused","previous":"running"}`), []string{"event 101", "job.status", `"paused"`}},
		{"job without id", testCfg, withData(store.EventJobStatus, `{"status":"running","previous":"queued"}`), []string{"event 101", "job.status", "jobRunId"}},
		{"no source", Config{APIBase: "http://x"}, good, []string{"event 101", "no source"}},
		{"no time", testCfg, func() *store.RunEvent { e := *good; e.Time = time.Time{}; return &e }(), []string{"event 101", "no time"}},
		{"bad source", Config{Source: "http://bad host/%zz"}, good, []string{"event 101", "run.status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok, err := Build(tt.cfg, tt.e, "deploy")
			if err == nil {
				t.Fatalf("Build = %v, %v, nil; want an error", ev, ok)
			}
			t.Log(err)
			if ok || ev != nil {
				t.Errorf("Build returned an event with error %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, _, err := Build(testCfg, nil, ""); err == nil {
		t.Error("Build(nil) did not fail")
	}
	// Garbled data of a type that maps to nothing is not looked at.
	if ev, ok, err := Build(testCfg, withData(store.EventStepStatus, `{`), ""); ev != nil || ok || err != nil {
		t.Errorf("step event with garbled data: %v %v %v", ev, ok, err)
	}
}

// received is what the sink saw of one request.
type received struct {
	method      string
	header      http.Header
	body        []byte
	encoding    binding.Encoding
	event       *cloudevents.Event
	err         error
	user, pass  string
	hasBasicAut bool
}

type sink struct {
	mu   sync.Mutex
	reqs []received
}

// ServeHTTP parses the request with the CloudEvents SDK's HTTP binding.
func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	rec := received{method: r.Method, header: r.Header.Clone(), body: body, err: err}
	rec.user, rec.pass, rec.hasBasicAut = r.BasicAuth()
	r.Body = io.NopCloser(bytes.NewReader(body))
	msg := cehttp.NewMessageFromHttpRequest(r)
	rec.encoding = msg.ReadEncoding()
	if rec.err == nil {
		rec.event, rec.err = binding.ToEvent(r.Context(), msg)
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, rec)
	s.mu.Unlock()
	if rec.err != nil {
		http.Error(w, rec.err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *sink) all() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.reqs...)
}

func TestSendRoundTrip(t *testing.T) {
	sk := &sink{}
	srv := httptest.NewServer(sk)
	defer srv.Close()

	events := []*store.RunEvent{
		runEvent(t, store.EventRunStatus, 1, store.StatusChange{Status: "pending"}),
		runEvent(t, store.EventRunStatus, 2, store.StatusChange{Status: "running", Previous: "pending"}),
		runEvent(t, store.EventJobStatus, 5, job("running", "queued", 1, "")),
		runEvent(t, store.EventJobStatus, 9, job("queued", "running", 1, "agent lost")),
		runEvent(t, store.EventJobStatus, 12, job("running", "queued", 2, "")),
		runEvent(t, store.EventJobStatus, 20, job("failed", "running", 2, "exit code 1")),
		runEvent(t, store.EventRunStatus, 21, store.StatusChange{Status: "failed", Previous: "running", Reason: "job build/test[go=1.22] failed", EndedAt: &testTime}),
	}
	var sent []*Event
	s := &Sender{}
	for _, e := range events {
		ev, ok, err := Build(testCfg, e, "deploy")
		if err != nil || !ok {
			t.Fatalf("Build seq %d: %v %v", e.Seq, ok, err)
		}
		// Credentials in the sink URL go as basic auth.
		sinkURL := strings.Replace(srv.URL, "http://", "http://bot:s3cret@", 1) + "/events"
		if err := s.Send(context.Background(), sinkURL, ev); err != nil {
			t.Fatalf("Send seq %d: %v", e.Seq, err)
		}
		sent = append(sent, ev)
	}
	reqs := sk.all()
	if len(reqs) != len(sent) {
		t.Fatalf("sink got %d requests, want %d", len(reqs), len(sent))
	}
	for i, r := range reqs {
		want := sent[i]
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		// Binary mode: the attributes in ce-* headers, the body the data only.
		if r.method != http.MethodPost || r.encoding != binding.EncodingBinary {
			t.Errorf("request %d: %s, encoding %v; want POST in binary mode", i, r.method, r.encoding)
		}
		for h, v := range map[string]string{
			"Ce-Specversion": "1.0", "Ce-Id": want.ID(), "Ce-Type": want.Type(), "Ce-Source": testCfg.Source,
			"Ce-Subject": want.Subject(), "Ce-Time": "2025-03-04T05:06:07.89Z", "Content-Type": "application/json",
		} {
			if got := r.header.Get(h); got != v {
				t.Errorf("request %d: header %s = %q, want %q", i, h, got, v)
			}
		}
		if !bytes.Equal(r.body, want.Data()) {
			t.Errorf("request %d: body is not the event data:\n%s\nwant\n%s", i, r.body, want.Data())
		}
		if !r.hasBasicAut || r.user != "bot" || r.pass != "s3cret" {
			t.Errorf("request %d: basic auth %v %q %q", i, r.hasBasicAut, r.user, r.pass)
		}

		// Parse back with the CDEvents SDK from the received CloudEvent's JSON.
		ceJSON, err := json.Marshal(r.event)
		if err != nil {
			t.Fatal(err)
		}
		var structured struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(ceJSON, &structured); err != nil {
			t.Fatal(err)
		}
		cd, err := cdeventsv05.NewFromJsonBytes(structured.Data)
		if err != nil {
			t.Fatalf("request %d: NewFromJsonBytes: %v", i, err)
		}
		if err := cdevents.Validate(cd); err != nil {
			t.Fatalf("request %d: Validate: %v", i, err)
		}
		if cd.GetId() != want.ID() || r.event.ID() != want.ID() || cd.GetSource() != testCfg.Source ||
			cd.GetType().String() != want.Type() || cd.GetSubjectId() != want.Subject() || !cd.GetTimestamp().Equal(testTime) {
			t.Errorf("request %d: parsed %s %s %s %s %s", i, cd.GetId(), cd.GetSource(), cd.GetType(), cd.GetSubjectId(), cd.GetTimestamp())
		}
	}

	// The details of the events that carry them.
	parse := func(i int) cdevents.CDEventV04 {
		t.Helper()
		cd, err := cdeventsv05.NewFromJsonBytes(reqs[i].event.Data())
		if err != nil {
			t.Fatal(err)
		}
		return cd
	}
	if q, ok := parse(0).(*cdeventsv05.PipelineRunQueuedEvent); !ok || q.GetSubjectId() != runID ||
		q.Subject.Content.PipelineName != "deploy" || q.Subject.Content.Uri != testCfg.RunURL(runID) {
		t.Errorf("queued = %#v", parse(0))
	}
	if st, ok := parse(2).(*cdeventsv05.TaskRunStartedEvent); !ok || st.GetSubjectId() != jobID ||
		st.Subject.Content.TaskName != "build/test[go=1.22]" ||
		st.Subject.Content.PipelineRun == nil || *st.Subject.Content.PipelineRun != (cdevents.Reference{Id: runID, Source: testCfg.Source}) {
		t.Errorf("taskrun started = %#v", parse(2))
	}
	if f, ok := parse(3).(*cdeventsv05.TaskRunFinishedEvent); !ok || f.GetSubjectId() != jobID ||
		f.Subject.Content.Outcome != "failure" || f.Subject.Content.Errors != "agent lost" ||
		f.Subject.Content.PipelineRun == nil || f.Subject.Content.PipelineRun.Id != runID {
		t.Errorf("taskrun finished (retried) = %#v", parse(3))
	}
	if st, ok := parse(4).(*cdeventsv05.TaskRunStartedEvent); !ok || st.GetSubjectId() != jobID+"-2" {
		t.Errorf("taskrun started (attempt 2) = %#v", parse(4))
	}
	if f, ok := parse(5).(*cdeventsv05.TaskRunFinishedEvent); !ok || f.GetSubjectId() != jobID+"-2" ||
		f.Subject.Content.Outcome != "failure" || f.Subject.Content.Errors != "exit code 1" {
		t.Errorf("taskrun finished = %#v", parse(5))
	}
	if f, ok := parse(6).(*cdeventsv05.PipelineRunFinishedEvent); !ok || f.GetSubjectId() != runID ||
		f.Subject.Content.Outcome != "failure" || f.Subject.Content.Errors != "job build/test[go=1.22] failed" ||
		f.Subject.Content.PipelineName != "deploy" || f.Subject.Content.Uri != testCfg.RunURL(runID) {
		t.Errorf("pipelinerun finished = %#v", parse(6))
	}
}

func TestSendReceiveHandler(t *testing.T) {
	// The same through the SDK's own receiving client.
	p, err := cehttp.New()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan cloudevents.Event, 1)
	h, err := cloudevents.NewHTTPReceiveHandler(context.Background(), p, func(ev cloudevents.Event) {
		got <- ev
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ev, ok, err := Build(testCfg, runEvent(t, store.EventRunStatus, 4,
		store.StatusChange{Status: "partial", Previous: "running", Reason: "lint failed", EndedAt: &testTime}), "deploy")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := (&Sender{}).Send(context.Background(), srv.URL, ev); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		cd, err := cdeventsv05.NewFromJsonBytes(r.Data())
		if err != nil {
			t.Fatal(err)
		}
		f, ok := cd.(*cdeventsv05.PipelineRunFinishedEvent)
		if !ok || r.ID() != runID+"-4" || f.Subject.Content.Outcome != "success" ||
			f.Subject.Content.Errors != PartialErrors+": lint failed" {
			t.Errorf("received %v: %#v", r, cd)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event received")
	}
}

func testEvent(t *testing.T) *Event {
	t.Helper()
	ev, ok, err := Build(testCfg, runEvent(t, store.EventRunStatus, 1, store.StatusChange{Status: "pending"}), "deploy")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	return ev
}

func TestSendErrors(t *testing.T) {
	ev := testEvent(t)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database on fire", http.StatusInternalServerError)
	}))
	defer failing.Close()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("redirect followed to %s", r.URL)
	}))
	defer target.Close()
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer redirecting.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()

	withPass := func(u string) string { return strings.Replace(u, "http://", "http://bot:hunter2pw@", 1) }
	tests := []struct {
		name   string
		sender *Sender
		sink   string
		want   []string
	}{
		{"500", &Sender{}, failing.URL + "/hook", []string{failing.URL + "/hook", "HTTP 500 Internal Server Error", "database on fire", ev.ID()}},
		{"500 with password", &Sender{}, withPass(failing.URL), []string{"bot:xxxxx@", "500"}},
		{"unreachable", &Sender{Timeout: 2 * time.Second}, goneURL, []string{goneURL, "connection refused"}},
		{"unreachable with password", &Sender{}, withPass(goneURL) + "/x?token=1", []string{"bot:xxxxx@", "/x?token=1"}},
		{"redirect", &Sender{}, redirecting.URL, []string{redirecting.URL, "HTTP 307", "not followed"}},
		{"redirect, own client", &Sender{HTTP: &http.Client{}}, redirecting.URL, []string{"HTTP 307"}},
		{"not http", &Sender{}, "ftp://bot:hunter2pw@example.com/x", []string{"ftp://bot:xxxxx@example.com/x", "invalid sink URL"}},
		{"unparsable", &Sender{}, "http://bot:hunter2pw@127.0.0.1:bad port/", []string{"bot:xxxxx@127.0.0.1", "invalid sink URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sender.Send(context.Background(), tt.sink, ev)
			if err == nil {
				t.Fatal("Send succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			if strings.Contains(msg, "hunter2pw") {
				t.Errorf("error shows the password: %s", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}

	// A client passed in is not changed.
	c := &http.Client{}
	_ = (&Sender{HTTP: c}).Send(context.Background(), redirecting.URL, ev)
	if c.CheckRedirect != nil {
		t.Error("Send changed the caller's client")
	}

	// A context that ends stops the send.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	defer close(release)
	start := time.Now()
	err := (&Sender{Timeout: 200 * time.Millisecond}).Send(context.Background(), withPass(slow.URL), ev)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "bot:xxxxx@") || !strings.Contains(err.Error(), "no answer within 200ms") || strings.Contains(err.Error(), "hunter2pw") {
		t.Errorf("slow sink: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("slow sink took %s", d)
	}
}
