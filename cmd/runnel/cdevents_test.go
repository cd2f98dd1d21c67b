package main

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cdevents "github.com/cdevents/sdk-go/pkg/api"
	cdeventsv05 "github.com/cdevents/sdk-go/pkg/api/v05"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/runnel-ci/runnel/internal/testpg"
)

// cdSink receives CloudEvents with the CloudEvents SDK and validates each as
// a CDEvent with the CDEvents SDK.
type cdSink struct {
	t    *testing.T
	addr string
	down atomic.Bool // answer 503, as a sink that is up but failing

	mu       sync.Mutex
	srv      *http.Server
	seen     map[string]bool
	byRun    map[string][]string // run id → CDEvent types in arrival order (first delivery of each id)
	dups     int
	received int
}

func newCDSink(t *testing.T) *cdSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &cdSink{t: t, addr: ln.Addr().String(), seen: map[string]bool{}, byRun: map[string][]string{}}
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *cdSink) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			http.Error(w, "sink is down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Ce-Id") == "" || r.Header.Get("Content-Type") != "application/json" {
			s.t.Errorf("not a binary-mode CloudEvent: headers %v", r.Header)
		}
		receiveCloudEvent(s.t, w, r, s.receive)
	})}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go srv.Serve(ln)
}

func (s *cdSink) stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	srv.Close()
}

