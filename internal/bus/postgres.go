package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Channel is the PostgreSQL notification channel every replica LISTENs on.
// All topics share it; the topic travels in the payload.
const Channel = "runnel_bus"

// sep separates the fields of a notification payload:
// replicaID + sep + topic + sep + payload. Neither a replica id (hex) nor a
// topic can contain it, so the payload itself may.
const sep = ":"

// Timings of the listening connection.
const (
	// backoffMin and backoffMax bound the wait before each reconnection
	// attempt: backoffMin after the loss, doubling after each failure.
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// connectTimeout bounds one reconnection attempt (connect + LISTEN), so
	// a black-holed network cannot stall the listener forever.
	connectTimeout = 10 * time.Second
	// idleCheck is how long the listener waits for a notification before
	// it pings the server, to notice a connection that died silently (no
	// RST) sooner than TCP keepalive would; pingTimeout bounds the ping.
	idleCheck   = 30 * time.Second
	pingTimeout = 5 * time.Second
)

// Postgres is a bus shared by every process connected to one PostgreSQL
// database, through LISTEN/NOTIFY on Channel. It delivers to this process's
// subscribers through an embedded Local at Publish, and to other processes'
// subscribers through the database.
//
// It uses two kinds of connections:
//
//   - one dedicated listening connection, owned by a single goroutine that
//     waits for notifications and fans them out (never blocking: full
//     subscribers drop). A LISTEN is bound to its session, so this
//     connection cannot come from a pool; if it is lost the goroutine
//     reconnects with backoff and then delivers "" on every subscribed topic.
//   - a small pgxpool (at most 4 connections) for NOTIFY. A pool rather than
//     a second dedicated connection because Publish is called concurrently
//     from many goroutines (a pgx.Conn is not concurrency-safe; one
//     connection behind a mutex would serialise every publisher behind each
//     other's round trips), and because the pool re-establishes broken
//     connections on its own, so Publish needs no reconnection logic. Each
//     Publish is one autocommitted statement that has committed when Publish
//     returns, so successive publishes of one goroutine are delivered in
//     order even when they use different pool connections.
//
// Postgres is safe for concurrent use.
type Postgres struct {
	local     *Local
	log       *slog.Logger
	replicaID string
	listenCfg *pgx.ConnConfig
	pool      *pgxpool.Pool
	idleCheck time.Duration

	cancel    context.CancelFunc // stops the listener
	done      chan struct{}      // closed when the listener has exited
	closeOnce sync.Once

	pid                             atomic.Uint32 // backend pid of the listening connection
	published, received, reconnects atomic.Uint64
}

// NewPostgres connects a dedicated connection to dsn that LISTENs on Channel,
// and a small pool for publishing. It fails if the first connection, the
// LISTEN or the first publishing connection fails. ctx bounds only these
// initial connections; the bus runs until Close. Log messages (connection
// lost, reconnected) go to log; nil discards them.
func NewPostgres(ctx context.Context, dsn string, log *slog.Logger) (*Postgres, error) {
	return newPostgres(ctx, dsn, log, idleCheck)
}

func newPostgres(ctx context.Context, dsn string, log *slog.Logger, idleCheck time.Duration) (*Postgres, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	listenCfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("bus: parse PostgreSQL connection string: %w", err)
	}
	if _, ok := listenCfg.RuntimeParams["application_name"]; !ok {
		listenCfg.RuntimeParams["application_name"] = "runnel-bus-listen"
	}
	poolCfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("bus: parse PostgreSQL connection string: %w", err)
	}
	if _, ok := poolCfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		poolCfg.ConnConfig.RuntimeParams["application_name"] = "runnel-bus-notify"
	}
	poolCfg.MaxConns = 4
	poolCfg.MinConns = 1 // keep one warm: a Publish should cost one round trip

	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails (it would panic)
	b := &Postgres{
		local:     NewLocal(),
		replicaID: hex.EncodeToString(id[:]),
		listenCfg: listenCfg,
		idleCheck: idleCheck,
		done:      make(chan struct{}),
	}
	b.log = log.With("replica", b.replicaID)

	conn, err := b.listen(ctx)
	if err != nil {
		return nil, err
	}
	b.pool, err = pgxpool.NewWithConfig(ctx, poolCfg)
	if err == nil {
		err = b.pool.Ping(ctx)
		if err != nil {
			b.pool.Close()
		}
	}
	if err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("bus: connect publishing pool: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go b.run(runCtx, conn)
	b.log.Debug("bus: listening", "channel", Channel, "pid", conn.PgConn().PID())
	return b, nil
}

