package event

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/runnel-ci/runnel/internal/event/cdevent"
	"github.com/runnel-ci/runnel/internal/store"
)

// memDeliveries is an in-memory DeliveryStore: entries are due until done;
// a failed one is due again at its next time.
type memDeliveries struct {
	mu      sync.Mutex
	entries []*memEntry
}

type memEntry struct {
	d      store.Delivery
	next   time.Time
	leased time.Time
	done   bool
	errs   []string
}

func (m *memDeliveries) add(sink string, e *store.RunEvent, created time.Time) *memEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	me := &memEntry{d: store.Delivery{ID: int64(len(m.entries) + 1), Sink: sink, CreatedAt: created, Event: e}}
	m.entries = append(m.entries, me)
	return me
}

func (m *memDeliveries) ClaimDeliveries(_ context.Context, now time.Time, lease time.Duration, limit int) ([]*store.Delivery, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*store.Delivery
	for _, me := range m.entries {
		if me.done || now.Before(me.next) || now.Before(me.leased) || len(out) == limit {
			continue
		}
		me.leased = now.Add(lease)
		d := me.d
		out = append(out, &d)
	}
	return out, nil
}

func (m *memDeliveries) find(id int64) (*memEntry, error) {
	for _, me := range m.entries {
		if me.d.ID == id {
			return me, nil
		}
	}
	return nil, errors.New("no such delivery")
}

func (m *memDeliveries) DeliveryDone(_ context.Context, id int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	me, err := m.find(id)
	if err == nil {
		me.done = true
	}
	return err
}

func (m *memDeliveries) DeliveryFailed(_ context.Context, id int64, next time.Time, errMsg string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	me, err := m.find(id)
	if err == nil {
		me.next, me.leased = next, time.Time{}
		me.d.Attempts++
		me.d.LastError = errMsg
		me.errs = append(me.errs, errMsg)
	}
	return err
}

func (m *memDeliveries) GetPipeline(_ context.Context, id string) (*store.Pipeline, error) {
	return &store.Pipeline{ID: id, Name: "image-build"}, nil
}

func (m *memDeliveries) state(me *memEntry) (done bool, attempts int, errs []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return me.done, me.d.Attempts, append([]string(nil), me.errs...)
}

// ceSink records the CloudEvents posted to it.
type ceSink struct {
	mu     sync.Mutex
	events []*cloudevents.Event
}

func (s *ceSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ev, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
	if err == nil {
		err = ev.Validate()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (s *ceSink) got() []*cloudevents.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*cloudevents.Event(nil), s.events...)
}

// fakeImages is an ImageBuilds with a switchable lookup error.
type fakeImages struct {
	mu     sync.Mutex
	builds map[string]cdevent.ImageBuild
	err    error
	calls  int
}

func (f *fakeImages) ImageBuild(_ context.Context, runID string) (*cdevent.ImageBuild, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, false, f.err
	}
	b, ok := f.builds[runID]
	if !ok {
		return nil, false, nil
	}
	return &b, true, nil
}

func (f *fakeImages) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

const (
	imageRun = "run_image00000000000000"
	plainRun = "run_plain00000000000000"
)

var (
	deliverTime = time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
	testBuild   = cdevent.ImageBuild{Registry: "127.0.0.1:5000", Repository: "team/app", Tag: "latest",
		Digest: "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
		Commit: "0123456789abcdef0123456789abcdef01234567", SourceURL: "https://git.example.com/team/app.git"}
)

func statusEvent(t *testing.T, runID, typ string, seq int64, sc store.StatusChange) *store.RunEvent {
	t.Helper()
	sc.RunID, sc.PipelineID = runID, "pl_img"
	data, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	return &store.RunEvent{ID: seq, RunID: runID, Seq: seq, PipelineID: "pl_img", ProjectID: "pr_1",
		Type: typ, Data: data, Time: deliverTime}
}

func newTestDeliverer(st *memDeliveries, images ImageBuilds, now *time.Time) *Deliverer {
	o := DelivererOptions{
		Store:    st,
		CDEvents: cdevent.Config{Source: "https://ci.example.com", APIBase: "https://ci.example.com"},
		Sender:   &cdevent.Sender{Timeout: 5 * time.Second},
		Parallel: 1,
		Now:      func() time.Time { return *now },
		Images:   images,
	}
	return NewDeliverer(o)
}

