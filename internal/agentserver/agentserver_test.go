package agentserver_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/agentpb"
	"github.com/runnel-ci/runnel/internal/agentserver"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
)

// env is a real scheduler and agent service on a real SQLite store, served
// over gRPC on loopback; tests speak the protocol as an agent would.
type env struct {
	t     *testing.T
	st    store.Store
	sched *scheduler.Scheduler
	rpc   agentpb.AgentServiceClient
}

func newEnv(t *testing.T, lease time.Duration) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "runnel.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sched := scheduler.New(scheduler.Options{Store: st, Catalog: action.Builtins(), LeaseDuration: lease, PollInterval: 100 * time.Millisecond})
	done := make(chan struct{})
	go func() { defer close(done); sched.Run(ctx) }()
	srv := agentserver.NewServer(agentserver.ServerOptions{Store: st, Scheduler: sched})
	g := grpc.NewServer(srv.GRPCOptions()...)
	srv.Attach(g)
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
		cancel()
		<-done
		st.Close()
	})
	return &env{t: t, st: st, sched: sched, rpc: agentpb.NewAgentServiceClient(conn)}
}

// regToken stores a registration token and returns its value.
func (e *env) regToken(maxUses int, expires *time.Time) string {
	e.t.Helper()
	value := "rnlr_" + runnel.NewID("t")
	sum := sha256.Sum256([]byte(value))
	if err := e.st.CreateRegistrationToken(context.Background(), &store.RegistrationToken{
		ID: runnel.NewID("rt"), Name: "test", Hash: sum[:], CreatedAt: time.Now().UTC(), MaxUses: maxUses, ExpiresAt: expires,
	}); err != nil {
		e.t.Fatal(err)
	}
	return value
}

func info(labels map[string]string, capacity int32) *agentpb.AgentInfo {
	return &agentpb.AgentInfo{Name: "test-agent", Labels: labels, Capacity: capacity, Version: "test", Hostname: "h", Platform: "linux/amd64"}
}

// agent registers and returns a context carrying its token.
func (e *env) agent(labels map[string]string, capacity int32) (string, context.Context) {
	e.t.Helper()
	resp, err := e.rpc.Register(context.Background(), &agentpb.RegisterRequest{RegistrationToken: e.regToken(0, nil), Info: info(labels, capacity)})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.AgentId, metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+resp.AgentToken)
}

// connect opens the agent's session and waits for Connected.
func (e *env) connect(ctx context.Context, labels map[string]string, capacity int32) agentpb.AgentService_ConnectClient {
	e.t.Helper()
	stream, err := e.rpc.Connect(ctx, &agentpb.ConnectRequest{Info: info(labels, capacity), FirstSession: true})
	if err != nil {
		e.t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil || ev.GetConnected() == nil {
		e.t.Fatalf("first event: %v %v", ev, err)
	}
	return stream
}

func (e *env) trigger(yaml string) string {
	e.t.Helper()
	ctx := context.Background()
	def, err := spec.Parse([]byte(yaml), spec.Options{Catalog: action.Builtins()})
	if err != nil {
		e.t.Fatal(err)
	}
	canonical, _ := json.Marshal(def)
	sum := sha256.Sum256(canonical)
	id := runnel.NewID("pl")
	now := time.Now().UTC()
	if err := e.st.CreatePipeline(ctx, &store.Pipeline{ID: id, ProjectID: "p", Name: id, SaveMode: "direct", CreatedAt: now, UpdatedAt: now}); err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := e.st.SaveSpec(ctx, &store.SpecVersion{PipelineID: id, CommitSHA: hex.EncodeToString(sum[:]), Spec: canonical, Format: "yaml", CreatedAt: now}, ""); err != nil {
		e.t.Fatal(err)
	}
	run, _, err := e.sched.Trigger(ctx, id, runnel.TriggerRequest{})
	if err != nil {
		e.t.Fatal(err)
	}
	return run.ID
}

func (e *env) claim(ctx context.Context) *agentpb.Job {
	e.t.Helper()
	resp, err := e.rpc.Claim(ctx, &agentpb.ClaimRequest{WaitMs: 5000})
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.Job == nil {
		e.t.Fatal("no job claimed within 5s")
	}
	return resp.Job
}

func wantCode(t *testing.T, what string, err error, code codes.Code, msgPart string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), msgPart) {
		t.Errorf("%s: got %s %q, want %s containing %q", what, st.Code(), st.Message(), code, msgPart)
	}
}

