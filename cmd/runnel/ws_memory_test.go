package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// rssKB reads a process's resident set size.
func rssKB(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestWebSocketMemory: an idle subscribed WebSocket costs the server at most
// about 50 KB (its buffers grow with need; the HTTP handler's deep stack is
// not kept), and the memory goes back once they close. bench/server -only ws
// measures it with 1,000 connections (docs/benchmarks.md).
func TestWebSocketMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	srv := startServerProc(t, "wsmem", "", "--ws-max-per-token", "0")
	c := &client{t: t, base: "http://" + srv.addr}
	pl := c.createPipeline("ws", `{"namespace":"t","jobs":[{"name":"a","steps":[{"run":"true"}]}]}`)
	pid := srv.cmd.Process.Pid
	time.Sleep(2 * time.Second)
	base := rssKB(t, pid)
	const n = 1000
	ctx := context.Background()
	conns := make([]*websocket.Conn, 0, n)
	for range n {
		conn, _, err := websocket.Dial(ctx, "ws://"+srv.addr+"/api/v1/ws", &websocket.DialOptions{
			HTTPHeader: http.Header{"Authorization": {"Bearer " + testToken}}, Subprotocols: []string{"runnel.v1"}})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		if err := conn.Write(ctx, websocket.MessageText, []byte(`{"action":"subscribe","channel":"status","params":{"pipelineId":"`+pl+`"}}`)); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, data, err := conn.Read(rctx)
		cancel()
		if err != nil || !strings.Contains(string(data), `"subscribed"`) {
			t.Fatalf("subscribe: %v %s", err, data)
		}
	}
	time.Sleep(2 * time.Second)
	loaded := rssKB(t, pid)
	perConn := float64(loaded-base) / n
	t.Logf("RSS %d kB → %d kB with %d connections: %.1f KB each", base, loaded, n, perConn*1.024)
	// The target is 50 KB, which bench/server meets (46.8 KB); this sample
	// varies by ±5 KB from run to run on a shared machine, so it fails at
	// 65 KB, well under the 75–80 KB of the gateway before its queues grew
	// with need.
	if perConn*1.024 > 65 {
		t.Errorf("an idle subscribed connection costs %.1f KB, want about 50 KB at most", perConn*1.024)
	}
	for _, conn := range conns {
		conn.Close(websocket.StatusNormalClosure, "")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		after := rssKB(t, pid)
		if float64(after) <= float64(base)*1.2 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("30 s after the connections closed the server holds %d kB, over 120 %% of the %d kB before", after, base)
			break
		}
		time.Sleep(time.Second)
	}
}
