package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// wsMemory measures what WebSocket connections cost the server: its RSS at
// rest, with N connections each subscribed to a pipeline's statuses, and a
// while after they all closed. Each binary (-bin, then -compare) gets its
// own server. The limit per token is lifted through the environment (a
// binary without it ignores the variable).
func (b *bench) wsMemory(ctx context.Context) ([]row, []row, error) {
	os.Setenv("RUNNEL_WS_MAX_PER_TOKEN", "0")
	os.Setenv("RUNNEL_WS_MAX_CONNECTIONS", "0")
	bins := []string{b.cfg.bin}
	if b.cfg.compare != "" {
		bins = append(bins, b.cfg.compare)
	}
	var rows, notes []row
	for i, bin := range bins {
		name := fmt.Sprintf("%d WebSocket connections", b.cfg.wsConns)
		if i > 0 {
			name += " — compare binary"
		}
		r, err := b.wsMemoryOnce(ctx, bin)
		if err != nil {
			return nil, nil, err
		}
		perConn := float64(r.loaded-r.base) / float64(b.cfg.wsConns)
		rows = append(rows, row{name, fmt.Sprintf("**%.1f KB per connection** (RSS %s → %s); %s after closing: %s (%+.0f %% of the RSS before)",
			perConn/1000, mb(r.base), mb(r.loaded), b.cfg.wsSettle, mb(r.after), 100*float64(r.after-r.base)/float64(r.base)),
			"≤ 50 KB per idle subscribed connection; within 20 % of the RSS before, a minute after"})
		notes = append(notes, row{name + ": server RSS peak while they opened", mb(r.peak), ""})
	}
	return rows, notes, nil
}

type wsResult struct{ base, loaded, peak, after int64 }

func (b *bench) wsMemoryOnce(ctx context.Context, bin string) (wsResult, error) {
	var r wsResult
	srv, err := b.startServerBin(ctx, bin, "", 0)
	if err != nil {
		return r, err
	}
	defer srv.stop()
	pl, err := srv.createPipeline(ctx, fmt.Sprintf("ws-%d", b.seq.Add(1)), `{"namespace":"bench","jobs":[{"name":"a","steps":[{"run":"true"}]}]}`)
	if err != nil {
		return r, err
	}
	if !sleep(ctx, 3*time.Second) {
		return r, ctx.Err()
	}
	pid := srv.cmd.Process.Pid
	if r.base, err = vmRSS(pid); err != nil {
		return r, err
	}
	u := "ws" + strings.TrimPrefix(srv.base, "http") + "/api/v1/ws"
	conns := make([]*websocket.Conn, 0, b.cfg.wsConns)
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	sub := fmt.Sprintf(`{"action":"subscribe","channel":"status","params":{"pipelineId":%q}}`, pl)
	for range b.cfg.wsConns {
		c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
			Subprotocols: []string{"runnel.v1"}})
		if err != nil {
			return r, fmt.Errorf("websocket %d: %w", len(conns)+1, err)
		}
		conns = append(conns, c)
		if err := c.Write(ctx, websocket.MessageText, []byte(sub)); err != nil {
			return r, err
		}
		_, data, err := c.Read(ctx) // the subscription's confirmation
		if err != nil {
			return r, fmt.Errorf("websocket %d: %w", len(conns), err)
		}
		var m wsMessage
		if json.Unmarshal(data, &m) != nil || m.Type == "error" {
			return r, fmt.Errorf("subscribe: %s", data)
		}
		if rss, err := vmRSS(pid); err == nil && rss > r.peak {
			r.peak = rss
		}
	}
	if !sleep(ctx, 3*time.Second) {
		return r, ctx.Err()
	}
	if r.loaded, err = vmRSS(pid); err != nil {
		return r, err
	}
	r.peak = max(r.peak, r.loaded)
	for _, c := range conns {
		c.Close(websocket.StatusNormalClosure, "")
	}
	conns = nil
	if !sleep(ctx, b.cfg.wsSettle) {
		return r, ctx.Err()
	}
	r.after, err = vmRSS(pid)
	return r, err
}
