package streamrpc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/access"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/agentpb"
	"github.com/runnel-ci/runnel/internal/agentserver"
	"github.com/runnel-ci/runnel/internal/event"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
	"github.com/runnel-ci/runnel/internal/streampb"
)

// call records how the server called the Source.
type call struct {
	method  string
	id      string
	fromSeq int64
	filter  event.Filter
}

// fakeSource is a scripted event.Source: each call sends events (or lines),
// then either returns end or, with block, waits for its ctx to end and
// reports ctx's error on ended.
type fakeSource struct {
	mu     sync.Mutex
	calls  []call
	events []*store.RunEvent
	lines  []store.LogLine
	end    error
	block  bool
	ended  chan error
}

func newFakeSource() *fakeSource { return &fakeSource{ended: make(chan error, 16)} }

func (f *fakeSource) script(events []*store.RunEvent, lines []store.LogLine, end error, block bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events, f.lines, f.end, f.block = events, lines, end, block
}

func (f *fakeSource) record(c call) (events []*store.RunEvent, lines []store.LogLine, end error, block bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	return f.events, f.lines, f.end, f.block
}

func (f *fakeSource) lastCall(t *testing.T) call {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("the source was never called")
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeSource) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeSource) finish(ctx context.Context, end error, block bool) error {
	if block {
		<-ctx.Done()
		f.ended <- ctx.Err()
		return ctx.Err()
	}
	return end
}

func (f *fakeSource) sendEvents(ctx context.Context, c call, send func(*store.RunEvent) error) error {
	events, _, end, block := f.record(c)
	for _, ev := range events {
		if err := send(ev); err != nil {
			return err
		}
	}
	return f.finish(ctx, end, block)
}

func (f *fakeSource) WatchRun(ctx context.Context, runID string, fromSeq int64, send func(*store.RunEvent) error) error {
	return f.sendEvents(ctx, call{method: "WatchRun", id: runID, fromSeq: fromSeq}, send)
}

func (f *fakeSource) Watch(ctx context.Context, flt event.Filter, ready func(), send func(*store.RunEvent) error) error {
	if ready != nil {
		ready()
	}
	return f.sendEvents(ctx, call{method: "Watch", filter: flt}, send)
}

func (f *fakeSource) TailLogs(ctx context.Context, stepRunID string, fromSeq int64, send func(store.LogLine) error) error {
	_, lines, end, block := f.record(call{method: "TailLogs", id: stepRunID, fromSeq: fromSeq})
	for _, l := range lines {
		if err := send(l); err != nil {
			return err
		}
	}
	return f.finish(ctx, end, block)
}

var _ event.Source = (*fakeSource)(nil)

// logBuffer collects the server's log for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// failingTokens is a token store that is down.
type failingTokens struct{ store.Tokens }

func (failingTokens) TokenByHash(context.Context, []byte) (*store.APIToken, error) {
	return nil, errors.New("database is down")
}

// env is the agent service (real scheduler, real SQLite store) and the
// stream service (fake Source) on one gRPC server, as `runnel server` runs
// them, on loopback.
type env struct {
	t      *testing.T
	st     store.Store
	src    *fakeSource
	log    *logBuffer
	stream streampb.StreamServiceClient
	agent  agentpb.AgentServiceClient
}

func newEnv(t *testing.T, tokens func(store.Tokens) store.Tokens) *env {
	t.Helper()
	return newEnvOpts(t, tokens, nil)
}

// newEnvOpts is newEnv with the stream server's options adjusted by tweak.
func newEnvOpts(t *testing.T, tokens func(store.Tokens) store.Tokens, tweak func(*Options, store.Store)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "runnel.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sched := scheduler.New(scheduler.Options{Store: st, Catalog: action.Builtins()})
	agentSrv := agentserver.NewServer(agentserver.ServerOptions{Store: st, Scheduler: sched})
	src := newFakeSource()
	logs := &logBuffer{}
	var tok store.Tokens = st
	if tokens != nil {
		tok = tokens(st)
	}
	opts := Options{Source: src, Tokens: tok, Users: st, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	if tweak != nil {
		tweak(&opts, st)
	}
	streamSrv := NewServer(opts)
	g := grpc.NewServer(agentSrv.GRPCOptions()...)
	agentSrv.Attach(g)
	streamSrv.Attach(g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		st.Close()
	})
	return &env{t: t, st: st, src: src, log: logs,
		stream: streampb.NewStreamServiceClient(conn), agent: agentpb.NewAgentServiceClient(conn)}
}

