// Command agents benchmarks remote agents: `runnel server` as a real process
// on loopback, on PostgreSQL, with agents speaking gRPC to it:
//
//  1. dispatch latency: job queued → claimed by an idle agent. -agents
//     lightweight agents (agentrpc clients inside this program, labels
//     pool=bench, capacity 1, each with a Claim waiting) and -backlog queued
//     jobs that no agent may take (runsOn pool=nowhere: a 250-job matrix
//     triggered backlog/250 times); then a 1-job, 1-step pipeline with runsOn
//     pool=bench is triggered -samples times, one at a time, after -warmup.
//     Latency = the agent's clock when Claim returns − the job's queued_at as
//     stored (µs, read from the database; one machine, one clock). Baseline
//     in the same run: a second server with 1 agent and no backlog, sampled
//     in alternate blocks of -block dispatches, the server not sampled being
//     stopped (SIGSTOP) meanwhile (target: p99 < 20 ms loaded). Done on fresh
//     servers once per -stats state: with planner statistics (ANALYZE as soon
//     as the backlog is queued, as autovacuum would), and without;
//  2. memory: the server's VmRSS idle, then with -mem-agents agents connected
//     (a Connect session open and a Claim waiting each), right away and after
//     -settle, on a server process started after the agents registered, and
//     on the one they registered with (target: < 50 KB per agent); then, as
//     diagnostics, the live heap (GODEBUG=gctrace=1) and the goroutines
//     (GOTRACEBACK=all, SIGQUIT) of that server; and the VmRSS of one idle
//     `runnel agent` process (target: < 20 MB);
//  3. throughput with -real-agents `runnel agent` processes: -clients clients
//     each trigger their own 1-step `true` pipeline (no runsOn) for
//     -duration, then every run is awaited; runs/s = completed runs / (first
//     trigger → last run's endedAt), once per -capacities value of the
//     agents' --capacity, with the CPU time each party spent per run
//     (target: ≥ 100 runs/s, no error).
//
// Each server gets a throwaway database runnel_bench_<random>, created and
// dropped with psql on -postgres (on loopback; user postgres must be allowed
// to create databases). Servers run with --embedded-agent-capacity 0 and
// --log-level error. Every load is bounded in count and time, the whole run
// by -timeout; processes are stopped (SIGTERM, then SIGKILL) and databases
// dropped on every exit path.
//
//	go run ./bench/agents [-only dispatch,memory,throughput] [-stats both|analyze|none] [-samples 300] [-capacities 4,8] [-postgres URL] [-bin runnel]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
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
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", to read stored queue times

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/agentpb"
	"github.com/runnel-ci/runnel/internal/agentrpc"
	"github.com/runnel-ci/runnel/internal/engine"
)

const token = "runnel-bench-admin-token-0123456789"

type config struct {
	bin        string
	postgres   string
	only       map[string]bool
	timeout    time.Duration
	agents     int
	backlog    int
	samples    int
	warmup     int
	gap        time.Duration
	block      int
	isolate    bool
	samplesOut string
	stats      string
	dsnParams  string
	memAgents  int
	settle     time.Duration
	realAgents int
	clients    int
	duration   time.Duration
	capacities []int
	maxRuns    int
}

