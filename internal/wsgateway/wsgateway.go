// Package wsgateway is the WebSocket gateway of GET /api/v1/ws: a client
// subscribes to channels (a step's log, a run's events, the status of a
// project's or pipeline's runs) with JSON messages and receives JSON
// messages, replayed from the database then followed live through
// event.Source; see docs/api.md. The HTTP API authenticates the handshake
// and hands the request to Serve.
package wsgateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/event"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

const (
	// Protocol is the subprotocol a browser names, besides its token as
	// "bearer.<token>", since it cannot set an Authorization header.
	Protocol = "runnel.v1"
	// wsQueue bounds the messages waiting to be written to one connection.
	// It is small: a full queue makes the sender wait for the writer (up to
	// slowAfter, then the client is slow and disconnected), so a burst is
	// throttled rather than buffered, and an idle connection costs a few KB
	// (4,096 entries cost ~0.5 MB each, kept while the connection lasts).
	wsQueue = 64
	// DefaultSlowAfter is how long a stream may wait for room in the
	// connection's full queue before the client is told it is too slow and
	// disconnected (Gateway.SlowAfter).
	DefaultSlowAfter = 10 * time.Second
	// wsMaxSubscriptions bounds one connection's subscriptions.
	wsMaxSubscriptions = 100
	// wsPingEvery finds dead connections.
	wsPingEvery = 30 * time.Second
)

// StatusTooSlow is the close code for a client that fell behind.
const StatusTooSlow websocket.StatusCode = 4008

// Request is a client message.
type Request struct {
	Action  string `json:"action"`
	Channel string `json:"channel"`
	Params  Params `json:"params"`
}

// Params select what a subscription streams.
type Params struct {
	ProjectID  string `json:"projectId,omitempty"`
	PipelineID string `json:"pipelineId,omitempty"`
	RunID      string `json:"runId,omitempty"`
	StepRunID  string `json:"stepRunId,omitempty"`
	// FromSeq resumes a run's status stream or a step's log after that seq.
	FromSeq int64 `json:"fromSeq,omitempty"`
	// Batch asks the logs channel for "lines" messages (data: an array of
	// lines, in order) instead of one "line" message per line: a browser
	// catching up on a long log spends its time per message.
	Batch bool `json:"batch,omitempty"`
}

// key identifies a subscription within a connection (fromSeq aside).
func (p Params) key(channel string) string {
	return strings.Join([]string{channel, p.ProjectID, p.PipelineID, p.RunID, p.StepRunID}, "\x00")
}

// Message is a server message.
type Message struct {
	Channel string `json:"channel"`
	Type    string `json:"type"`
	Params  Params `json:"params"`
	Data    any    `json:"data,omitempty"`
}

// conn is one connection's state.
type conn struct {
	g    *Gateway
	c    *websocket.Conn
	out  chan *Message
	ctx  context.Context
	stop context.CancelCauseFunc

	mu       sync.Mutex
	subs     map[string]*sub
	slowOnce sync.Once
}

