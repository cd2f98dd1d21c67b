package scheduler_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdevents "github.com/cdevents/sdk-go/pkg/api"
	cdeventsv05 "github.com/cdevents/sdk-go/pkg/api/v05"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/event"
	"github.com/runnel-ci/runnel/internal/event/cdevent"
)

// cdReceived is a CDEvent as a sink received it.
type cdReceived struct {
	typ     string // "pipelinerun.finished", …
	subject string
	outcome string
	errors  string
	fields  []string // the subject content's fields
}

// cdSink receives the CDEvents the outbox sends, checked by the CDEvents SDK,
// in arrival order per run.
type cdSink struct {
	t     *testing.T
	mu    sync.Mutex
	seen  map[string]bool
	byRun map[string][]cdReceived
}

func (s *cdSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		s.t.Errorf("not a CloudEvent: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cd, err := cdeventsv05.NewFromJsonBytes(ev.Data())
	if err != nil {
		s.t.Errorf("event %s: not a CDEvent: %v", ev.ID(), err)
	} else if err := cdevents.Validate(cd); err != nil {
		s.t.Errorf("event %s (%s): invalid against the spec: %v", ev.ID(), ev.Type(), err)
	}
	var raw struct {
		Subject struct {
			ID      string                     `json:"id"`
			Content map[string]json.RawMessage `json:"content"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(ev.Data(), &raw); err != nil {
		s.t.Errorf("event %s: %v", ev.ID(), err)
	}
	got := cdReceived{typ: strings.TrimSuffix(strings.TrimPrefix(ev.Type(), "dev.cdevents."), ".0.3.0"), subject: raw.Subject.ID}
	for k, v := range raw.Subject.Content {
		got.fields = append(got.fields, k)
		switch k {
		case "outcome":
			_ = json.Unmarshal(v, &got.outcome)
		case "errors":
			_ = json.Unmarshal(v, &got.errors)
		}
	}
	slices.Sort(got.fields)
	run := ev.ID()[:strings.LastIndex(ev.ID(), "-")]
	s.mu.Lock()
	if !s.seen[ev.ID()] {
		s.seen[ev.ID()] = true
		s.byRun[run] = append(s.byRun[run], got)
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (s *cdSink) events(run string) []cdReceived {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.byRun[run])
}

// waitFinished waits for the run's pipelinerun.finished at the sink and
// returns what the sink received of the run by then.
func (s *cdSink) waitFinished(run string, timeout time.Duration) []cdReceived {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.events(run)
		if slices.ContainsFunc(got, func(r cdReceived) bool { return r.typ == "pipelinerun.finished" }) {
			time.Sleep(300 * time.Millisecond) // anything sent after it would arrive now
			return s.events(run)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("run %s: no pipelinerun.finished after %s: %v", run, timeout, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// withCDEvents sends the pipeline's events to a new sink through an outbox
// worker, as the server does.
func (e *env) withCDEvents(pipelineID string) *cdSink {
	e.t.Helper()
	sink := &cdSink{t: e.t, seen: map[string]bool{}, byRun: map[string][]cdReceived{}}
	srv := httptest.NewServer(sink)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := e.st.GetPipeline(ctx, pipelineID)
	if err != nil {
		e.t.Fatal(err)
	}
	p.EventSinks = []string{srv.URL + "/events"}
	if err := e.st.UpdatePipeline(ctx, p); err != nil {
		e.t.Fatal(err)
	}
	d := event.NewDeliverer(event.DelivererOptions{Store: e.st, Poll: 20 * time.Millisecond,
		CDEvents: cdevent.Config{Source: "/runnel/test", APIBase: "http://ci.example.test"}})
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done; srv.Close() }) // before the store closes
	return sink
}

// TestCDEventsOfAStoppedRun: a run stopped while its jobs run is cancelled at
// once, but its pipelinerun.finished is sent after the taskrun.finished of
// every job (the run's end is recorded when its last job ends, and the outbox
// sends a run's events in order).
func TestCDEventsOfAStoppedRun(t *testing.T) {
	e := newEnv(t, 5*time.Second, "agent_cd")
	id := e.pipeline(`namespace: t
jobs:
  - {name: a, steps: [{name: wait, run: "sleep 60"}]}
  - {name: b, steps: [{name: wait, run: "sleep 60"}]}
`)
	sink := e.withCDEvents(id)
	ctx := context.Background()
	run, _, err := e.sched.Trigger(ctx, id, runnel.TriggerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tree, _ := e.st.GetRunTree(ctx, run.ID)
		n := 0
		for _, j := range tree.Jobs {
			if tree.Steps[j.ID][0].Status == runnel.StepRunning {
				n++
			}
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the jobs never both ran: %s", describe(tree))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.sched.Stop(ctx, run.ID, "op", "enough"); err != nil {
		t.Fatal(err)
	}
	tree := e.wait(run.ID, 15*time.Second)
	if tree.Run.Status != runnel.RunCancelled {
		t.Fatalf("after stop: %s %s", tree.Run.Status, describe(tree))
	}
	got := sink.waitFinished(run.ID, 15*time.Second)
	var order []string
	for _, r := range got {
		s := r.typ
		if r.outcome != "" {
			s += ":" + r.outcome
		}
		order = append(order, s)
	}
	want := []string{"pipelinerun.queued", "pipelinerun.started", "taskrun.started", "taskrun.started",
		"taskrun.finished:cancel", "taskrun.finished:cancel", "pipelinerun.finished:cancel"}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("CDEvents of the stopped run:\n got  %v\n want %v", order, want)
	}
	var finished []string
	for _, r := range got[4:6] {
		finished = append(finished, r.subject)
	}
	slices.Sort(finished)
	ids := []string{tree.Jobs[0].ID, tree.Jobs[1].ID}
	slices.Sort(ids)
	if !slices.Equal(finished, ids) {
		t.Fatalf("taskrun.finished of %v, want every job %v", finished, ids)
	}
	if last := got[len(got)-1]; last.errors != "stopped by op: enough" {
		t.Errorf("pipelinerun.finished errors %q", last.errors)
	}
	checkStartEvents(t, got)
}

// TestCDEventsOfAFailedRun: a failed run's pipelinerun.finished comes last,
// with outcome failure and errors naming each failed job (not those allowed
// to fail) with its reason.
func TestCDEventsOfAFailedRun(t *testing.T) {
	e := newEnv(t, 5*time.Second, "agent_cd")
	id := e.pipeline(`namespace: t
jobs:
  - {name: ok, steps: [{name: s, run: "true"}]}
  - {name: bad, steps: [{name: s, run: "exit 3"}]}
  - {name: worse, steps: [{name: t, run: "exit 4"}]}
  - {name: lint, continueOnError: true, steps: [{name: l, run: "exit 1"}]}
`)
	sink := e.withCDEvents(id)
	ctx := context.Background()
	run, _, err := e.sched.Trigger(ctx, id, runnel.TriggerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	tree := e.wait(run.ID, 20*time.Second)
	if tree.Run.Status != runnel.RunFailed {
		t.Fatalf("run %s: %s", tree.Run.Status, describe(tree))
	}
	got := sink.waitFinished(run.ID, 15*time.Second)
	last := got[len(got)-1]
	if last.typ != "pipelinerun.finished" || last.outcome != cdevent.OutcomeFailure {
		t.Fatalf("last event %+v, want pipelinerun.finished with outcome failure (all: %v)", last, got)
	}
	n := 0
	for _, r := range got {
		if r.typ == "taskrun.finished" {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("%d taskrun.finished before pipelinerun.finished, want 4: %v", n, got)
	}
	key := map[string]string{}
	for _, j := range tree.Jobs {
		key[j.Name] = j.Key
	}
	want := "job " + key["bad"] + " failed: step s failed with exit code 3; job " + key["worse"] + " failed: step t failed with exit code 4"
	if last.errors != want {
		t.Errorf("pipelinerun.finished errors\n got  %q\n want %q", last.errors, want)
	}
	checkStartEvents(t, got)
}

// checkStartEvents: queued and started events carry what the spec's
// schema allows them, no outcome or errors (their type is their status).
func checkStartEvents(t *testing.T, got []cdReceived) {
	t.Helper()
	for _, r := range got {
		var want []string
		switch r.typ {
		case "pipelinerun.queued", "pipelinerun.started":
			want = []string{"pipelineName", "uri"}
		case "taskrun.started":
			want = []string{"pipelineRun", "taskName", "uri"}
		default:
			continue
		}
		if !slices.Equal(r.fields, want) {
			t.Errorf("%s of %s: content fields %v, want %v", r.typ, r.subject, r.fields, want)
		}
	}
}