// restart listens on the same address again.
func (s *cdSink) restart() {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("sink: listen again on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

func (s *cdSink) receive(ev cloudevents.Event) {
	cd, err := cdeventsv05.NewFromJsonBytes(ev.Data())
	if err != nil {
		s.t.Errorf("event %s: not a CDEvent: %v: %s", ev.ID(), err, ev.Data())
		return
	}
	if err := cdevents.Validate(cd); err != nil {
		s.t.Errorf("event %s (%s): invalid against the CDEvents schema: %v", ev.ID(), ev.Type(), err)
	}
	if cd.GetId() != ev.ID() || cd.GetType().String() != ev.Type() || ev.Source() != "/runnel/test" {
		s.t.Errorf("event %s: CloudEvent id/type/source %s %s %s, CDEvent %s %s", ev.ID(), ev.ID(), ev.Type(), ev.Source(), cd.GetId(), cd.GetType())
	}
	run := ev.ID()[:strings.LastIndex(ev.ID(), "-")]
	short := strings.TrimSuffix(strings.TrimPrefix(ev.Type(), "dev.cdevents."), ".0.3.0")
	switch c := cd.(type) {
	case *cdeventsv05.PipelineRunFinishedEvent:
		short += ":" + c.Subject.Content.Outcome
	case *cdeventsv05.TaskRunFinishedEvent:
		short += ":" + c.Subject.Content.Outcome
		if c.Subject.Content.PipelineRun == nil || c.Subject.Content.PipelineRun.Id != run {
			s.t.Errorf("taskrun event %s: pipelineRun link %v, want run %s", ev.ID(), c.Subject.Content.PipelineRun, run)
		}
	case *cdeventsv05.TaskRunStartedEvent:
		if c.Subject.Content.PipelineRun == nil || c.Subject.Content.PipelineRun.Id != run {
			s.t.Errorf("taskrun event %s: pipelineRun link %v, want run %s", ev.ID(), c.Subject.Content.PipelineRun, run)
		}
	case *cdeventsv05.PipelineRunQueuedEvent:
		if c.Subject.Id != run || !strings.HasSuffix(c.Subject.Content.Uri, "/api/v1/pipelines/runs/"+run) || c.Subject.Content.PipelineName != "cd" {
			s.t.Errorf("pipelinerun queued %s: subject %s uri %s name %s", ev.ID(), c.Subject.Id, c.Subject.Content.Uri, c.Subject.Content.PipelineName)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received++
	if s.seen[ev.ID()] {
		s.dups++
		return
	}
	s.seen[ev.ID()] = true
	s.byRun[run] = append(s.byRun[run], short)
}

func (s *cdSink) events(run string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.byRun[run]...)
}

// TestCDEvents runs pipelines with a CDEvents sink configured, then stops
// the sink (first failing with 503, then not listening at all) while a run
// happens and the server is killed; once the sink is back, a new server
// process delivers everything that was missed, in order per run.
func TestCDEvents(t *testing.T) {
	sink := newCDSink(t)
	database := testpg.NewDatabase(t)
	args := []string{"--embedded-agent-capacity", "2", "--events-sinks", "http://" + sink.addr + "/events",
		"--events-source", "/runnel/test", "--external-url", "http://ci.example.test"}
	srv := startServerProc(t, "server-1", database, args...)
	c := &client{t: t, base: "http://" + srv.addr}
	marks := t.TempDir()
	p := c.createPipeline("cd", `{"namespace":"t","jobs":[
		{"name":"build","steps":[{"run":"echo built"}]},
		{"name":"flaky","needs":["build"],"retry":{"max":1},"steps":[{"run":"test -f `+marks+`/${{ run.id }} || { touch `+marks+`/${{ run.id }}; exit 3; }"}]},
		{"name":"lint","needs":["build"],"continueOnError":true,"steps":[{"run":"exit 1"}]}]}`)

	want := []string{
		"pipelinerun.queued", "pipelinerun.started",
		"taskrun.started", "taskrun.finished:success", // build
	}
	check := func(run string) {
		t.Helper()
		got := sink.events(run)
		if len(got) != 11 || strings.Join(got[:4], ",") != strings.Join(want, ",") || got[10] != "pipelinerun.finished:success" {
			t.Fatalf("run %s: CDEvents %v", run, got)
		}
		// flaky: its failed first attempt, then its second; lint fails
		// (allowed: the run is partial, which is a success outcome).
		n := map[string]int{}
		for _, e := range got[4:10] {
			n[e]++
		}
		if n["taskrun.started"] != 3 || n["taskrun.finished:failure"] != 2 || n["taskrun.finished:success"] != 1 {
			t.Fatalf("run %s: the jobs' events %v", run, got[4:10])
		}
	}
	run1 := c.trigger(p, "")
	c.waitRun(run1, 60*time.Second, final)
	waitFor(t, 20*time.Second, "run 1's events at the sink", func() bool {
		e := sink.events(run1)
		return len(e) > 0 && strings.HasPrefix(e[len(e)-1], "pipelinerun.finished")
	})
	check(run1)

	// The sink fails, then goes away; a run happens meanwhile and the server
	// is killed before anything could be delivered.
	sink.down.Store(true)
	run2 := c.trigger(p, "")
	c.waitRun(run2, 60*time.Second, final)
	time.Sleep(1500 * time.Millisecond) // a few failed attempts
	sink.stop()
	srv.kill9()
	if got := sink.events(run2); len(got) != 0 {
		t.Fatalf("run 2's events reached a sink that was down: %v", got)
	}
	sink.down.Store(false)
	sink.restart()
	startServerProc(t, "server-2", database, args...)
	waitFor(t, 60*time.Second, "run 2's events delivered after the sink and a new server came back", func() bool {
		e := sink.events(run2)
		return len(e) > 0 && strings.HasPrefix(e[len(e)-1], "pipelinerun.finished")
	})
	check(run2)
	sink.mu.Lock()
	t.Logf("sink received %d requests, %d of them repeats of an event id (at-least-once)", sink.received, sink.dups)
	sink.mu.Unlock()
}

// receiveCloudEvent reads one CloudEvent from r with the SDK and hands it to
// fn before answering 202. The SDK's own receive handler is not used: it
// hands each request to a goroutine through a channel and blocks forever
// when a sender hangs up first, which keeps httptest's Close waiting (and
// hid a failing test's messages behind a timeout).
func receiveCloudEvent(t *testing.T, w http.ResponseWriter, r *http.Request, fn func(cloudevents.Event)) {
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		t.Errorf("not a CloudEvent: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fn(*ev)
	w.WriteHeader(http.StatusAccepted)
}
