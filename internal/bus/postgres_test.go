package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/testpg"
)

// testLogger writes the bus's log lines to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func openBus(t *testing.T, dsn string) *Postgres {
	t.Helper()
	return openBusIdle(t, dsn, idleCheck)
}

func openBusIdle(t *testing.T, dsn string, idle time.Duration) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := newPostgres(ctx, dsn, testLogger(t), idle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// recv waits for the next message on ch.
func recv(t *testing.T, ch <-chan string, what string) string {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		return m
	case <-time.After(3 * time.Second):
		t.Fatalf("%s: nothing received in 3s", what)
	}
	return ""
}

func expect(t *testing.T, ch <-chan string, want, what string) {
	t.Helper()
	if got := recv(t, ch, what); got != want {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func publish(t *testing.T, b Bus, topic, payload string) {
	t.Helper()
	if err := b.Publish(context.Background(), topic, payload); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresTwoReplicas: a message published on A reaches subscribers on
// A and on B exactly once each; A ignores its own echo.
func TestPostgresTwoReplicas(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	a, b := openBus(t, dsn), openBus(t, dsn)
	sa, _ := a.Subscribe("queue", 10)
	sb, _ := b.Subscribe("queue", 10)
	otherB, _ := b.Subscribe("run.r1.cancel", 10)

	publish(t, a, "queue", "m1")
	// A's subscriber has it when Publish returns, without a round trip.
	if got := drain(sa); len(got) != 1 || got[0] != "m1" {
		t.Fatalf("A's subscriber right after Publish: %q, want [m1]", got)
	}
	expect(t, sb, "m1", "B, message from A")

	// NOTIFYs reach each listener in commit order, so if A handed its own
	// echo of m1 to its subscriber, that would come before m2 from B.
	publish(t, b, "queue", "m2")
	expect(t, sa, "m2", "A, message from B after its own echo")
	expect(t, sb, "m2", "B, its own message")
	// Likewise a second copy of m1 or of m2 at B would come before m3.
	publish(t, a, "queue", "m3")
	expect(t, sa, "m3", "A, its own message")
	expect(t, sb, "m3", "B, second message from A")

	// A payload of the maximum size, with separators in it, on a topic of
	// the maximum length, fits in a NOTIFY and arrives intact.
	long := strings.Repeat("t", MaxTopic)
	big := "a:b:" + strings.Repeat("é", (MaxPayload-4)/2)
	sl, _ := b.Subscribe(long, 1)
	publish(t, a, long, big)
	expect(t, sl, big, "B, maximum-size message")

	if got := drain(otherB); len(got) != 0 {
		t.Errorf("B's subscriber of another topic got %q", got)
	}
	waitStats(t, "A", a, Stats{Published: 3, Received: 1, Delivered: 3})
	waitStats(t, "B", b, Stats{Published: 1, Received: 3, Delivered: 4})
}

// waitStats waits for b's counters to equal want. (A subscriber may see a
// message a moment before the listener goroutine counts it as delivered.)
func waitStats(t *testing.T, name string, b *Postgres, want Stats) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		got := b.Stats()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s stats = %+v, want %+v", name, got, want)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPostgresLatency is not parallel, so that it measures the bus rather
// than the other tests.
func TestPostgresLatency(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	a, b := openBus(t, dsn), openBus(t, dsn)
	sb, _ := b.Subscribe("queue", 1)

	const n = 50
	lat := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		publish(t, a, "queue", fmt.Sprint(i))
		expect(t, sb, fmt.Sprint(i), "B")
		lat[i] = time.Since(start)
	}
	slices.Sort(lat)
	t.Logf("cross-replica latency (Publish on A → receive on B) over %d messages: min %v, median %v, p90 %v, max %v",
		n, lat[0], lat[n/2], lat[n*9/10], lat[n-1])
	if lat[n-1] >= time.Second {
		t.Errorf("max latency %v, want < 1s", lat[n-1])
	}
}

func TestPostgresOrder(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	a, b := openBus(t, dsn), openBus(t, dsn)
	const n = 1000
	sb, _ := b.Subscribe("queue", n)

	start := time.Now()
	for i := range n {
		publish(t, a, "queue", fmt.Sprint(i))
	}
	for i := range n {
		if got := recv(t, sb, "B"); got != fmt.Sprint(i) {
			t.Fatalf("message %d at B is %q: out of order or lost", i, got)
		}
	}
	t.Logf("%d messages published and received in order in %v", n, time.Since(start))
	if s := b.Stats(); s.Received != n || s.Dropped != 0 {
		t.Errorf("B stats = %+v", s)
	}
}

// terminate ends a backend from the test's admin connection.
func terminate(t *testing.T, srv *testpg.Server, pid uint32) {
	t.Helper()
	var ok bool
	if err := srv.Admin.QueryRow("SELECT pg_terminate_backend($1)", int32(pid)).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
}

func TestPostgresReconnect(t *testing.T) {
	t.Parallel()
	srv := testpg.Connect(t)
	db := srv.CreateDB(t, "")
	dsn := srv.DSN(db)
	a, b := openBus(t, dsn), openBus(t, dsn)
	sa, _ := a.Subscribe("queue", 10)
	sb1, _ := b.Subscribe("queue", 10)
	sb2, _ := b.Subscribe("run.r1.cancel", 10)

	// Plain loss: B reconnects after the first backoff.
	pid := b.listenerPID()
	start := time.Now()
	terminate(t, srv, pid)
	expect(t, sb1, "", "B, resync after reconnect")
	expect(t, sb2, "", "B, resync after reconnect, second topic")
	t.Logf("resync %v after the listener was terminated", time.Since(start))
	if b.listenerPID() == pid {
		t.Error("listener pid unchanged after reconnect")
	}
	publish(t, a, "queue", "after")
	expect(t, sb1, "after", "B, message after reconnect")
	expect(t, sa, "after", "A")
	if got := drain(sa); len(got) != 0 {
		t.Errorf("A, whose connection was not lost, got %q", got)
	}

	// Loss while the database refuses connections: B retries with backoff
	// (100ms, 200ms, 400ms, …) and gets back when it may.
	if _, err := srv.Admin.Exec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	terminate(t, srv, b.listenerPID())
	time.Sleep(150 * time.Millisecond) // the attempt at ~100ms fails
	publish(t, a, "queue", "missed")   // B is not listening: lost for B
	if _, err := srv.Admin.Exec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS true"); err != nil {
		t.Fatal(err)
	}
	expect(t, sb1, "", "B, resync after the second reconnect")
	publish(t, a, "queue", "after2")
	expect(t, sb1, "after2", "B, message after the second reconnect")
	if s := b.Stats(); s.Reconnects != 2 || s.Received != 2 {
		t.Errorf("B stats = %+v, want Reconnects 2, Received 2", s)
	}
}

// TestPostgresDatabasesApart: NOTIFY is per database, so buses on two
// databases of one server do not hear each other.
func TestPostgresDatabasesApart(t *testing.T) {
	t.Parallel()
	srv := testpg.Connect(t)
	dsn1, dsn2 := srv.DSN(srv.CreateDB(t, "")), srv.DSN(srv.CreateDB(t, ""))
	x1, x2 := openBus(t, dsn1), openBus(t, dsn1)
	y1, y2 := openBus(t, dsn2), openBus(t, dsn2)
	sx, _ := x2.Subscribe("queue", 10)
	sy, _ := y2.Subscribe("queue", 10)

	publish(t, x1, "queue", "db1")
	expect(t, sx, "db1", "same database")
	publish(t, y1, "queue", "db2")
	expect(t, sy, "db2", "other database: its own message first")
	publish(t, x1, "queue", "db1-again")
	expect(t, sx, "db1-again", "same database, nothing from the other in between")
	time.Sleep(20 * time.Millisecond)
	if got := drain(sy); len(got) != 0 {
		t.Errorf("bus on the other database got %q", got)
	}
}

func TestPostgresValidationAndClose(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	a, b := openBus(t, dsn), openBus(t, dsn)
	sa, _ := a.Subscribe("queue", 10)
	sb, _ := b.Subscribe("queue", 10)
	checkRejects(t, a, sa)
	publish(t, a, "queue", "valid")
	expect(t, sb, "valid", "B, the first message that A accepted")
	if s := a.Stats(); s.Published != 1 {
		t.Errorf("A stats = %+v, want Published 1", s)
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := drain(sa); len(got) != 1 || !isClosed(sa) {
		t.Errorf("subscription held %q and was closed: %v; want [valid], true", got, isClosed(sa))
	}
	if err := a.Publish(context.Background(), "queue", "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}

func TestNewPostgresFails(t *testing.T) {
	t.Parallel()
	srv := testpg.Connect(t) // skips without PostgreSQL, like the others
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, dsn := range []string{
		"postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2", // nothing listens
		srv.DSN("runnel_test_does_not_exist"),
		"::not a dsn::",
	} {
		b, err := NewPostgres(ctx, dsn, nil)
		if err == nil {
			b.Close()
			t.Errorf("NewPostgres(%q) succeeded", dsn)
			continue
		}
		if !strings.HasPrefix(err.Error(), "bus: ") {
			t.Errorf("NewPostgres(%q): %v, want a bus error", dsn, err)
		}
		t.Logf("%v", err)
	}
}

// checkNoBusGoroutines fails unless the goroutines running this package's
// code (other than the tests') are gone. It waits a little: Close returns
// once the listener has signalled its exit, which it does just before
// returning.
func checkNoBusGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var found []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "internal/bus.(*Postgres)") {
				found = append(found, g)
			}
		}
		if len(found) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bus goroutines 1s after Close:\n%s", strings.Join(found, "\n\n"))
		}
		time.Sleep(time.Millisecond)
	}
}