func main() {
	var cfg config
	var caps, only string
	flag.StringVar(&cfg.bin, "bin", "", "runnel binary to measure (default: build ./cmd/runnel into a temporary directory)")
	flag.StringVar(&cfg.postgres, "postgres", "postgres://postgres@127.0.0.1:5432", "PostgreSQL on loopback; a database runnel_bench_<random> is created through it with psql for each server, and dropped after")
	flag.StringVar(&only, "only", "dispatch,memory,throughput", "which measurements to run")
	flag.DurationVar(&cfg.timeout, "timeout", 20*time.Minute, "upper bound of the whole benchmark")
	flag.IntVar(&cfg.agents, "agents", 100, "idle agents connected to the loaded server in the dispatch test")
	flag.IntVar(&cfg.backlog, "backlog", 10000, "jobs queued that no agent may take in the dispatch test (rounded up to a multiple of 250)")
	flag.IntVar(&cfg.samples, "samples", 300, "measured dispatches per server (loaded and baseline), after the warm-up")
	flag.IntVar(&cfg.warmup, "warmup", 30, "warm-up dispatches per server, not counted")
	flag.DurationVar(&cfg.gap, "gap", 20*time.Millisecond, "pause between two dispatches (the agent is back in Claim, the server quiet)")
	flag.IntVar(&cfg.block, "block", 30, "dispatches in a row on one server before switching to the other")
	flag.BoolVar(&cfg.isolate, "isolate", true, "stop (SIGSTOP) the server not being sampled, so that the background work of one does not land in the other's samples")
	flag.StringVar(&cfg.samplesOut, "samples-out", "", "write every dispatch sample to this CSV file (statistics state, server, receipt time, latency and its parts, in µs)")
	flag.StringVar(&cfg.stats, "stats", "both", "PostgreSQL planner statistics: analyze (ANALYZE once the load is in place, before it is measured, as autovacuum would), none (the databases as the servers leave them: no statistics when autovacuum is off), or both (the dispatch test runs once in each state, on fresh servers; the throughput test analyzes)")
	flag.StringVar(&cfg.dsnParams, "dsn-params", "", "extra parameters for the servers' --database URL, k=v&… (e.g. plan_cache_mode=force_custom_plan: pgx sends unknown ones as PostgreSQL settings)")
	flag.IntVar(&cfg.memAgents, "mem-agents", 200, "agents connected in the memory test")
	flag.DurationVar(&cfg.settle, "settle", 5*time.Second, "idle time before each RSS reading")
	flag.IntVar(&cfg.realAgents, "real-agents", 4, "runnel agent processes in the throughput test")
	flag.IntVar(&cfg.clients, "clients", 8, "concurrent triggering clients in the throughput test (one pipeline each)")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long the throughput clients trigger")
	flag.StringVar(&caps, "capacities", "4,8", "comma-separated --capacity values of the agents in the throughput test")
	flag.IntVar(&cfg.maxRuns, "max-runs", 20000, "at most this many runs triggered per throughput test")
	flag.Parse()
	for _, s := range strings.Split(caps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: -capacities %q: want positive integers\n", caps)
			os.Exit(2)
		}
		cfg.capacities = append(cfg.capacities, n)
	}
	cfg.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		cfg.only[strings.TrimSpace(s)] = true
	}
	if cfg.stats != "none" && cfg.stats != "analyze" && cfg.stats != "both" {
		fmt.Fprintln(os.Stderr, "bench: -stats: want none, analyze or both")
		os.Exit(2)
	}
	if cfg.agents < 1 || cfg.memAgents < 1 || cfg.realAgents < 1 || cfg.clients < 1 || cfg.samples < 1 || cfg.block < 1 || cfg.backlog < 0 {
		fmt.Fprintln(os.Stderr, "bench: -agents, -mem-agents, -real-agents, -clients, -samples and -block must be positive")
		os.Exit(2)
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

// row is one line of a result table.
type row struct{ name, result, target string }

func run(ctx context.Context, cfg config) error {
	dir, err := os.MkdirTemp("", "runnel-agents-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if cfg.bin == "" {
		cfg.bin = filepath.Join(dir, "runnel")
		fmt.Fprintln(os.Stderr, "building ./cmd/runnel …")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", cfg.bin, "./cmd/runnel").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	b := &bench{cfg: cfg, dir: dir}
	defer b.cleanup() // every process stopped, every database dropped
	load0 := loadavg()
	var rows, notes []row
	for _, m := range []struct {
		name string
		fn   func(context.Context) ([]row, []row, error)
	}{{"dispatch", b.dispatch}, {"memory", b.memory}, {"throughput", b.throughput}} {
		if !cfg.only[m.name] {
			continue
		}
		r, n, err := m.fn(ctx)
		b.cleanup() // the next measurement starts on a quiet machine
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		rows, notes = append(rows, r...), append(notes, n...)
	}

	fmt.Printf("\nmachine: %d CPUs (nproc), %s, %s/%s, %s\n", runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, goVersion())
	fmt.Printf("date: %s; load average before: %s, after: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), load0, loadavg())
	fmt.Printf("command: go run ./bench/agents %s\n\n", strings.Join(os.Args[1:], " "))
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

	mu     sync.Mutex
	procs  []*proc
	closes []func() // run in reverse order before the processes stop
	drops  []func() // run in reverse order after (databases)
}

func (b *bench) newDir(kind string) string {
	d := filepath.Join(b.dir, fmt.Sprintf("%s-%d", kind, b.seq.Add(1)))
	_ = os.MkdirAll(d, 0o700)
	return d
}

// cleanup closes the in-process agents, stops every process still running
// and drops the databases.
func (b *bench) cleanup() {
	b.mu.Lock()
	procs, closes, drops := b.procs, b.closes, b.drops
	b.procs, b.closes, b.drops = nil, nil, nil
	b.mu.Unlock()
	for i := len(closes) - 1; i >= 0; i-- {
		closes[i]()
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
	for i := len(drops) - 1; i >= 0; i-- {
		drops[i]()
	}
}

// onClose registers f to run at cleanup before the processes stop.
func (b *bench) onClose(f func()) {
	b.mu.Lock()
	b.closes = append(b.closes, f)
	b.mu.Unlock()
}

// ---- 1. dispatch latency ----

// dispatchSample is one measured dispatch. queued_at is the server's clock
// in the transaction that queues the job (before its commit); started_at is
// its clock when ClaimJob begins (before its queries), both stored in µs.
type dispatchSample struct {
	at      time.Time     // agent receipt
	latency time.Duration // agent receipt − queued_at
	claim   time.Duration // started_at − queued_at
	deliver time.Duration // agent receipt − started_at
	e2e     time.Duration // agent receipt − client clock before the trigger POST
}

type dispatchSide struct {
	name   string
	srv    *server
	db     *sql.DB
	pl     string
	events chan receipt
}

// phase is one sampling of both servers in a given database state.
type phase struct {
	name    string
	samples [2][]dispatchSample // baseline, loaded
	errs    [2]int
	// CPU time of each server and wall time while it was sampled.
	cpu, wall [2]time.Duration
	attempts  [2]int
	rest      [2]time.Duration // server CPU over 10 s at rest
	notOK     [2]int           // sample runs that did not end in success
	queued    int
}

// dispatch measures on fresh servers and databases for each statistics
// state: with planner statistics (ANALYZE once the backlog is queued, before
// any claim, as autovacuum would have done), and without (the databases as
// the servers leave them; PostgreSQL gathers none when autovacuum is off).
func (b *bench) dispatch(ctx context.Context) ([]row, []row, error) {
	var modes []string
	if b.cfg.stats != "none" {
		modes = append(modes, "after ANALYZE")
	}
	if b.cfg.stats != "analyze" {
		modes = append(modes, "no statistics")
	}
	var phases []*phase
	var autovacuum string
	for _, mode := range modes {
		ph := &phase{name: mode}
		av, err := b.dispatchMode(ctx, ph)
		b.cleanup()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", mode, err)
		}
		phases, autovacuum = append(phases, ph), av
	}
	if b.cfg.samplesOut != "" {
		var buf bytes.Buffer
		buf.WriteString("phase,side,receipt_unix_us,latency_us,claim_us,deliver_us,e2e_us\n")
		for _, ph := range phases {
			for i, side := range []string{"baseline", "loaded"} {
				for _, x := range ph.samples[i] {
					fmt.Fprintf(&buf, "%s,%s,%d,%d,%d,%d,%d\n", ph.name, side, x.at.UnixMicro(), x.latency.Microseconds(), x.claim.Microseconds(), x.deliver.Microseconds(), x.e2e.Microseconds())
				}
			}
		}
		if err := os.WriteFile(b.cfg.samplesOut, buf.Bytes(), 0o644); err != nil {
			return nil, nil, err
		}
	}

	of := func(xs []dispatchSample, f func(dispatchSample) time.Duration) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = f(x)
		}
		return out
	}
	total := func(x dispatchSample) time.Duration { return x.latency }
	spread := func(ds []time.Duration) string {
		return ms(pct(ds, 50)) + " / " + ms(pct(ds, 90)) + " / " + bold(ms(pct(ds, 99))) + " / " + ms(pct(ds, 100))
	}
	parts := func(xs []dispatchSample) string {
		c, d, e := of(xs, func(x dispatchSample) time.Duration { return x.claim }), of(xs, func(x dispatchSample) time.Duration { return x.deliver }), of(xs, func(x dispatchSample) time.Duration { return x.e2e })
		return fmt.Sprintf("queued → claim UPDATE %s / %s; claim → agent %s / %s; trigger POST sent → agent %s / %s",
			ms(pct(c, 50)), ms(pct(c, 99)), ms(pct(d, 50)), ms(pct(d, 99)), ms(pct(e, 50)), ms(pct(e, 99)))
	}
	var rows, notes []row
	for _, ph := range phases {
		B, L := of(ph.samples[0], total), of(ph.samples[1], total)
		ratio := func(p float64) string {
			return fmt.Sprintf("%.2f×", float64(pct(L, p))/float64(max(pct(B, p), 1)))
		}
		rows = append(rows,
			row{fmt.Sprintf("dispatch latency queued → claimed, %s: %d idle agents, %d queued jobs, p50 / p90 / p99 / max (%d samples)", ph.name, b.cfg.agents, ph.queued, len(L)),
				spread(L), "p99 < 20 ms"},
			row{fmt.Sprintf("same, baseline: 1 agent, empty queue, %s (%d samples)", ph.name, len(B)), spread(B), ""},
			row{fmt.Sprintf("ratio loaded / baseline, %s, p50 / p99", ph.name), ratio(50) + " / " + ratio(99), ""},
			row{fmt.Sprintf("failed dispatches, non-success sample runs, %s (loaded / baseline)", ph.name),
				fmt.Sprintf("%d, %d / %d, %d", ph.errs[1], ph.notOK[1], ph.errs[0], ph.notOK[0]), "0"})
		cpu := func(i int) string {
			return fmt.Sprintf("%s per sample, %.0f %% of one core", ms(ph.cpu[i]/time.Duration(max(ph.attempts[i], 1))), 100*ph.cpu[i].Seconds()/max(ph.wall[i].Seconds(), 1e-9))
		}
		notes = append(notes,
			row{"dispatch, " + ph.name + ", loaded: parts, p50 / p99", parts(ph.samples[1]), ""},
			row{"dispatch, " + ph.name + ", baseline: parts, p50 / p99", parts(ph.samples[0]), ""},
			row{"dispatch, " + ph.name + ": loaded p99.9 (nearest rank) / samples over 20 ms", fmt.Sprintf("%s / %d of %d", ms(pct(L, 99.9)), countOver(L, 20*time.Millisecond), len(L)), ""},
			row{"dispatch, " + ph.name + ": server CPU while sampled (trigger, claim, ack, completion), loaded / baseline", cpu(1) + " / " + cpu(0), ""},
			row{"dispatch, " + ph.name + ": server CPU at rest over 10 s, loaded / baseline", fmt.Sprintf("%s / %s", ms(ph.rest[1]), ms(ph.rest[0])), ""})
	}
	notes = append(notes, row{"dispatch: PostgreSQL autovacuum", autovacuum, ""})
	return rows, notes, nil
}

func (b *bench) dispatchMode(ctx context.Context, ph *phase) (autovacuum string, err error) {
	runsPer := 250
	backlogRuns := (b.cfg.backlog + runsPer - 1) / runsPer
	fmt.Fprintf(os.Stderr, "dispatch, %s: baseline server (1 agent, no backlog) and loaded server (%d agents, %d queued jobs) …\n", ph.name, b.cfg.agents, backlogRuns*runsPer)
	base, err := b.dispatchSide(ctx, "baseline", 1, 0)
	if err != nil {
		return "", err
	}
	loaded, err := b.dispatchSide(ctx, "loaded", b.cfg.agents, backlogRuns)
	if err != nil {
		return "", err
	}
	sides := [2]*dispatchSide{base, loaded}
	if err := loaded.db.QueryRowContext(ctx, `SELECT count(*) FROM job_runs WHERE status = 'queued'`).Scan(&ph.queued); err != nil {
		return "", err
	}
	_ = loaded.db.QueryRowContext(ctx, `SHOW autovacuum`).Scan(&autovacuum)
	if ph.name == "after ANALYZE" {
		for _, side := range sides {
			if _, err := side.db.ExecContext(ctx, "ANALYZE"); err != nil {
				return "", fmt.Errorf("analyze: %w", err)
			}
		}
	}
	// Let the scheduler's first passes over the new backlog (the waiting
	// reasons it writes on every queued job) end, then measure what each
	// server spends at rest over one period of its slowest sweep (10 s).
	fmt.Fprintf(os.Stderr, "dispatch, %s: %d jobs queued on the loaded server; settling %s, then 10 s at rest …\n", ph.name, ph.queued, b.cfg.settle)
	if !sleep(ctx, b.cfg.settle) {
		return "", ctx.Err()
	}
	for i, side := range sides {
		c, _ := procCPU(side.srv.pid())
		ph.rest[i] = -c[0]
	}
	if !sleep(ctx, 10*time.Second) {
		return "", ctx.Err()
	}
	for i, side := range sides {
		c, _ := procCPU(side.srv.pid())
		ph.rest[i] += c[0]
	}
	fmt.Fprintf(os.Stderr, "dispatch, %s: %d + %d warm-up samples per server, in blocks of %d (isolate: %v) …\n", ph.name, b.cfg.samples, b.cfg.warmup, b.cfg.block, b.cfg.isolate)
	err = b.samplePhase(ctx, sides, ph)
	for _, side := range sides {
		_ = side.srv.cmd.Process.Signal(syscall.SIGCONT)
	}
	if err != nil {
		return "", err
	}
	// Every sample run must have ended in success.
	for i, side := range sides {
		var page struct {
			Total int `json:"total"`
		}
		if err := side.srv.do(ctx, http.MethodGet, "/api/v1/pipelines/"+side.pl+"/runs?pageSize=1&status=success", nil, &page); err != nil {
			return "", err
		}
		ph.notOK[i] = b.cfg.warmup + b.cfg.samples - page.Total
	}
	if len(ph.samples[0]) == 0 || len(ph.samples[1]) == 0 {
		return "", errors.New("no dispatch measured")
	}
	return autovacuum, nil
}

// samplePhase samples both servers in blocks, alternating. With -isolate,
// the server not sampled is stopped (SIGSTOP) for its block, so neither
// measures the other's background work; after each resume the ticks it
// missed run first, before sampling.
func (b *bench) samplePhase(ctx context.Context, sides [2]*dispatchSide, ph *phase) error {
	n := b.cfg.warmup + b.cfg.samples
	for ph.attempts[0] < n || ph.attempts[1] < n {
		for k, side := range sides {
			if ph.attempts[k] >= n {
				continue
			}
			if b.cfg.isolate {
				_ = sides[1-k].srv.cmd.Process.Signal(syscall.SIGSTOP)
				_ = side.srv.cmd.Process.Signal(syscall.SIGCONT)
				if !sleep(ctx, 300*time.Millisecond) {
					return ctx.Err()
				}
			}
			c0, _ := procCPU(side.srv.pid())
			t0 := time.Now()
			for j := 0; j < b.cfg.block && ph.attempts[k] < n; j++ {
				ph.attempts[k]++
				s, err := b.dispatchOnce(ctx, side)
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					ph.errs[k]++
					fmt.Fprintf(os.Stderr, "  %s: %v\n", side.name, err)
					if ph.errs[k] > 10 {
						return fmt.Errorf("%s: too many failed dispatches, last: %w", side.name, err)
					}
					continue
				}
				if ph.attempts[k] > b.cfg.warmup {
					ph.samples[k] = append(ph.samples[k], s)
				}
			}
			c1, _ := procCPU(side.srv.pid())
			ph.cpu[k] += c1[0] - c0[0]
			ph.wall[k] += time.Since(t0)
		}
	}
	return nil
}

