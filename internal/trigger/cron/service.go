package cron

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
)

// Store is what the Service reads and records: the pipelines with their head
// specs (where the cron triggers are), and the per-schedule state.
type Store interface {
	ListPipelines(ctx context.Context, f store.PipelineFilter) ([]*store.Pipeline, int, error)
	GetSpec(ctx context.Context, pipelineID string, version int) (*store.SpecVersion, error)
	store.CronState
}

// TriggerFunc starts a run of the pipeline's head definition: the
// scheduler's Trigger. The same RequestID for the same pipeline must return
// the same run (replayed), also under concurrent calls: that is what makes
// several replicas start one run per tick.
type TriggerFunc func(ctx context.Context, pipelineID string, req runnel.TriggerRequest) (*store.Run, bool, error)

// Clock tells the time and waits; tests use a fake one.
type Clock interface {
	Now() time.Time
	// After sends the time on the channel once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Defaults of Options.
const (
	DefaultReload     = 30 * time.Second
	DefaultRetryDelay = 10 * time.Second
)

// Options configure a Service. Store and Trigger are required.
type Options struct {
	Store   Store
	Trigger TriggerFunc
	// Clock is the real time unless a test fixes it.
	Clock Clock
	// MinInterval: a schedule ticking more often is not run (and a warning
	// is logged); default DefaultMinInterval.
	MinInterval time.Duration
	// CatchUp: after downtime that missed several ticks of a schedule, run
	// once for the latest missed tick (true) or skip them all and wait for
	// the next one (false). A single late tick always runs.
	CatchUp bool
	// Reload is how often schedules are re-read from the store, so that
	// saved definitions and edited pipelines are picked up; default
	// DefaultReload.
	Reload time.Duration
	// RetryDelay is how long a tick whose run could not be started for a
	// transient reason (the database) waits before it is tried again;
	// default DefaultRetryDelay.
	RetryDelay time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Service starts the runs of every pipeline's cron schedules. Several
// replicas may run it on one store: each computes the same ticks and the
// same request id per tick, so a tick starts exactly one run; the state of
// each schedule (the last tick handled) is in the store, so a restart
// neither loses nor repeats a tick.
type Service struct {
	st       Store
	trigger  TriggerFunc
	clock    Clock
	min      time.Duration
	catchUp  bool
	reload   time.Duration
	retry    time.Duration
	log      *slog.Logger
	warnedOf map[string]string // schedule id → the warning last logged, to log it once
}

// NewService returns a Service; it starts nothing until Run.
func NewService(o Options) *Service {
	if o.Store == nil || o.Trigger == nil {
		panic("cron.NewService: Options.Store and Options.Trigger are required")
	}
	s := &Service{st: o.Store, trigger: o.Trigger, clock: o.Clock, min: o.MinInterval, catchUp: o.CatchUp,
		reload: o.Reload, retry: o.RetryDelay, log: o.Logger, warnedOf: map[string]string{}}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.min <= 0 {
		s.min = DefaultMinInterval
	}
	if s.reload <= 0 {
		s.reload = DefaultReload
	}
	if s.retry <= 0 {
		s.retry = DefaultRetryDelay
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// active is a schedule the service is following.
type active struct {
	Entry
	// last is the last tick handled (or the moment the schedule was first
	// seen); the next tick to run is Schedule.Next(last).
	last time.Time
	// retryAt delays a tick whose run could not be started.
	retryAt time.Time
}

func (a *active) id() string { return a.PipelineID + "/" + a.Key }

// wake is when the schedule next needs the service.
func (a *active) wake() time.Time {
	t := a.Schedule.Next(a.last)
	if !t.IsZero() && t.Before(a.retryAt) {
		t = a.retryAt
	}
	return t
}

// Run follows the schedules until ctx is done; it returns nil then. Store
// errors are logged and retried: they never stop the server.
func (s *Service) Run(ctx context.Context) error {
	var (
		schedules []*active
		nextLoad  time.Time
	)
	for {
		now := s.clock.Now()
		if !now.Before(nextLoad) {
			loaded, err := s.load(ctx, now, schedules)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				s.log.Error("cron: cannot read the schedules; keeping the previous ones", "err", err)
			default:
				schedules = loaded
			}
			nextLoad = now.Add(s.reload)
		}
		for _, a := range schedules {
			s.fire(ctx, a, now)
			if ctx.Err() != nil {
				return nil
			}
		}
		wake := nextLoad
		for _, a := range schedules {
			if t := a.wake(); !t.IsZero() && t.Before(wake) {
				wake = t
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.clock.After(wake.Sub(s.clock.Now())):
		}
	}
}

// load reads every pipeline's schedules and their state. A schedule seen for
// the first time (or whose definition changed) starts at now: ticks before
// it was defined are not run.
func (s *Service) load(ctx context.Context, now time.Time, prev []*active) ([]*active, error) {
	var entries []Entry
	const page = 500
	for off := 0; ; off += page {
		ps, total, err := s.st.ListPipelines(ctx, store.PipelineFilter{Offset: off, Limit: page})
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			es, err := s.pipelineSchedules(ctx, p)
			if err != nil {
				return nil, err
			}
			entries = append(entries, es...)
		}
		if len(ps) < page || off+len(ps) >= total {
			break
		}
	}
	ticks, err := s.st.ListCronTicks(ctx)
	if err != nil {
		return nil, err
	}
	state := map[string]*store.CronTick{}
	for _, t := range ticks {
		state[t.PipelineID+"/"+t.ScheduleKey] = t
	}
	old := map[string]*active{}
	for _, a := range prev {
		old[a.id()] = a
	}
	out := make([]*active, 0, len(entries))
	for _, e := range entries {
		a := &active{Entry: e}
		id, def := a.id(), e.Schedule.Key()
		if err := e.Schedule.CheckMinInterval(now, s.min); err != nil {
			s.warnOnce(id, def, "cron: schedule not run: it fires more often than the minimum interval",
				"pipeline_id", e.PipelineID, "schedule_key", e.Key, "cron", e.Schedule.Expr, "err", err)
			continue
		}
		st := state[id]
		if st == nil || st.Schedule != def {
			st, err = s.st.StartCronSchedule(ctx, &store.CronTick{PipelineID: e.PipelineID, ScheduleKey: e.Key,
				Schedule: def, LastTick: now.UTC()})
			if errors.Is(err, runnel.ErrNotFound) {
				continue // deleted meanwhile
			}
			if err != nil {
				return nil, err
			}
			s.log.Info("cron: following a schedule", "pipeline_id", e.PipelineID, "schedule_key", e.Key,
				"cron", e.Schedule.Expr, "timezone", e.Schedule.Location.String(), "next", e.Schedule.Next(st.LastTick))
		}
		a.last = st.LastTick
		if o := old[id]; o != nil && o.Schedule.Key() == def {
			// This replica may be ahead of the store (an advance that failed).
			if o.last.After(a.last) {
				a.last = o.last
			}
			a.retryAt = o.retryAt
		}
		out = append(out, a)
	}
	return out, nil
}

// pipelineSchedules reads one pipeline's schedules from its head spec and
// flat fields.
func (s *Service) pipelineSchedules(ctx context.Context, p *store.Pipeline) ([]Entry, error) {
	var raw []byte
	if p.HeadVersion > 0 {
		sv, err := s.st.GetSpec(ctx, p.ID, 0)
		switch {
		case errors.Is(err, runnel.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			raw = sv.Spec
		}
	}
	triggers, err := SpecTriggers(raw)
	if err != nil {
		s.warnOnce(p.ID+"/spec", p.HeadCommitSHA, "cron: cannot read the head spec's triggers", "pipeline_id", p.ID, "err", err)
	}
	entries, errs := PipelineSchedules(p, triggers)
	for _, err := range errs {
		var ee *EntryError
		if errors.As(err, &ee) {
			s.warnOnce(ee.PipelineID+"/"+ee.Key, err.Error(), "cron: schedule not run", "pipeline_id", ee.PipelineID,
				"schedule_key", ee.Key, "err", ee.Err)
		}
	}
	return entries, nil
}

// warnOnce logs a warning about a schedule unless the same one was logged
// for the same definition.
func (s *Service) warnOnce(id, def, msg string, args ...any) {
	if s.warnedOf[id] == def+"\x00"+msg {
		return
	}
	s.warnedOf[id] = def + "\x00" + msg
	s.log.Warn(msg, args...)
}

// fire starts the run of a schedule's due tick, if any.
func (s *Service) fire(ctx context.Context, a *active, now time.Time) {
	if now.Before(a.retryAt) {
		return
	}
	tick, n := dueTicks(a.Schedule, a.last, now)
	if n == 0 {
		return
	}
	attrs := []any{"pipeline_id", a.PipelineID, "schedule_key", a.Key, "tick", tick}
	if n > 1 {
		if !s.catchUp {
			s.log.Warn("cron: missed ticks skipped (catch-up is off); waiting for the next tick",
				append(attrs, "missed", n)...)
			s.advance(ctx, a, tick)
			return
		}
		s.log.Warn("cron: missed ticks; running once for the latest of them (catch-up)",
			append(attrs, "missed", n)...)
	}
	run, replayed, err := s.trigger(ctx, a.PipelineID, runnel.TriggerRequest{
		Variables:   a.Variables,
		TriggeredBy: "cron",
		RequestID:   RequestID(a.PipelineID, a.Key, tick),
		TriggerType: runnel.TriggerCron,
		Trigger:     &runnel.Trigger{Type: runnel.TriggerCron, Event: runnel.TriggerCron, Actor: "cron"},
	})
	switch {
	case ctx.Err() != nil:
		return
	case errors.Is(err, runnel.ErrNotFound) || errors.Is(err, runnel.ErrInvalid) || errors.Is(err, runnel.ErrConflict):
		// The pipeline cannot run this tick (no definition saved, variables
		// it rejects…): trying again would fail the same way.
		s.log.Warn("cron: tick not run", append(attrs, "err", err)...)
	case err != nil:
		a.retryAt = now.Add(s.retry)
		s.log.Error("cron: cannot start the tick's run; retrying", append(attrs, "err", err, "retry_at", a.retryAt)...)
		return
	case replayed:
		s.log.Debug("cron: tick already started by another replica", append(attrs, "run_id", run.ID)...)
	default:
		s.log.Info("cron: run started", append(attrs, "run_id", run.ID)...)
	}
	s.advance(ctx, a, tick)
}

// advance records tick as handled. A failure to record it is logged: the
// run's request id keeps a later retry of the tick from starting a second run.
func (s *Service) advance(ctx context.Context, a *active, tick time.Time) {
	a.last, a.retryAt = tick, time.Time{}
	if _, err := s.st.AdvanceCronTick(ctx, a.PipelineID, a.Key, a.Schedule.Key(), tick.UTC()); err != nil && ctx.Err() == nil {
		s.log.Error("cron: cannot record the handled tick", "pipeline_id", a.PipelineID, "schedule_key", a.Key,
			"tick", tick, "err", err)
	}
}

// dueTicks returns the latest tick in (after, now] and how many there are
// (a lower bound past 1000: a long downtime of a frequent schedule is not
// walked tick by tick).
func dueTicks(s *Schedule, after, now time.Time) (latest time.Time, n int) {
	const limit = 1000
	for t := s.Next(after); !t.IsZero() && !t.After(now); t = s.Next(t) {
		latest, n = t, n+1
		if n == limit {
			break
		}
	}
	if n < limit {
		return latest, n
	}
	// Start from a window ending at now instead: the smallest window that
	// holds a tick bounds the walk.
	for _, w := range []time.Duration{time.Hour, 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		from := now.Add(-w)
		if !from.After(latest) {
			break
		}
		if t := s.Next(from); !t.IsZero() && !t.After(now) {
			latest = t
			break
		}
	}
	for t := s.Next(latest); !t.IsZero() && !t.After(now); t = s.Next(t) {
		latest = t
	}
	return latest, n
}
