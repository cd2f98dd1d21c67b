package cron_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
	"github.com/runnel-ci/runnel/internal/trigger/cron"
)

// fakeClock is a Clock whose time moves only when the test says so.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	until time.Time
	ch    chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{until: c.now.Add(d), ch: ch})
	return ch
}

// set moves the clock to t and wakes the waiters due by then.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	c.waiters = slices.DeleteFunc(c.waiters, func(w waiter) bool {
		if w.until.After(t) {
			return false
		}
		w.ch <- t
		return true
	})
}

// nextWake is the earliest waiter's time.
func (c *fakeClock) nextWake() (time.Time, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, w := range c.waiters {
		if next.IsZero() || w.until.Before(next) {
			next = w.until
		}
	}
	return next, len(c.waiters)
}

// fx is a store, a scheduler, a fake clock and the services under test.
type fx struct {
	t     *testing.T
	ctx   context.Context
	st    store.Store
	sched *scheduler.Scheduler
	clock *fakeClock

	mu    sync.Mutex
	fired []firing // every Trigger call, by any service
	svcs  map[int]func()
	n     int // running services
	next  int
}

type firing struct {
	at        time.Time
	requestID string
	replayed  bool
	runID     string
}

func newFx(t *testing.T, start string) *fx {
	t.Helper()
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "runnel.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f := &fx{t: t, ctx: t.Context(), st: st, clock: &fakeClock{now: ts(start)}, svcs: map[int]func(){}}
	f.sched = scheduler.New(scheduler.Options{Store: st, Catalog: action.Builtins()})
	t.Cleanup(func() {
		for _, stop := range f.svcs {
			stop()
		}
	})
	return f
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// pipeline creates a pipeline with the flat cron fields and, when yaml is
// not empty, a head spec.
func (f *fx) pipeline(yaml, cronExpr, tz string) string {
	f.t.Helper()
	id := runnel.NewID("pl")
	now := time.Now().UTC()
	if err := f.st.CreatePipeline(f.ctx, &store.Pipeline{ID: id, ProjectID: "p", Name: id, SaveMode: "direct",
		TriggerCronExpression: cronExpr, TriggerTimezone: tz, CreatedAt: now, UpdatedAt: now}); err != nil {
		f.t.Fatal(err)
	}
	if yaml != "" {
		f.save(id, yaml)
	}
	return id
}

func (f *fx) save(pipelineID, yaml string) {
	f.t.Helper()
	def, err := spec.Parse([]byte(yaml), spec.Options{Catalog: action.Builtins()})
	if err != nil {
		f.t.Fatal(err)
	}
	canonical, _ := json.Marshal(def)
	sum := sha256.Sum256(canonical)
	if _, _, err := f.st.SaveSpec(f.ctx, &store.SpecVersion{PipelineID: pipelineID, CommitSHA: hex.EncodeToString(sum[:]),
		Spec: canonical, Format: "yaml", CreatedAt: time.Now().UTC()}, ""); err != nil {
		f.t.Fatal(err)
	}
}

// start runs a Service and waits until it sleeps; it returns its stop.
func (f *fx) start(o cron.Options) func() {
	f.t.Helper()
	o.Store, o.Clock = f.st, f.clock
	if o.Reload == 0 {
		o.Reload = time.Hour
	}
	o.Trigger = func(ctx context.Context, pipelineID string, req runnel.TriggerRequest) (*store.Run, bool, error) {
		run, replayed, err := f.sched.Trigger(ctx, pipelineID, runnel.TriggerRequest(req))
		if err == nil {
			f.mu.Lock()
			f.fired = append(f.fired, firing{at: f.clock.Now(), requestID: req.RequestID, replayed: replayed, runID: run.ID})
			f.mu.Unlock()
		}
		return run, replayed, err
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	svc := cron.NewService(o)
	go func() { done <- svc.Run(ctx) }()
	f.mu.Lock()
	key := f.next
	f.next++
	f.n++
	f.mu.Unlock()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("Run: %v", err)
			}
			f.mu.Lock()
			f.n--
			delete(f.svcs, key)
			f.mu.Unlock()
		})
	}
	f.mu.Lock()
	f.svcs[key] = stop
	f.mu.Unlock()
	f.settle()
	return stop
}

// settle waits (in real time, briefly) until every running service is
// asleep on the fake clock, i.e. has handled everything due.
func (f *fx) settle() {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		n := f.n
		f.mu.Unlock()
		if _, waiting := f.clock.nextWake(); waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatal("the cron services did not go back to sleep")
		}
		time.Sleep(time.Millisecond)
	}
}

// runUntil moves the clock from wake-up to wake-up, as real time would,
// until end.
func (f *fx) runUntil(end string) {
	f.t.Helper()
	until := ts(end)
	for {
		next, _ := f.clock.nextWake()
		if next.IsZero() || next.After(until) {
			f.clock.set(until)
			f.settle()
			return
		}
		f.clock.set(next)
		f.settle()
	}
}