// Protocols lists the subprotocols the client offered.
func Protocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// writeLoop writes queued messages until the connection ends, and pings.
// A write is not bounded by the client's speed here: a client too slow for
// its streams is found when its queue stays full (send), and then closed
// with a close frame that follows whatever it was being sent. A write that
// takes longer than wsDeadAfter means the peer is gone.
func (c *conn) writeLoop() {
	ping := time.NewTicker(wsPingEvery)
	defer ping.Stop()
	defer c.closeAll()
	wctx := context.WithoutCancel(c.ctx)
	for {
		select {
		case <-c.ctx.Done():
			switch cause := context.Cause(c.ctx); {
			case errors.Is(cause, event.ErrTooSlow):
				// tooSlow is closing it.
			case errors.Is(cause, errClientClosed):
				c.c.CloseNow()
			default:
				c.c.Close(websocket.StatusGoingAway, "server closing the connection")
			}
			return
		case m := <-c.out:
			b, err := json.Marshal(m)
			// The message is gone from the queue: only the pointer was kept.
			if err == nil {
				ctx, cancel := context.WithTimeout(wctx, wsDeadAfter)
				err = c.c.Write(ctx, websocket.MessageText, b)
				cancel()
			}
			if err != nil && c.ctx.Err() == nil {
				c.stop(errClientClosed)
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(wctx, wsDeadAfter)
			err := c.c.Ping(pctx)
			cancel()
			if err != nil && c.ctx.Err() == nil {
				c.stop(errClientClosed)
			}
		}
	}
}

// wsDeadAfter: a write or ping taking longer means the peer is gone.
const wsDeadAfter = time.Minute

// tooSlow disconnects a client that fell behind, telling it why in the
// close frame (sent after the message being written, if the client reads
// again within the library's close timeout).
func (c *conn) tooSlow() {
	c.slowOnce.Do(func() {
		c.g.log.LogAttrs(c.ctx, slog.LevelWarn, "websocket client too slow; disconnecting it",
			slog.Int("queued", len(c.out)), slog.Duration("waited", c.g.slowAfter))
		c.stop(event.ErrTooSlow)
		go c.c.Close(StatusTooSlow, "too slow: the client fell too far behind and was disconnected")
	})
}

var errClientClosed = errors.New("the client closed the connection")

// readLoop handles the client's messages.
func (c *conn) readLoop() {
	// Not c.ctx: the library closes the connection when a read's context
	// ends, which would cut a close frame being sent. Read ends when the
	// connection is closed.
	rctx := context.WithoutCancel(c.ctx)
	for {
		typ, b, err := c.c.Read(rctx)
		if err != nil {
			c.stop(errClientClosed)
			return
		}
		if typ != websocket.MessageText {
			c.fail("", Params{}, "messages must be JSON text")
			continue
		}
		req, msg := ParseRequest(b)
		if msg != "" {
			c.fail(req.Channel, req.Params, msg)
			continue
		}
		c.handle(req)
	}
}

// send queues m, waiting up to DefaultSlowAfter for room.
func (c *conn) send(ctx context.Context, msg Message) error {
	m := &msg
	select {
	case c.out <- m:
		return nil
	default:
	}
	t := time.NewTimer(c.g.slowAfter)
	defer t.Stop()
	select {
	case c.out <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		c.tooSlow()
		return event.ErrTooSlow
	}
}

// fail tells the client a request could not be served.
func (c *conn) fail(channel string, p Params, msg string) {
	_ = c.send(c.ctx, Message{Channel: channel, Type: "error", Params: p, Data: map[string]string{"message": msg}})
}

// ParseRequest decodes and checks a client message. A message that is
// not served comes back with what was wrong and where ("" when it is fine);
// channel and params are echoed in the error only when they are valid.
func ParseRequest(b []byte) (Request, string) {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, "invalid message: " + err.Error() + `; send {"action":"subscribe"|"unsubscribe","channel":"status"|"logs","params":{…}}`
	}
	if dec.More() {
		return Request{}, "invalid message: one JSON object per message"
	}
	p := req.Params
	for _, v := range []struct{ name, val string }{{"projectId", p.ProjectID}, {"pipelineId", p.PipelineID}, {"runId", p.RunID}, {"stepRunId", p.StepRunID}} {
		if len(v.val) > 256 || !utf8.ValidString(v.val) {
			return Request{}, "params." + v.name + ": at most 256 characters of valid UTF-8"
		}
	}
	switch req.Channel {
	case "status", "logs":
	default:
		if len(req.Channel) > 64 || !utf8.ValidString(req.Channel) {
			return Request{}, `channel: unknown channel; accepted: "status", "logs"`
		}
		return Request{Params: p}, fmt.Sprintf("channel: unknown channel %q; accepted: \"status\", \"logs\"", req.Channel)
	}
	switch req.Action {
	case "subscribe", "unsubscribe":
	default:
		if len(req.Action) > 64 || !utf8.ValidString(req.Action) {
			return Request{Channel: req.Channel, Params: p}, `action: unknown action; accepted: "subscribe", "unsubscribe"`
		}
		return Request{Channel: req.Channel, Params: p}, fmt.Sprintf("action: unknown action %q; accepted: \"subscribe\", \"unsubscribe\"", req.Action)
	}
	if p.FromSeq < 0 {
		return Request{Channel: req.Channel, Params: p}, "params.fromSeq: must not be negative"
	}
	if req.Action == "subscribe" && req.Channel == "logs" && p.StepRunID == "" {
		return Request{Channel: req.Channel, Params: p}, "params.stepRunId: required for the logs channel"
	}
	if p.Batch && req.Channel != "logs" {
		return Request{Channel: req.Channel, Params: p}, "params.batch: only the logs channel sends lines in batches"
	}
	if req.Action == "subscribe" && req.Channel == "status" && p.StepRunID != "" {
		return Request{Channel: req.Channel, Params: p}, "params.stepRunId: the status channel follows a run (runId), a pipeline (pipelineId) or a project (projectId)"
	}
	return req, ""
}