// listen opens the listening connection.
func (b *Postgres) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, b.listenCfg)
	if err != nil {
		return nil, fmt.Errorf("bus: connect listening connection: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("bus: LISTEN %s: %w", Channel, err)
	}
	b.pid.Store(conn.PgConn().PID())
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// run is the listener goroutine: it receives notifications on conn until
// it fails, then reconnects, until ctx is cancelled (Close).
func (b *Postgres) run(ctx context.Context, conn *pgx.Conn) {
	defer close(b.done)
	for {
		err := b.receive(ctx, conn)
		closeConn(conn)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("bus: listening connection lost; reconnecting (messages from other replicas are missed meanwhile)", "err", err)
		if conn = b.reconnect(ctx); conn == nil {
			return
		}
		b.reconnects.Add(1)
		b.log.Info("bus: listening again; telling subscribers to re-check the database", "pid", conn.PgConn().PID())
		// After LISTEN, so that whatever a subscriber reads from the
		// database upon "" is at least as new as the first message it
		// receives after it.
		b.local.resync()
	}
}

// receive hands notifications on conn to subscribers until conn fails (its
// error) or ctx is cancelled.
func (b *Postgres) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, b.idleCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if n != nil {
			b.handle(n.Payload)
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !pgconn.Timeout(err) || conn.IsClosed() {
			return err
		}
		// Idle for b.idleCheck: make sure the connection is still there.
		// Notifications arriving meanwhile are kept by pgx for the next
		// WaitForNotification.
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("idle check: %w", err)
		}
	}
}

// handle delivers one notification payload to this process's subscribers,
// unless it is this replica's own message coming back.
func (b *Postgres) handle(framed string) {
	id, rest, ok1 := strings.Cut(framed, sep)
	topic, payload, ok2 := strings.Cut(rest, sep)
	if !ok1 || !ok2 || ValidTopic(topic) != nil {
		b.log.Warn("bus: ignoring malformed notification on channel "+Channel, "payload", truncate(framed, 100))
		return
	}
	if id == b.replicaID {
		return // delivered locally at Publish
	}
	b.received.Add(1)
	b.local.deliver(topic, payload)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// reconnect opens a new listening connection, waiting backoffMin before the
// first attempt and doubling the wait (up to backoffMax) after each failure.
// It returns nil when ctx is cancelled first.
func (b *Postgres) reconnect(ctx context.Context) *pgx.Conn {
	delay := backoffMin
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		actx, cancel := context.WithTimeout(ctx, connectTimeout)
		conn, err := b.listen(actx)
		cancel()
		if err == nil {
			return conn
		}
		if ctx.Err() != nil {
			return nil
		}
		delay = nextBackoff(delay)
		b.log.Warn("bus: reconnection failed", "attempt", attempt, "retry_in", delay, "err", err)
	}
}

func nextBackoff(d time.Duration) time.Duration {
	return min(2*d, backoffMax)
}

// Publish delivers payload to this process's subscribers of topic at once,
// then NOTIFYs the other processes (one round trip through the pool). An
// invalid topic or payload, or a closed bus, is an error and nothing is
// sent. If the NOTIFY fails (database unreachable, ctx done), the error says
// so, but local subscribers have already received the message.
func (b *Postgres) Publish(ctx context.Context, topic, payload string) error {
	if err := validate(topic, payload); err != nil {
		return err
	}
	if !b.local.deliver(topic, payload) {
		return ErrClosed
	}
	framed := b.replicaID + sep + topic + sep + payload
	if _, err := b.pool.Exec(ctx, "SELECT pg_notify('"+Channel+"', $1)", framed); err != nil {
		return fmt.Errorf("bus: publish on topic %q to other replicas: %w", topic, err)
	}
	b.published.Add(1)
	return nil
}

// Subscribe returns a channel receiving the payloads published on topic from
// now on by this process and by others, plus "" after a reconnection of the
// listening connection; see Local.Subscribe.
func (b *Postgres) Subscribe(topic string, buf int) (<-chan string, func()) {
	return b.local.Subscribe(topic, buf)
}

// Close closes the subscriptions' channels, stops the listener goroutine
// (waiting for it to exit) and closes the database connections. It returns
// nil and may be called more than once.
func (b *Postgres) Close() error {
	b.closeOnce.Do(func() {
		_ = b.local.Close() // first, so that Publish fails from now on
		b.cancel()
		<-b.done
		b.pool.Close()
	})
	return nil
}

// Stats returns the bus's counters. Published counts messages that reached
// the database too.
func (b *Postgres) Stats() Stats {
	l := b.local.Stats()
	return Stats{
		Published:  b.published.Load(),
		Delivered:  l.Delivered,
		Dropped:    l.Dropped,
		Received:   b.received.Load(),
		Reconnects: b.reconnects.Load(),
	}
}

// listenerPID returns the backend pid of the current listening connection.
func (b *Postgres) listenerPID() uint32 { return b.pid.Load() }
