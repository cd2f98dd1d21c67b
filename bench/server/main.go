// Command server benchmarks the control plane, `runnel server`, as a real
// process on loopback (127.0.0.1 only), through its HTTP API:
//
//  1. startup to ready on SQLite: exec of the binary with a fresh data dir
//     until GET /readyz answers 200, median of -starts (target < 300 ms);
//  2. trigger → first step started, embedded agent, SQLite: a 1-step `true`
//     pipeline triggered -latency-runs times one after the other; latency is
//     the step's startedAt (server clock) minus the client's clock just
//     before the trigger request; also the trigger POST's round trip
//     (targets: p50 < 5 ms, p99 < 25 ms);
//  3. sustained throughput of 1-step `true` pipelines on SQLite and on
//     PostgreSQL (a throwaway database runnel_bench_<random>, dropped
//     afterwards): -clients clients trigger runs for -duration, then every
//     run is awaited; runs/s = completed runs / (first trigger → last run
//     ended), once per -capacities value of --embedded-agent-capacity
//     (targets: ≥ 150 runs/s SQLite, ≥ 100 runs/s PostgreSQL, no error);
//  4. GET /api/v1/pipelines/runs/:runId of a finished 3-job run, open loop at
//     -rate requests/s for -read-duration (target: p99 < 10 ms);
//  5. the server's VmRSS after startup and -idle seconds idle, and after each
//     throughput test (target: idle < 40 MB).
//
// Every load is bounded in count and in time, and the whole run by -timeout.
// The servers run with --log-level error. Part 3 on PostgreSQL needs psql and
// a server on 127.0.0.1:5432 that user postgres may create databases on
// (an empty -postgres skips it); -only picks measurements, -bin a prebuilt binary.
//
//	go run ./bench/server [-capacities 2,4,8,16] [-clients 8] [-duration 10s] [-postgres URL] [-only ...]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const token = "runnel-bench-admin-token-0123456789"

type config struct {
	bin          string
	starts       int
	latencyRuns  int
	warmup       int
	clients      int
	duration     time.Duration
	capacities   []int
	maxRuns      int
	postgres     string
	rate         int
	readDuration time.Duration
	workers      int
	idle         time.Duration
	logLevel     string
	only         map[string]bool
	timeout      time.Duration
	// closed loop
	loopClients  []int
	loopDuration time.Duration
	loopWarmup   time.Duration
	loopCapacity int
	// loopAs is who the closed-loop clients are: admin (the admin token) or
	// developer (a user with the developer role in the pipelines' project,
	// whose every request goes through the access policy).
	loopAs   string
	compare  string
	agentBin string
	// WebSocket memory
	wsConns  int
	wsSettle time.Duration
}

