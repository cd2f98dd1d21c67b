package event

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/bus"
	"github.com/runnel-ci/runnel/internal/store"
)

// Topic is the bus topic of the hub's hints: "r:<run id>" (the run's events
// changed), "j:<job run id>" (a job's or one of its steps' status changed),
// "s:<step run id>" (lines were appended to a step's log), or "" (anything
// may have changed).
const Topic = "runnel.events"

// HubStore is what the hub reads.
type HubStore interface {
	ListRunEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]*store.RunEvent, error)
	ListEventsAfter(ctx context.Context, afterID int64, limit int) ([]*store.RunEvent, error)
	LastEventID(ctx context.Context) (int64, error)
	ListLogs(ctx context.Context, stepRunID string, q store.LogQuery) ([]store.LogLine, error)
	GetStepRun(ctx context.Context, id string) (*store.StepRun, error)
}

// HubOptions configure a Hub.
type HubOptions struct {
	Store HubStore
	// Bus carries hints between replicas (nil: hints stay in this process).
	Bus    bus.Bus
	Logger *slog.Logger
	// Poll is how often a stream re-reads the database without a hint
	// (default 1s): lost hints cost latency, never events.
	Poll time.Duration
	// GapWait is how long Watch waits for a missing event id to commit
	// before it skips it as rolled back (default 3s).
	GapWait time.Duration
	// WatchBuffer bounds the events waiting for one Watch consumer (default
	// 1024); a consumer that lets it fill gets ErrTooSlow.
	WatchBuffer int
}

// Hub implements Source over the store. Streams read the database, so they
// never miss or repeat an event: a run's events are followed by seq and a
// log by line seq, and the bus only wakes them sooner. Watch consumers share
// one tail of the global event feed per replica.
type Hub struct {
	st      HubStore
	bus     bus.Bus
	log     *slog.Logger
	poll    time.Duration
	gapWait time.Duration
	buf     int

	mu       sync.Mutex
	waiters  map[string]map[chan struct{}]struct{} // by hint key
	jobRun   map[string]string                     // job run id → run id, for "j:" hints
	watches  map[*watch]struct{}
	pending  map[string]struct{} // hints to publish
	kick     chan struct{}       // pending has hints
	tailKick chan struct{}       // the global tail may have news
}

// NewHub returns a Hub; Run must be running for streams to be prompt and for
// Watch to receive anything.
func NewHub(o HubOptions) *Hub {
	h := &Hub{st: o.Store, bus: o.Bus, log: o.Logger, poll: o.Poll, gapWait: o.GapWait, buf: o.WatchBuffer,
		waiters: map[string]map[chan struct{}]struct{}{}, jobRun: map[string]string{},
		watches: map[*watch]struct{}{}, pending: map[string]struct{}{},
		kick: make(chan struct{}, 1), tailKick: make(chan struct{}, 1)}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.poll <= 0 {
		h.poll = time.Second
	}
	if h.gapWait <= 0 {
		h.gapWait = 3 * time.Second
	}
	if h.buf <= 0 {
		h.buf = 1024
	}
	return h
}

// Hint says that something changed (see Topic for the forms). It never
// blocks: hints are coalesced and published by Run.
func (h *Hub) Hint(key string) {
	h.mu.Lock()
	h.pending[key] = struct{}{}
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// Run publishes hints, receives other replicas' and follows the global feed
// for Watch, until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	var sub <-chan string
	if h.bus != nil {
		ch, stop := h.bus.Subscribe(Topic, 4096)
		defer stop()
		sub = ch
	}
	go h.tail(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.kick:
			h.mu.Lock()
			keys := make([]string, 0, len(h.pending))
			for k := range h.pending {
				keys = append(keys, k)
			}
			clear(h.pending)
			h.mu.Unlock()
			for _, k := range keys {
				if h.bus != nil {
					// Delivered to this process by the bus too.
					if err := h.bus.Publish(ctx, Topic, k); err != nil && ctx.Err() == nil {
						h.log.Warn("publish event hint", "hint", k, "err", err)
						h.wake(k)
					}
				} else {
					h.wake(k)
				}
			}
		case k, ok := <-sub:
			if !ok {
				sub = nil
				continue
			}
			h.wake(k)
		}
	}
}

