// Package agentserver is the control plane's side of the agent.v1 gRPC
// protocol (proto/runnel/agent/v1), served by `runnel server` on its gRPC
// port: it registers and authenticates agents and drives the scheduler on
// their behalf. The agent's side is package agentrpc.
package agentserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/agentpb"
	"github.com/runnel-ci/runnel/internal/agentrpc"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/worker"
)

// Limits of the protocol.
const (
	// touchEvery is how often an open session records the agent as seen.
	touchEvery = 10 * time.Second
	// authCacheTTL bounds how long a verified agent token is trusted without
	// a database read (a deleted agent is refused at most this late).
	authCacheTTL = 5 * time.Second
	maxLogBatch  = 5000
	maxLabels    = 64
)

// ServerOptions configure a Server.
type ServerOptions struct {
	Store     store.Store
	Scheduler *scheduler.Scheduler
	Logger    *slog.Logger
	Now       func() time.Time
}

// Server implements agentpb.AgentServiceServer.
type Server struct {
	agentpb.UnimplementedAgentServiceServer
	st    store.Store
	sched *scheduler.Scheduler
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	sessions map[string]map[*session]struct{} // by agent id
	claims   map[string]cachedClaim           // by lease id
	pruned   time.Time
	auth     map[[32]byte]authEntry
}

// cachedClaim spares a report the database read that rebuilds its claim.
// Entries are dropped when the job ends here, or after claimCacheTTL (the
// job may have ended through another replica); a dropped entry is rebuilt
// from the database on the next report.
type cachedClaim struct {
	c  *worker.Claim
	at time.Time
}

const claimCacheTTL = 10 * time.Minute

type authEntry struct {
	agentID string
	until   time.Time
}

// session is an agent's open Connect stream.
type session struct {
	events chan *agentpb.ServerEvent
}

// NewServer returns the agent service; add it to a gRPC server with Attach.
func NewServer(o ServerOptions) *Server {
	s := &Server{
		st: o.Store, sched: o.Scheduler, log: o.Logger, now: o.Now,
		sessions: map[string]map[*session]struct{}{}, claims: map[string]cachedClaim{}, auth: map[[32]byte]authEntry{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.sched.OnCancel(s.cancel)
	return s
}

// Attach adds the service to a gRPC server.
func (s *Server) Attach(g *grpc.Server) { agentpb.RegisterAgentServiceServer(g, s) }

// GRPCOptions are the grpc.ServerOptions the service needs: the
// authentication interceptors and small per-connection buffers (an idle agent
// should cost the server little memory).
func (s *Server) GRPCOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.UnaryInterceptor(s.unaryAuth),
		grpc.StreamInterceptor(s.streamAuth),
		// Agents ping every 20s; a server ping finds dead agents' connections.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.ReadBufferSize(4 << 10),
		grpc.WriteBufferSize(4 << 10),
		grpc.MaxRecvMsgSize(16 << 20),
	}
}

type agentKey struct{}

func agentFrom(ctx context.Context) string {
	id, _ := ctx.Value(agentKey{}).(string)
	return id
}

// agentMethods prefixes the full method names of the agent service: the
// interceptors authenticate only those. Other services on the same gRPC
// server (stream.v1) authenticate their callers themselves.
var agentMethods = "/" + agentpb.AgentService_ServiceDesc.ServiceName + "/"

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, agentMethods) || info.FullMethod == agentpb.AgentService_Register_FullMethodName {
		return h(ctx, req)
	}
	id, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return h(context.WithValue(ctx, agentKey{}, id), req)
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w wrappedStream) Context() context.Context { return w.ctx }

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !strings.HasPrefix(info.FullMethod, agentMethods) {
		return h(srv, ss)
	}
	id, err := s.authenticate(ss.Context())
	if err != nil {
		return err
	}
	return h(srv, wrappedStream{ss, context.WithValue(ss.Context(), agentKey{}, id)})
}