func main() {
	var cfg config
	var caps, only, loopClients string
	flag.StringVar(&cfg.bin, "bin", "", "runnel binary to measure (default: build ./cmd/runnel into a temporary directory)")
	flag.IntVar(&cfg.starts, "starts", 10, "server starts for the startup median (after one untimed start)")
	flag.IntVar(&cfg.latencyRuns, "latency-runs", 300, "sequential triggers measured for trigger → first step")
	flag.IntVar(&cfg.warmup, "warmup", 20, "warm-up triggers before the latency and throughput measurements")
	flag.IntVar(&cfg.clients, "clients", 8, "concurrent triggering clients in the throughput test (one pipeline each)")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long the throughput clients trigger")
	flag.StringVar(&caps, "capacities", strconv.Itoa(runtime.NumCPU()), "comma-separated --embedded-agent-capacity values for the throughput test")
	flag.IntVar(&cfg.maxRuns, "max-runs", 20000, "at most this many runs triggered per throughput test")
	flag.StringVar(&cfg.postgres, "postgres", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL on loopback for the throughput test (a database runnel_bench_<random> is created and dropped through it with psql); empty skips it")
	flag.IntVar(&cfg.rate, "rate", 500, "requests/s of the open-loop run-detail test")
	flag.DurationVar(&cfg.readDuration, "read-duration", 10*time.Second, "length of the open-loop run-detail test")
	flag.IntVar(&cfg.workers, "workers", 64, "worker pool of the open-loop test (bounds requests in flight)")
	flag.DurationVar(&cfg.idle, "idle", 5*time.Second, "idle time before the idle RSS is read")
	flag.StringVar(&cfg.logLevel, "log-level", "error", "--log-level of the measured servers")
	flag.StringVar(&cfg.agentBin, "agent-bin", "", "runnel-agent binary for the idle measurement (default: build ./cmd/runnel-agent)")
	flag.StringVar(&only, "only", "startup,latency,read,idle,throughput,closedloop,sqlite,postgres", "which measurements to run (idle RSS comes with latency; throughput and closedloop run on the databases listed: sqlite, postgres)")
	flag.StringVar(&loopClients, "loop-clients", "1,4,16", "comma-separated client counts of the closed-loop test")
	flag.IntVar(&cfg.wsConns, "ws-conns", 1000, "WebSocket connections of the ws measurement (each subscribed to a pipeline's statuses)")
	flag.DurationVar(&cfg.wsSettle, "ws-settle", time.Minute, "how long after the WebSocket connections closed the server's RSS is read again")
	flag.DurationVar(&cfg.loopDuration, "loop-duration", 20*time.Second, "measured window of each closed-loop test")
	flag.DurationVar(&cfg.loopWarmup, "loop-warmup", 2*time.Second, "closed-loop warm-up before the window")
	flag.StringVar(&cfg.loopAs, "loop-as", "admin", "who the closed-loop clients are: admin (the admin token) or developer (a user with the developer role in the project, checked by the access policy on every call; needs a binary with projects)")
	flag.IntVar(&cfg.loopCapacity, "loop-capacity", 0, "--embedded-agent-capacity of the closed-loop servers (0: the server's default)")
	flag.StringVar(&cfg.compare, "compare", "", "a second runnel binary (an earlier build) measured in the closed-loop test right after the first, on a server of its own, for a before/after in one run")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Minute, "upper bound of the whole benchmark")
	flag.Parse()
	cfg.capacities = positiveInts("-capacities", caps)
	cfg.loopClients = positiveInts("-loop-clients", loopClients)
	cfg.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		cfg.only[strings.TrimSpace(s)] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg)
	stop()
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// positiveInts parses a flag's comma-separated list of positive integers,
// or exits saying what is wrong.
func positiveInts(name, list string) []int {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: %s %q: want positive integers\n", name, list)
			os.Exit(2)
		}
		out = append(out, n)
	}
	return out
}

// row is one line of the result table.
type row struct{ name, result, target string }

