package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ---- closed loop: clients that wait for their runs ----
//
// Each of C clients has its own 1-step `true` pipeline and a WebSocket
// subscribed to that pipeline's status events (as the web UI follows a
// pipeline). It triggers a run, waits for the run.status event that says
// the run is final, and triggers the next: what a user who waits for a run
// feels. For -loop-duration after -loop-warmup; runs/s = runs completed in
// the measured window / its length; latency = the client's clock from just
// before the trigger POST to the moment the final event is read. The
// server's CPU time (and its step processes', which it waits for) comes
// from /proc/PID/stat over the window.
//
// The spawn ceiling, measured in the same run, is how many `bash -c true`
// two goroutines of this process start and wait for per second: the most
// runs/s any engine that starts one shell per run could reach here.

// spawnCeiling measures the spawn ceiling for d, and one bare spawn's
// latency (p50 of the spawns of one worker).
func spawnCeiling(ctx context.Context, d time.Duration) (perSec float64, one time.Duration, err error) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		return 0, 0, err
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lat []time.Duration
	end := time.Now().Add(d)
	start := time.Now()
	var firstErr error
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				if err := exec.Command(bash, "-c", "true").Run(); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				n.Add(1)
				if w == 0 {
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	if len(lat) == 0 {
		return 0, 0, ctx.Err()
	}
	return float64(n.Load()) / time.Since(start).Seconds(), pct(lat, 50), nil
}

// loopResult is one closed-loop measurement.
type loopResult struct {
	db        string
	bin       string // "" for the measured binary, else the -compare one
	clients   int
	runs      int
	failed    int
	rate      float64
	lat       []time.Duration
	serverCPU time.Duration // per run
	childCPU  time.Duration // per run
	rss       int64
}

func (b *bench) closedLoop(ctx context.Context, db, pgURL string) ([]row, []row, error) {
	ceiling, one, err := spawnCeiling(ctx, 3*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("spawn ceiling: %w", err)
	}
	fmt.Fprintf(os.Stderr, "spawn ceiling: %.0f bash -c true/s with 2 workers; one spawn p50 %s\n", ceiling, ms(one))
	bins := []string{b.cfg.bin}
	if b.cfg.compare != "" {
		bins = append(bins, b.cfg.compare)
	}
	var results []loopResult
	for _, c := range b.cfg.loopClients {
		for _, bin := range bins {
			dsn := ""
			var dropDB func()
			if pgURL != "" {
				if dsn, dropDB, err = createDatabase(ctx, pgURL); err != nil {
					return nil, nil, err
				}
			}
			name := "measured"
			if bin != b.cfg.bin {
				name = "compare"
			}
			fmt.Fprintf(os.Stderr, "closed loop %s, %d clients, %s binary, %s …\n", db, c, name, b.cfg.loopDuration)
			r, err := b.closedLoopOnce(ctx, bin, dsn, c)
			if dropDB != nil {
				dropDB()
			}
			if err != nil {
				return nil, nil, fmt.Errorf("closed loop %s, %d clients: %w", db, c, err)
			}
			r.db = db
			if bin != b.cfg.bin {
				r.bin = bin
			}
			fmt.Fprintf(os.Stderr, "  %.1f runs/s, p50 %s, p99 %s, server CPU %s per run\n", r.rate, ms(pct(r.lat, 50)), ms(pct(r.lat, 99)), ms(r.serverCPU))
			results = append(results, r)
		}
	}
	// The ceiling again: the machine may have changed meanwhile.
	ceiling2, one2, err := spawnCeiling(ctx, 3*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("spawn ceiling: %w", err)
	}
	ceiling = (ceiling + ceiling2) / 2
	one = (one + one2) / 2

	rows := []row{{
		fmt.Sprintf("spawn ceiling (%s run): `bash -c true` started and awaited per second by 2 workers; one spawn p50", db),
		fmt.Sprintf("%.0f /s; %s", ceiling, ms(one)), "(baseline)",
	}}
	var notes []row
	target := 0.50
	if db == "PostgreSQL" {
		target = 0.35
	}
	for _, r := range results {
		label := fmt.Sprintf("closed loop, %s, %d client(s)", db, r.clients)
		if r.bin != "" {
			label += " — compare binary"
		}
		p50, p99 := pct(r.lat, 50), pct(r.lat, 99)
		result := fmt.Sprintf("%s (%.0f %% of the ceiling); trigger → final p50 %s, p99 %s; server CPU %s per run (steps %s)",
			bold(fmt.Sprintf("%.1f runs/s", r.rate)), 100*r.rate/ceiling, ms(p50), ms(p99), ms(r.serverCPU), ms(r.childCPU))
		if r.failed > 0 {
			result += fmt.Sprintf("; %d runs not success", r.failed)
		}
		tgt := ""
		switch {
		case r.bin != "":
		case r.clients == 1:
			tgt = fmt.Sprintf("p50 ≤ %s (one spawn + 5 ms), p99 ≤ 25 ms, CPU ≤ 4 ms", ms(one+5*time.Millisecond))
		case r.clients >= 16:
			tgt = fmt.Sprintf("≥ %.0f runs/s (%.0f %% of the ceiling), CPU ≤ 4 ms", target*ceiling, 100*target)
		default:
			tgt = "CPU ≤ 4 ms"
		}
		rows = append(rows, row{label, result, tgt})
		notes = append(notes, row{label, fmt.Sprintf("%d runs in %s; server RSS after %s", r.runs, b.cfg.loopDuration, mb(r.rss)), ""})
	}
	return rows, notes, nil
}