// authenticate checks the agent token in the authorization metadata.
func (s *Server) authenticate(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", status.Error(codes.Unauthenticated, "metadata authorization: missing; send \"Bearer <agent token>\" (runnel agent registers with --token and keeps its identity in its work dir)")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", status.Error(codes.Unauthenticated, "metadata authorization: must be \"Bearer <agent token>\"")
	}
	sum := sha256.Sum256([]byte(tok))
	now := s.now()
	s.mu.Lock()
	e, ok := s.auth[sum]
	s.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.agentID, nil
	}
	t, err := s.st.TokenByHash(ctx, sum[:])
	if errors.Is(err, runnel.ErrNotFound) || (err == nil && subtle.ConstantTimeCompare(t.Hash, sum[:]) != 1) {
		return "", status.Error(codes.Unauthenticated, "unknown or revoked agent token (was the agent deleted? register again with a registration token)")
	}
	if err != nil {
		return "", status.Errorf(codes.Unavailable, "look up the agent token: %v", err)
	}
	if t.Role != "agent" {
		return "", status.Errorf(codes.PermissionDenied, "a %s token cannot act as an agent; agents use the token they got from Register", t.Role)
	}
	if t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) {
		return "", status.Error(codes.Unauthenticated, "the agent token expired")
	}
	s.mu.Lock()
	if len(s.auth) > 100000 {
		clear(s.auth)
	}
	s.auth[sum] = authEntry{agentID: t.Subject, until: now.Add(authCacheTTL)}
	s.mu.Unlock()
	return t.Subject, nil
}

// grpcError maps store errors to status codes: a lost lease is ABORTED (the
// agent must stop the job and report nothing more).
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, runnel.ErrLeaseLost):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, runnel.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, runnel.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, runnel.ErrConflict):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func checkInfo(info *agentpb.AgentInfo) (map[string]string, error) {
	if info == nil {
		return nil, status.Error(codes.InvalidArgument, "info: missing")
	}
	if len(info.Labels) > maxLabels {
		return nil, status.Errorf(codes.InvalidArgument, "info.labels: %d labels, at most %d", len(info.Labels), maxLabels)
	}
	labels := map[string]string{}
	for k, v := range info.Labels {
		if err := spec.CheckLabel(k, v); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "info.labels: %v", err)
		}
		labels[k] = v
	}
	if info.Capacity < 1 || info.Capacity > 1024 {
		return nil, status.Errorf(codes.InvalidArgument, "info.capacity: %d; want 1 to 1024", info.Capacity)
	}
	if len(info.Name) > 200 || len(info.Hostname) > 255 || len(info.Version) > 100 || len(info.Platform) > 100 {
		return nil, status.Error(codes.InvalidArgument, "info: name, hostname, version or platform too long")
	}
	return labels, nil
}

func agentFromInfo(id string, info *agentpb.AgentInfo, labels map[string]string) *store.Agent {
	name := info.Name
	if name == "" {
		name = info.Hostname
	}
	return &store.Agent{
		ID: id, Name: name, Kind: "remote", ReportedLabels: labels, Capacity: int(info.Capacity),
		Version: info.Version, Hostname: info.Hostname, Platform: info.Platform,
	}
}

// Register exchanges a registration token for an agent identity.
func (s *Server) Register(ctx context.Context, req *agentpb.RegisterRequest) (*agentpb.RegisterResponse, error) {
	if req.RegistrationToken == "" {
		return nil, status.Error(codes.InvalidArgument, "registration_token: missing; create one with POST /api/v1/registration-tokens")
	}
	labels, err := checkInfo(req.Info)
	if err != nil {
		return nil, err
	}
	id := runnel.NewID("agent")
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := "rnla_" + hex.EncodeToString(b)
	sum := sha256.Sum256([]byte(tok))
	now := s.now().UTC()
	a := agentFromInfo(id, req.Info, labels)
	a.CreatedAt = now
	at := &store.APIToken{ID: runnel.NewID("tok"), Name: "agent " + a.Name, Subject: id, Role: "agent", Hash: sum[:], CreatedAt: now}
	regSum := sha256.Sum256([]byte(req.RegistrationToken))
	err = s.st.RegisterAgent(ctx, regSum[:], now, a, at)
	switch {
	case errors.Is(err, runnel.ErrNotFound):
		return nil, status.Error(codes.Unauthenticated, "unknown or deleted registration token")
	case errors.Is(err, store.ErrRegistrationRejected):
		return nil, status.Error(codes.PermissionDenied, err.Error())
	case err != nil:
		return nil, grpcError(err)
	}
	s.log.Info("agent registered", "agent_id", id, "name", a.Name, "labels", worker.FormatLabels(a.ReportedLabels))
	return &agentpb.RegisterResponse{AgentId: id, AgentToken: tok}, nil
}