// jump moves the clock to t at once (the services were not running, or
// are to see it as a late wake-up).
func (f *fx) jump(t string) {
	f.clock.set(ts(t))
	f.settle()
}

// firings returns the Trigger calls so far, formatted "at requestID"
// (+" replayed").
func (f *fx) firings() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, x := range f.fired {
		s := x.at.Format(time.RFC3339) + " " + x.requestID
		if x.replayed {
			s += " replayed"
		}
		out = append(out, s)
	}
	return out
}

func (f *fx) wantFirings(want ...string) {
	f.t.Helper()
	got := f.firings()
	if !slices.Equal(got, want) {
		f.t.Fatalf("runs started:\n got  %q\n want %q", got, want)
	}
}

func (f *fx) runs(pipelineID string) []*store.Run {
	f.t.Helper()
	rs, _, err := f.st.ListRuns(f.ctx, store.RunFilter{PipelineID: pipelineID})
	if err != nil {
		f.t.Fatal(err)
	}
	return rs
}

func rid(pipelineID, key, tick string) string {
	return cron.RequestID(pipelineID, key, ts(tick))
}

// fired formats an expected firing: at the tick itself, for it.
func fired(pipelineID, key, tick string) string {
	return tick + " " + rid(pipelineID, key, tick)
}

const berlinSpec = `namespace: t
variables: {env: dev}
triggers:
  - type: cron
    cron: "30 2 * * *"
    timezone: Europe/Berlin
    variables: {env: prod}
jobs: [{name: a, steps: [{run: 'echo ${{ variables.env }}'}]}]
`

// TestTicksInZones runs a spec trigger in Berlin across the spring-forward
// (its 02:30 does not exist on 29 March and is skipped) and the flat fields in
// Hong Kong, each run started at its tick with the trigger's variables.
func TestTicksInZones(t *testing.T) {
	f := newFx(t, "2026-03-27T12:00:00Z")
	id := f.pipeline(berlinSpec, "0 4 * * *", "Asia/Hong_Kong")
	f.start(cron.Options{CatchUp: true})
	f.runUntil("2026-03-30T12:00:00Z")
	f.wantFirings(
		fired(id, "pipeline", "2026-03-27T20:00:00Z"), // 04:00 HKT
		fired(id, "0", "2026-03-28T01:30:00Z"),        // 02:30 CET
		fired(id, "pipeline", "2026-03-28T20:00:00Z"),
		fired(id, "pipeline", "2026-03-29T20:00:00Z"),
		fired(id, "0", "2026-03-30T00:30:00Z"), // 02:30 CEST; none on the 29th
	)
	runs := f.runs(id)
	if len(runs) != 5 {
		t.Fatalf("%d runs stored, want 5", len(runs))
	}
	for _, r := range runs {
		var tc struct{ Type, Event, Actor string }
		if err := json.Unmarshal(r.Trigger, &tc); err != nil {
			t.Fatal(err)
		}
		if r.TriggerType != "cron" || r.TriggeredBy != "cron" || tc.Type != "cron" || tc.Event != "cron" || tc.Actor != "cron" {
			t.Errorf("run %s: trigger %s by %s, context %+v; want cron everywhere", r.RequestID, r.TriggerType, r.TriggeredBy, tc)
		}
	}
	for _, r := range runs {
		spec := strings.HasPrefix(r.RequestID, "cron:"+id+":0:")
		if spec && r.Variables["env"] != "prod" {
			t.Errorf("run %s of the spec trigger: variables %v, want env=prod", r.RequestID, r.Variables)
		}
		if !spec && r.Variables["env"] == "prod" {
			t.Errorf("run %s of the flat fields: variables %v, want the trigger's variables not applied", r.RequestID, r.Variables)
		}
	}
}

// TestFallBackOnce: 01:30 in New York happens twice on 1 November 2026; the
// schedule runs once.
func TestFallBackOnce(t *testing.T) {
	f := newFx(t, "2026-10-31T12:00:00Z")
	id := f.pipeline("", "30 1 * * *", "America/New_York")
	f.save(id, "namespace: t\njobs: [{name: a, steps: [{run: 'true'}]}]")
	f.start(cron.Options{CatchUp: true})
	f.runUntil("2026-11-02T12:00:00Z")
	f.wantFirings(
		fired(id, "pipeline", "2026-11-01T05:30:00Z"), // 01:30 EDT; not again at 01:30 EST
		fired(id, "pipeline", "2026-11-02T06:30:00Z"),
	)
}