func (b *bench) closedLoopOnce(ctx context.Context, bin, dsn string, clients int) (loopResult, error) {
	res := loopResult{clients: clients}
	srv, err := b.startServerBin(ctx, bin, dsn, b.cfg.loopCapacity)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	loops := make([]*loopClient, clients)
	pls := make([]string, clients)
	for i := range loops {
		if pls[i], err = srv.createPipeline(ctx, fmt.Sprintf("loop-%d", i), oneStep); err != nil {
			return res, err
		}
	}
	client := srv
	if b.cfg.loopAs == "developer" {
		if client, err = srv.asDeveloper(ctx); err != nil {
			return res, err
		}
	}
	for i, pl := range pls {
		if loops[i], err = newLoopClient(ctx, client, pl); err != nil {
			return res, err
		}
		defer loops[i].close()
	}
	var (
		measuring atomic.Bool
		mu        sync.Mutex
		wg        sync.WaitGroup
		firstErr  error
	)
	start := time.Now()
	measureFrom := start.Add(b.cfg.loopWarmup)
	measureTo := measureFrom.Add(b.cfg.loopDuration)
	var cpu0 [2]time.Duration
	go func() {
		// Start the window on time, whatever the clients are doing.
		if !sleep(ctx, time.Until(measureFrom)) {
			return
		}
		c, err := procCPU(srv.cmd.Process.Pid)
		mu.Lock()
		cpu0, firstErr = c, errors.Join(firstErr, err)
		mu.Unlock()
		measuring.Store(true)
	}()
	for _, lc := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(measureTo) {
				counted := measuring.Load()
				t0 := time.Now()
				status, err := lc.runOnce(ctx)
				d := time.Since(t0)
				if err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
					return
				}
				// A run counts when it started and ended inside the window.
				if counted && time.Now().Before(measureTo) {
					mu.Lock()
					res.runs++
					res.lat = append(res.lat, d)
					if status != "success" {
						res.failed++
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	cpu1, err := procCPU(srv.cmd.Process.Pid)
	if err := errors.Join(firstErr, err, ctx.Err()); err != nil {
		return res, err
	}
	if res.runs == 0 {
		return res, errors.New("no run completed in the window")
	}
	res.rate = float64(res.runs) / b.cfg.loopDuration.Seconds()
	n := time.Duration(res.runs)
	res.serverCPU = (cpu1[0] - cpu0[0]) / n
	res.childCPU = (cpu1[1] - cpu0[1]) / n
	res.rss, _ = vmRSS(srv.cmd.Process.Pid)
	return res, nil
}

// loopClient triggers its pipeline's runs and reads their final status
// from a WebSocket subscribed to the pipeline.
type loopClient struct {
	srv   *server
	pl    string
	conn  *websocket.Conn
	mu    sync.Mutex
	final map[string]string // run id → final status, as they arrive
	wake  chan struct{}
	err   error
	done  chan struct{}
}

func newLoopClient(ctx context.Context, srv *server, pl string) (*loopClient, error) {
	u := "ws" + strings.TrimPrefix(srv.base, "http") + "/api/v1/ws"
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + srv.bearer()}},
		Subprotocols: []string{"runnel.v1"},
	})
	if err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	conn.SetReadLimit(1 << 20)
	lc := &loopClient{srv: srv, pl: pl, conn: conn, final: map[string]string{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	sub := fmt.Sprintf(`{"action":"subscribe","channel":"status","params":{"pipelineId":%q}}`, pl)
	if err := conn.Write(ctx, websocket.MessageText, []byte(sub)); err != nil {
		return nil, err
	}
	for { // until subscribed: events from then on are delivered
		_, data, err := conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		var m wsMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		if m.Type == "error" {
			return nil, fmt.Errorf("subscribe: %s", data)
		}
		if m.Type == "subscribed" {
			break
		}
	}
	go lc.read()
	return lc, nil
}

type wsMessage struct {
	Type string `json:"type"`
	Data struct {
		RunID  string `json:"runId"`
		Status string `json:"status"`
	} `json:"data"`
}

func (lc *loopClient) read() {
	defer close(lc.done)
	for {
		_, data, err := lc.conn.Read(context.Background())
		if err != nil {
			lc.mu.Lock()
			lc.err = err
			lc.mu.Unlock()
			select {
			case lc.wake <- struct{}{}:
			default:
			}
			return
		}
		var m wsMessage
		if json.Unmarshal(data, &m) != nil || m.Type != "run.status" {
			continue
		}
		switch m.Data.Status {
		case "success", "failed", "cancelled", "partial":
			lc.mu.Lock()
			lc.final[m.Data.RunID] = m.Data.Status
			lc.mu.Unlock()
			select {
			case lc.wake <- struct{}{}:
			default:
			}
		}
	}
}

// runOnce triggers a run and waits for its final status (at most 60 s).
func (lc *loopClient) runOnce(ctx context.Context) (string, error) {
	id, err := lc.srv.trigger(ctx, lc.pl)
	if err != nil {
		return "", err
	}
	limit := time.NewTimer(60 * time.Second)
	defer limit.Stop()
	for {
		lc.mu.Lock()
		st, ok := lc.final[id]
		delete(lc.final, id)
		err := lc.err
		lc.mu.Unlock()
		if ok {
			return st, nil
		}
		if err != nil {
			return "", fmt.Errorf("websocket: %w", err)
		}
		select {
		case <-lc.wake:
		case <-limit.C:
			return "", fmt.Errorf("run %s: no final status within 60 s", id)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func (lc *loopClient) close() {
	_ = lc.conn.Close(websocket.StatusNormalClosure, "")
	<-lc.done
}