// Connect holds the agent's session.
func (s *Server) Connect(req *agentpb.ConnectRequest, stream grpc.ServerStreamingServer[agentpb.ServerEvent]) error {
	ctx := stream.Context()
	id := agentFrom(ctx)
	labels, err := checkInfo(req.Info)
	if err != nil {
		return err
	}
	if err := s.st.ReportAgent(ctx, agentFromInfo(id, req.Info, labels)); err != nil {
		return grpcError(err)
	}
	a, err := s.st.GetAgent(ctx, id)
	if err != nil {
		return grpcError(err)
	}
	// Jobs this agent held that it no longer runs died with its previous
	// process: retry or fail them now rather than when their lease runs out.
	var back []string
	if req.FirstSession {
		back, err = s.sched.HandBack(ctx, id, "the agent restarted and no longer runs this job", req.RunningJobRunIds)
		if err != nil {
			return grpcError(err)
		}
	}
	for _, jid := range back {
		s.log.Warn("job handed back: its agent restarted", "agent_id", id, "job_run_id", jid)
	}
	sess := &session{events: make(chan *agentpb.ServerEvent, 64)}
	s.mu.Lock()
	if s.sessions[id] == nil {
		s.sessions[id] = map[*session]struct{}{}
	}
	s.sessions[id][sess] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions[id], sess)
		if len(s.sessions[id]) == 0 {
			delete(s.sessions, id)
		}
		s.mu.Unlock()
	}()
	s.log.Info("agent connected", "agent_id", id, "name", a.Name, "labels", worker.FormatLabels(a.Labels()), "capacity", a.Capacity, "version", a.Version)
	if err := stream.Send(&agentpb.ServerEvent{Event: &agentpb.ServerEvent_Connected{Connected: &agentpb.Connected{
		AgentId: id, LeaseDurationMs: s.sched.LeaseDuration().Milliseconds(), Labels: a.Labels(), Disabled: a.Disabled,
		HandedBackJobRunIds: back,
	}}}); err != nil {
		return err
	}
	t := time.NewTicker(touchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.log.Info("agent disconnected", "agent_id", id)
			return nil
		case ev := <-sess.events:
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-t.C:
			if err := s.st.TouchAgent(ctx, id, s.now().UTC()); err != nil {
				if errors.Is(err, runnel.ErrNotFound) {
					return status.Error(codes.Unauthenticated, "the agent was deleted")
				}
				s.log.Warn("record agent as seen", "agent_id", id, "err", err)
			}
		}
	}
}