func run(ctx context.Context, cfg config) error {
	dir, err := os.MkdirTemp("", "runnel-server-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if cfg.bin == "" {
		cfg.bin = filepath.Join(dir, "runnel")
		fmt.Fprintln(os.Stderr, "building ./cmd/runnel …")
		build := exec.CommandContext(ctx, "go", "build", "-o", cfg.bin, "./cmd/runnel")
		build.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	b := &bench{cfg: cfg, dir: dir}
	load0 := loadavg()
	var rows, notes []row
	add := func(r []row, n []row, err error) error {
		rows, notes = append(rows, r...), append(notes, n...)
		return err
	}
	if cfg.only["startup"] {
		if err := add(b.startup(ctx)); err != nil {
			return err
		}
	}
	if cfg.only["idle"] {
		if err := add(b.idleMemory(ctx)); err != nil {
			return err
		}
	}
	if cfg.only["ws"] {
		if err := add(b.wsMemory(ctx)); err != nil {
			return err
		}
	}
	if cfg.only["latency"] || cfg.only["read"] {
		if err := add(b.latencyAndRead(ctx)); err != nil {
			return err
		}
	}
	if cfg.only["throughput"] {
		if cfg.only["sqlite"] {
			if err := add(b.throughput(ctx, "SQLite", "")); err != nil {
				return err
			}
		}
		switch {
		case !cfg.only["postgres"]:
		case cfg.postgres == "":
			rows = append(rows, row{"throughput, PostgreSQL", "skipped (-postgres empty)", "≥ 100 runs/s, no error"})
		default:
			if err := add(b.throughput(ctx, "PostgreSQL", cfg.postgres)); err != nil {
				return err
			}
		}
	}
	if cfg.only["closedloop"] {
		if cfg.only["sqlite"] {
			if err := add(b.closedLoop(ctx, "SQLite", "")); err != nil {
				return err
			}
		}
		if cfg.only["postgres"] && cfg.postgres != "" {
			if err := add(b.closedLoop(ctx, "PostgreSQL", cfg.postgres)); err != nil {
				return err
			}
		}
	}

	fmt.Printf("\nmachine: %d CPUs (nproc), %s, %s/%s, %s\n", runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, goVersion())
	fmt.Printf("date: %s; load average before: %s, after: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), load0, loadavg())
	fmt.Printf("command: go run ./bench/server %s\n\n", strings.Join(os.Args[1:], " "))
	fmt.Printf("| measurement | result | target |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r.name, r.result, r.target)
	}
	if len(notes) > 0 {
		fmt.Printf("\n| detail | value |\n|---|---|\n")
		for _, n := range notes {
			fmt.Printf("| %s | %s |\n", n.name, n.result)
		}
	}
	return nil
}

type bench struct {
	cfg config
	dir string
	seq atomic.Int64
}

func (b *bench) dataDir() string {
	return filepath.Join(b.dir, fmt.Sprintf("data-%d", b.seq.Add(1)))
}

// ---- 1. startup ----

func (b *bench) startup(ctx context.Context) ([]row, []row, error) {
	fmt.Fprintf(os.Stderr, "startup: %d starts …\n", b.cfg.starts)
	poll := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var ds []time.Duration
	for i := 0; i < b.cfg.starts+1; i++ {
		port, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		cmd := exec.Command(b.cfg.bin, "server", "--addr", addr, "--data-dir", b.dataDir(), "--admin-token", token, "--log-level", b.cfg.logLevel)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		exited := make(chan struct{})
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return nil, nil, err
		}
		go func() { _ = cmd.Wait(); close(exited) }()
		var d time.Duration
		for {
			resp, err := poll.Get("http://" + addr + "/readyz")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					d = time.Since(t0)
					break
				}
			}
			select {
			case <-exited:
				return nil, nil, fmt.Errorf("startup: the server exited before it was ready:\n%s", stderr.String())
			case <-ctx.Done():
				_ = cmd.Process.Kill()
				<-exited
				return nil, nil, ctx.Err()
			case <-time.After(200 * time.Microsecond):
			}
			if time.Since(t0) > 30*time.Second {
				_ = cmd.Process.Kill()
				<-exited
				return nil, nil, fmt.Errorf("startup: not ready after 30 s:\n%s", stderr.String())
			}
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if i > 0 { // the first start warms the page cache
			ds = append(ds, d)
		}
	}
	slices.Sort(ds)
	med := ds[len(ds)/2]
	if len(ds)%2 == 0 {
		med = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
	}
	return []row{{"startup to `/readyz` 200, SQLite, fresh data dir (median of " + strconv.Itoa(len(ds)) + ")", bold(ms(med)), "< 300 ms"}},
		[]row{{"startup: min / max", ms(ds[0]) + " / " + ms(ds[len(ds)-1]), ""}}, nil
}

// ---- 2, 4, 5: latency, reads, idle RSS on one SQLite server ----

func (b *bench) latencyAndRead(ctx context.Context) ([]row, []row, error) {
	srv, err := b.startServer(ctx, "", runtime.NumCPU())
	if err != nil {
		return nil, nil, err
	}
	defer srv.stop()
	var rows, notes []row
	select {
	case <-time.After(b.cfg.idle):
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	rss, err := vmRSS(srv.cmd.Process.Pid)
	if err != nil {
		return nil, nil, err
	}
	rows = append(rows, row{fmt.Sprintf("server RSS after startup and %s idle (VmRSS)", b.cfg.idle), bold(mb(rss)), "< 40 MB"})

	if b.cfg.only["latency"] {
		r, n, err := b.latency(ctx, srv)
		if err != nil {
			return nil, nil, err
		}
		rows, notes = append(rows, r...), append(notes, n...)
	}
	if b.cfg.only["read"] {
		r, n, err := b.read(ctx, srv)
		if err != nil {
			return nil, nil, err
		}
		rows, notes = append(rows, r...), append(notes, n...)
	}
	return rows, notes, nil
}

func (b *bench) latency(ctx context.Context, srv *server) ([]row, []row, error) {
	fmt.Fprintf(os.Stderr, "trigger → first step: %d + %d warm-up runs …\n", b.cfg.latencyRuns, b.cfg.warmup)
	pl, err := srv.createPipeline(ctx, "latency", oneStep)
	if err != nil {
		return nil, nil, err
	}
	var lat, rtt []time.Duration
	errs := 0
	for i := 0; i < b.cfg.warmup+b.cfg.latencyRuns; i++ {
		t0 := time.Now()
		runID, err := srv.trigger(ctx, pl)
		d := time.Since(t0)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			errs++
			continue
		}
		// Let the run go untouched for a while, then poll lightly: polling
		// must not compete for the CPU with what is measured.
		sleep(ctx, 15*time.Millisecond)
		det, err := srv.waitFinal(ctx, runID, 5*time.Millisecond, 30*time.Second)
		if err != nil {
			return nil, nil, err
		}
		started, err := det.firstStepStarted()
		if det.Status != "success" || err != nil {
			errs++
			continue
		}
		if i >= b.cfg.warmup {
			lat = append(lat, started.Sub(t0))
			rtt = append(rtt, d)
		}
	}
	if len(lat) == 0 {
		return nil, nil, errors.New("latency: no successful run")
	}
	rows := []row{
		{"trigger → first step started, SQLite, p50", bold(ms(pct(lat, 50))), "< 5 ms"},
		{"trigger → first step started, SQLite, p99", bold(ms(pct(lat, 99))), "< 25 ms"},
		{"trigger POST round trip, p50 / p99", ms(pct(rtt, 50)) + " / " + ms(pct(rtt, 99)), ""},
	}
	notes := []row{
		{"trigger → first step: runs measured, errors", fmt.Sprintf("%d, %d", len(lat), errs), ""},
		{"trigger → first step: min / p90 / max", ms(pct(lat, 0)) + " / " + ms(pct(lat, 90)) + " / " + ms(pct(lat, 100)), ""},
		{"trigger → first step: resolution", "startedAt has 1 ms resolution (truncated): each figure is up to 1 ms under the true one", ""},
	}
	return rows, notes, nil
}

