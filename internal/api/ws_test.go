package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/runnel-ci/runnel/internal/event"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wsgateway"
)

// wsEnv is an API server with the event hub over its store, and one run
// whose single step is running with a long log.
func wsEnv(t *testing.T, lines int) (e *env, stepID string) {
	t.Helper()
	var hub *event.Hub
	e = newEnvWith(t, func(c *Config) {
		hub = event.NewHub(event.HubOptions{Store: c.Store, Poll: 50 * time.Millisecond})
		c.Events = hub
		c.StreamSlowAfter = time.Second
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go hub.Run(ctx)
	pid := e.createPipeline("ws", nil)
	runID, jobID, stepID := "run_ws", "jr_ws", "sr_ws"
	_, _, err := e.st.CreateRun(ctx, &store.NewRun{
		Run:   &store.Run{ID: runID, PipelineID: pid, TriggerType: "manual"},
		Jobs:  []*store.JobRun{{ID: jobID, Key: "s/j", Name: "j", Stage: "s", Status: "running", Attempt: 1}},
		Steps: map[string][]*store.StepRun{jobID: {{ID: stepID, Name: "big", Status: "running"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < lines; i += 1000 {
		batch := make([]store.LogLine, 0, 1000)
		for k := i; k < min(lines, i+1000); k++ {
			// Random text: compression must not shrink the stream.
			batch = append(batch, store.LogLine{Level: "info", Message: fmt.Sprintf("line-%d %s", k+1, rand.Text()+rand.Text()+rand.Text())})
		}
		if _, err := e.st.AppendLogs(ctx, stepID, batch, 0); err != nil {
			t.Fatal(err)
		}
	}
	return e, stepID
}

func wsDial(t *testing.T, e *env) *websocket.Conn {
	t.Helper()
	return wsDialWith(t, e, nil)
}

// wsDialWith dials with hc (nil: the default client).
func wsDialWith(t *testing.T, e *env, hc *http.Client) *websocket.Conn {
	t.Helper()
	return wsDialURL(t, e, e.http.URL, hc)
}

func wsDialURL(t *testing.T, e *env, base string, hc *http.Client) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/api/v1/ws",
		&websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Authorization": {"Bearer " + e.token}}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func wsWrite(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := c.Write(t.Context(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

// TestWebSocketSlowConsumer: a client that stops reading while a long log
// streams is disconnected with a close code saying why, after
// StreamSlowAfter; another client on the same log is served in full
// meanwhile, in order.
func TestWebSocketSlowConsumer(t *testing.T) {
	const lines = 10000 // ~1 MB: more than the socket buffers and the queue hold
	e, stepID := wsEnv(t, lines)
	sub := map[string]any{"action": "subscribe", "channel": "logs", "params": map[string]any{"stepRunId": stepID}}

	// A small receive buffer (which turns off the kernel's autotuning, up
	// to 32 MB here) so that the server's writes block once the slow client
	// stops reading.
	small := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
			})
			return errors.Join(err, serr)
		}}).DialContext}}
	// And small send buffers on the server's side of the connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	smallSrv := httptest.NewUnstartedServer(e.srv.Handler())
	smallSrv.Listener = smallSendBuffers{ln}
	smallSrv.Start()
	t.Cleanup(smallSrv.Close)
	slow := wsDialURL(t, e, smallSrv.URL, small)
	wsWrite(t, slow, sub)
	time.Sleep(300 * time.Millisecond) // let the server fill the pipe

	// Another client reads the same log in full meanwhile, in order.
	fast := wsDial(t, e)
	wsWrite(t, fast, sub)
	fastDone := make(chan error, 1)
	go func() {
		seq := 0
		for seq < lines {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			_, b, err := fast.Read(ctx)
			cancel()
			if err != nil {
				fastDone <- fmt.Errorf("the reading client, after %d lines: %w", seq, err)
				return
			}
			var m wsgateway.Message
			var data struct {
				Seq     int    `json:"seq"`
				Message string `json:"message"`
			}
			m.Data = &data
			if err := json.Unmarshal(b, &m); err != nil {
				fastDone <- err
				return
			}
			if m.Type != "line" {
				continue
			}
			if data.Seq != seq+1 || !strings.HasPrefix(data.Message, fmt.Sprintf("line-%d ", seq+1)) {
				fastDone <- fmt.Errorf("the reading client: line seq %d (%.12s) after %d", data.Seq, data.Message, seq)
				return
			}
			seq = data.Seq
		}
		fastDone <- nil
	}()

	// Once the server has given up on the slow client (it logs so), the
	// client reads what was buffered, then the close frame saying why.
	deadline0 := time.Now().Add(60 * time.Second)
	logged := func() bool {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Contains(e.logs.String(), "websocket client too slow")
	}
	for !logged() {
		if time.Now().After(deadline0) {
			t.Fatalf("the server never found the slow client too slow")
		}
		time.Sleep(5 * time.Millisecond)
	}
	deadline := time.Now().Add(20 * time.Second)
	got := 0
	for {
		ctx, cancel := context.WithDeadline(t.Context(), deadline)
		_, _, err := slow.Read(ctx)
		cancel()
		if err == nil {
			got++
			continue
		}
		t.Logf("the slow client read %d messages before: %v", got, err)
		if err := <-fastDone; err != nil {
			t.Fatal(err)
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != wsgateway.StatusTooSlow || !strings.Contains(ce.Reason, "too slow") {
			t.Fatalf("the slow client: %v, want a close with code %d saying it was too slow", err, wsgateway.StatusTooSlow)
		}
		break
	}
}

// smallSendBuffers gives accepted connections a small send buffer.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// TestWebSocketProtocol covers the gateway's answers to requests that are
// not a subscription it can serve.
func TestWebSocketProtocol(t *testing.T) {
	e, stepID := wsEnv(t, 3)
	// Not a WebSocket handshake: 426; no token: 401.
	e.do("GET", "/api/v1/ws", nil).mustErr(t, http.StatusUpgradeRequired, "WebSocket")
	e.do("GET", "/api/v1/ws", nil, withToken("")).mustErr(t, http.StatusUnauthorized)
	c := wsDial(t, e)
	read := func() wsgateway.Message {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m wsgateway.Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		send string
		want string
	}{
		{`{"action":"subscribe"`, "invalid message"},
		{`{"action":"subscribe","channel":"logs","params":{"stepRunId":"x"},"extra":1}`, "unknown field"},
		{`{"action":"watch","channel":"logs","params":{"stepRunId":"x"}}`, `unknown action "watch"`},
		{`{"action":"subscribe","channel":"status","params":{"stepRunId":"x"}}`, "params.stepRunId: the status channel"},
		{`{"action":"subscribe","channel":"logs","params":{"stepRunId":"x","fromSeq":-1}}`, "params.fromSeq: must not be negative"},
		{`{"action":"unsubscribe","channel":"logs","params":{"stepRunId":"x"}}`, "not subscribed"},
		{`{"action":"subscribe","channel":"status","params":{"runId":"run_nope"}}`, "run run_nope not found"},
	} {
		if err := c.Write(t.Context(), websocket.MessageText, []byte(tc.send)); err != nil {
			t.Fatal(err)
		}
		m := read()
		for m.Type == "subscribed" {
			m = read()
		}
		msg, _ := m.Data.(map[string]any)["message"].(string)
		if m.Type != "error" || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: got %s %v, want an error saying %q", tc.send, m.Type, m.Data, tc.want)
		}
	}
	// From a seq: only the lines after it; a duplicate subscription is
	// refused while the first one lasts.
	wsWrite(t, c, map[string]any{"action": "subscribe", "channel": "logs", "params": map[string]any{"stepRunId": stepID, "fromSeq": 2}})
	if m := read(); m.Type != "subscribed" {
		t.Fatalf("got %+v", m)
	}
	if m := read(); m.Type != "line" || m.Data.(map[string]any)["seq"] != float64(3) {
		t.Fatalf("from seq 2: got %+v, want line 3", m)
	}
	wsWrite(t, c, map[string]any{"action": "subscribe", "channel": "logs", "params": map[string]any{"stepRunId": stepID}})
	if m := read(); m.Type != "error" || !strings.Contains(fmt.Sprint(m.Data), "already subscribed") {
		t.Fatalf("duplicate: got %+v", m)
	}
	// A line appended now arrives live.
	if _, err := e.st.AppendLogs(context.Background(), stepID, []store.LogLine{{Message: "live one"}}, 0); err != nil {
		t.Fatal(err)
	}
	if m := read(); m.Type != "line" || m.Data.(map[string]any)["message"] != "live one" {
		t.Fatalf("live line: got %+v", m)
	}
}