func countOver(ds []time.Duration, lim time.Duration) int {
	n := 0
	for _, d := range ds {
		if d > lim {
			n++
		}
	}
	return n
}

// dispatchSide starts a server with nAgents lightweight agents (pool=bench)
// and backlogRuns runs of 250 jobs nobody may take.
func (b *bench) dispatchSide(ctx context.Context, name string, nAgents, backlogRuns int) (*dispatchSide, error) {
	srv, dsn, err := b.startServer(ctx)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	b.onClose(func() { _ = db.Close() })
	side := &dispatchSide{name: name, srv: srv, db: db, events: make(chan receipt, 1024)}
	if backlogRuns > 0 {
		pl, err := srv.createPipeline(ctx, "backlog", backlogSpec)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		for i := 0; i < backlogRuns; i++ {
			if _, err := srv.trigger(ctx, pl); err != nil {
				return nil, fmt.Errorf("backlog: %w", err)
			}
		}
		fmt.Fprintf(os.Stderr, "  %s: %d runs of 250 queued jobs triggered in %s\n", name, backlogRuns, secs(time.Since(t0)))
	}
	if side.pl, err = srv.createPipeline(ctx, "sample", sampleSpec); err != nil {
		return nil, err
	}

	clients, err := b.connectAgents(ctx, srv, name, nAgents, map[string]string{"pool": "bench"})
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	b.onClose(func() { cancel(); wg.Wait() })
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); work(actx, c, side.events) }()
	}
	return side, nil
}

