package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/runnel-ci/runnel/internal/streampb"
	"github.com/runnel-ci/runnel/internal/testpg"
)

// wsMsg is a message of the WebSocket gateway.
type wsMsg struct {
	Channel string         `json:"channel"`
	Type    string         `json:"type"`
	Params  map[string]any `json:"params"`
	Data    map[string]any `json:"data"`
}

// wsClient reads a gateway connection into a list the test inspects.
type wsClient struct {
	t    *testing.T
	c    *websocket.Conn
	mu   sync.Mutex
	msgs []wsMsg
	err  error
}

func dialWS(t *testing.T, addr string, header http.Header, protocols ...string) (*wsClient, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/api/v1/ws", &websocket.DialOptions{HTTPHeader: header, Subprotocols: protocols})
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(1 << 20)
	w := &wsClient{t: t, c: c}
	go func() {
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			var m wsMsg
			if err := json.Unmarshal(b, &m); err != nil {
				t.Errorf("websocket: not JSON: %s", b)
				continue
			}
			w.mu.Lock()
			w.msgs = append(w.msgs, m)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.CloseNow() })
	return w, resp, nil
}

func (w *wsClient) send(v any) {
	w.t.Helper()
	b, _ := json.Marshal(v)
	if err := w.c.Write(w.t.Context(), websocket.MessageText, b); err != nil {
		w.t.Fatalf("websocket write: %v", err)
	}
}

