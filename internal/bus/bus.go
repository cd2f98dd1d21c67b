// Package bus carries small, lossy wake-up signals between the parts of one
// Runnel server and, through PostgreSQL LISTEN/NOTIFY, between server
// replicas sharing one database: "work was queued", "run R was cancelled",
// "run status changed".
//
// The database stays the source of truth. A message on the bus is a hint
// that something may have changed; consumers must be correct without it
// (they also poll, on a longer interval) and only become faster with it.
//
// # Topics and payloads
//
// A topic is 1 to 64 characters of [a-z0-9._-], e.g. "queue" or
// "run.run_abc123.cancel"; [ValidTopic] checks one. A payload is at most
// [MaxPayload] bytes of valid UTF-8 without NUL bytes (what a PostgreSQL text
// value can hold). Publish rejects anything else with an error and sends
// nothing. Subscribe panics on an invalid topic: topics are chosen by code,
// so an invalid one is a programming error; check dynamic ones with
// ValidTopic first.
//
// The empty payload "" means "you may have missed messages on this topic:
// re-check the database". [Postgres] delivers it on every topic that has
// subscribers after its listening connection was lost and re-established.
// Publishers may send it too, as a bare wake-up ("something changed, go
// look"), which means the same thing to a consumer.
//
// # Delivery guarantees
//
//   - At most once. A subscriber never receives a message twice; a publisher's
//     own process receives its messages once, directly at Publish, and ignores
//     their echo from the database.
//   - Lossy under overload. Each subscription has a bounded buffer; when it is
//     full, further messages for that subscriber are dropped (counted in
//     [Stats].Dropped) instead of blocking the publisher or other
//     subscribers. Messages published while a replica's listening connection
//     is down are lost for that replica, which then receives "" once it is
//     back. The resync signal "" is never dropped for lack of room: when a
//     subscriber's buffer is full the oldest buffered message is discarded to
//     make room for it, since "re-check everything" supersedes it.
//   - Only from now on. A subscription receives messages published after
//     Subscribe returned (for other replicas: after its listener received
//     them), nothing from before.
//   - In order per publisher. Messages that one goroutine publishes one after
//     another arrive at each subscriber in that order, both in-process and at
//     another replica (each Publish commits its own NOTIFY before returning,
//     and PostgreSQL delivers notifications in commit order to each
//     listening connection; a replica has exactly one). Messages published
//     concurrently have no defined order, and messages from different
//     replicas are not ordered relative to local ones.
//   - Per database. NOTIFY reaches only sessions connected to the same
//     database, so replicas of different installations on one PostgreSQL
//     server do not hear each other.
//
// # Implementations
//
// [Local] is the in-process bus (a single server on SQLite, tests). [Postgres]
// composes a Local for in-process fan-out with one dedicated LISTEN connection
// and a small connection pool for NOTIFY.
package bus

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Bus delivers small messages on topics to subscribers in this process and,
// for the PostgreSQL implementation, in every other process connected to the
// same database.
type Bus interface {
	// Publish sends payload on topic. Subscribers in this process receive it
	// at once (without a database round trip); other processes receive it
	// through the database. Topic: 1-64 chars of [a-z0-9._-]; payload at most
	// MaxPayload bytes; anything else → a clear error, nothing sent.
	Publish(ctx context.Context, topic, payload string) error
	// Subscribe returns a channel of payloads published on topic from now on,
	// and a function that ends the subscription (closing the channel; safe to
	// call twice). The channel has a bounded buffer (buf, minimum 1); when it
	// is full, further messages for that subscriber are dropped (counted, see
	// Stats), never blocking the publisher or other subscribers.
	Subscribe(topic string, buf int) (<-chan string, func())
	// Close stops the bus; subscriptions' channels are closed.
	Close() error
}

var (
	_ Bus = (*Local)(nil)
	_ Bus = (*Postgres)(nil)
)

// MaxPayload is the largest payload Publish accepts, in bytes. PostgreSQL's
// NOTIFY limit is 8000 bytes; the rest is left for the framing (replica id
// and topic).
const MaxPayload = 7000

// MaxTopic is the longest topic, in bytes.
const MaxTopic = 64

// ErrClosed is returned by Publish on a closed bus.
var ErrClosed = errors.New("bus: closed")

// Stats counts what a bus did since it was created, for tests and metrics.
type Stats struct {
	// Published counts successful Publish calls.
	Published uint64
	// Delivered counts messages put into a subscriber's channel (one message
	// delivered to three subscribers counts three), including "" resyncs.
	Delivered uint64
	// Dropped counts messages not delivered to a subscriber because its
	// buffer was full (and buffered messages discarded to make room for "").
	Dropped uint64
	// Received counts messages from other replicas received from the
	// database (Postgres only; echoes of this replica's messages excluded).
	Received uint64
	// Reconnects counts successful re-establishments of the listening
	// connection (Postgres only).
	Reconnects uint64
}

// ValidTopic reports whether topic can be published and subscribed to:
// 1-64 characters of [a-z0-9._-].
func ValidTopic(topic string) error {
	if topic == "" {
		return errors.New("bus: empty topic")
	}
	if len(topic) > MaxTopic {
		return fmt.Errorf("bus: topic %.20q… is %d bytes long, the limit is %d", topic, len(topic), MaxTopic)
	}
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("bus: topic %q: invalid character %q at offset %d (allowed: a-z 0-9 . _ -)", topic, rune(c), i)
		}
	}
	return nil
}

// validPayload checks what Publish accepts as a payload.
func validPayload(payload string) error {
	switch {
	case len(payload) > MaxPayload:
		return fmt.Errorf("bus: payload is %d bytes long, the limit is %d", len(payload), MaxPayload)
	case !utf8.ValidString(payload):
		return errors.New("bus: payload is not valid UTF-8")
	}
	for i := 0; i < len(payload); i++ {
		if payload[i] == 0 {
			return fmt.Errorf("bus: payload contains a NUL byte at offset %d", i)
		}
	}
	return nil
}

func validate(topic, payload string) error {
	if err := ValidTopic(topic); err != nil {
		return err
	}
	if err := validPayload(payload); err != nil {
		return fmt.Errorf("%w (topic %q)", err, topic)
	}
	return nil
}