func (b *bench) read(ctx context.Context, srv *server) ([]row, []row, error) {
	pl, err := srv.createPipeline(ctx, "read", threeJobs)
	if err != nil {
		return nil, nil, err
	}
	runID, err := srv.trigger(ctx, pl)
	if err != nil {
		return nil, nil, err
	}
	det, err := srv.waitFinal(ctx, runID, 10*time.Millisecond, 30*time.Second)
	if err != nil {
		return nil, nil, err
	}
	if det.Status != "success" {
		return nil, nil, fmt.Errorf("read: the 3-job run ended %s", det.Status)
	}
	jobs, steps := det.count()
	fmt.Fprintf(os.Stderr, "run detail: %d req/s open loop for %s (%d jobs, %d steps) …\n", b.cfg.rate, b.cfg.readDuration, jobs, steps)

	client := newClient(b.cfg.workers)
	path := "/api/v1/pipelines/runs/" + runID
	get := func() error {
		var d runDetail
		if err := srv.do(ctx, client, http.MethodGet, path, nil, &d); err != nil {
			return err
		}
		if d.RunID != runID {
			return fmt.Errorf("got run %q", d.RunID)
		}
		return nil
	}
	// Warm-up: open the connections, one second at the same rate.
	if _, _, _, err := openLoop(ctx, b.cfg.rate, time.Second, b.cfg.workers, get); err != nil {
		return nil, nil, err
	}
	fromSched, fromSend, nerr, err := openLoop(ctx, b.cfg.rate, b.cfg.readDuration, b.cfg.workers, get)
	if err != nil {
		return nil, nil, err
	}
	name := fmt.Sprintf("`GET /pipelines/runs/:runId` (%d jobs, %d steps) at %d req/s open loop, %s", jobs, steps, b.cfg.rate, b.cfg.readDuration)
	rows := []row{
		{name + ", p50 / p99", ms(pct(fromSched, 50)) + " / " + bold(ms(pct(fromSched, 99))), "p99 < 10 ms"},
		{name + ", errors", fmt.Sprintf("%d of %d", nerr, len(fromSched)), "0"},
	}
	notes := []row{
		{"run detail: latency counted from the scheduled send time; from the actual send, p50 / p99 / max", ms(pct(fromSend, 50)) + " / " + ms(pct(fromSend, 99)) + " / " + ms(pct(fromSend, 100)), ""},
		{"run detail: p99.9 / max from the scheduled time", ms(pct(fromSched, 99.9)) + " / " + ms(pct(fromSched, 100)), ""},
	}
	return rows, notes, nil
}

// openLoop sends n = rate × d requests on a fixed schedule, whatever the
// answers do, through a pool of workers; latency is measured both from the
// scheduled time (a late send counts against the server, no coordinated
// omission) and from the actual send.
func openLoop(ctx context.Context, rate int, d time.Duration, workers int, do func() error) (fromSched, fromSend []time.Duration, nerr int, err error) {
	n := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	jobs := make(chan time.Time, n)
	type result struct {
		sched, send time.Duration
		err         error
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for at := range jobs {
				sent := time.Now()
				err := do()
				done := time.Now()
				results <- result{done.Sub(at), done.Sub(sent), err}
			}
		}()
	}
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		jobs <- at
	}
	close(jobs)
	wg.Wait()
	close(results)
	if ctx.Err() != nil {
		return nil, nil, 0, ctx.Err()
	}
	for r := range results {
		fromSched, fromSend = append(fromSched, r.sched), append(fromSend, r.send)
		if r.err != nil {
			nerr++
		}
	}
	return fromSched, fromSend, nerr, nil
}