// cancel forwards a stop to the sessions of the agent holding the job.
func (s *Server) cancel(agentID, jobRunID, leaseID, reason string) {
	ev := &agentpb.ServerEvent{Event: &agentpb.ServerEvent_Cancel{Cancel: &agentpb.CancelJob{JobRunId: jobRunID, LeaseId: leaseID, Reason: reason}}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.sessions[agentID] {
		select {
		case sess.events <- ev:
		default:
			// A session this far behind will renew its lease soon and learn
			// of the cancellation from the answer.
			s.log.Warn("agent session backlog full: cancellation left to the lease renewal", "agent_id", agentID, "job_run_id", jobRunID)
		}
	}
}

// Claim long-polls for a job.
func (s *Server) Claim(ctx context.Context, req *agentpb.ClaimRequest) (*agentpb.ClaimResponse, error) {
	id := agentFrom(ctx)
	wait := time.Duration(req.WaitMs) * time.Millisecond
	if wait <= 0 || wait > agentrpc.MaxClaimWait {
		wait = agentrpc.MaxClaimWait
	}
	a, err := s.st.GetAgent(ctx, id)
	if err != nil {
		return nil, grpcError(err)
	}
	held, err := s.st.JobsOfAgent(ctx, id)
	if err != nil {
		return nil, grpcError(err)
	}
	if len(held) >= a.Capacity {
		return nil, status.Errorf(codes.ResourceExhausted, "the agent already holds %d job(s), its capacity", len(held))
	}
	c, err := s.sched.ClaimForAgent(ctx, id, wait)
	if err != nil {
		return nil, grpcError(err)
	}
	if c == nil {
		return &agentpb.ClaimResponse{}, nil
	}
	s.cacheClaim(c)
	cancelled := false
	select {
	case <-c.Cancelled:
		cancelled = true
	default:
	}
	job := &agentpb.Job{
		Lease: &agentpb.Lease{JobRunId: c.JobRunID, RunId: c.RunID, LeaseId: c.LeaseID},
		Key:   c.JobKey, Name: c.Name, Attempt: int32(c.Attempt), Request: c.EncodedRequest, Cancelled: cancelled,
		Secrets: c.Request.Env.Secrets, Credentials: credentialsToPB(c.Request.Credentials),
	}
	if !c.LeaseExpiresAt.IsZero() {
		job.LeaseExpiresAtUnixMs = c.LeaseExpiresAt.UnixMilli()
	}
	for _, st := range c.Steps {
		job.Steps = append(job.Steps, &agentpb.Step{Index: int32(st.Index), Id: st.ID, Name: st.Name})
	}
	return &agentpb.ClaimResponse{Job: job}, nil
}

// claim finds the claim a report is about, checking that the calling agent
// holds it.
func (s *Server) claim(ctx context.Context, l *agentpb.Lease) (*worker.Claim, error) {
	if l == nil || l.JobRunId == "" || l.RunId == "" || l.LeaseId == "" {
		return nil, status.Error(codes.InvalidArgument, "lease: job_run_id, run_id and lease_id are required")
	}
	s.mu.Lock()
	c := s.claims[l.LeaseId].c
	s.mu.Unlock()
	if c == nil || c.JobRunID != l.JobRunId {
		var err error
		c, err = s.sched.LoadClaim(ctx, l.RunId, l.JobRunId, l.LeaseId)
		if err != nil {
			return nil, grpcError(err)
		}
		s.cacheClaim(c)
	}
	if c.AgentID != agentFrom(ctx) {
		return nil, status.Errorf(codes.PermissionDenied, "job run %s is leased to another agent", l.JobRunId)
	}
	return c, nil
}

func (s *Server) cacheClaim(c *worker.Claim) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claims[c.LeaseID] = cachedClaim{c: c, at: now}
	if now.Sub(s.pruned) > time.Minute {
		s.pruned = now
		for k, e := range s.claims {
			if now.Sub(e.at) > claimCacheTTL {
				delete(s.claims, k)
			}
		}
	}
}

func (s *Server) dropClaim(leaseID string) {
	s.mu.Lock()
	delete(s.claims, leaseID)
	s.mu.Unlock()
}

// ExtendLease renews a lease and tells whether the run was stopped.
func (s *Server) ExtendLease(ctx context.Context, req *agentpb.ExtendLeaseRequest) (*agentpb.ExtendLeaseResponse, error) {
	c, err := s.claim(ctx, req.Lease)
	if err != nil {
		return nil, err
	}
	cancelled, err := s.sched.Heartbeat(ctx, c)
	if errors.Is(err, runnel.ErrLeaseLost) {
		s.dropClaim(req.Lease.LeaseId)
	}
	if err != nil {
		return nil, grpcError(err)
	}
	return &agentpb.ExtendLeaseResponse{LeaseExpiresAtUnixMs: s.now().Add(s.sched.LeaseDuration()).UnixMilli(), Cancelled: cancelled}, nil
}

// ReportStep records a step's status.
func (s *Server) ReportStep(ctx context.Context, req *agentpb.ReportStepRequest) (*agentpb.ReportStepResponse, error) {
	c, err := s.claim(ctx, req.Lease)
	if err != nil {
		return nil, err
	}
	r, err := stepFromPB(req.Step)
	if err != nil {
		return nil, err
	}
	if err := s.sched.StepStatus(ctx, c, r); err != nil {
		return nil, grpcError(err)
	}
	return &agentpb.ReportStepResponse{}, nil
}

// AppendLogs stores a batch of log lines of one step.
func (s *Server) AppendLogs(ctx context.Context, req *agentpb.AppendLogsRequest) (*agentpb.AppendLogsResponse, error) {
	if len(req.Lines) > maxLogBatch {
		return nil, status.Errorf(codes.InvalidArgument, "lines: %d in one batch, at most %d", len(req.Lines), maxLogBatch)
	}
	c, err := s.claim(ctx, req.Lease)
	if err != nil {
		return nil, err
	}
	lines := make([]store.LogLine, len(req.Lines))
	for i, l := range req.Lines {
		lines[i] = store.LogLine{Level: l.Level, Message: l.Message}
		if l.TimeUnixNano != 0 {
			lines[i].Time = time.Unix(0, l.TimeUnixNano).UTC()
		}
	}
	stored, err := s.sched.AppendStepLogs(ctx, c, int(req.Step), lines)
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &agentpb.AppendLogsResponse{Stored: int32(len(stored))}
	if len(stored) > 0 {
		resp.LastSeq = stored[len(stored)-1].Seq
	}
	return resp, nil
}