// TestReplicas: two services on one store start one run per tick.
func TestReplicas(t *testing.T) {
	f := newFx(t, "2026-06-01T09:30:00Z")
	id := f.pipeline("namespace: t\njobs: [{name: a, steps: [{run: 'true'}]}]", "0 * * * *", "")
	f.start(cron.Options{CatchUp: true})
	f.start(cron.Options{CatchUp: true})
	f.runUntil("2026-06-01T12:30:00Z")
	runs := f.runs(id)
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.RequestID)
	}
	slices.Sort(ids)
	want := []string{rid(id, "pipeline", "2026-06-01T10:00:00Z"), rid(id, "pipeline", "2026-06-01T11:00:00Z"),
		rid(id, "pipeline", "2026-06-01T12:00:00Z")}
	if !slices.Equal(ids, want) {
		t.Fatalf("runs: %q, want one per tick %q", ids, want)
	}
	// Both replicas saw every tick; the second got the first's run.
	if n := len(f.firings()); n != 6 {
		t.Fatalf("%d trigger calls, want 6 (two per tick): %q", n, f.firings())
	}
}

// TestRestartCatchUp: a restart right after a tick neither repeats it nor
// loses the next; after a long downtime one run catches up, not one per
// missed tick.
func TestRestartCatchUp(t *testing.T) {
	f := newFx(t, "2026-06-01T09:30:00Z")
	id := f.pipeline("namespace: t\njobs: [{name: a, steps: [{run: 'true'}]}]", "0 * * * *", "")
	stop := f.start(cron.Options{CatchUp: true})
	f.runUntil("2026-06-01T10:00:00Z")
	stop()
	f.jump("2026-06-01T10:00:30Z")
	stop = f.start(cron.Options{CatchUp: true})
	f.runUntil("2026-06-01T11:00:00Z")
	stop()
	f.jump("2026-06-01T15:30:00Z") // down for 4 ticks
	f.start(cron.Options{CatchUp: true})
	f.runUntil("2026-06-01T16:00:00Z")
	f.wantFirings(
		fired(id, "pipeline", "2026-06-01T10:00:00Z"),
		fired(id, "pipeline", "2026-06-01T11:00:00Z"),
		"2026-06-01T15:30:00Z "+rid(id, "pipeline", "2026-06-01T15:00:00Z"), // the one catch-up run
		fired(id, "pipeline", "2026-06-01T16:00:00Z"),
	)
}

// TestCatchUpOff: after downtime the missed ticks are skipped; a single late
// tick (a short restart) still runs.
func TestCatchUpOff(t *testing.T) {
	f := newFx(t, "2026-06-01T09:30:00Z")
	id := f.pipeline("namespace: t\njobs: [{name: a, steps: [{run: 'true'}]}]", "0 * * * *", "")
	stop := f.start(cron.Options{})
	f.runUntil("2026-06-01T10:00:00Z")
	stop()
	f.jump("2026-06-01T11:05:00Z") // one tick late
	stop = f.start(cron.Options{})
	stop()
	f.jump("2026-06-01T15:30:00Z") // four missed
	f.start(cron.Options{})
	f.runUntil("2026-06-01T16:00:00Z")
	f.wantFirings(
		fired(id, "pipeline", "2026-06-01T10:00:00Z"),
		"2026-06-01T11:05:00Z "+rid(id, "pipeline", "2026-06-01T11:00:00Z"),
		fired(id, "pipeline", "2026-06-01T16:00:00Z"),
	)
}

// TestDefinitionChange: a saved definition is followed from the next reload,
// without a restart; the old schedule stops.
func TestDefinitionChange(t *testing.T) {
	f := newFx(t, "2026-06-01T09:30:00Z")
	id := f.pipeline("namespace: t\ntriggers: [{type: cron, cron: '0 * * * *'}]\njobs: [{name: a, steps: [{run: 'true'}]}]", "", "")
	f.start(cron.Options{Reload: 30 * time.Second})
	f.runUntil("2026-06-01T10:10:00Z")
	f.save(id, "namespace: t\ntriggers: [{type: cron, cron: '30 * * * *'}]\njobs: [{name: a, steps: [{run: 'true'}]}]")
	f.runUntil("2026-06-01T11:45:00Z")
	f.wantFirings(
		fired(id, "0", "2026-06-01T10:00:00Z"),
		fired(id, "0", "2026-06-01T10:30:00Z"),
		fired(id, "0", "2026-06-01T11:30:00Z"),
	)
}

// TestMinIntervalEnforced: a schedule stored before the minimum was raised
// is not run.
func TestMinIntervalEnforced(t *testing.T) {
	f := newFx(t, "2026-06-01T09:30:00Z")
	f.pipeline("namespace: t\njobs: [{name: a, steps: [{run: 'true'}]}]", "* * * * *", "")
	f.start(cron.Options{MinInterval: 5 * time.Minute})
	f.runUntil("2026-06-01T09:40:00Z")
	f.wantFirings()
}