// ---- 3. throughput ----

type tpResult struct {
	capacity                int
	triggered, completed    int
	failedRuns, triggerErrs int
	elapsed                 time.Duration
	rate                    float64
	rtt50, rtt99            time.Duration
	rss                     int64
	// Runs that ended while the clients were triggering, and the rate at
	// which the rest ended once they had stopped (execution alone).
	endedWhileTriggering int
	drainRate            float64
	// CPU time per completed run: the server (its own threads, and the
	// step processes it waited for) and this benchmark's clients.
	serverCPU, childCPU, clientCPU time.Duration
}

func (b *bench) throughput(ctx context.Context, db, pgURL string) ([]row, []row, error) {
	var results []tpResult
	for _, capacity := range b.cfg.capacities {
		fmt.Fprintf(os.Stderr, "throughput %s, capacity %d: %d clients for %s …\n", db, capacity, b.cfg.clients, b.cfg.duration)
		dsn := ""
		var dropDB func()
		if pgURL != "" {
			var err error
			dsn, dropDB, err = createDatabase(ctx, pgURL)
			if err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
				return []row{{"throughput, " + db, "**skipped**: cannot create a database (" + firstLine(err.Error()) + ")", "≥ 100 runs/s, no error"}}, nil, nil
			}
		}
		r, err := b.throughputOnce(ctx, dsn, capacity)
		if dropDB != nil {
			dropDB()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("throughput %s, capacity %d: %w", db, capacity, err)
		}
		fmt.Fprintf(os.Stderr, "  %.1f runs/s (%d runs, %d failed, %d trigger errors)\n", r.rate, r.completed, r.failedRuns, r.triggerErrs)
		results = append(results, r)
	}
	best := results[0]
	for _, r := range results[1:] {
		if r.rate > best.rate {
			best = r
		}
	}
	target := "≥ 150 runs/s, no error"
	if db == "PostgreSQL" {
		target = "≥ 100 runs/s, no error"
	}
	errs := 0
	for _, r := range results {
		errs += r.failedRuns + r.triggerErrs + (r.triggered - r.completed)
	}
	rows := []row{
		{fmt.Sprintf("throughput, 1-step `true` runs, %s, %d clients × %s, best of capacity %s", db, b.cfg.clients, b.cfg.duration, joinInts(b.cfg.capacities)),
			fmt.Sprintf("%s at capacity %d; errors: %d", bold(fmt.Sprintf("%.1f runs/s", best.rate)), best.capacity, errs), target},
	}
	var maxRSS int64
	for _, r := range results {
		maxRSS = max(maxRSS, r.rss)
	}
	rows = append(rows, row{fmt.Sprintf("server RSS after the %s throughput test (largest of the capacities)", db), mb(maxRSS), "(information)"})
	var notes []row
	for _, r := range results {
		notes = append(notes, row{fmt.Sprintf("throughput %s, capacity %d", db, r.capacity),
			fmt.Sprintf("%.1f runs/s: %d triggered (%.0f/s, trigger POST p50 %s, p99 %s), %d completed in %s (%d while triggering, the rest at %.0f runs/s after), %d failed runs, %d trigger errors; CPU per run: server %s, its step processes %s, bench client %s; RSS after: %s",
				r.rate, r.triggered, float64(r.triggered)/b.cfg.duration.Seconds(), ms(r.rtt50), ms(r.rtt99), r.completed, secs(r.elapsed), r.endedWhileTriggering, r.drainRate,
				r.failedRuns, r.triggerErrs, ms(r.serverCPU), ms(r.childCPU), ms(r.clientCPU), mb(r.rss)), ""})
	}
	return rows, notes, nil
}