func types(evs []*cloudevents.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type()+" "+ev.ID())
	}
	return out
}

func TestDeliverImageBuildSuccess(t *testing.T) {
	sk := &ceSink{}
	srv := httptest.NewServer(sk)
	defer srv.Close()
	st := &memDeliveries{}
	images := &fakeImages{builds: map[string]cdevent.ImageBuild{imageRun: testBuild}}
	now := deliverTime
	d := newTestDeliverer(st, images, &now)

	me := st.add(srv.URL, statusEvent(t, imageRun, store.EventRunStatus, 9, store.StatusChange{Status: "success", Previous: "running", EndedAt: &deliverTime}), now)
	if n, err := d.round(context.Background()); err != nil || n != 1 {
		t.Fatalf("round = %d, %v", n, err)
	}
	if done, attempts, errs := st.state(me); !done || attempts != 0 {
		t.Fatalf("entry done %v after %d failed attempts: %v", done, attempts, errs)
	}
	purl := testBuild.PURL()
	want := []struct{ typ, id, subject string }{
		{cdevent.TypePipelineRunFinished, imageRun + "-9", imageRun},
		{cdevent.TypeBuildFinished, imageRun + "-9-build", imageRun},
		{cdevent.TypeArtifactPackaged, imageRun + "-9-artifact-packaged", purl},
		{cdevent.TypeArtifactPublished, imageRun + "-9-artifact-published", purl},
	}
	got := sk.got()
	if len(got) != len(want) {
		t.Fatalf("sink got %v; want %d events", types(got), len(want))
	}
	for i, w := range want {
		if got[i].Type() != w.typ || got[i].ID() != w.id || got[i].Subject() != w.subject {
			t.Errorf("event %d = %s %s subject %s; want %s %s subject %s", i,
				got[i].Type(), got[i].ID(), got[i].Subject(), w.typ, w.id, w.subject)
		}
	}
	var bf struct {
		Subject struct {
			Content struct {
				ArtifactID string `json:"artifactId"`
			} `json:"content"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(got[1].Data(), &bf); err != nil {
		t.Fatal(err)
	}
	if bf.Subject.Content.ArtifactID != purl {
		t.Errorf("build.finished artifactId %q; want %q", bf.Subject.Content.ArtifactID, purl)
	}
}

func TestDeliverImageBuildOnlyRunStatus(t *testing.T) {
	sk := &ceSink{}
	srv := httptest.NewServer(sk)
	defer srv.Close()
	st := &memDeliveries{}
	images := &fakeImages{builds: map[string]cdevent.ImageBuild{imageRun: testBuild}}
	now := deliverTime
	d := newTestDeliverer(st, images, &now)

	// A job event of the image build: its taskrun event only, no lookup.
	st.add(srv.URL, statusEvent(t, imageRun, store.EventJobStatus, 5,
		store.StatusChange{JobRunID: "job_1", Key: "build", Status: "running", Previous: "queued", Attempt: 1}), now)
	// A run that is not an image build: its pipelinerun event only.
	st.add(srv.URL, statusEvent(t, plainRun, store.EventRunStatus, 2, store.StatusChange{Status: "running", Previous: "pending"}), now)
	// The image build's start: pipelinerun.started then build.started.
	st.add(srv.URL, statusEvent(t, imageRun, store.EventRunStatus, 2, store.StatusChange{Status: "running", Previous: "pending"}), now)
	for range 3 {
		if _, err := d.round(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]bool{}
	for _, ev := range sk.got() {
		got[ev.Type()+" "+ev.ID()] = true
	}
	want := []string{
		cdevent.TypeTaskRunStarted + " " + imageRun + "-5",
		cdevent.TypePipelineRunStarted + " " + plainRun + "-2",
		cdevent.TypePipelineRunStarted + " " + imageRun + "-2",
		cdevent.TypeBuildStarted + " " + imageRun + "-2-build",
	}
	if len(got) != len(want) {
		t.Errorf("sink got %v; want %v", types(sk.got()), want)
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("sink did not get %s (got %v)", w, types(sk.got()))
		}
	}
	if images.calls != 2 {
		t.Errorf("%d image build lookups; want 2 (run.status events only)", images.calls)
	}
	// Without Images, no lookups and no build events.
	sk2 := &ceSink{}
	srv2 := httptest.NewServer(sk2)
	defer srv2.Close()
	st2 := &memDeliveries{}
	d2 := newTestDeliverer(st2, nil, &now)
	st2.add(srv2.URL, statusEvent(t, imageRun, store.EventRunStatus, 9, store.StatusChange{Status: "success", Previous: "running", EndedAt: &deliverTime}), now)
	if n, err := d2.round(context.Background()); err != nil || n != 1 {
		t.Fatalf("round = %d, %v", n, err)
	}
	if g := sk2.got(); len(g) != 1 || g[0].Type() != cdevent.TypePipelineRunFinished {
		t.Errorf("without Images the sink got %v", types(g))
	}
}

func TestDeliverImageBuildLookupErrorRetries(t *testing.T) {
	sk := &ceSink{}
	srv := httptest.NewServer(sk)
	defer srv.Close()
	st := &memDeliveries{}
	images := &fakeImages{builds: map[string]cdevent.ImageBuild{imageRun: testBuild}, err: errors.New("database is down")}
	now := deliverTime
	d := newTestDeliverer(st, images, &now)

	me := st.add(srv.URL, statusEvent(t, imageRun, store.EventRunStatus, 9, store.StatusChange{Status: "success", Previous: "running", EndedAt: &deliverTime}), now)
	if n, err := d.round(context.Background()); err != nil || n != 0 {
		t.Fatalf("round = %d, %v; want 0 delivered", n, err)
	}
	done, attempts, errs := st.state(me)
	if done || attempts != 1 || len(errs) != 1 {
		t.Fatalf("after a lookup error: done %v attempts %d errors %v; want a retry", done, attempts, errs)
	}
	t.Log(errs[0])
	// The pipelinerun event went out before the lookup failed.
	if g := sk.got(); len(g) != 1 || g[0].Type() != cdevent.TypePipelineRunFinished {
		t.Fatalf("sink got %v", types(g))
	}
	// Not due before its backoff.
	if n, _ := d.round(context.Background()); n != 0 {
		t.Fatalf("retried before the backoff")
	}
	images.setErr(nil)
	now = now.Add(time.Minute)
	if n, err := d.round(context.Background()); err != nil || n != 1 {
		t.Fatalf("retry round = %d, %v", n, err)
	}
	if done, _, _ := st.state(me); !done {
		t.Fatal("entry not done after the retry")
	}
	// The retry resends the pipelinerun event with the same id, then the rest.
	want := []string{
		cdevent.TypePipelineRunFinished + " " + imageRun + "-9",
		cdevent.TypePipelineRunFinished + " " + imageRun + "-9",
		cdevent.TypeBuildFinished + " " + imageRun + "-9-build",
		cdevent.TypeArtifactPackaged + " " + imageRun + "-9-artifact-packaged",
		cdevent.TypeArtifactPublished + " " + imageRun + "-9-artifact-published",
	}
	got := types(sk.got())
	if len(got) != len(want) {
		t.Fatalf("sink got %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %s; want %s", i, got[i], want[i])
		}
	}
}

func TestDeliverImageBuildEventsUndeliverable(t *testing.T) {
	sk := &ceSink{}
	srv := httptest.NewServer(sk)
	defer srv.Close()
	st := &memDeliveries{}
	bad := testBuild
	bad.Commit = "" // artifact.packaged cannot be built
	images := &fakeImages{builds: map[string]cdevent.ImageBuild{imageRun: bad}}
	now := deliverTime
	d := newTestDeliverer(st, images, &now)
	me := st.add(srv.URL, statusEvent(t, imageRun, store.EventRunStatus, 9, store.StatusChange{Status: "success", Previous: "running", EndedAt: &deliverTime}), now)
	if _, err := d.round(context.Background()); err != nil {
		t.Fatal(err)
	}
	if done, attempts, _ := st.state(me); !done || attempts != 0 {
		t.Errorf("undeliverable entry: done %v attempts %d; want dropped", done, attempts)
	}
	if g := sk.got(); len(g) != 1 || g[0].Type() != cdevent.TypePipelineRunFinished {
		t.Errorf("sink got %v", types(g))
	}
}