// handle serves a checked request.
func (c *conn) handle(req Request) {
	p := req.Params
	key := p.key(req.Channel)
	switch req.Action {
	case "unsubscribe":
		c.mu.Lock()
		sub, ok := c.subs[key]
		delete(c.subs, key)
		c.mu.Unlock()
		if !ok {
			c.fail(req.Channel, p, "not subscribed with these params")
			return
		}
		sub.cancel()
		_ = c.send(c.ctx, Message{Channel: req.Channel, Type: "unsubscribed", Params: p})
		return
	}
	c.mu.Lock()
	if _, dup := c.subs[key]; dup {
		c.mu.Unlock()
		c.fail(req.Channel, p, "already subscribed with these params")
		return
	}
	if len(c.subs) >= wsMaxSubscriptions {
		c.mu.Unlock()
		c.fail(req.Channel, p, fmt.Sprintf("at most %d subscriptions per connection", wsMaxSubscriptions))
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	sub := &sub{cancel: cancel}
	c.subs[key] = sub
	c.mu.Unlock()
	if c.g.Check != nil {
		allow, err := c.g.Check(ctx, p)
		if err != nil {
			c.release(key, sub)
			cancel()
			msg := "not found"
			if !errors.Is(err, runnel.ErrNotFound) {
				c.g.log.LogAttrs(ctx, slog.LevelError, "websocket subscription check failed", slog.Any("error", err))
				msg = "the subscription could not be checked on the server; try again"
			} else {
				msg = err.Error()
			}
			c.fail(req.Channel, p, msg)
			return
		}
		sub.allow = allow
	}
	if req.Channel == "logs" || p.RunID != "" {
		// History first: nothing can be missed. A Watch says "subscribed"
		// once it is registered.
		_ = c.send(ctx, Message{Channel: req.Channel, Type: "subscribed", Params: p})
	}
	go c.stream(ctx, sub, key, req.Channel, p)
}

// sub is one subscription of a connection; allow, when set, says which
// projects' events it passes (a stream of every run the caller may see).
type sub struct {
	cancel context.CancelFunc
	allow  func(projectID string) bool
}

// release removes sub from the connection's subscriptions, unless it is
// already gone or replaced by a newer subscription with the same key.
func (c *conn) release(key string, sub *sub) {
	c.mu.Lock()
	if c.subs[key] == sub {
		delete(c.subs, key)
	}
	c.mu.Unlock()
}

// stream runs one subscription. It releases its key before its last message
// ("end" or "error"), so a client may subscribe again with the same params
// as soon as that message arrives (to follow a retried step, say) without
// being refused as a duplicate or having the new subscription cancelled.
func (c *conn) stream(ctx context.Context, sub *sub, key, channel string, p Params) {
	defer sub.cancel()
	sendEvent := func(e *store.RunEvent) error {
		if sub.allow != nil && !sub.allow(e.ProjectID) {
			return nil
		}
		return c.send(ctx, Message{Channel: channel, Type: e.Type, Params: p, Data: eventData(e)})
	}
	var err error
	switch {
	case channel == "logs" && p.Batch:
		err = c.tailBatches(ctx, p)
	case channel == "logs":
		err = c.g.events.TailLogs(ctx, p.StepRunID, p.FromSeq, func(l store.LogLine) error {
			return c.send(ctx, Message{Channel: channel, Type: "line", Params: p, Data: wire.Line(l)})
		})
	case p.RunID != "":
		err = c.g.events.WatchRun(ctx, p.RunID, p.FromSeq, sendEvent)
	default:
		ready := func() { _ = c.send(ctx, Message{Channel: channel, Type: "subscribed", Params: p}) }
		err = c.g.events.Watch(ctx, event.Filter{ProjectID: p.ProjectID, PipelineID: p.PipelineID}, ready, sendEvent)
	}
	c.release(key, sub)
	switch {
	case err == nil:
		_ = c.send(ctx, Message{Channel: channel, Type: "end", Params: p})
	case errors.Is(err, runnel.ErrNotFound):
		what := "run " + p.RunID
		if channel == "logs" {
			what = "step run " + p.StepRunID
		}
		c.fail(channel, p, what+": not found")
	case errors.Is(err, event.ErrTooSlow):
		c.tooSlow()
	case ctx.Err() != nil:
	default:
		c.g.log.LogAttrs(ctx, slog.LevelError, "websocket stream failed", slog.String("channel", channel), slog.Any("error", err))
		c.fail(channel, p, "the stream failed on the server; subscribe again to resume")
	}
}

// wsBatchBytes bounds the message text of one "lines" message.
const wsBatchBytes = 256 << 10

// tailBatches serves a logs subscription with batch: the source's pages,
// split so that no message carries much more than wsBatchBytes of text.
func (c *conn) tailBatches(ctx context.Context, p Params) error {
	send := func(lines []store.LogLine) error {
		for len(lines) > 0 {
			n, size := 0, 0
			for n < len(lines) && (n == 0 || size+len(lines[n].Message) <= wsBatchBytes) {
				size += len(lines[n].Message)
				n++
			}
			out := make([]wire.LogLine, n)
			for i, l := range lines[:n] {
				out[i] = wire.Line(l)
			}
			if err := c.send(ctx, Message{Channel: "logs", Type: "lines", Params: p, Data: out}); err != nil {
				return err
			}
			lines = lines[n:]
		}
		return nil
	}
	if bs, ok := c.g.events.(event.LogBatchSource); ok {
		return bs.TailLogBatches(ctx, p.StepRunID, p.FromSeq, send)
	}
	return c.g.events.TailLogs(ctx, p.StepRunID, p.FromSeq, func(l store.LogLine) error {
		return send([]store.LogLine{l})
	})
}

// closeAll ends every subscription.
func (c *conn) closeAll() {
	c.mu.Lock()
	for _, sub := range c.subs {
		sub.cancel()
	}
	clear(c.subs)
	c.mu.Unlock()
}

// eventData is an event as the gateway sends it: its data (a status change's
// fields) with the event's id, seq, run and time.
func eventData(e *store.RunEvent) map[string]any {
	m := map[string]any{}
	_ = json.Unmarshal(e.Data, &m)
	if m == nil {
		m = map[string]any{}
	}
	m["eventId"], m["seq"], m["runId"], m["pipelineId"], m["time"] = e.ID, e.Seq, e.RunID, e.PipelineID, wire.Time(e.Time)
	if e.ProjectID != "" {
		m["projectId"] = e.ProjectID
	}
	return m
}

// Gateway serves WebSocket connections over a source of run events and logs.
type Gateway struct {
	events    event.Source
	log       *slog.Logger
	slowAfter time.Duration
	limits    Limits
	// Check, when set, decides each subscription for the caller in ctx (the
	// access policy): an error refuses it with its message; allow filters
	// an unfiltered status stream by project.
	Check func(ctx context.Context, p Params) (allow func(projectID string) bool, err error)

	mu       sync.Mutex
	open     int
	perToken map[string]int
	// closed counts connections ended since memory was last handed back;
	// freeing is set while a hand-back is scheduled.
	closed  int
	freeing bool
}

// Handing memory back: once releaseAfter connections have closed, the
// gateway asks the runtime, releaseDelay later (one request for a wave of
// closes), to collect and return the freed memory to the system. Without
// it a server at rest keeps the peak of a wave of connections: an idle
// process rarely collects, and the runtime returns memory slowly.
const (
	releaseAfter = 64
	releaseDelay = 5 * time.Second
)

// Limits bound the connections a gateway serves at once; 0 is no limit.
type Limits struct {
	// Total is the connections of every client together.
	Total int
	// PerToken is the connections made with one API token.
	PerToken int
}

// Default limits (runnel server --ws-max-connections, --ws-max-per-token).
const (
	DefaultMaxConnections = 10000
	DefaultMaxPerToken    = 100
)

// StatusTooMany is the close code of a connection refused by the limits:
// 1013, Try Again Later.
const StatusTooMany = websocket.StatusTryAgainLater

// New returns a Gateway over events. slowAfter is how long a client that
// does not keep up is waited for before it is disconnected (0: the
// default); log nil discards.
//
// Set Check before serving to have every subscription checked.
func New(events event.Source, slowAfter time.Duration, limits Limits, log *slog.Logger) *Gateway {
	if slowAfter <= 0 {
		slowAfter = DefaultSlowAfter
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gateway{events: events, log: log, slowAfter: slowAfter, limits: limits, perToken: map[string]int{}}
}

// admit counts a connection of token in, or says why it is refused.
func (g *Gateway) admit(token string) (release func(), refused string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.limits.Total > 0 && g.open >= g.limits.Total:
		return nil, fmt.Sprintf("too many connections: the server serves at most %d at once; try again later", g.limits.Total)
	case g.limits.PerToken > 0 && g.perToken[token] >= g.limits.PerToken:
		return nil, fmt.Sprintf("too many connections with this token: at most %d at once; close some, or use one connection with several subscriptions", g.limits.PerToken)
	}
	g.open++
	g.perToken[token]++
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.open--
		if g.perToken[token]--; g.perToken[token] <= 0 {
			delete(g.perToken, token)
		}
		if g.closed++; g.closed >= releaseAfter && !g.freeing {
			g.freeing = true
			time.AfterFunc(releaseDelay, func() {
				debug.FreeOSMemory()
				g.mu.Lock()
				g.closed, g.freeing = 0, false
				g.mu.Unlock()
			})
		}
	}, ""
}