func (b *bench) throughputOnce(ctx context.Context, dsn string, capacity int) (tpResult, error) {
	res := tpResult{capacity: capacity}
	srv, err := b.startServer(ctx, dsn, capacity)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	// Warm-up on a pipeline of its own.
	wp, err := srv.createPipeline(ctx, "warmup", oneStep)
	if err != nil {
		return res, err
	}
	for i := 0; i < b.cfg.warmup; i++ {
		id, err := srv.trigger(ctx, wp)
		if err != nil {
			return res, err
		}
		if _, err := srv.waitFinal(ctx, id, 5*time.Millisecond, 30*time.Second); err != nil {
			return res, err
		}
	}
	pls := make([]string, b.cfg.clients)
	for i := range pls {
		if pls[i], err = srv.createPipeline(ctx, fmt.Sprintf("load-%d", i), oneStep); err != nil {
			return res, err
		}
	}
	client := newClient(b.cfg.clients)
	var (
		mu       sync.Mutex
		rtts     []time.Duration
		ids      = map[string]bool{}
		trigErrs int
		budget   atomic.Int64
		wg       sync.WaitGroup
	)
	budget.Store(int64(b.cfg.maxRuns))
	cpu0, err := procCPU(srv.cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	self0 := selfCPU()
	start := time.Now()
	deadline := start.Add(b.cfg.duration)
	for _, pl := range pls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(`{}`)
			for time.Now().Before(deadline) && ctx.Err() == nil && budget.Add(-1) >= 0 {
				var tr struct {
					RunID string `json:"runId"`
				}
				t0 := time.Now()
				err := srv.do(ctx, client, http.MethodPost, "/api/v1/pipelines/"+pl+"/trigger", body, &tr)
				d := time.Since(t0)
				mu.Lock()
				if err != nil || tr.RunID == "" {
					trigErrs++
				} else {
					ids[tr.RunID] = true
					rtts = append(rtts, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	trigEnd := time.Now()
	res.triggered, res.triggerErrs = len(ids), trigErrs
	if len(rtts) > 0 {
		res.rtt50, res.rtt99 = pct(rtts, 50), pct(rtts, 99)
	}
	// Wait until no run of the load pipelines is pending, running or paused:
	// a few list requests per pass, not one per run.
	waitUntil := time.Now().Add(10 * time.Minute)
	for {
		active := 0
		for _, pl := range pls {
			for _, st := range []string{"pending", "running", "paused"} {
				var page struct {
					Total int `json:"total"`
				}
				if err := srv.do(ctx, srv.client, http.MethodGet, "/api/v1/pipelines/"+pl+"/runs?pageSize=1&status="+st, nil, &page); err != nil {
					return res, err
				}
				active += page.Total
			}
		}
		if active == 0 {
			break
		}
		if time.Now().After(waitUntil) {
			return res, fmt.Errorf("%d runs still active 10 minutes after the last trigger", active)
		}
		sleep(ctx, 100*time.Millisecond)
	}
	// Every run, with its status and end time (server clock).
	var last time.Time
	for _, pl := range pls {
		for page := 1; ; page++ {
			var lst struct {
				Items []struct {
					RunID   string  `json:"runId"`
					Status  string  `json:"status"`
					EndedAt *string `json:"endedAt"`
				} `json:"items"`
				Total int `json:"total"`
			}
			if err := srv.do(ctx, srv.client, http.MethodGet, fmt.Sprintf("/api/v1/pipelines/%s/runs?pageSize=100&page=%d", pl, page), nil, &lst); err != nil {
				return res, err
			}
			for _, it := range lst.Items {
				if !ids[it.RunID] {
					continue
				}
				res.completed++
				if it.Status != "success" {
					res.failedRuns++
				}
				if it.EndedAt != nil {
					if t, err := time.Parse(time.RFC3339Nano, *it.EndedAt); err == nil {
						last = later(last, t)
						if !t.After(trigEnd) {
							res.endedWhileTriggering++
						}
					}
				}
			}
			if len(lst.Items) < 100 || page*100 >= lst.Total {
				break
			}
		}
	}
	res.elapsed = last.Sub(start)
	if res.elapsed > 0 {
		res.rate = float64(res.completed) / res.elapsed.Seconds()
	}
	if d := last.Sub(trigEnd); d > 0 {
		res.drainRate = float64(res.completed-res.endedWhileTriggering) / d.Seconds()
	}
	cpu1, err := procCPU(srv.cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	n := time.Duration(max(res.completed, 1))
	res.serverCPU = (cpu1[0] - cpu0[0]) / n
	res.childCPU = (cpu1[1] - cpu0[1]) / n
	res.clientCPU = (selfCPU() - self0) / n
	res.rss, _ = vmRSS(srv.cmd.Process.Pid)
	return res, nil
}

// createDatabase creates runnel_bench_<random> through psql and returns its
// URL and a function that drops it.
func createDatabase(ctx context.Context, admin string) (string, func(), error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, fmt.Errorf("-postgres: %v", err)
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return "", nil, fmt.Errorf("-postgres: %s is not on loopback", h)
	}
	rb := make([]byte, 6)
	_, _ = rand.Read(rb)
	name := "runnel_bench_" + hex.EncodeToString(rb)
	psql := func(ctx context.Context, sql string) error {
		out, err := exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin, "-c", sql).CombinedOutput()
		if err != nil {
			return fmt.Errorf("psql %q: %v\n%s", sql, err, out)
		}
		return nil
	}
	if err := psql(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	db := *u
	db.Path = "/" + name
	drop := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := psql(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			fmt.Fprintln(os.Stderr, "bench: drop database:", err)
		}
	}
	return db.String(), drop, nil
}

// ---- the server process and its API ----

type server struct {
	// token is the API token its requests carry ("": the admin token).
	token  string
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:PORT
	grpc   string // 127.0.0.1:PORT of its gRPC listener
	client *http.Client
	exited chan struct{}
	tail   *tail
}

// startServer starts `runnel server` on a free loopback port and waits until
// GET /readyz answers 200 (the "ready" log line is not printed at
// --log-level error, so the port is chosen here).
func (b *bench) startServer(ctx context.Context, dsn string, capacity int) (*server, error) {
	return b.startServerBin(ctx, b.cfg.bin, dsn, capacity)
}

// startServerBin is startServer with the binary bin; a capacity of 0 leaves
// --embedded-agent-capacity at its default.
func (b *bench) startServerBin(ctx context.Context, bin, dsn string, capacity int) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	gport, err := freePort()
	if err != nil {
		return nil, err
	}
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", gport)
	args := []string{"server", "--addr", addr, "--grpc-addr", grpcAddr, "--data-dir", b.dataDir(), "--admin-token", token, "--log-level", b.cfg.logLevel}
	if capacity > 0 {
		args = append(args, "--embedded-agent-capacity", strconv.Itoa(capacity))
	}
	if dsn != "" {
		args = append(args, "--database", dsn)
	}
	cmd := exec.Command(bin, args...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, base: "http://" + addr, grpc: grpcAddr, client: newClient(16), exited: make(chan struct{}), tail: &tail{}}
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.tail.add(sc.Text())
		}
		_ = cmd.Wait()
		close(s.exited)
	}()
	end := time.Now().Add(30 * time.Second)
	for {
		if resp, err := s.client.Get(s.base + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("the server exited before it was ready:\n%s", s.tail)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(end) {
			s.stop()
			return nil, fmt.Errorf("the server was not ready after 30 s:\n%s", s.tail)
		}
	}
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// do sends a request and decodes the envelope's detail into out; a non-zero
// code is an error.
func (s *server) do(ctx context.Context, c *http.Client, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.bearer())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Code   int             `json:"code"`
		Msg    string          `json:"msg"`
		ErrMsg string          `json:"errMsg"`
		Detail json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("%s %s: HTTP %d, not an envelope: %.200s", method, path, resp.StatusCode, data)
	}
	if env.Code != 0 {
		return fmt.Errorf("%s %s: code %d: %s", method, path, env.Code, env.ErrMsg)
	}
	if out != nil {
		return json.Unmarshal(env.Detail, out)
	}
	return nil
}