// Complete records the job's result.
func (s *Server) Complete(ctx context.Context, req *agentpb.CompleteRequest) (*agentpb.CompleteResponse, error) {
	c, err := s.claim(ctx, req.Lease)
	if err != nil {
		return nil, err
	}
	res, err := resultFromPB(req.Result)
	if err != nil {
		return nil, err
	}
	err = s.sched.Complete(ctx, c, res)
	s.dropClaim(req.Lease.LeaseId)
	if err != nil {
		return nil, grpcError(err)
	}
	return &agentpb.CompleteResponse{}, nil
}

// Interrupt hands a job back unfinished.
func (s *Server) Interrupt(ctx context.Context, req *agentpb.InterruptRequest) (*agentpb.InterruptResponse, error) {
	c, err := s.claim(ctx, req.Lease)
	if err != nil {
		return nil, err
	}
	reason := req.Reason
	if reason == "" {
		reason = "interrupted by the agent"
	}
	err = s.sched.Interrupt(ctx, c, reason)
	s.dropClaim(req.Lease.LeaseId)
	if err != nil {
		return nil, grpcError(err)
	}
	return &agentpb.InterruptResponse{}, nil
}

var stepStatuses = map[string]runnel.StepStatus{}

func init() {
	for _, st := range []runnel.StepStatus{runnel.StepPending, runnel.StepQueued, runnel.StepRunning, runnel.StepSuccess,
		runnel.StepFailed, runnel.StepCancelled, runnel.StepTimeout, runnel.StepSkipped} {
		stepStatuses[string(st)] = st
	}
}

func stepFromPB(p *agentpb.StepReport) (engine.StepReport, error) {
	if p == nil {
		return engine.StepReport{}, status.Error(codes.InvalidArgument, "step: missing")
	}
	st, ok := stepStatuses[p.Status]
	if !ok {
		return engine.StepReport{}, status.Errorf(codes.InvalidArgument, "step.status %q: want one of pending, queued, running, success, failed, cancelled, timeout, skipped", p.Status)
	}
	r := engine.StepReport{Index: int(p.Index), Name: p.Name, Status: st, Error: p.Error, Outputs: p.Outputs}
	if p.ExitCode != nil {
		c := int(*p.ExitCode)
		r.ExitCode = &c
	}
	if p.StartedUnixNano != 0 {
		r.Started = time.Unix(0, p.StartedUnixNano).UTC()
	}
	if p.EndedUnixNano != 0 {
		r.Ended = time.Unix(0, p.EndedUnixNano).UTC()
	}
	return r, nil
}

func resultFromPB(p *agentpb.JobResult) (engine.JobResult, error) {
	if p == nil {
		return engine.JobResult{}, status.Error(codes.InvalidArgument, "result: missing")
	}
	st := runnel.JobStatus(p.Status)
	switch st {
	case runnel.JobSuccess, runnel.JobFailed, runnel.JobCancelled:
	default:
		return engine.JobResult{}, status.Errorf(codes.InvalidArgument, "result.status %q: want success, failed or cancelled", p.Status)
	}
	res := engine.JobResult{Status: st, AllowedFailure: p.AllowedFailure, Outputs: p.Outputs, Reason: p.Reason}
	for i, sp := range p.Steps {
		r, err := stepFromPB(sp)
		if err != nil {
			return engine.JobResult{}, status.Errorf(codes.InvalidArgument, "result.steps[%d]: %v", i, status.Convert(err).Message())
		}
		res.Steps = append(res.Steps, r)
	}
	return res, nil
}

func credentialsToPB(m map[string]runnel.Credential) map[string]*agentpb.Credential {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]*agentpb.Credential, len(m))
	for id, c := range m {
		out[id] = &agentpb.Credential{Id: c.ID, Kind: c.Kind, Host: c.Host, Username: c.Username, Secret: c.Secret}
	}
	return out
}