// wake wakes the streams a hint concerns.
func (h *Hub) wake(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	signal := func(k string) {
		for ch := range h.waiters[k] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	switch {
	case key == "":
		for k := range h.waiters {
			signal(k)
		}
	case strings.HasPrefix(key, "j:"):
		if run, ok := h.jobRun[key[2:]]; ok {
			signal("r:" + run)
		}
	default:
		signal(key)
	}
	if key == "" || !strings.HasPrefix(key, "s:") {
		select {
		case h.tailKick <- struct{}{}:
		default:
		}
	}
}

// register returns a channel woken by hints for key, and its release.
func (h *Hub) register(key string) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.waiters[key] == nil {
		h.waiters[key] = map[chan struct{}]struct{}{}
	}
	h.waiters[key][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.waiters[key], ch)
		if len(h.waiters[key]) == 0 {
			delete(h.waiters, key)
			if run, ok := strings.CutPrefix(key, "r:"); ok {
				for j, r := range h.jobRun {
					if r == run {
						delete(h.jobRun, j)
					}
				}
			}
		}
		h.mu.Unlock()
	}
}

// wait blocks until a hint, the poll interval or the end of ctx.
func (h *Hub) wait(ctx context.Context, ch <-chan struct{}) error {
	t := time.NewTimer(h.poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
	case <-t.C:
	}
	return nil
}

// RunOver reports whether e is the event after which a run has nothing more
// to tell: its final status with its end time (every job ended).
func RunOver(e *store.RunEvent) bool {
	if e.Type != store.EventRunStatus {
		return false
	}
	var sc store.StatusChange
	if err := unmarshal(e.Data, &sc); err != nil {
		return false
	}
	switch sc.Status {
	case string(runnel.RunSuccess), string(runnel.RunFailed), string(runnel.RunCancelled), string(runnel.RunPartial):
		return sc.EndedAt != nil
	}
	return false
}

const page = 500

// WatchRun implements Source.
func (h *Hub) WatchRun(ctx context.Context, runID string, fromSeq int64, send func(*store.RunEvent) error) error {
	wake, release := h.register("r:" + runID)
	defer release()
	cursor := fromSeq
	for {
		es, err := h.st.ListRunEvents(ctx, runID, cursor, page)
		if err != nil {
			return err
		}
		over := false
		for _, e := range es {
			if e.Type == store.EventJobStatus || e.Type == store.EventStepStatus {
				h.learnJob(e, runID)
			}
			if err := send(e); err != nil {
				return err
			}
			cursor = e.Seq
			over = over || RunOver(e)
		}
		if len(es) == page {
			continue
		}
		if over {
			return nil
		}
		if err := h.wait(ctx, wake); err != nil {
			return err
		}
	}
}

func (h *Hub) learnJob(e *store.RunEvent, runID string) {
	var sc store.StatusChange
	if unmarshal(e.Data, &sc) != nil || sc.JobRunID == "" {
		return
	}
	h.mu.Lock()
	if _, watched := h.waiters["r:"+runID]; watched {
		h.jobRun[sc.JobRunID] = runID
	}
	h.mu.Unlock()
}

// TailLogs implements Source. Agents store a step's lines before they
// report its final status, so once the status read before a read of the
// lines is final, that read has the last of them.
func (h *Hub) TailLogs(ctx context.Context, stepRunID string, fromSeq int64, send func(store.LogLine) error) error {
	return h.TailLogBatches(ctx, stepRunID, fromSeq, func(lines []store.LogLine) error {
		for _, l := range lines {
			if err := send(l); err != nil {
				return err
			}
		}
		return nil
	})
}