// token stores an API token of the role and returns a context carrying it.
func (e *env) token(role string, expires *time.Time) context.Context {
	e.t.Helper()
	value := "rnl_" + runnel.NewID("t")
	sum := sha256.Sum256([]byte(value))
	if err := e.st.CreateToken(context.Background(), &store.APIToken{
		ID: runnel.NewID("tok"), Name: role + " token", Subject: role + "-subject", Role: role, Hash: sum[:],
		CreatedAt: time.Now().UTC(), ExpiresAt: expires,
	}); err != nil {
		e.t.Fatal(err)
	}
	return bearer(value)
}

func bearer(value string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+value)
}

func wantCode(t *testing.T, what string, err error, code codes.Code, substr string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != code || !strings.Contains(st.Message(), substr) {
		t.Fatalf("%s: got %v, want %s containing %q", what, err, code, substr)
	}
}

// recvAll reads a stream to its end; a clean end (OK) is a nil error.
func recvAll[T any](s grpc.ServerStreamingClient[T]) ([]*T, error) {
	var out []*T
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

func watchRun(ctx context.Context, e *env, runID string, from int64) ([]*streampb.Event, error) {
	s, err := e.stream.WatchRun(ctx, &streampb.WatchRunRequest{RunId: runID, FromSeq: from})
	if err != nil {
		return nil, err
	}
	return recvAll(s)
}

func tailLogs(ctx context.Context, e *env, stepRunID string, from int64) ([]*streampb.LogLine, error) {
	s, err := e.stream.TailLogs(ctx, &streampb.TailLogsRequest{StepRunId: stepRunID, FromSeq: from})
	if err != nil {
		return nil, err
	}
	return recvAll(s)
}

func watchEvents(ctx context.Context, e *env, project, pipeline string) ([]*streampb.Event, error) {
	s, err := e.stream.WatchEvents(ctx, &streampb.WatchEventsRequest{ProjectId: project, PipelineId: pipeline})
	if err != nil {
		return nil, err
	}
	return recvAll(s)
}

func statusEvent(seq int64, typ string, c store.StatusChange) *store.RunEvent {
	data, _ := json.Marshal(c)
	return &store.RunEvent{ID: 100 + seq, RunID: c.RunID, Seq: seq, PipelineID: "pl_1", ProjectID: "prj_1", Type: typ,
		Data: data, Time: time.Date(2026, 1, 2, 3, 4, 5, int(seq), time.UTC)}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, nil)
	e.src.script(nil, nil, nil, false)
	past := time.Now().Add(-time.Hour)
	future := time.Now().Add(time.Hour)

	_, err := watchRun(context.Background(), e, "run_1", 0)
	wantCode(t, "no token", err, codes.Unauthenticated, "missing")
	_, err = watchRun(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic abc"), e, "run_1", 0)
	wantCode(t, "not a bearer token", err, codes.Unauthenticated, "must be \"Bearer")
	_, err = watchRun(bearer("rnl_nonsense"), e, "run_1", 0)
	wantCode(t, "unknown token", err, codes.Unauthenticated, "unknown or revoked")
	_, err = tailLogs(e.token("user", &past), e, "sr_1", 0)
	wantCode(t, "expired token", err, codes.Unauthenticated, "expired")
	agent := e.token("agent", nil)
	_, err = watchRun(agent, e, "run_1", 0)
	wantCode(t, "agent token", err, codes.PermissionDenied, "agent tokens")
	_, err = watchEvents(agent, e, "prj_1", "")
	wantCode(t, "agent token on WatchEvents", err, codes.PermissionDenied, "agent tokens")
	_, err = tailLogs(e.token("robot", nil), e, "sr_1", 0)
	wantCode(t, "unknown role", err, codes.PermissionDenied, "robot")
	// A disabled user's token stops working at once, as on the HTTP API.
	u := &store.User{ID: runnel.NewID("usr"), Login: "dana", Disabled: true, CreatedAt: time.Now().UTC()}
	if err := e.st.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	value := "rnl_" + runnel.NewID("t")
	sum := sha256.Sum256([]byte(value))
	if err := e.st.CreateToken(context.Background(), &store.APIToken{ID: runnel.NewID("tok"), Name: "dana", Subject: "dana",
		Role: "user", UserID: u.ID, Hash: sum[:], CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	_, err = watchRun(bearer(value), e, "run_1", 0)
	wantCode(t, "disabled user", err, codes.Unauthenticated, "user dana is disabled")
	if n := e.src.callCount(); n != 0 {
		t.Fatalf("the source was called %d times for refused calls", n)
	}

	for _, role := range []string{"user", "admin"} {
		ctx := e.token(role, &future)
		if _, err := watchRun(ctx, e, "run_1", 0); err != nil {
			t.Fatalf("%s token on WatchRun: %v", role, err)
		}
		if _, err := tailLogs(ctx, e, "sr_1", 0); err != nil {
			t.Fatalf("%s token on TailLogs: %v", role, err)
		}
	}
	if n := e.src.callCount(); n != 4 {
		t.Fatalf("source calls: %d, want 4", n)
	}
	// Use is recorded.
	toks, err := e.st.ListTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range toks {
		if (tk.Role == "user" || tk.Role == "admin") && tk.ExpiresAt != nil && tk.ExpiresAt.After(time.Now()) && tk.LastUsedAt == nil {
			t.Errorf("token %s: last use not recorded", tk.Name)
		}
	}
}

func TestTokenStoreDown(t *testing.T) {
	e := newEnv(t, func(st store.Tokens) store.Tokens { return failingTokens{st} })
	e.src.script(nil, nil, nil, false)
	_, err := watchRun(bearer("rnl_whatever"), e, "run_1", 0)
	wantCode(t, "token store down", err, codes.Unavailable, "retry later")
	if !strings.Contains(e.log.String(), "database is down") {
		t.Fatalf("the failure is not logged: %s", e.log.String())
	}
}

// The agent service's interceptors guard only the agent service: its calls
// still need an agent token, while stream.v1 calls reach their own auth.
func TestAgentServiceStillNeedsAgentToken(t *testing.T) {
	e := newEnv(t, nil)
	user := e.token("user", nil)
	_, err := e.agent.Claim(context.Background(), &agentpb.ClaimRequest{WaitMs: 1})
	wantCode(t, "Claim without a token", err, codes.Unauthenticated, "missing")
	_, err = e.agent.Claim(user, &agentpb.ClaimRequest{WaitMs: 1})
	wantCode(t, "Claim with a user token", err, codes.PermissionDenied, "cannot act as an agent")
	c, err := e.agent.Connect(user, &agentpb.ConnectRequest{})
	if err == nil {
		_, err = c.Recv()
	}
	wantCode(t, "Connect with a user token", err, codes.PermissionDenied, "cannot act as an agent")
	c, err = e.agent.Connect(context.Background(), &agentpb.ConnectRequest{})
	if err == nil {
		_, err = c.Recv()
	}
	wantCode(t, "Connect without a token", err, codes.Unauthenticated, "missing")
	// The stream service's own message, not the agent interceptor's.
	_, err = watchRun(context.Background(), e, "run_1", 0)
	wantCode(t, "WatchRun without a token", err, codes.Unauthenticated, "user or admin API token")
}

func TestInputChecks(t *testing.T) {
	e := newEnv(t, nil)
	e.src.script(nil, nil, nil, false)
	user := e.token("user", nil)
	_, err := watchRun(user, e, "", 0)
	wantCode(t, "WatchRun without run_id", err, codes.InvalidArgument, "run_id")
	_, err = watchRun(user, e, "run_1", -1)
	wantCode(t, "WatchRun negative from_seq", err, codes.InvalidArgument, "from_seq")
	_, err = tailLogs(user, e, "", 0)
	wantCode(t, "TailLogs without step_run_id", err, codes.InvalidArgument, "step_run_id")
	_, err = tailLogs(user, e, "sr_1", -5)
	wantCode(t, "TailLogs negative from_seq", err, codes.InvalidArgument, "from_seq")
	_, err = watchEvents(user, e, "", "")
	wantCode(t, "WatchEvents without a filter", err, codes.InvalidArgument, "project_id or pipeline_id")
	_, err = watchRun(user, e, strings.Repeat("x", maxIDLen+1), 0)
	wantCode(t, "WatchRun long run_id", err, codes.InvalidArgument, "run_id")
	if n := e.src.callCount(); n != 0 {
		t.Fatalf("the source was called %d times for invalid requests", n)
	}
}

func TestSourceErrors(t *testing.T) {
	e := newEnv(t, nil)
	user := e.token("user", nil)

	e.src.script(nil, nil, fmt.Errorf("run run_x: %w", store.ErrNotFound), false)
	_, err := watchRun(user, e, "run_x", 0)
	wantCode(t, "unknown run", err, codes.NotFound, "run run_x")
	_, err = tailLogs(user, e, "sr_x", 0)
	wantCode(t, "unknown step run", err, codes.NotFound, "step run sr_x")

	ev := statusEvent(1, store.EventRunStatus, store.StatusChange{RunID: "run_1", Status: "running"})
	e.src.script([]*store.RunEvent{ev}, []store.LogLine{{Seq: 1, Message: "a"}}, event.ErrTooSlow, false)
	got, err := watchRun(user, e, "run_1", 0)
	wantCode(t, "slow WatchRun", err, codes.ResourceExhausted, "fell too far behind")
	if len(got) != 1 {
		t.Fatalf("slow WatchRun: %d events before the error, want 1", len(got))
	}
	lines, err := tailLogs(user, e, "sr_1", 0)
	wantCode(t, "slow TailLogs", err, codes.ResourceExhausted, "reconnect and resume")
	if len(lines) != 1 {
		t.Fatalf("slow TailLogs: %d lines before the error, want 1", len(lines))
	}
	_, err = watchEvents(user, e, "prj_1", "")
	wantCode(t, "slow WatchEvents", err, codes.ResourceExhausted, "fell too far behind")

	e.src.script(nil, nil, errors.New("disk on fire at /var/lib/secret"), false)
	_, err = watchRun(user, e, "run_1", 0)
	wantCode(t, "source failure", err, codes.Internal, "internal error")
	if strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("the internal error leaks its detail: %v", err)
	}
	if l := e.log.String(); !strings.Contains(l, "disk on fire") || !strings.Contains(l, "run_id=run_1") || !strings.Contains(l, "rpc=WatchRun") {
		t.Fatalf("the failure is not logged with its detail and run: %s", l)
	}
	_, err = tailLogs(user, e, "sr_1", 0)
	wantCode(t, "source failure on TailLogs", err, codes.Internal, "internal error")
	if !strings.Contains(e.log.String(), "step_run_id=sr_1") {
		t.Fatalf("the failure is not logged with its step: %s", e.log.String())
	}
}

func TestWatchRun(t *testing.T) {
	e := newEnv(t, nil)
	user := e.token("user", nil)
	started := time.Date(2026, 1, 2, 3, 0, 0, 123000, time.UTC)
	ended := started.Add(90 * time.Second)
	code := 3
	events := []*store.RunEvent{
		statusEvent(6, store.EventRunStatus, store.StatusChange{RunID: "run_1", PipelineID: "pl_1", RunNumber: 7, Status: "running", Previous: "queued", StartedAt: &started}),
		statusEvent(7, store.EventJobStatus, store.StatusChange{RunID: "run_1", JobRunID: "jr_1", Key: "build", Name: "Build", Stage: "test", Status: "running", Previous: "queued", Attempt: 2, AgentID: "agent_1"}),
		{ID: 108, RunID: "run_1", Seq: 8, Type: "approval.requested", Data: json.RawMessage(`{"by":"ann"}`), Time: started},
		{ID: 109, RunID: "run_1", Seq: 9, Type: store.EventStepStatus, Data: json.RawMessage(`{"status":`), Time: started},
		statusEvent(10, store.EventStepStatus, store.StatusChange{RunID: "run_1", JobRunID: "jr_1", StepRunID: "sr_1", StepIndex: 2, Name: "compile",
			Status: "failed", Previous: "running", Reason: "exit status 3", ExitCode: &code, StartedAt: &started, EndedAt: &ended}),
		statusEvent(11, store.EventRunStatus, store.StatusChange{RunID: "run_1", Status: "failed", Previous: "running", SystemError: true, EndedAt: &ended}),
	}
	e.src.script(events, nil, nil, false)
	got, err := watchRun(user, e, "run_1", 5)
	if err != nil {
		t.Fatalf("the stream did not end with OK: %v", err)
	}
	if c := e.src.lastCall(t); c != (call{method: "WatchRun", id: "run_1", fromSeq: 5}) {
		t.Fatalf("source call: %+v", c)
	}
	if len(got) != len(events) {
		t.Fatalf("got %d events, want %d", len(got), len(events))
	}
	for i, ev := range got {
		if ev.Seq != events[i].Seq || ev.Id != events[i].ID || ev.Type != events[i].Type || ev.DataJson != string(events[i].Data) ||
			!ev.Time.AsTime().Equal(events[i].Time) {
			t.Fatalf("event %d: %v, want %+v", i, ev, events[i])
		}
	}
	if s := got[0].Status; s == nil || s.RunNumber != 7 || s.Status != "running" || s.Previous != "queued" || !s.StartedAt.AsTime().Equal(started) || s.EndedAt != nil || s.ExitCode != nil {
		t.Fatalf("run.status: %v", s)
	}
	if s := got[1].Status; s == nil || s.JobRunId != "jr_1" || s.Key != "build" || s.Stage != "test" || s.Attempt != 2 || s.AgentId != "agent_1" {
		t.Fatalf("job.status: %v", s)
	}
	if got[2].Status != nil || got[3].Status != nil {
		t.Fatalf("status set on a non-status or garbled event: %v %v", got[2].Status, got[3].Status)
	}
	if s := got[4].Status; s == nil || s.ExitCode == nil || *s.ExitCode != 3 || s.StepIndex != 2 || s.StepRunId != "sr_1" ||
		!s.StartedAt.AsTime().Equal(started) || !s.EndedAt.AsTime().Equal(ended) || s.Reason != "exit status 3" {
		t.Fatalf("step.status: %v", s)
	}
	if s := got[5].Status; s == nil || !s.SystemError || s.StartedAt != nil {
		t.Fatalf("final run.status: %v", s)
	}
	if !strings.Contains(e.log.String(), "event_id=109") {
		t.Fatalf("the garbled event is not logged: %s", e.log.String())
	}
}

func TestTailLogs(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.token("admin", nil)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	lines := []store.LogLine{{Seq: 3, Time: at, Level: "info", Message: "hello"}, {Seq: 4, Level: "warn", Message: "no time"}}
	e.src.script(nil, lines, nil, false)
	got, err := tailLogs(admin, e, "sr_1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if c := e.src.lastCall(t); c != (call{method: "TailLogs", id: "sr_1", fromSeq: 2}) {
		t.Fatalf("source call: %+v", c)
	}
	if len(got) != 2 || got[0].Seq != 3 || got[0].Level != "info" || got[0].Message != "hello" || !got[0].Time.AsTime().Equal(at) ||
		got[1].Seq != 4 || got[1].Time != nil || got[1].Message != "no time" {
		t.Fatalf("lines: %v", got)
	}
}

func TestWatchEventsFilterAndCancel(t *testing.T) {
	e := newEnv(t, nil)
	user := e.token("user", nil)
	ev := statusEvent(1, store.EventRunStatus, store.StatusChange{RunID: "run_1", Status: "queued"})
	e.src.script([]*store.RunEvent{ev}, nil, nil, true)

	for _, f := range []event.Filter{{ProjectID: "prj_1"}, {PipelineID: "pl_1"}, {ProjectID: "prj_1", PipelineID: "pl_1"}} {
		ctx, cancel := context.WithCancel(user)
		s, err := e.stream.WatchEvents(ctx, &streampb.WatchEventsRequest{ProjectId: f.ProjectID, PipelineId: f.PipelineID})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Recv()
		if err != nil || got.RunId != "run_1" || got.Status.GetStatus() != "queued" {
			t.Fatalf("first event: %v %v", got, err)
		}
		if c := e.src.lastCall(t); c != (call{method: "Watch", filter: f}) {
			t.Fatalf("source call: %+v, want filter %+v", c, f)
		}
		cancel()
		select {
		case err := <-e.src.ended:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("source ctx ended with %v, want canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the client's cancel did not reach the source")
		}
		_, err = s.Recv()
		wantCode(t, "after cancel", err, codes.Canceled, "")
	}
}

func TestDeadlineReachesSource(t *testing.T) {
	e := newEnv(t, nil)
	user := e.token("user", nil)
	e.src.script(nil, nil, nil, true)
	ctx, cancel := context.WithTimeout(user, 300*time.Millisecond)
	defer cancel()
	_, err := watchRun(ctx, e, "run_1", 0)
	wantCode(t, "deadline", err, codes.DeadlineExceeded, "")
	select {
	case err := <-e.src.ended:
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Fatalf("source ctx ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the deadline did not reach the source")
	}
}

func TestStreamErrorFromContext(t *testing.T) {
	s := NewServer(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	wantCode(t, "canceled ctx", s.streamError(ctx, errors.New("send: transport closed"), nil, "WatchRun", "run r"), codes.Canceled, "")
	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	wantCode(t, "expired ctx", s.streamError(dctx, dctx.Err(), nil, "WatchRun", "run r"), codes.DeadlineExceeded, "")
	wantCode(t, "wrapped deadline", s.streamError(context.Background(), fmt.Errorf("query: %w", context.DeadlineExceeded), nil, "WatchRun", "run r"), codes.DeadlineExceeded, "")
	sendErr := status.Error(codes.Unavailable, "transport is closing")
	wantCode(t, "send error", s.streamError(context.Background(), sendErr, sendErr, "WatchRun", "run r"), codes.Unavailable, "transport is closing")
	if err := s.streamError(context.Background(), nil, nil, "WatchRun", "run r"); err != nil {
		t.Fatalf("nil: %v", err)
	}
}

func TestEventToPB(t *testing.T) {
	start := time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC)
	code := 0
	c := store.StatusChange{RunID: "run_1", PipelineID: "pl_1", RunNumber: 42, JobRunID: "jr", StepRunID: "sr", Key: "k", Name: "n", Stage: "s",
		StepIndex: 1, Status: "success", Previous: "running", Attempt: 3, AgentID: "a", Reason: "r", ExitCode: &code, SystemError: true, StartedAt: &start}
	data, _ := json.Marshal(c)
	ev := &store.RunEvent{ID: 1, RunID: "run_1", Seq: 2, PipelineID: "pl_1", ProjectID: "prj", Type: store.EventStepStatus, Data: data, Time: start}
	pb, err := eventToPB(ev)
	if err != nil {
		t.Fatal(err)
	}
	s := pb.Status
	if s == nil || s.RunId != "run_1" || s.PipelineId != "pl_1" || s.RunNumber != 42 || s.JobRunId != "jr" || s.StepRunId != "sr" ||
		s.Key != "k" || s.Name != "n" || s.Stage != "s" || s.StepIndex != 1 || s.Status != "success" || s.Previous != "running" ||
		s.Attempt != 3 || s.AgentId != "a" || s.Reason != "r" || s.ExitCode == nil || *s.ExitCode != 0 || !s.SystemError ||
		!s.StartedAt.AsTime().Equal(start) || s.EndedAt != nil {
		t.Fatalf("status: %v", s)
	}
	if pb.Id != 1 || pb.Seq != 2 || pb.ProjectId != "prj" || pb.PipelineId != "pl_1" || pb.DataJson != string(data) || !pb.Time.AsTime().Equal(start) {
		t.Fatalf("event: %v", pb)
	}

	pb, err = eventToPB(&store.RunEvent{ID: 3, Type: store.EventJobStatus, Data: json.RawMessage(`not json`)})
	if err == nil || pb == nil || pb.Status != nil || pb.DataJson != "not json" || pb.Time != nil {
		t.Fatalf("garbled: %v %v", pb, err)
	}
	pb, err = eventToPB(&store.RunEvent{ID: 4, Type: "approval.requested"})
	if err != nil || pb.Status != nil || pb.DataJson != "null" {
		t.Fatalf("no data: %v %v", pb, err)
	}
	pb, err = eventToPB(&store.RunEvent{ID: 5, Type: "notification.sent", Data: json.RawMessage(`{"status":"x"}`)})
	if err != nil || pb.Status != nil {
		t.Fatalf("other type: %v %v", pb, err)
	}
}

// TestStreamAccess: with the access policy, a stream of what the caller has
// no role in is NOT_FOUND, as on the HTTP API; a member gets past it.
func TestStreamAccess(t *testing.T) {
	e := newEnvOpts(t, nil, func(o *Options, st store.Store) { o.Access = access.New(st) })
	e.src.script(nil, nil, nil, false)
	ctx := context.Background()
	now := time.Now().UTC()
	for _, p := range []string{"web", "ops"} {
		if err := e.st.CreateProject(ctx, &store.Project{ID: p}); err != nil {
			t.Fatal(err)
		}
	}
	pl := &store.Pipeline{ID: runnel.NewID("pl"), ProjectID: "web", Name: "site", SaveMode: "direct", CreatedAt: now, UpdatedAt: now}
	if err := e.st.CreatePipeline(ctx, pl); err != nil {
		t.Fatal(err)
	}
	run := &store.Run{ID: runnel.NewID("run"), PipelineID: pl.ID, Status: runnel.RunRunning, TriggerType: "manual", CreatedAt: now}
	job := &store.JobRun{ID: runnel.NewID("jr"), RunID: run.ID, Key: "s/j", Name: "j", Stage: "s", Status: "running", Attempt: 1}
	step := &store.StepRun{ID: runnel.NewID("sr"), JobRunID: job.ID, Name: "x", Status: "running"}
	if _, _, err := e.st.CreateRun(ctx, &store.NewRun{Run: run, Jobs: []*store.JobRun{job}, Steps: map[string][]*store.StepRun{job.ID: {step}}}); err != nil {
		t.Fatal(err)
	}
	member := func(login, project string) context.Context {
		u := &store.User{ID: runnel.NewID("usr"), Login: login, CreatedAt: now}
		if err := e.st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := e.st.SetMember(ctx, &store.Member{ProjectID: project, Kind: store.MemberUser, MemberID: u.ID, Role: "viewer"}); err != nil {
			t.Fatal(err)
		}
		value := "rnl_" + runnel.NewID("t")
		sum := sha256.Sum256([]byte(value))
		if err := e.st.CreateToken(ctx, &store.APIToken{ID: runnel.NewID("tok"), Name: login, Subject: login, Role: "user", UserID: u.ID,
			Hash: sum[:], CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		return bearer(value)
	}
	outsider, viewer := member("olga", "ops"), member("vera", "web")
	_, err := watchRun(outsider, e, run.ID, 0)
	wantCode(t, "another project's run", err, codes.NotFound, "run "+run.ID+" not found")
	_, err = tailLogs(outsider, e, step.ID, 0)
	wantCode(t, "another project's step log", err, codes.NotFound, "step run "+step.ID+" not found")
	_, err = watchEvents(outsider, e, "web", "")
	wantCode(t, "another project's events", err, codes.NotFound, "project web not found")
	_, err = watchEvents(outsider, e, "", pl.ID)
	wantCode(t, "another project's pipeline", err, codes.NotFound, "pipeline "+pl.ID+" not found")
	if _, err := watchRun(viewer, e, run.ID, 0); status.Code(err) == codes.NotFound || status.Code(err) == codes.PermissionDenied {
		t.Fatalf("a viewer of the project: %v", err)
	}
}
