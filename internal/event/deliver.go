package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/runnel-ci/runnel/internal/event/cdevent"
	"github.com/runnel-ci/runnel/internal/safeurl"
	"github.com/runnel-ci/runnel/internal/store"
)

// DeliveryStore is what the delivery worker needs.
type DeliveryStore interface {
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*store.Delivery, error)
	DeliveryDone(ctx context.Context, id int64) error
	DeliveryFailed(ctx context.Context, id int64, next time.Time, errMsg string) error
	GetPipeline(ctx context.Context, id string) (*store.Pipeline, error)
}

// RunNotifier delivers a run's end to its notification channels (the
// outbox's store.NotifySink entries). An error makes the entry retried.
type RunNotifier interface {
	Notify(ctx context.Context, e *store.RunEvent, attempt int) error
}

// ImageBuilds finds the image build a run is (the image build service implements it).
type ImageBuilds interface {
	// ImageBuild returns the build run runID is, or ok=false when it is not an image build.
	ImageBuild(ctx context.Context, runID string) (b *cdevent.ImageBuild, ok bool, err error)
}

// DelivererOptions configure a Deliverer.
type DelivererOptions struct {
	Store DeliveryStore
	// CDEvents says who emits (source) and where runs are linked.
	CDEvents cdevent.Config
	Sender   *cdevent.Sender
	// Notifier handles store.NotifySink entries; nil drops them.
	Notifier RunNotifier
	// Statuses handles store.ForgeStatusSink entries (commit statuses on
	// forges); nil drops them.
	Statuses RunNotifier
	// Images tells which runs are image builds; nil: none are.
	Images ImageBuilds
	Logger *slog.Logger
	// Poll is how often the outbox is read when nothing wakes the worker
	// (default 1s).
	Poll time.Duration
	// MaxBackoff caps the delay between attempts (default 5m); the first
	// retry waits 1s, doubling.
	MaxBackoff time.Duration
	// MaxAge drops an entry that could not be delivered for this long
	// (default 72h), with an error in the log.
	MaxAge time.Duration
	// Parallel bounds concurrent deliveries (default 8).
	Parallel int
	Now      func() time.Time
}

// Deliverer works the outbox: it sends every recorded run and job event as
// a CDEvent to each sink, in order per (sink, run), retrying with backoff
// while a sink is down. The run.status events of image builds (see
// DelivererOptions.Images) also send their build and artifact CDEvents
// (cdevent.BuildEvents), right after the pipelinerun event. It runs on every replica; the store's leases keep
// two replicas from sending one entry at once. Delivery is at least once:
// an entry sent just before a crash is sent again, with the same event id.
type Deliverer struct {
	o     DelivererOptions
	log   *slog.Logger
	kick  chan struct{}
	names sync.Map // pipeline id → name
}

// NewDeliverer returns a Deliverer; call Run.
func NewDeliverer(o DelivererOptions) *Deliverer {
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 72 * time.Hour
	}
	if o.Parallel <= 0 {
		o.Parallel = 8
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sender == nil {
		o.Sender = &cdevent.Sender{}
	}
	d := &Deliverer{o: o, log: o.Logger, kick: make(chan struct{}, 1)}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	return d
}

// SetStatuses sets DelivererOptions.Statuses; call it before Run.
func (d *Deliverer) SetStatuses(n RunNotifier) { d.o.Statuses = n }

// Kick makes the worker look at the outbox now.
func (d *Deliverer) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// deliveryLease is how long a claimed entry is reserved for this replica.
const deliveryLease = time.Minute