func TestRegisterAndAuth(t *testing.T) {
	e := newEnv(t, 5*time.Second)
	bg := context.Background()
	_, err := e.rpc.Register(bg, &agentpb.RegisterRequest{RegistrationToken: "nope", Info: info(nil, 1)})
	wantCode(t, "unknown registration token", err, codes.Unauthenticated, "unknown or deleted registration token")
	past := time.Now().Add(-time.Hour)
	_, err = e.rpc.Register(bg, &agentpb.RegisterRequest{RegistrationToken: e.regToken(0, &past), Info: info(nil, 1)})
	wantCode(t, "expired registration token", err, codes.PermissionDenied, "expired")
	once := e.regToken(1, nil)
	if _, err := e.rpc.Register(bg, &agentpb.RegisterRequest{RegistrationToken: once, Info: info(nil, 1)}); err != nil {
		t.Fatal(err)
	}
	_, err = e.rpc.Register(bg, &agentpb.RegisterRequest{RegistrationToken: once, Info: info(nil, 1)})
	wantCode(t, "used-up registration token", err, codes.PermissionDenied, "used")
	_, err = e.rpc.Register(bg, &agentpb.RegisterRequest{RegistrationToken: e.regToken(0, nil), Info: info(map[string]string{"bad key": "x"}, 1)})
	wantCode(t, "bad label", err, codes.InvalidArgument, "info.labels")
	_, err = e.rpc.Register(bg, &agentpb.RegisterRequest{RegistrationToken: e.regToken(0, nil), Info: info(nil, 0)})
	wantCode(t, "capacity 0", err, codes.InvalidArgument, "info.capacity")

	_, err = e.rpc.Claim(bg, &agentpb.ClaimRequest{WaitMs: 10})
	wantCode(t, "no token", err, codes.Unauthenticated, "missing")
	_, err = e.rpc.Claim(metadata.AppendToOutgoingContext(bg, "authorization", "Bearer unknown"), &agentpb.ClaimRequest{WaitMs: 10})
	wantCode(t, "unknown token", err, codes.Unauthenticated, "unknown or revoked")
	// A user API token is not an agent token.
	sum := sha256.Sum256([]byte("a-user-token-0123456789"))
	if err := e.st.CreateToken(bg, &store.APIToken{ID: runnel.NewID("tok"), Name: "u", Subject: "u", Role: "user", Hash: sum[:], CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, err = e.rpc.Claim(metadata.AppendToOutgoingContext(bg, "authorization", "Bearer a-user-token-0123456789"), &agentpb.ClaimRequest{WaitMs: 10})
	wantCode(t, "user token", err, codes.PermissionDenied, "cannot act as an agent")

	id, ctx := e.agent(map[string]string{"pool": "a"}, 1)
	resp, err := e.rpc.Claim(ctx, &agentpb.ClaimRequest{WaitMs: 50})
	if err != nil || resp.Job != nil {
		t.Fatalf("claim on an empty queue: %v %v", resp, err)
	}
	a, err := e.st.GetAgent(bg, id)
	if err != nil || a.Labels()["pool"] != "a" || a.Capacity != 1 || a.Kind != "remote" {
		t.Fatalf("registered agent: %+v %v", a, err)
	}
}

// TestFencing: reports under a lease that expired or belongs to another agent
// are refused, and change nothing.
func TestFencing(t *testing.T) {
	e := newEnv(t, time.Second)
	bg := context.Background()
	_, ctxA := e.agent(nil, 2)
	_, ctxB := e.agent(nil, 2)
	runID := e.trigger("namespace: t\njobs: [{name: a, retry: {max: 1}, steps: [{name: s, run: 'true'}]}]")
	job := e.claim(ctxA)
	if _, err := e.rpc.ExtendLease(ctxA, &agentpb.ExtendLeaseRequest{Lease: job.Lease}); err != nil {
		t.Fatal(err)
	}
	// Another agent cannot report on A's job.
	_, err := e.rpc.ReportStep(ctxB, &agentpb.ReportStepRequest{Lease: job.Lease, Step: &agentpb.StepReport{Index: 0, Status: "running"}})
	wantCode(t, "report by another agent", err, codes.PermissionDenied, "leased to another agent")
	// Bad reports are refused with the reason.
	_, err = e.rpc.ReportStep(ctxA, &agentpb.ReportStepRequest{Lease: job.Lease, Step: &agentpb.StepReport{Index: 0, Status: "bogus"}})
	wantCode(t, "bad step status", err, codes.InvalidArgument, "step.status")
	_, err = e.rpc.ReportStep(ctxA, &agentpb.ReportStepRequest{Lease: job.Lease, Step: &agentpb.StepReport{Index: 7, Status: "running"}})
	wantCode(t, "unknown step", err, codes.InvalidArgument, "no step 7")
	if _, err := e.rpc.AppendLogs(ctxA, &agentpb.AppendLogsRequest{Lease: job.Lease, Step: 0, Lines: []*agentpb.LogLine{{Message: "from A"}}}); err != nil {
		t.Fatal(err)
	}
	// A stops renewing: its lease expires and the job is retried; B gets it.
	deadline := time.Now().Add(10 * time.Second)
	var job2 *agentpb.Job
	for job2 == nil {
		resp, err := e.rpc.Claim(ctxB, &agentpb.ClaimRequest{WaitMs: 500})
		if err != nil {
			t.Fatal(err)
		}
		job2 = resp.Job
		if time.Now().After(deadline) {
			t.Fatal("the job was not retried after A's lease expired")
		}
	}
	if job2.Attempt != 2 || job2.Lease.JobRunId != job.Lease.JobRunId {
		t.Fatalf("retry: %+v", job2)
	}
	// A's late reports are refused: ABORTED, nothing stored.
	_, err = e.rpc.ExtendLease(ctxA, &agentpb.ExtendLeaseRequest{Lease: job.Lease})
	wantCode(t, "late renewal", err, codes.Aborted, "lease lost")
	_, err = e.rpc.AppendLogs(ctxA, &agentpb.AppendLogsRequest{Lease: job.Lease, Step: 0, Lines: []*agentpb.LogLine{{Message: "late"}}})
	wantCode(t, "late logs", err, codes.Aborted, "lease lost")
	_, err = e.rpc.Complete(ctxA, &agentpb.CompleteRequest{Lease: job.Lease, Result: &agentpb.JobResult{Status: "failed", Reason: "late"}})
	wantCode(t, "late completion", err, codes.Aborted, "lease lost")
	tree, err := e.st.GetRunTree(bg, runID)
	if err != nil {
		t.Fatal(err)
	}
	if j := tree.Jobs[0]; j.Status != "running" || j.Attempt != 2 || j.Reason != "" {
		t.Fatalf("after A's late reports: %+v", j)
	}
	logs, _ := e.st.ListLogs(bg, tree.Steps[tree.Jobs[0].ID][0].ID, store.LogQuery{})
	for _, l := range logs {
		if l.Message == "late" {
			t.Fatal("a late log line was stored")
		}
	}
	// B finishes the job.
	if _, err := e.rpc.ExtendLease(ctxB, &agentpb.ExtendLeaseRequest{Lease: job2.Lease}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	res := &agentpb.JobResult{Status: "success", Steps: []*agentpb.StepReport{{Index: 0, Name: "s", Status: "success", StartedUnixNano: now, EndedUnixNano: now}}}
	if _, err := e.rpc.Complete(ctxB, &agentpb.CompleteRequest{Lease: job2.Lease, Result: res}); err != nil {
		t.Fatal(err)
	}
	run, _ := e.st.GetRun(bg, runID)
	if run.Status != "success" {
		t.Fatalf("run: %s", run.Status)
	}
}

// TestCancelAndCapacity: a stop reaches the agent's session at once, and an
// agent cannot claim beyond its capacity.
func TestCancelAndCapacity(t *testing.T) {
	e := newEnv(t, 5*time.Second)
	bg := context.Background()
	_, ctx := e.agent(nil, 1)
	stream := e.connect(ctx, nil, 1)
	runID := e.trigger("namespace: t\njobs: [{name: a, steps: [{name: s, run: 'sleep 60'}]}, {name: b, steps: [{name: s, run: 'true'}]}]")
	job := e.claim(ctx)
	if _, err := e.rpc.ExtendLease(ctx, &agentpb.ExtendLeaseRequest{Lease: job.Lease}); err != nil {
		t.Fatal(err)
	}
	_, err := e.rpc.Claim(ctx, &agentpb.ClaimRequest{WaitMs: 50})
	wantCode(t, "claim beyond capacity", err, codes.ResourceExhausted, "capacity")
	start := time.Now()
	if _, err := e.sched.Stop(bg, runID, "tester", "enough"); err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	c := ev.GetCancel()
	if c == nil || c.JobRunId != job.Lease.JobRunId || !strings.Contains(c.Reason, "enough") {
		t.Fatalf("event: %v", ev)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("cancellation reached the agent after %s", took)
	}
	resp, err := e.rpc.ExtendLease(ctx, &agentpb.ExtendLeaseRequest{Lease: job.Lease})
	if err != nil || !resp.Cancelled {
		t.Fatalf("renewal after stop: %v %v", resp, err)
	}
}

// TestDisabledAgentGetsNothing: a disabled agent's claims come back empty;
// enabled again, it gets the job.
func TestDisabledAgentGetsNothing(t *testing.T) {
	e := newEnv(t, 5*time.Second)
	bg := context.Background()
	id, ctx := e.agent(nil, 1)
	if _, err := e.st.UpdateAgentAdmin(bg, id, nil, true); err != nil {
		t.Fatal(err)
	}
	e.trigger("namespace: t\njobs: [{name: a, steps: [{name: s, run: 'true'}]}]")
	resp, err := e.rpc.Claim(ctx, &agentpb.ClaimRequest{WaitMs: 300})
	if err != nil || resp.Job != nil {
		t.Fatalf("disabled agent claimed: %v %v", resp, err)
	}
	if _, err := e.st.UpdateAgentAdmin(bg, id, map[string]string{"pool": "z"}, false); err != nil {
		t.Fatal(err)
	}
	e.claim(ctx)
}