// dispatchOnce triggers the sample pipeline and waits for the agent's
// report of the claim (sent once the job is completed).
func (b *bench) dispatchOnce(ctx context.Context, side *dispatchSide) (dispatchSample, error) {
	var s dispatchSample
	for drained := false; !drained; { // leftovers of a failed sample
		select {
		case <-side.events:
		default:
			drained = true
		}
	}
	t0 := time.Now()
	runID, err := side.srv.trigger(ctx, side.pl)
	if err != nil {
		return s, err
	}
	limit := time.NewTimer(30 * time.Second)
	defer limit.Stop()
	var r receipt
	for r.runID != runID {
		select {
		case r = <-side.events:
		case <-limit.C:
			return s, fmt.Errorf("run %s: no agent claimed its job in 30 s", runID)
		case <-ctx.Done():
			return s, ctx.Err()
		}
	}
	if r.err != nil {
		return s, r.err
	}
	var queued, started int64
	if err := side.db.QueryRowContext(ctx, `SELECT queued_at, started_at FROM job_runs WHERE id = $1`, r.jobID).Scan(&queued, &started); err != nil {
		return s, fmt.Errorf("read the job's queue times: %w", err)
	}
	q, st := time.UnixMicro(queued), time.UnixMicro(started)
	s = dispatchSample{at: r.at, latency: r.at.Sub(q), claim: st.Sub(q), deliver: r.at.Sub(st), e2e: r.at.Sub(t0)}
	sleep(ctx, b.cfg.gap)
	return s, nil
}

// receipt is what a lightweight agent tells about a job it claimed.
type receipt struct {
	runID, jobID string
	at           time.Time // when Claim returned
	err          error     // of the acknowledgement or the completion
}

// work is a lightweight agent's loop: claim, note the time, acknowledge
// (the first lease renewal), complete with success, claim again.
func work(ctx context.Context, c *agentrpc.Client, events chan<- receipt) {
	zero := 0
	for ctx.Err() == nil {
		cl, err := c.Claim(ctx)
		at := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			select {
			case events <- receipt{err: fmt.Errorf("claim: %w", err)}:
			default:
			}
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		r := receipt{runID: cl.RunID, jobID: cl.JobRunID, at: at}
		if _, err := c.Heartbeat(ctx, cl); err != nil {
			r.err = fmt.Errorf("acknowledge: %w", err)
			c.Abandon(cl)
		} else {
			res := engine.JobResult{Status: runnel.JobSuccess}
			for _, st := range cl.Steps {
				res.Steps = append(res.Steps, engine.StepReport{Index: st.Index, Name: st.Name, Status: runnel.StepSuccess,
					ExitCode: &zero, Started: at, Ended: time.Now()})
			}
			if err := c.Complete(ctx, cl, res); err != nil {
				r.err = fmt.Errorf("complete: %w", err)
			}
		}
		select {
		case events <- r:
		case <-ctx.Done():
			return
		}
	}
}

// connectAgents registers n lightweight agents and opens their sessions
// (16 at a time); their connections are closed at cleanup.
func (b *bench) connectAgents(ctx context.Context, srv *server, name string, n int, labels map[string]string) ([]*agentrpc.Client, error) {
	reg, err := srv.registrationToken(ctx)
	if err != nil {
		return nil, err
	}
	dir := b.newDir("identities-" + name)
	return b.dialAgents(ctx, srv, dir, reg, n, labels)
}