// wait returns the messages once cond holds for them.
func (w *wsClient) wait(what string, timeout time.Duration, cond func([]wsMsg) bool) []wsMsg {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		msgs := append([]wsMsg(nil), w.msgs...)
		err := w.err
		w.mu.Unlock()
		if cond(msgs) {
			return msgs
		}
		if err != nil || time.Now().After(deadline) {
			w.t.Fatalf("websocket: %s: not after %s (read error %v); %d messages, last: %+v", what, timeout, err, len(msgs), lastOf(msgs, 3))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func lastOf(m []wsMsg, n int) []wsMsg {
	if len(m) > n {
		return m[len(m)-n:]
	}
	return m
}

func has(msgs []wsMsg, channel, typ string, param, value string) bool {
	for _, m := range msgs {
		if m.Channel == channel && m.Type == typ && (param == "" || m.Params[param] == value) {
			return true
		}
	}
	return false
}

// statusKey is an event as the test compares it: seq, type, entity, status.
func statusKey(seq int64, typ string, data map[string]any) string {
	entity := data["stepRunId"]
	if entity == nil || entity == "" {
		entity = data["jobRunId"]
	}
	if entity == nil || entity == "" {
		entity = data["runId"]
	}
	return fmt.Sprintf("%d %s %v %v<-%v", seq, typ, entity, data["status"], data["previous"])
}

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func authCtx(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// TestLiveStreams subscribes over the WebSocket gateway and over gRPC
// stream.v1 on one replica, runs a pipeline on another (its agent, its
// scheduler), and checks that every status change and every log line
// arrives exactly once, in order, live and from history.
func TestLiveStreams(t *testing.T) {
	database := testpg.NewDatabase(t)
	runner := startServerProc(t, "runner", database, "--embedded-agent-capacity", "2")
	watcher := startServerProc(t, "watcher", database)
	cr := &client{t: t, base: "http://" + runner.addr}
	const lines = 300
	p := cr.createPipeline("streams", `{"namespace":"t","stages":[{"name":"s","jobs":[
		{"name":"build","steps":[
			{"name":"count","run":"for i in $(seq 1 `+fmt.Sprint(lines)+`); do echo line-$i; if [ $((i % 50)) = 0 ]; then sleep 0.2; fi; done"},
			{"name":"after","run":"echo done"}]},
		{"name":"test","needs":["build"],"steps":[{"run":"echo tested"}]}]}]}`)

	// Authentication: no token, a bad token, and the browser's form.
	if _, resp, err := dialWS(t, watcher.addr, nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial without a token: %v (%v), want 401", err, resp)
	}
	if _, resp, err := dialWS(t, watcher.addr, http.Header{"Authorization": {"Bearer nope-nope-nope-nope"}}); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial with a bad token: %v, want 401", err)
	}
	browser, _, err := dialWS(t, watcher.addr, nil, "runnel.v1", "bearer."+testToken)
	if err != nil {
		t.Fatalf("dial with the token as a subprotocol: %v", err)
	}
	if browser.c.Subprotocol() != "runnel.v1" {
		t.Fatalf("subprotocol %q, want runnel.v1", browser.c.Subprotocol())
	}
	browser.send(map[string]any{"action": "subscribe", "channel": "nope", "params": map[string]any{}})
	browser.send(map[string]any{"action": "subscribe", "channel": "logs", "params": map[string]any{}})
	browser.send(map[string]any{"action": "subscribe", "channel": "logs", "params": map[string]any{"stepRunId": "sr_nope"}})
	errs := browser.wait("three errors", 10*time.Second, func(m []wsMsg) bool {
		n := 0
		for _, x := range m {
			if x.Type == "error" {
				n++
			}
		}
		return n == 3
	})
	for i, want := range []string{`unknown channel "nope"`, "params.stepRunId: required", "step run sr_nope: not found"} {
		var got []string
		for _, m := range errs {
			if m.Type == "error" {
				got = append(got, fmt.Sprint(m.Data["message"]))
			}
		}
		if !strings.Contains(got[i], want) {
			t.Errorf("error %d: %q, want it to say %q", i, got[i], want)
		}
	}

	// Subscribed to the pipeline before the run exists, on the watcher.
	ws, _, err := dialWS(t, watcher.addr, http.Header{"Authorization": {"Bearer " + testToken}})
	if err != nil {
		t.Fatal(err)
	}
	ws.send(map[string]any{"action": "subscribe", "channel": "status", "params": map[string]any{"pipelineId": p}})
	ws.wait("subscribed", 10*time.Second, func(m []wsMsg) bool { return has(m, "status", "subscribed", "pipelineId", p) })

	stream := streampb.NewStreamServiceClient(grpcConn(t, watcher.grpcAddr))
	gctx, gcancel := context.WithCancel(authCtx(t.Context(), testToken))
	defer gcancel()
	watch, err := stream.WatchEvents(gctx, &streampb.WatchEventsRequest{PipelineId: p})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Header(); err != nil { // subscribed
		t.Fatalf("WatchEvents: %v", err)
	}
	var (
		gmu    sync.Mutex
		gWatch []*streampb.Event
	)
	go func() {
		for {
			e, err := watch.Recv()
			if err != nil {
				return
			}
			gmu.Lock()
			gWatch = append(gWatch, e)
			gmu.Unlock()
		}
	}()

	runID := cr.trigger(p, "")

	// Once the first step runs, follow its log from the start (history,
	// then live) over both, and the run's status from seq 0 over both.
	var countStep string
	msgs := ws.wait("the count step running", 30*time.Second, func(m []wsMsg) bool {
		for _, x := range m {
			if x.Type == "step.status" && x.Data["status"] == "running" && x.Data["name"] == "count" {
				countStep = fmt.Sprint(x.Data["stepRunId"])
				return true
			}
		}
		return false
	})
	_ = msgs
	ws.send(map[string]any{"action": "subscribe", "channel": "logs", "params": map[string]any{"stepRunId": countStep}})
	ws.send(map[string]any{"action": "subscribe", "channel": "status", "params": map[string]any{"runId": runID}})
	tail, err := stream.TailLogs(gctx, &streampb.TailLogsRequest{StepRunId: countStep})
	if err != nil {
		t.Fatal(err)
	}
	var gLines []string
	for {
		l, err := tail.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("TailLogs: %v", err)
		}
		if l.Seq != int64(len(gLines)+1) {
			t.Fatalf("TailLogs: line seq %d after %d lines", l.Seq, len(gLines))
		}
		gLines = append(gLines, l.Message)
	}
	watchRun, err := stream.WatchRun(gctx, &streampb.WatchRunRequest{RunId: runID})
	if err != nil {
		t.Fatal(err)
	}
	var gRun []string
	for {
		e, err := watchRun.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("WatchRun: %v", err)
		}
		var data map[string]any
		if err := json.Unmarshal([]byte(e.DataJson), &data); err != nil {
			t.Fatalf("WatchRun: data_json %q: %v", e.DataJson, err)
		}
		if e.Status == nil || e.Status.Status != data["status"] {
			t.Fatalf("WatchRun: typed status %v does not match data %s", e.Status, e.DataJson)
		}
		gRun = append(gRun, statusKey(e.Seq, e.Type, data))
	}

	// Log lines: every one, once, in order, on both.
	wantLines := make([]string, lines)
	for i := range wantLines {
		wantLines[i] = fmt.Sprintf("line-%d", i+1)
	}
	if strings.Join(gLines, ",") != strings.Join(wantLines, ",") {
		t.Fatalf("gRPC TailLogs: %d lines, want line-1…line-%d exactly once: %v…", len(gLines), lines, gLines[:min(5, len(gLines))])
	}
	msgs = ws.wait("the log's end", 30*time.Second, func(m []wsMsg) bool { return has(m, "logs", "end", "stepRunId", countStep) })
	var wsLines []string
	for _, m := range msgs {
		if m.Channel == "logs" && m.Type == "line" {
			if int(m.Data["seq"].(float64)) != len(wsLines)+1 {
				t.Fatalf("websocket log: seq %v after %d lines", m.Data["seq"], len(wsLines))
			}
			wsLines = append(wsLines, fmt.Sprint(m.Data["message"]))
		}
	}
	if strings.Join(wsLines, ",") != strings.Join(wantLines, ",") {
		t.Fatalf("websocket logs: %d lines, want line-1…line-%d exactly once", len(wsLines), lines)
	}

	// Status: the run's history as stored (gRPC WatchRun from seq 0, ended
	// when the run was over) is what both live pipeline watches received,
	// and what the WebSocket run subscription received.
	if len(gRun) < 10 {
		t.Fatalf("WatchRun: only %d events: %v", len(gRun), gRun)
	}
	for _, want := range []string{" run.status " + runID + " pending<-<nil>", " run.status " + runID + " running<-pending",
		" run.status " + runID + " success<-running"} {
		if !containsSuffix(gRun, want) {
			t.Errorf("WatchRun: no %q in %v", want, gRun)
		}
	}
	msgs = ws.wait("the run's end", 30*time.Second, func(m []wsMsg) bool { return has(m, "status", "end", "runId", runID) })
	// The pipeline watch follows the replica's feed of every event, which
	// may deliver the last ones a moment after the run's own stream ended.
	msgs = ws.wait("the pipeline watch's last event", 30*time.Second, func(m []wsMsg) bool {
		n := 0
		for _, x := range m {
			if x.Channel == "status" && strings.Contains(x.Type, ".") && x.Params["runId"] != runID && x.Data["runId"] == runID {
				n++
			}
		}
		return n >= len(gRun)
	})
	var wsLive, wsRun []string
	for _, m := range msgs {
		if m.Channel != "status" || !strings.Contains(m.Type, ".") {
			continue
		}
		k := statusKey(int64(m.Data["seq"].(float64)), m.Type, m.Data)
		if m.Params["runId"] == runID {
			wsRun = append(wsRun, k)
		} else if m.Data["runId"] == runID {
			wsLive = append(wsLive, k)
		}
	}
	if strings.Join(wsRun, "\n") != strings.Join(gRun, "\n") {
		t.Errorf("websocket run subscription:\n%s\nwant (stored):\n%s", strings.Join(wsRun, "\n"), strings.Join(gRun, "\n"))
	}
	if strings.Join(wsLive, "\n") != strings.Join(gRun, "\n") {
		t.Errorf("websocket pipeline watch (live):\n%s\nwant (stored):\n%s", strings.Join(wsLive, "\n"), strings.Join(gRun, "\n"))
	}
	var gLive []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		gmu.Lock()
		gLive = gLive[:0]
		for _, e := range gWatch {
			var data map[string]any
			_ = json.Unmarshal([]byte(e.DataJson), &data)
			if e.RunId == runID {
				gLive = append(gLive, statusKey(e.Seq, e.Type, data))
			}
		}
		gmu.Unlock()
		if len(gLive) >= len(gRun) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d status changes and %d log lines, each received once in order by: WebSocket pipeline watch, WebSocket run subscription, gRPC WatchEvents, gRPC WatchRun; lines by WebSocket and gRPC TailLogs",
		len(gRun), len(wsLines))
	if strings.Join(gLive, "\n") != strings.Join(gRun, "\n") {
		t.Errorf("gRPC WatchEvents (live):\n%s\nwant (stored):\n%s", strings.Join(gLive, "\n"), strings.Join(gRun, "\n"))
	}

	// Unsubscribing ends a subscription; a bad token is refused on gRPC.
	ws.send(map[string]any{"action": "unsubscribe", "channel": "status", "params": map[string]any{"pipelineId": p}})
	ws.wait("unsubscribed", 10*time.Second, func(m []wsMsg) bool { return has(m, "status", "unsubscribed", "pipelineId", p) })
	bad, err := stream.WatchRun(authCtx(t.Context(), "nope-nope-nope-nope"), &streampb.WatchRunRequest{RunId: runID})
	if err == nil {
		_, err = bad.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("WatchRun with a bad token: %v, want Unauthenticated", err)
	}
}

func containsSuffix(list []string, suffix string) bool {
	for _, s := range list {
		if strings.HasSuffix(s, suffix) {
			return true
		}
	}
	return false
}