// finishStep marks wsEnv's step as done, so that its log ends.
func finishStep(t *testing.T, e *env, stepID string) {
	t.Helper()
	err := e.st.UpdateRunTx(context.Background(), "run_ws", func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		for _, steps := range tree.Steps {
			for _, s := range steps {
				if s.ID == stepID {
					s.Status = "success"
					return tx.UpdateStep(s)
				}
			}
		}
		return fmt.Errorf("step %s not in run_ws", stepID)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// wsReadBatches subscribes to a finished step's log with batch and reads
// until the end: it returns the seqs received, in order, after checking
// each line's text, and the number of lines messages.
func wsReadBatches(t *testing.T, e *env, stepID string, fromSeq int) (seqs []int, messages int) {
	t.Helper()
	c := wsDial(t, e)
	params := map[string]any{"stepRunId": stepID, "batch": true}
	if fromSeq > 0 {
		params["fromSeq"] = fromSeq
	}
	wsWrite(t, c, map[string]any{"action": "subscribe", "channel": "logs", "params": params})
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, b, err := c.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d lines: %v", len(seqs), err)
		}
		var m struct {
			Channel string           `json:"channel"`
			Type    string           `json:"type"`
			Params  wsgateway.Params `json:"params"`
			Data    json.RawMessage  `json:"data"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		switch m.Type {
		case "subscribed":
			continue
		case "end":
			if messages == 0 && len(seqs) > 0 {
				t.Errorf("lines without a lines message")
			}
			t.Logf("fromSeq %d: %d lines in %d messages", fromSeq, len(seqs), messages)
			return seqs, messages
		case "lines":
		default:
			t.Fatalf("got a %s message, want lines then end: %.300s", m.Type, b)
		}
		messages++
		if m.Channel != "logs" || m.Params.StepRunID != stepID || !m.Params.Batch {
			t.Errorf("lines message for %s %+v", m.Channel, m.Params)
		}
		var lines []struct {
			Seq     int    `json:"seq"`
			Level   string `json:"level"`
			Time    string `json:"time"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(m.Data, &lines); err != nil {
			t.Fatalf("lines data is not an array of lines: %v: %.300s", err, m.Data)
		}
		if len(lines) == 0 {
			t.Errorf("an empty lines message")
		}
		for _, l := range lines {
			if !strings.HasPrefix(l.Message, fmt.Sprintf("line-%d ", l.Seq)) || l.Level != "info" || l.Time == "" {
				t.Fatalf("line %d: %+v", l.Seq, l)
			}
			seqs = append(seqs, l.Seq)
		}
	}
}

// TestWebSocketLogBatches: a logs subscription with batch gets the log as
// "lines" messages, each an array of lines, in order without gaps or
// repeats, from fromSeq on, then "end" for a finished step; other channels
// refuse batch.
func TestWebSocketLogBatches(t *testing.T) {
	const lines = 1200
	e, stepID := wsEnv(t, lines)
	finishStep(t, e, stepID)

	check := func(seqs []int, from int) {
		t.Helper()
		if len(seqs) != lines-from {
			t.Errorf("fromSeq %d: %d lines, want %d", from, len(seqs), lines-from)
		}
		for i, s := range seqs {
			if s != from+i+1 {
				t.Fatalf("fromSeq %d: line %d has seq %d, want %d (a gap or a repeat)", from, i, s, from+i+1)
			}
		}
	}
	seqs, messages := wsReadBatches(t, e, stepID, 0)
	check(seqs, 0)
	if messages >= lines/100 {
		t.Errorf("%d lines came in %d messages: not batched", len(seqs), messages)
	}
	seqs, _ = wsReadBatches(t, e, stepID, 1000)
	check(seqs, 1000)
	seqs, messages = wsReadBatches(t, e, stepID, lines)
	check(seqs, lines)
	if messages != 0 {
		t.Errorf("fromSeq at the end: %d lines messages, want none", messages)
	}

	// Only the logs channel batches.
	c := wsDial(t, e)
	if err := c.Write(t.Context(), websocket.MessageText, []byte(`{"action":"subscribe","channel":"status","params":{"runId":"run_ws","batch":true}}`)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var m wsgateway.Message
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	msg, _ := m.Data.(map[string]any)["message"].(string)
	if m.Type != "error" || msg != "params.batch: only the logs channel sends lines in batches" {
		t.Errorf("status with batch: got %s", b)
	}
}

// TestWebSocketResubscribeAfterEnd: the same connection may subscribe again
// with the same params the moment "end" arrives (the UI does, to follow a
// retried step): every round streams, none is refused as a duplicate or cut
// short. (The stream releases its params before sending "end"; before it did,
// a quick enough client could race the release, a window this loop only
// rarely hits.)
func TestWebSocketResubscribeAfterEnd(t *testing.T) {
	e, stepID := wsEnv(t, 3)
	finishStep(t, e, stepID)
	c := wsDial(t, e)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sub := []byte(`{"action":"subscribe","channel":"logs","params":{"stepRunId":"` + stepID + `","fromSeq":1}}`)
	for round := range 50 {
		if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
			t.Fatal(err)
		}
		var lines int
		for ended := false; !ended; {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			var m wsgateway.Message
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			switch m.Type {
			case "subscribed":
			case "line":
				lines++
			case "end":
				ended = true
			default:
				t.Fatalf("round %d: %s", round, b)
			}
		}
		if lines != 2 {
			t.Fatalf("round %d: %d lines after seq 1, want 2", round, lines)
		}
	}
}

// TestWebSocketLimits: connections past the limit per token, or past the
// total, are closed at once with code 1013 and a reason saying which; a
// closed connection frees its place.
func TestWebSocketLimits(t *testing.T) {
	e := newEnvWith(t, func(c *Config) {
		hub := event.NewHub(event.HubOptions{Store: c.Store, Poll: 50 * time.Millisecond})
		c.Events = hub
		c.StreamLimits = wsgateway.Limits{Total: 3, PerToken: 2}
	})
	dial := func(token string) *websocket.Conn {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, strings.Replace(e.http.URL, "http", "ws", 1)+"/api/v1/ws",
			&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	// open checks that the server keeps c open (CloseRead reads for it: a
	// Read past its deadline would close c itself).
	open := func(c *websocket.Conn) {
		t.Helper()
		ctx := c.CloseRead(t.Context())
		select {
		case <-ctx.Done():
			t.Fatal("the server closed a connection within its limits")
		case <-time.After(200 * time.Millisecond):
		}
	}
	// refused checks that the server closed c with 1013 and a reason
	// containing want.
	refused := func(c *websocket.Conn, want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, _, err := c.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != wsgateway.StatusTooMany || !strings.Contains(ce.Reason, want) {
			t.Fatalf("want a 1013 close with %q, got %v", want, err)
		}
	}
	other := e.addToken("bob", "user_bob", "user", nil)
	a1, a2 := dial(e.token), dial(e.token)
	open(a1)
	open(a2)
	refused(dial(e.token), "too many connections with this token: at most 2")
	open(dial(other))
	refused(dial(other), "the server serves at most 3 at once")
	a1.Close(websocket.StatusNormalClosure, "")
	// Its place is freed once the server has seen the close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial(other)
		ctx := c.CloseRead(t.Context())
		select {
		case <-ctx.Done():
			if time.Now().After(deadline) {
				t.Fatal("no place after a close")
			}
			time.Sleep(50 * time.Millisecond)
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
}