func (b *bench) dialAgents(ctx context.Context, srv *server, dir, reg string, n int, labels map[string]string) ([]*agentrpc.Client, error) {
	sctx, cancel := context.WithCancel(context.Background()) // the sessions live until cleanup
	clients := make([]*agentrpc.Client, n)
	b.onClose(func() {
		cancel()
		for _, c := range clients {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	sem := make(chan struct{}, 16)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range clients {
		c, err := agentrpc.Dial(agentrpc.ClientOptions{
			Servers: []string{srv.grpcAddr}, RegistrationToken: reg,
			IdentityFile: filepath.Join(dir, fmt.Sprintf("agent-%d.json", i)),
			Info: &agentpb.AgentInfo{Name: fmt.Sprintf("bench-%d", i), Labels: labels, Capacity: 1,
				Version: "bench", Hostname: "bench", Platform: runtime.GOOS + "/" + runtime.GOARCH},
		})
		if err != nil {
			return nil, err
		}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			tctx, tcancel := context.WithTimeout(ctx, 60*time.Second)
			defer tcancel()
			start := make(chan error, 1)
			go func() { start <- c.Start(sctx) }()
			select {
			case err := <-start:
				if err != nil {
					errs <- err
				}
			case <-tctx.Done():
				errs <- fmt.Errorf("agent %d: no session after 60 s", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("connect agents: %w", err)
	}
	return clients, nil
}

// ---- 2. memory ----

func (b *bench) memory(ctx context.Context) ([]row, []row, error) {
	n := b.cfg.memAgents
	srv, dsn, err := b.startServer(ctx)
	if err != nil {
		return nil, nil, err
	}
	dataDir := srv.dataDir
	settled := func(p *proc) (int64, error) {
		if !sleep(ctx, b.cfg.settle) {
			return 0, ctx.Err()
		}
		return vmRSS(p.pid())
	}
	labels := map[string]string{"pool": "bench"}
	idleClients := func(clients []*agentrpc.Client) func() error {
		actx, cancel := context.WithCancel(ctx)
		events := make(chan receipt, len(clients))
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Add(1)
			go func() { defer wg.Done(); work(actx, c, events) }()
		}
		return func() error {
			cancel()
			wg.Wait()
			select {
			case r := <-events:
				return fmt.Errorf("an idle agent got something: %+v", r)
			default:
				return nil
			}
		}
	}

	// A: n agents register and connect for the first time.
	fmt.Fprintf(os.Stderr, "memory: server idle %s …\n", b.cfg.settle)
	idleA, err := settled(srv.proc)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "memory: %d agents register and connect, each with a Claim waiting …\n", n)
	reg, err := srv.registrationToken(ctx)
	if err != nil {
		return nil, nil, err
	}
	dir := b.newDir("identities-memory")
	sub := &bench{cfg: b.cfg} // its own cleanup: these clients are closed before the restart
	clients, err := sub.dialAgents(ctx, srv, dir, reg, n, labels)
	if err != nil {
		sub.cleanup()
		return nil, nil, err
	}
	stopA := idleClients(clients)
	connA, err := settled(srv.proc)
	errA := stopA()
	sub.cleanup()
	if err != nil {
		return nil, nil, err
	}
	if errA != nil {
		return nil, nil, errA
	}

	// B: a new server process on the same database; the n agents, registered
	// already, connect (as after a server restart).
	srv.stop()
	if srv, err = b.startServerOn(ctx, dsn, dataDir, "GODEBUG=gctrace=1", "GOTRACEBACK=all"); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "memory: server restarted, idle %s …\n", b.cfg.settle)
	idle, err := settled(srv.proc)
	if err != nil {
		return nil, nil, err
	}
	idleSplit := rssSplit(srv.pid())
	fmt.Fprintf(os.Stderr, "memory: the %d agents connect again, each with a Claim waiting …\n", n)
	sub = &bench{cfg: b.cfg}
	b.onClose(sub.cleanup)
	if clients, err = sub.dialAgents(ctx, srv, dir, "", n, labels); err != nil {
		return nil, nil, err
	}
	stopB := idleClients(clients)
	sleep(ctx, 500*time.Millisecond) // the Claims reach the server
	connectedNow, err := vmRSS(srv.pid())
	if err != nil {
		return nil, nil, err
	}
	connected, err := settled(srv.proc)
	if err != nil {
		return nil, nil, err
	}
	threads, connectedSplit := procThreads(srv.pid()), rssSplit(srv.pid())
	// One real `runnel agent`, idle.
	fmt.Fprintf(os.Stderr, "memory: one `runnel agent` process, idle %s …\n", b.cfg.settle)
	ag, err := b.startAgent(ctx, srv, reg, "idle", 1)
	if err != nil {
		return nil, nil, err
	}
	agentRSS, err := settled(ag)
	if err != nil {
		return nil, nil, err
	}
	agentHWM, agentSplit := vmHWM(ag.pid()), rssSplit(ag.pid())
	ag.stop()

	// Diagnostics (after the readings: they disturb the heap). What the
	// garbage collector finds live (heap, scannable stacks) with the agents
	// connected and once they left; then, connected again, the server's
	// goroutines (SIGQUIT dump, which ends the process).
	fmt.Fprintln(os.Stderr, "memory: live heap with the agents connected, and after they disconnect (GC trace); goroutine dump …")
	gcConn, err := srv.probeGC(ctx)
	if err != nil {
		return nil, nil, err
	}
	errB := stopB()
	sub.cleanup()
	if errB != nil {
		return nil, nil, errB
	}
	sleep(ctx, time.Second)
	gcGone, err := srv.probeGC(ctx)
	if err != nil {
		return nil, nil, err
	}
	sub = &bench{cfg: b.cfg}
	b.onClose(sub.cleanup)
	if clients, err = sub.dialAgents(ctx, srv, dir, "", n, labels); err != nil {
		return nil, nil, err
	}
	stopC := idleClients(clients)
	b.onClose(func() { _ = stopC() })
	sleep(ctx, time.Second)
	goroutines, err := srv.goroutines(ctx, n)
	if err != nil {
		return nil, nil, err
	}

	per := func(a, b int64) string { return fmt.Sprintf("%.1f KB", float64(a-b)/float64(n)/1e3) }
	rows := []row{
		{fmt.Sprintf("server RSS per connected idle agent: %d registered agents connect to a fresh server process, after %s ((connected − idle) / %d)", n, b.cfg.settle, n),
			bold(per(connected, idle)), "< 50 KB"},
		{fmt.Sprintf("same, the %d agents registering first (registration and connection in one server process)", n), bold(per(connA, idleA)), "< 50 KB"},
		{"`runnel agent` process RSS, connected, idle " + b.cfg.settle.String(), bold(mb(agentRSS)), "< 20 MB"},
	}
	notes := []row{
		{"memory: server VmRSS idle / connected, right away / after settle",
			fmt.Sprintf("%s / %s / %s (%s per agent right away)", mb(idle), mb(connectedNow), mb(connected), per(connectedNow, idle)), ""},
		{"memory: first registration: server VmRSS idle / registered and connected, after settle", mb(idleA) + " / " + mb(connA), ""},
		{"memory: server RSS split idle → connected", idleSplit + " → " + connectedSplit, ""},
		{"memory: server threads with the agents connected", strconv.Itoa(threads), ""},
		{"memory: server goroutines with the agents connected (SIGQUIT dump), by creator", goroutines, ""},
		{"memory: live heap + scannable stack after a GC (gctrace, whole MiB), agents connected → disconnected",
			fmt.Sprintf("%d + %d MiB → %d + %d MiB: %.1f KB per agent (± %.1f KB from the MB rounding)", gcConn.live, gcConn.stacks, gcGone.live, gcGone.stacks,
				float64(gcConn.live+gcConn.stacks-gcGone.live-gcGone.stacks)*(1<<20)/float64(n)/1e3, 2*(1<<20)/float64(n)/1e3), ""},
		{"memory: `runnel agent` RSS split; VmHWM (peak)", agentSplit + "; " + mb(agentHWM), ""},
	}
	return rows, notes, nil
}

type gcStat struct{ live, stacks int } // MB (2^20 bytes, rounded down), as gctrace prints them

var gcLineRe = regexp.MustCompile(`\d+->\d+->(\d+) MB, \d+ MB goal, (\d+) MB stacks`)

// probeGC makes the server allocate (agent list requests) until its runtime
// has completed two more collections, and returns what the last one found
// live. The server must run with GODEBUG=gctrace=1.
func (s *server) probeGC(ctx context.Context) (gcStat, error) {
	s.gcMu.Lock()
	n0 := s.gcN
	s.gcMu.Unlock()
	end := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		s.gcMu.Lock()
		n, last := s.gcN, s.gcLast
		s.gcMu.Unlock()
		if n >= n0+2 {
			m := gcLineRe.FindStringSubmatch(last)
			if m == nil {
				return gcStat{}, fmt.Errorf("cannot parse the GC trace line %q", last)
			}
			live, _ := strconv.Atoi(m[1])
			stacks, _ := strconv.Atoi(m[2])
			return gcStat{live, stacks}, nil
		}
		if time.Now().After(end) {
			return gcStat{}, fmt.Errorf("no garbage collection in the server after %d requests", i)
		}
		if err := s.do(ctx, http.MethodGet, "/api/v1/agents", nil, nil); err != nil {
			return gcStat{}, err
		}
	}
}

// goroutines ends the server with SIGQUIT (GOTRACEBACK=all: every
// goroutine is dumped) and counts its goroutines by the function that created
// them; groups of at least n/2 are shown, per agent.
func (s *server) goroutines(ctx context.Context, n int) (string, error) {
	s.gcMu.Lock()
	s.dumping = true
	s.gcMu.Unlock()
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.exited:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(30 * time.Second):
		return "", errors.New("the server did not exit on SIGQUIT")
	}
	s.gcMu.Lock()
	lines := s.dumpFrom
	s.gcMu.Unlock()
	groups := map[string]int{}
	total := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "goroutine ") && strings.HasSuffix(l, ":") {
			total++
			creator := "(no creator)"
			for _, m := range lines[i+1:] {
				if m == "" || strings.HasPrefix(m, "goroutine ") {
					break
				}
				if c, ok := strings.CutPrefix(m, "created by "); ok {
					creator, _, _ = strings.Cut(c, " in goroutine")
				}
			}
			groups[creator]++
		}
	}
	if total == 0 {
		return "", errors.New("no goroutine in the SIGQUIT dump")
	}
	keys := make([]string, 0, len(groups))
	perAgent := 0
	for k, c := range groups {
		if c >= n/2 {
			keys = append(keys, k)
			perAgent += c
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return groups[b] - groups[a] })
	var parts []string
	for _, k := range keys {
		name := k
		if i := strings.LastIndex(name, "/"); i >= 0 {
			name = name[i+1:]
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, groups[k]))
	}
	return fmt.Sprintf("%d in all, %d in groups of ≥ %d (%.1f per agent): %s", total, perAgent, n/2, float64(perAgent)/float64(n), strings.Join(parts, ", ")), nil
}

