package bus

import (
	"context"
	"sync"
	"sync/atomic"
)

// Local is an in-process bus: Publish hands the payload to this process's
// subscribers of the topic and nothing else. The zero value is not usable;
// call NewLocal. Local is safe for concurrent use.
type Local struct {
	// mu guards subs and closed. Deliveries hold it for reading (they only
	// do non-blocking channel sends), so publishers run in parallel; channels
	// are closed only with it held for writing, so a send never meets a
	// closed channel.
	mu     sync.RWMutex
	subs   map[string]map[*subscription]struct{}
	closed bool

	published, delivered, dropped atomic.Uint64
}

type subscription struct {
	ch    chan string
	topic string
	done  bool // guarded by Local.mu; the channel is closed
}

// NewLocal returns an in-process bus (single server on SQLite, tests).
func NewLocal() *Local {
	return &Local{subs: make(map[string]map[*subscription]struct{})}
}

// Publish delivers payload to the current subscribers of topic in this
// process, without blocking: a subscriber whose buffer is full misses it. It
// returns an error, having delivered nothing, when topic or payload is
// invalid (see ValidTopic, MaxPayload) or the bus is closed. ctx is not used
// (Publish never waits); it is there to satisfy Bus.
func (b *Local) Publish(_ context.Context, topic, payload string) error {
	if err := validate(topic, payload); err != nil {
		return err
	}
	if !b.deliver(topic, payload) {
		return ErrClosed
	}
	b.published.Add(1)
	return nil
}

// deliver hands payload to the subscribers of topic and reports false when
// the bus is closed.
func (b *Local) deliver(topic, payload string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return false
	}
	for s := range b.subs[topic] {
		select {
		case s.ch <- payload:
			b.delivered.Add(1)
		default:
			b.dropped.Add(1)
		}
	}
	return true
}

// resync delivers "" ("re-check the database") to every subscriber. A full
// buffer loses its oldest message to make room: "" supersedes it.
func (b *Local) resync() {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, subs := range b.subs {
		for s := range subs {
			b.sendResync(s.ch)
		}
	}
}

func (b *Local) sendResync(ch chan string) {
	// A few rounds, in case concurrent publishers refill the freed slot.
	for range 3 {
		select {
		case ch <- "":
			b.delivered.Add(1)
			return
		default:
		}
		select {
		case <-ch:
			b.dropped.Add(1)
		default: // the subscriber took one in the meantime
		}
	}
	b.dropped.Add(1)
}

// Subscribe returns a channel receiving the payloads published on topic from
// now on, buffered to buf messages (at least 1), and a function ending the
// subscription, which closes the channel and may be called more than once.
// On a closed bus the channel is already closed. Subscribe panics if topic is
// invalid (see ValidTopic).
func (b *Local) Subscribe(topic string, buf int) (<-chan string, func()) {
	if err := ValidTopic(topic); err != nil {
		panic(err)
	}
	s := &subscription{ch: make(chan string, max(buf, 1)), topic: topic}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.done = true
		close(s.ch)
		return s.ch, func() {}
	}
	subs := b.subs[topic]
	if subs == nil {
		subs = make(map[*subscription]struct{})
		b.subs[topic] = subs
	}
	subs[s] = struct{}{}
	return s.ch, func() { b.unsubscribe(s) }
}

func (b *Local) unsubscribe(s *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	close(s.ch)
	subs := b.subs[s.topic]
	delete(subs, s)
	if len(subs) == 0 {
		delete(b.subs, s.topic)
	}
}

// Close closes every subscription's channel; later Publish calls return
// ErrClosed and later subscriptions get a closed channel. Close always
// returns nil and may be called more than once.
func (b *Local) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for _, subs := range b.subs {
		for s := range subs {
			s.done = true
			close(s.ch)
		}
	}
	b.subs = nil
	return nil
}

// Stats returns the bus's counters (Received and Reconnects are always 0).
func (b *Local) Stats() Stats {
	return Stats{
		Published: b.published.Load(),
		Delivered: b.delivered.Load(),
		Dropped:   b.dropped.Load(),
	}
}

// topics returns the number of topics with subscribers (for tests).
func (b *Local) topics() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.subs)
}