// Run delivers until ctx ends.
func (d *Deliverer) Run(ctx context.Context) error {
	for {
		n, err := d.round(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("event delivery: read the outbox", "err", err)
		}
		if n > 0 && err == nil {
			continue // more may be due at once
		}
		t := time.NewTimer(d.o.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-d.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// round claims due entries and delivers them; it returns how many it
// delivered.
func (d *Deliverer) round(ctx context.Context) (int, error) {
	ds, err := d.o.Store.ClaimDeliveries(ctx, d.o.Now(), deliveryLease, 4*d.o.Parallel)
	if err != nil || len(ds) == 0 {
		return 0, err
	}
	sem := make(chan struct{}, d.o.Parallel)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		done    int
		settled []int64
	)
	batch, batching := d.o.Store.(batchSettler)
	for _, dl := range ds {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ok, remove := d.deliver(ctx, dl, batching)
			mu.Lock()
			if ok {
				done++
			}
			if remove {
				settled = append(settled, dl.ID)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(settled) > 0 {
		if err := batch.DeliveriesDone(ctx, settled); err != nil && ctx.Err() == nil {
			d.log.Warn("event delivery: settle delivered events", "count", len(settled), "err", err)
		}
	}
	return done, nil
}

// batchSettler is a DeliveryStore that removes settled entries in one
// transaction per round (the SQL store): one write for a round's events
// instead of one each. Until it commits, the entries stay leased to this
// replica; a crash before it only repeats their delivery (at least once).
type batchSettler interface {
	DeliveriesDone(ctx context.Context, ids []int64) error
}

// deliver attempts one entry and settles it; it reports success, and, when
// batch is set, leaves the removal of a settled entry to the caller
// (remove).
func (d *Deliverer) deliver(ctx context.Context, dl *store.Delivery, batch bool) (ok, remove bool) {
	e := dl.Event
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := d.send(sctx, dl)
	cancel()
	now := d.o.Now()
	if err == nil || errors.Is(err, errUndeliverable) {
		if err != nil {
			d.log.Error("event delivery: dropped an event that can never be delivered", "sink", safeurl.Redact(dl.Sink),
				"run_id", e.RunID, "seq", e.Seq, "type", e.Type, "err", err)
		}
		if batch {
			return err == nil, true
		}
		if err := d.o.Store.DeliveryDone(ctx, dl.ID); err != nil && ctx.Err() == nil {
			d.log.Warn("event delivery: settle a delivered event", "delivery_id", dl.ID, "err", err)
		}
		return err == nil, false
	}
	if ctx.Err() != nil {
		return false, false // shutting down: the lease ends and another try follows
	}
	if now.Sub(dl.CreatedAt) > d.o.MaxAge {
		d.log.Error("event delivery: giving up on an event after retrying for too long", "sink", safeurl.Redact(dl.Sink),
			"run_id", e.RunID, "seq", e.Seq, "type", e.Type, "attempts", dl.Attempts+1, "err", err)
		if batch {
			return false, true
		}
		if err := d.o.Store.DeliveryDone(ctx, dl.ID); err != nil {
			d.log.Warn("event delivery: drop an event", "delivery_id", dl.ID, "err", err)
		}
		return false, false
	}
	backoff := time.Second << min(dl.Attempts, 20)
	backoff = min(backoff, d.o.MaxBackoff)
	d.log.Warn("event delivery failed; will retry", "sink", safeurl.Redact(dl.Sink), "run_id", e.RunID, "seq", e.Seq,
		"attempt", dl.Attempts+1, "retry_in", backoff.String(), "err", err)
	if err := d.o.Store.DeliveryFailed(ctx, dl.ID, now.Add(backoff), err.Error()); err != nil {
		d.log.Warn("event delivery: record a failed attempt", "delivery_id", dl.ID, "err", err)
	}
	return false, false
}

// errUndeliverable marks an entry that no retry can deliver (its event
// cannot be built).
var errUndeliverable = errors.New("undeliverable")

func (d *Deliverer) send(ctx context.Context, dl *store.Delivery) error {
	e := dl.Event
	if dl.Sink == store.NotifySink {
		if d.o.Notifier == nil {
			return nil
		}
		return d.o.Notifier.Notify(ctx, e, dl.Attempts+1)
	}
	if dl.Sink == store.ForgeStatusSink {
		if d.o.Statuses == nil {
			return nil
		}
		return d.o.Statuses.Notify(ctx, e, dl.Attempts+1)
	}
	ev, ok, err := cdevent.Build(d.o.CDEvents, e, d.pipelineName(ctx, e.PipelineID))
	if err != nil {
		return fmt.Errorf("%w: %v", errUndeliverable, err)
	}
	if ok {
		if err := d.o.Sender.Send(ctx, dl.Sink, ev); err != nil {
			return err
		}
	}
	if d.o.Images == nil || e.Type != store.EventRunStatus {
		return nil
	}
	// An image build's run also has build and artifact events, sent after
	// its pipelinerun event. Any failure from here on leaves the entry to be
	// retried whole: the retry sends the events already sent again, with
	// the same ids (delivery is at least once; receivers deduplicate by id).
	b, isImage, err := d.o.Images.ImageBuild(ctx, e.RunID)
	if err != nil {
		return fmt.Errorf("look up the image build of run %s: %w", e.RunID, err)
	}
	if !isImage || b == nil {
		return nil
	}
	evs, err := cdevent.BuildEvents(d.o.CDEvents, e, *b)
	if err != nil {
		return fmt.Errorf("%w: %v", errUndeliverable, err)
	}
	for _, ev := range evs {
		if err := d.o.Sender.Send(ctx, dl.Sink, ev); err != nil {
			return err
		}
	}
	return nil
}

func (d *Deliverer) pipelineName(ctx context.Context, id string) string {
	if v, ok := d.names.Load(id); ok {
		return v.(string)
	}
	p, err := d.o.Store.GetPipeline(ctx, id)
	if err != nil {
		return "" // the id stands in
	}
	d.names.Store(id, p.Name)
	return p.Name
}