// ---- 3. throughput with real agents ----

type tpResult struct {
	capacity                int
	triggered, completed    int
	failedRuns, triggerErrs int
	elapsed                 time.Duration
	rate, drainRate         float64
	endedWhileTriggering    int
	rtt50, rtt99            time.Duration
	// CPU per completed run: the server, the agents (their own threads and
	// the step processes they waited for), PostgreSQL, this program, kernel
	// interrupts (loopback networking), the rest; the machine's busy and
	// stolen (by the hypervisor) shares over the test.
	serverCPU, agentCPU, stepCPU, clientCPU, pgCPU, pgOtherCPU, irqCPU, otherCPU time.Duration
	busy, steal                                                                  float64
	serverRSS, agentRSS                                                          int64
}

func (b *bench) throughput(ctx context.Context) ([]row, []row, error) {
	var results []tpResult
	for _, capacity := range b.cfg.capacities {
		fmt.Fprintf(os.Stderr, "throughput, %d agents × capacity %d: %d clients for %s …\n", b.cfg.realAgents, capacity, b.cfg.clients, b.cfg.duration)
		r, err := b.throughputOnce(ctx, capacity)
		b.cleanup()
		if err != nil {
			return nil, nil, fmt.Errorf("capacity %d: %w", capacity, err)
		}
		fmt.Fprintf(os.Stderr, "  %.1f runs/s (%d runs, %d failed, %d trigger errors)\n", r.rate, r.completed, r.failedRuns, r.triggerErrs)
		results = append(results, r)
	}
	var rows, notes []row
	for _, r := range results {
		errs := r.failedRuns + r.triggerErrs + (r.triggered - r.completed)
		rows = append(rows, row{fmt.Sprintf("throughput, 1-step `true` runs, %d `runnel agent` × capacity %d, %d clients × %s", b.cfg.realAgents, r.capacity, b.cfg.clients, b.cfg.duration),
			fmt.Sprintf("%s; errors: %d", bold(fmt.Sprintf("%.1f runs/s", r.rate)), errs), "≥ 100 runs/s, no error"})
		notes = append(notes, row{fmt.Sprintf("throughput, capacity %d", r.capacity),
			fmt.Sprintf("%d triggered (%.0f/s, trigger POST p50 %s, p99 %s), %d completed in %s (%d while triggering, the rest at %.0f runs/s after), %d failed runs, %d trigger errors; CPU per run: server %s, agents %s, their steps %s, PostgreSQL backends of the database %s, other PostgreSQL processes %s, bench %s, any other process %s (interrupts, within those, %s); machine busy %.0f %%, stolen %.0f %%; RSS after: server %s, largest agent %s",
				r.triggered, float64(r.triggered)/b.cfg.duration.Seconds(), ms(r.rtt50), ms(r.rtt99), r.completed, secs(r.elapsed), r.endedWhileTriggering, r.drainRate,
				r.failedRuns, r.triggerErrs, ms(r.serverCPU), ms(r.agentCPU), ms(r.stepCPU), ms(r.pgCPU), ms(r.pgOtherCPU), ms(r.clientCPU), ms(r.otherCPU), ms(r.irqCPU), 100*r.busy, 100*r.steal, mb(r.serverRSS), mb(r.agentRSS)), ""})
	}
	return rows, notes, nil
}