// TailLogBatches implements LogBatchSource: TailLogs a page of lines at a
// time.
func (h *Hub) TailLogBatches(ctx context.Context, stepRunID string, fromSeq int64, send func([]store.LogLine) error) error {
	wake, release := h.register("s:" + stepRunID)
	defer release()
	cursor := fromSeq
	for {
		st, err := h.st.GetStepRun(ctx, stepRunID)
		if err != nil {
			return err
		}
		lines, err := h.st.ListLogs(ctx, stepRunID, store.LogQuery{AfterSeq: cursor, Limit: page})
		if err != nil {
			return err
		}
		if len(lines) > 0 {
			if err := send(lines); err != nil {
				return err
			}
			cursor = lines[len(lines)-1].Seq
		}
		if len(lines) == page {
			continue
		}
		if st.Status.Terminal() {
			return nil
		}
		if err := h.wait(ctx, wake); err != nil {
			return err
		}
	}
}

// watch is one Watch consumer. Its queue grows with need, up to the hub's
// WatchBuffer, and is empty (no memory) while nothing waits: an idle
// subscription costs a few words, not a buffer.
type watch struct {
	f    Filter
	mu   sync.Mutex
	q    []*store.RunEvent
	wake chan struct{} // one token: the queue is not empty
	slow chan struct{} // closed when the queue overflowed
	once sync.Once
}

// push queues e without blocking; false when the queue is full.
func (w *watch) push(e *store.RunEvent, max int) bool {
	w.mu.Lock()
	if len(w.q) >= max {
		w.mu.Unlock()
		return false
	}
	w.q = append(w.q, e)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

// take returns what is queued and empties the queue.
func (w *watch) take() []*store.RunEvent {
	w.mu.Lock()
	q := w.q
	w.q = nil
	w.mu.Unlock()
	return q
}

// Watch implements Source: the events the replica's tail reads from now on.
func (h *Hub) Watch(ctx context.Context, f Filter, ready func(), send func(*store.RunEvent) error) error {
	w := &watch{f: f, wake: make(chan struct{}, 1), slow: make(chan struct{})}
	h.mu.Lock()
	h.watches[w] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.watches, w)
		h.mu.Unlock()
	}()
	// Registered first, then the last id read: whatever the tail passes
	// on from now has a greater id or is dropped below, so nothing
	// recorded after ready is missed.
	from, err := h.st.LastEventID(ctx)
	if err != nil {
		return err
	}
	if ready != nil {
		ready()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.slow:
			return ErrTooSlow
		case <-w.wake:
			for _, e := range w.take() {
				if e.ID <= from {
					continue
				}
				if err := send(e); err != nil {
					return err
				}
			}
		}
	}
}

// tail follows the global feed by id for Watch. On PostgreSQL an id can
// commit after a greater one; a gap is waited for (GapWait) before the
// events after it are passed on, and then taken as a rolled-back insert.
func (h *Hub) tail(ctx context.Context) {
	var cursor int64
	for {
		id, err := h.st.LastEventID(ctx)
		if err == nil {
			cursor = id
			break
		}
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("event feed: read the last event id", "err", err)
		if sleep(ctx, h.poll) != nil {
			return
		}
	}
	var gapSince time.Time
	for {
		retrySoon := false
		es, err := h.st.ListEventsAfter(ctx, cursor, page)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.log.Warn("event feed: read events", "after_id", cursor, "err", err)
		}
		for _, e := range es {
			if e.ID != cursor+1 {
				if gapSince.IsZero() {
					gapSince = time.Now()
				}
				if time.Since(gapSince) < h.gapWait {
					retrySoon = true
					break
				}
			}
			gapSince = time.Time{}
			cursor = e.ID
			h.dispatch(e)
		}
		if len(es) == page && !retrySoon {
			continue
		}
		d := h.poll
		if retrySoon {
			d = 50 * time.Millisecond
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-h.tailKick:
		case <-t.C:
		}
		t.Stop()
	}
}

// dispatch hands an event to the Watch consumers it concerns, never
// blocking: a consumer whose buffer is full is cut off.
func (h *Hub) dispatch(e *store.RunEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watches {
		if (w.f.ProjectID != "" && w.f.ProjectID != e.ProjectID) || (w.f.PipelineID != "" && w.f.PipelineID != e.PipelineID) {
			continue
		}
		if !w.push(e, h.buf) {
			w.once.Do(func() { close(w.slow) })
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func unmarshal(data []byte, v any) error {
	if len(data) == 0 {
		return errors.New("no data")
	}
	return json.Unmarshal(data, v)
}