// waitGoroutines waits for the number of goroutines to fall to n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the bus:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPostgresCloseLeaksNothing is not parallel: it counts goroutines.
// (Parallel tests only start once the sequential ones are done.)
func TestPostgresCloseLeaksNothing(t *testing.T) {
	srv := testpg.Connect(t)
	db := srv.CreateDB(t, "")
	dsn := srv.DSN(db)

	// Connected and idle.
	before := runtime.NumGoroutine()
	b, err := NewPostgres(context.Background(), dsn, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := b.Subscribe("queue", 1)
	publish(t, b, "queue", "x")
	b.Close()
	select {
	case <-b.done:
	default:
		t.Fatal("Close returned before the listener exited")
	}
	if got := drain(sub); len(got) != 1 || !isClosed(sub) {
		t.Fatalf("subscription held %q and was closed: %v; want [x], true", got, isClosed(sub))
	}
	checkNoBusGoroutines(t)
	waitGoroutines(t, before)

	// Disconnected, waiting to reconnect: Close interrupts the backoff.
	b, err = NewPostgres(context.Background(), dsn, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Admin.Exec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	terminate(t, srv, b.listenerPID())
	time.Sleep(150 * time.Millisecond) // first attempt failed, waiting 200ms
	start := time.Now()
	b.Close()
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Close took %v while the listener was reconnecting", d)
	}
	checkNoBusGoroutines(t)
	if _, err := srv.Admin.Exec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS true"); err != nil {
		t.Fatal(err)
	}
}

func TestNextBackoff(t *testing.T) {
	var got []time.Duration
	for d := backoffMin; len(got) < 9; d = nextBackoff(d) {
		got = append(got, d)
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(got, want) {
		t.Errorf("backoff sequence %v, want %v", got, want)
	}
}

// TestPostgresIdleCheck: the listener's periodic check of an idle
// connection (a timed-out wait, then a ping) leaves the connection usable.
func TestPostgresIdleCheck(t *testing.T) {
	t.Parallel()
	dsn := testpg.NewDatabase(t)
	a, b := openBus(t, dsn), openBusIdle(t, dsn, 10*time.Millisecond)
	sb, _ := b.Subscribe("queue", 10)
	for i := range 3 {
		time.Sleep(50 * time.Millisecond) // a few idle checks
		publish(t, a, "queue", fmt.Sprint(i))
		expect(t, sb, fmt.Sprint(i), "B after idle checks")
	}
	if s := b.Stats(); s.Reconnects != 0 {
		t.Errorf("B reconnected %d times: idle checks broke the connection", s.Reconnects)
	}
}