func (b *bench) throughputOnce(ctx context.Context, capacity int) (tpResult, error) {
	res := tpResult{capacity: capacity}
	srv, dsn, err := b.startServer(ctx)
	if err != nil {
		return res, err
	}
	reg, err := srv.registrationToken(ctx)
	if err != nil {
		return res, err
	}
	agents := make([]*proc, b.cfg.realAgents)
	for i := range agents {
		if agents[i], err = b.startAgent(ctx, srv, reg, fmt.Sprintf("tp-%d", i), capacity); err != nil {
			return res, err
		}
	}
	// Warm-up on a pipeline of its own.
	wp, err := srv.createPipeline(ctx, "warmup", oneStep)
	if err != nil {
		return res, err
	}
	for i := 0; i < 20; i++ {
		id, err := srv.trigger(ctx, wp)
		if err != nil {
			return res, err
		}
		if err := srv.waitFinal(ctx, id, 30*time.Second); err != nil {
			return res, err
		}
	}
	if b.cfg.stats != "none" {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return res, err
		}
		_, err = db.ExecContext(ctx, "ANALYZE")
		_ = db.Close()
		if err != nil {
			return res, fmt.Errorf("analyze: %w", err)
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
	cpuOf := func() (srvCPU, agCPU, stepCPU time.Duration) {
		c, _ := procCPU(srv.pid())
		srvCPU = c[0]
		for _, a := range agents {
			c, _ := procCPU(a.pid())
			agCPU, stepCPU = agCPU+c[0], stepCPU+c[1]
		}
		return
	}
	s0, a0, st0 := cpuOf()
	dbName := strings.TrimPrefix(mustURL(dsn).Path, "/")
	self0 := selfCPU()
	pg0, pgOther0 := postgresCPU(dbName)
	sys0 := systemCPU()
	start := time.Now()
	deadline := start.Add(b.cfg.duration)
	for _, pl := range pls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil && budget.Add(-1) >= 0 {
				var tr struct {
					RunID string `json:"runId"`
				}
				t0 := time.Now()
				err := srv.doWith(ctx, client, http.MethodPost, "/api/v1/pipelines/"+pl+"/trigger", []byte(`{}`), &tr)
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
	// Wait until no run of the load pipelines is pending, running or paused.
	waitUntil := time.Now().Add(5 * time.Minute)
	for {
		active := 0
		for _, pl := range pls {
			for _, st := range []string{"pending", "running", "paused"} {
				var page struct {
					Total int `json:"total"`
				}
				if err := srv.do(ctx, http.MethodGet, "/api/v1/pipelines/"+pl+"/runs?pageSize=1&status="+st, nil, &page); err != nil {
					return res, err
				}
				active += page.Total
			}
		}
		if active == 0 {
			break
		}
		if time.Now().After(waitUntil) {
			return res, fmt.Errorf("%d runs still active 5 minutes after the last trigger", active)
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return res, ctx.Err()
		}
	}
	sys1 := systemCPU()
	s1, a1, st1 := cpuOf()
	self1 := selfCPU()
	pg1, pgOther1 := postgresCPU(dbName)
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
			if err := srv.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/pipelines/%s/runs?pageSize=100&page=%d", pl, page), nil, &lst); err != nil {
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
						if t.After(last) {
							last = t
						}
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
	n := time.Duration(max(res.completed, 1))
	res.serverCPU, res.agentCPU, res.stepCPU, res.clientCPU = (s1-s0)/n, (a1-a0)/n, (st1-st0)/n, (self1-self0)/n
	res.pgCPU, res.pgOtherCPU = (pg1-pg0)/n, (pgOther1-pgOther0)/n
	if total := sys1.total - sys0.total; total > 0 {
		res.busy, res.steal = (sys1.busy-sys0.busy)/total, (sys1.steal-sys0.steal)/total
		res.irqCPU = time.Duration(sys1.irq-sys0.irq) * 10 * time.Millisecond / n // USER_HZ ticks
		all := time.Duration(sys1.busy-sys0.busy) * 10 * time.Millisecond / n
		// Interrupt time is also in the CPU time of the processes it
		// interrupted: it is not subtracted again.
		res.otherCPU = all - res.serverCPU - res.agentCPU - res.stepCPU - res.clientCPU - res.pgCPU - res.pgOtherCPU
	}
	res.serverRSS, _ = vmRSS(srv.pid())
	for _, a := range agents {
		r, _ := vmRSS(a.pid())
		res.agentRSS = max(res.agentRSS, r)
	}
	return res, nil
}

// ---- processes ----

// proc is a runnel process started by the benchmark.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	ready  chan struct{} // closed when a stderr line matches the ready pattern
	tail   *tail
	once   sync.Once

	// The runtime's GC trace lines (GODEBUG=gctrace=1): how many, the last;
	// and every line after dumpFrom (a goroutine dump).
	gcMu     sync.Mutex
	gcN      int
	gcLast   string
	dumping  bool
	dumpFrom []string
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM, then SIGKILL after 20 s.
func (p *proc) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process handles SIGTERM once continued
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// start runs the binary; it is stopped at cleanup.
func (b *bench) start(readyRe *regexp.Regexp, env []string, args ...string) (*proc, error) {
	cmd := exec.Command(b.cfg.bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{}), ready: make(chan struct{}), tail: &tail{}}
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		matched := readyRe == nil
		for sc.Scan() {
			p.gcMu.Lock()
			if p.dumping {
				p.dumpFrom = append(p.dumpFrom, sc.Text())
			}
			p.gcMu.Unlock()
			if l := sc.Text(); strings.HasPrefix(l, "gc ") {
				p.gcMu.Lock()
				p.gcN, p.gcLast = p.gcN+1, l
				p.gcMu.Unlock()
				continue
			}
			p.tail.add(sc.Text())
			if !matched && readyRe.MatchString(sc.Text()) {
				matched = true
				close(p.ready)
			}
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

type server struct {
	*proc
	base     string // http://127.0.0.1:PORT
	grpcAddr string
	dataDir  string
	client   *http.Client
}

// startServer creates a database and starts `runnel server` on it, on free
// loopback ports (the "ready" line is not printed at --log-level error), and
// waits until GET /readyz answers 200 (the gRPC port listens by then).
func (b *bench) startServer(ctx context.Context) (*server, string, error) {
	dsn, err := b.createDatabase(ctx)
	if err != nil {
		return nil, "", err
	}
	s, err := b.startServerOn(ctx, dsn, b.newDir("data"))
	return s, dsn, err
}

func (b *bench) startServerOn(ctx context.Context, dsn, dataDir string, env ...string) (*server, error) {
	for attempt := 1; ; attempt++ {
		s, err := b.startServerOnce(ctx, dsn, dataDir, env)
		// A port found free may be taken before the server binds it.
		if err != nil && attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		return s, err
	}
}

func (b *bench) startServerOnce(ctx context.Context, dsn, dataDir string, env []string) (*server, error) {
	hp, err := freePort()
	if err != nil {
		return nil, err
	}
	gp, err := freePort()
	if err != nil {
		return nil, err
	}
	addr, gaddr := fmt.Sprintf("127.0.0.1:%d", hp), fmt.Sprintf("127.0.0.1:%d", gp)
	p, err := b.start(nil, env, "server", "--addr", addr, "--grpc-addr", gaddr, "--data-dir", dataDir, "--admin-token", token,
		"--embedded-agent-capacity", "0", "--database", dsn, "--log-level", "error")
	if err != nil {
		return nil, err
	}
	s := &server{proc: p, base: "http://" + addr, grpcAddr: gaddr, dataDir: dataDir, client: newClient(16)}
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
		case <-p.exited:
			return nil, fmt.Errorf("the server exited before it was ready:\n%s", p.tail)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(end) {
			return nil, fmt.Errorf("the server was not ready after 30 s:\n%s", p.tail)
		}
	}
}

var connectedRe = regexp.MustCompile(`msg=connected `)

// startAgent starts `runnel agent` and waits for its session.
func (b *bench) startAgent(ctx context.Context, srv *server, reg, name string, capacity int) (*proc, error) {
	p, err := b.start(connectedRe, nil, "agent", "--server", srv.grpcAddr, "--token", reg, "--name", name, "--labels", "pool=bench",
		"--capacity", strconv.Itoa(capacity), "--workdir", b.newDir("agent"), "--log-level", "info")
	if err != nil {
		return nil, err
	}
	select {
	case <-p.ready:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("agent %s exited before it connected:\n%s", name, p.tail)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("agent %s not connected after 30 s:\n%s", name, p.tail)
	}
}

// createDatabase creates runnel_bench_<random> through psql; it is dropped
// at cleanup, after the processes using it stopped.
func (b *bench) createDatabase(ctx context.Context) (string, error) {
	u, err := url.Parse(b.cfg.postgres)
	if err != nil {
		return "", fmt.Errorf("-postgres: %v", err)
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return "", fmt.Errorf("-postgres: %s is not on loopback", h)
	}
	q := u.Query()
	if q.Get("sslmode") == "" {
		q.Set("sslmode", "disable")
		u.RawQuery = q.Encode()
	}
	admin := *u
	if admin.Path == "" || admin.Path == "/" {
		admin.Path = "/postgres"
	}
	rb := make([]byte, 6)
	_, _ = rand.Read(rb)
	name := "runnel_bench_" + hex.EncodeToString(rb)
	psql := func(ctx context.Context, sql string) error {
		out, err := exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin.String(), "-c", sql).CombinedOutput()
		if err != nil {
			return fmt.Errorf("psql %q: %v\n%s", sql, err, out)
		}
		return nil
	}
	if err := psql(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	b.mu.Lock()
	b.drops = append(b.drops, func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := psql(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			fmt.Fprintln(os.Stderr, "bench: drop database:", err)
		}
	})
	b.mu.Unlock()
	db := *u
	db.Path = "/" + name
	if b.cfg.dsnParams != "" {
		db.RawQuery += "&" + b.cfg.dsnParams
	}
	return db.String(), nil
}

// ---- the HTTP API ----

func (s *server) do(ctx context.Context, method, path string, body []byte, out any) error {
	return s.doWith(ctx, s.client, method, path, body, out)
}

// doWith sends a request and decodes the envelope's detail into out; a
// non-zero code is an error.
func (s *server) doWith(ctx context.Context, c *http.Client, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
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

const (
	oneStep    = `{"namespace":"bench.one","version":"v1","jobs":[{"name":"j","steps":[{"name":"s","run":"true"}]}]}`
	sampleSpec = `{"namespace":"bench.sample","version":"v1","jobs":[{"name":"j","runsOn":{"pool":"bench"},"steps":[{"name":"s","run":"true"}]}]}`
	// backlogSpec: 25 × 10 = 250 jobs (the matrix cap is 256) for labels no
	// agent has.
	backlogSpec = `{"namespace":"bench.backlog","version":"v1","jobs":[{"name":"wait","runsOn":{"pool":"nowhere"},
	 "matrix":{"a":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24],"b":[0,1,2,3,4,5,6,7,8,9]},
	 "steps":[{"name":"s","run":"true"}]}]}`
)

func (s *server) createPipeline(ctx context.Context, name, spec string) (string, error) {
	body := fmt.Sprintf(`{"projectId":"bench","name":%q,"spec":%s}`, name, spec)
	var p struct {
		PipelineID string `json:"pipelineId"`
	}
	if err := s.do(ctx, http.MethodPost, "/api/v1/pipelines", []byte(body), &p); err != nil {
		return "", err
	}
	return p.PipelineID, nil
}

func (s *server) trigger(ctx context.Context, pipelineID string) (string, error) {
	var tr struct {
		RunID string `json:"runId"`
	}
	if err := s.do(ctx, http.MethodPost, "/api/v1/pipelines/"+pipelineID+"/trigger", []byte(`{}`), &tr); err != nil {
		return "", err
	}
	return tr.RunID, nil
}

func (s *server) registrationToken(ctx context.Context) (string, error) {
	var t struct {
		Token string `json:"token"`
	}
	if err := s.do(ctx, http.MethodPost, "/api/v1/registration-tokens", []byte(`{"name":"bench"}`), &t); err != nil {
		return "", err
	}
	if t.Token == "" {
		return "", errors.New("no registration token in the answer")
	}
	return t.Token, nil
}

// waitFinal polls a run until it ended successfully.
func (s *server) waitFinal(ctx context.Context, runID string, limit time.Duration) error {
	end := time.Now().Add(limit)
	for {
		var d struct {
			Status string `json:"status"`
		}
		if err := s.do(ctx, http.MethodGet, "/api/v1/pipelines/runs/"+runID, nil, &d); err != nil {
			return err
		}
		switch d.Status {
		case "success":
			return nil
		case "failed", "cancelled", "partial":
			return fmt.Errorf("run %s ended %s", runID, d.Status)
		}
		if time.Now().After(end) {
			return fmt.Errorf("run %s still %s after %s", runID, d.Status, limit)
		}
		if !sleep(ctx, 5*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func newClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
}

// tail keeps the last lines of a process's stderr for error messages.
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

// procStatus reads a "Key: value" field of /proc/PID/status.
func procStatus(pid int, key string) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

// vmRSS reads VmRSS of a process, in bytes.
func vmRSS(pid int) (int64, error) { return kbField(pid, "VmRSS") }

func vmHWM(pid int) int64 { n, _ := kbField(pid, "VmHWM"); return n }

func kbField(pid int, key string) (int64, error) {
	v, err := procStatus(pid, key)
	if err != nil {
		return 0, err
	}
	kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	return kb * 1024, err
}

// rssSplit tells the anonymous (heap, stacks) and file-backed (the mapped
// binary) parts of a process's RSS.
func rssSplit(pid int) string {
	a, _ := kbField(pid, "RssAnon")
	f, _ := kbField(pid, "RssFile")
	return "anon " + mb(a) + ", file " + mb(f)
}

func procThreads(pid int) int {
	v, _ := procStatus(pid, "Threads")
	n, _ := strconv.Atoi(v)
	return n
}

// procCPU is a process's CPU time (user + system): its own, and that of the
// children it has waited for, in clock ticks of 10 ms (USER_HZ 100).
func procCPU(pid int) ([2]time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return [2]time.Duration{}, err
	}
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

// postgresCPU is the CPU time of the PostgreSQL processes: the backends
// serving database db (their command line names it), and the others
// (background writers, other databases) with the children they waited for
// (so backends that ended still count, through the postmaster).
func postgresCPU(db string) (own, others time.Duration) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err != nil || strings.TrimSpace(string(c)) != "postgres" {
			continue
		}
		t, err := procCPU(pid)
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if db != "" && strings.Contains(string(cmdline), " "+db+" ") {
			own += t[0] + t[1]
		} else {
			others += t[0] + t[1]
		}
	}
	return own, others
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		return &url.URL{}
	}
	return u
}

// sysCPU is /proc/stat's first line, in ticks: time spent running (user,
// system, interrupts), stolen by the hypervisor, and the total.
type sysCPU struct{ busy, steal, irq, total float64 }

func systemCPU() sysCPU {
	var c sysCPU
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c
	}
	f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	for i, s := range f[1:] {
		v, _ := strconv.ParseFloat(s, 64)
		if i >= 8 { // guest times are already in user and nice
			break
		}
		c.total += v
		switch i {
		case 3, 4: // idle, iowait
		case 5, 6: // irq, softirq
			c.irq += v
			c.busy += v
		case 7:
			c.steal += v
		default:
			c.busy += v
		}
	}
	return c
}

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

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func bold(s string) string { return "**" + s + "**" }

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