// Serve upgrades an authenticated request (subject names the caller in the
// log) and serves the connection until it ends. A refused handshake is
// answered by the upgrade itself (400, 403 for a cross-origin request…).
//
// A connection past the Limits is accepted and closed at once with
// StatusTooMany and a reason saying which limit (a browser cannot read the
// status of a refused handshake, but it reads a close reason). token is
// the API token's id, for the limit per token.
func (g *Gateway) Serve(w http.ResponseWriter, r *http.Request, subject, token string) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{Protocol}})
	if err != nil {
		g.log.LogAttrs(r.Context(), slog.LevelInfo, "websocket handshake refused", slog.Any("error", err))
		return
	}
	release, refused := g.admit(token)
	if refused != "" {
		g.log.LogAttrs(r.Context(), slog.LevelWarn, "websocket refused", slog.String("subject", subject), slog.String("reason", refused))
		c.Close(StatusTooMany, refused)
		return
	}
	c.SetReadLimit(64 << 10)
	// Not the request's context: it ends when this handler returns. Its
	// values (the caller, the request id) are kept.
	ctx, stop := context.WithCancelCause(context.WithoutCancel(r.Context()))
	cn := &conn{g: g, c: c, out: make(chan *Message, wsQueue), ctx: ctx, stop: stop, subs: map[string]*sub{}}
	g.log.LogAttrs(ctx, slog.LevelInfo, "websocket connected", slog.String("subject", subject))
	// The connection is hijacked: it outlives this handler, whose goroutine
	// (with the deep stack of the HTTP middleware) ends now. The
	// connection's own goroutines start with small stacks.
	go cn.readLoop()
	go func() {
		defer release()
		cn.writeLoop()
	}()
}