const oneStep = `{"namespace":"bench.one","version":"v1","jobs":[{"name":"j","steps":[{"name":"s","run":"true"}]}]}`

// threeJobs: two stages, three jobs, seven steps with a little output.
const threeJobs = `{"namespace":"bench.read","version":"v1","stages":[
 {"name":"build","jobs":[
  {"name":"compile","steps":[{"name":"a","run":"echo compiling"},{"name":"b","run":"echo linking"},{"name":"c","run":"true"}]},
  {"name":"lint","steps":[{"name":"a","run":"echo lint ok"},{"name":"b","run":"true"}]}]},
 {"name":"test","jobs":[
  {"name":"unit","steps":[{"name":"a","run":"echo 42 passed"},{"name":"b","run":"true"}]}]}]}`

// bearer is the token the server's requests carry.
func (s *server) bearer() string {
	if s.token != "" {
		return s.token
	}
	return token
}

// asDeveloper returns the server as seen by a new user with the developer
// role in project bench (created by the admin with the first pipeline).
func (s *server) asDeveloper(ctx context.Context) (*server, error) {
	var u struct {
		UserID string `json:"userId"`
	}
	if err := s.do(ctx, s.client, http.MethodPost, "/api/v1/users", []byte(`{"login":"bench-dev"}`), &u); err != nil {
		return nil, fmt.Errorf("create the developer: %w", err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := s.do(ctx, s.client, http.MethodPost, "/api/v1/users/"+u.UserID+"/tokens", []byte(`{"name":"bench"}`), &tok); err != nil {
		return nil, fmt.Errorf("create the developer's token: %w", err)
	}
	if err := s.do(ctx, s.client, http.MethodPut, "/api/v1/projects/bench/members/"+u.UserID, []byte(`{"role":"developer"}`), nil); err != nil {
		return nil, fmt.Errorf("make the user a developer: %w", err)
	}
	dev := *s
	dev.token = tok.Token
	return &dev, nil
}

func (s *server) createPipeline(ctx context.Context, name, spec string) (string, error) {
	body := fmt.Sprintf(`{"projectId":"bench","name":%q,"spec":%s}`, name, spec)
	var p struct {
		PipelineID string `json:"pipelineId"`
	}
	if err := s.do(ctx, s.client, http.MethodPost, "/api/v1/pipelines", []byte(body), &p); err != nil {
		return "", err
	}
	return p.PipelineID, nil
}

func (s *server) trigger(ctx context.Context, pipelineID string) (string, error) {
	var tr struct {
		RunID string `json:"runId"`
	}
	if err := s.do(ctx, s.client, http.MethodPost, "/api/v1/pipelines/"+pipelineID+"/trigger", []byte(`{}`), &tr); err != nil {
		return "", err
	}
	return tr.RunID, nil
}

type runDetail struct {
	RunID  string `json:"runId"`
	Status string `json:"status"`
	Stages []struct {
		Jobs []struct {
			Status string `json:"status"`
			Steps  []struct {
				Status    string  `json:"status"`
				StartedAt *string `json:"startedAt"`
			} `json:"steps"`
		} `json:"jobs"`
	} `json:"stages"`
}

func (d *runDetail) final() bool {
	switch d.Status {
	case "success", "failed", "cancelled", "partial":
		return true
	}
	return false
}

func (d *runDetail) firstStepStarted() (time.Time, error) {
	var first time.Time
	for _, st := range d.Stages {
		for _, j := range st.Jobs {
			for _, s := range j.Steps {
				if s.StartedAt == nil {
					continue
				}
				t, err := time.Parse(time.RFC3339Nano, *s.StartedAt)
				if err != nil {
					return time.Time{}, err
				}
				if first.IsZero() || t.Before(first) {
					first = t
				}
			}
		}
	}
	if first.IsZero() {
		return first, errors.New("no step started")
	}
	return first, nil
}

func (d *runDetail) count() (jobs, steps int) {
	for _, st := range d.Stages {
		for _, j := range st.Jobs {
			jobs++
			steps += len(j.Steps)
		}
	}
	return jobs, steps
}

func (s *server) waitFinal(ctx context.Context, runID string, every, limit time.Duration) (*runDetail, error) {
	end := time.Now().Add(limit)
	for {
		var d runDetail
		if err := s.do(ctx, s.client, http.MethodGet, "/api/v1/pipelines/runs/"+runID, nil, &d); err != nil {
			return nil, err
		}
		if d.final() {
			return &d, nil
		}
		if time.Now().After(end) {
			return nil, fmt.Errorf("run %s still %s after %s", runID, d.Status, limit)
		}
		if !sleep(ctx, every) {
			return nil, ctx.Err()
		}
	}
}

func newClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
}

// tail keeps the last lines of the server's stderr for error messages.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(l string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, l)
	if len(t.lines) > 50 {
		t.lines = t.lines[len(t.lines)-50:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// ---- helpers ----

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// vmRSS reads VmRSS of a process, in bytes.
func vmRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v) // "12345 kB"
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

// procCPU is a process's CPU time (user + system): its own, and that of the
// children it has waited for. /proc counts in clock ticks of 10 ms (USER_HZ
// is 100 on Linux).
func procCPU(pid int) ([2]time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return [2]time.Duration{}, err
	}
	// The command name (field 2) may hold spaces: count from the ')'.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 15 {
		return [2]time.Duration{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	tick := func(i int) time.Duration { // f[0] is field 3 (state)
		n, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(n) * 10 * time.Millisecond
	}
	return [2]time.Duration{tick(11) + tick(12), tick(13) + tick(14)}, nil
}

// selfCPU is this process's CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func bold(s string) string { return "**" + s + "**" }

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func goVersion() string {
	out, err := exec.Command("go", "version").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
