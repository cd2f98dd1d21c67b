// Package agentrpc is the agent's side of the agent.v1 gRPC protocol
// (proto/runnel/agent/v1): the job source of `runnel agent` and
// runnel-agent, speaking the worker protocol (package worker) to a server's
// agentserver. It links nothing of the control plane.
package agentrpc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/agentpb"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/worker"
)

// MaxClaimWait caps how long one Claim call waits on the server.
const MaxClaimWait = 30 * time.Second

// ClientOptions configure a remote agent's connection.
type ClientOptions struct {
	// Servers are gRPC addresses (host:port) of one or more replicas; the
	// client uses the first that answers and fails over to the others.
	Servers []string
	// TLS, when set, secures the connection; nil → plaintext.
	TLS *tls.Config
	// RegistrationToken buys an identity when IdentityFile has none (or the
	// server no longer knows it).
	RegistrationToken string
	// IdentityFile keeps the agent id and token between restarts.
	IdentityFile string
	Info         *agentpb.AgentInfo
	Logger       *slog.Logger
}

// identity is what IdentityFile holds.
type identity struct {
	AgentID string `json:"agentId"`
	Token   string `json:"token"`
}

// Client is a remote agent's link to the control plane; it implements the
// agent's job source.
type Client struct {
	o    ClientOptions
	log  *slog.Logger
	conn *grpc.ClientConn
	rpc  agentpb.AgentServiceClient

	mu      sync.Mutex
	id      identity
	lease   time.Duration
	ready   chan struct{} // closed once the first session is established
	running map[string]*runningJob
}

type runningJob struct {
	cancel chan struct{}
	closed bool
}

// tokenCreds sends the agent token with every call.
type tokenCreds struct {
	c      *Client
	secure bool
}

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	t.c.mu.Lock()
	tok := t.c.id.Token
	t.c.mu.Unlock()
	if tok == "" {
		return map[string]string{}, nil
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (t tokenCreds) RequireTransportSecurity() bool { return t.secure }

// Dial connects (lazily: no network traffic yet) to the servers.
func Dial(o ClientOptions) (*Client, error) {
	if len(o.Servers) == 0 {
		return nil, errors.New("no server address given")
	}
	c := &Client{o: o, log: o.Logger, ready: make(chan struct{}), running: map[string]*runningJob{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	r := manual.NewBuilderWithScheme("runnel")
	addrs := make([]resolver.Address, len(o.Servers))
	for i, a := range o.Servers {
		addrs[i] = resolver.Address{Addr: a}
	}
	r.InitialState(resolver.State{Addresses: addrs})
	tc := insecure.NewCredentials()
	if o.TLS != nil {
		tc = credentials.NewTLS(o.TLS)
	}
	conn, err := grpc.NewClient(r.Scheme()+":///runnel",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(tc),
		grpc.WithPerRPCCredentials(tokenCreds{c: c, secure: o.TLS != nil}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithReadBufferSize(16<<10), grpc.WithWriteBufferSize(16<<10),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", strings.Join(o.Servers, ","), err)
	}
	c.conn, c.rpc = conn, agentpb.NewAgentServiceClient(conn)
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// AgentID is the identity in use ("" before Start).
func (c *Client) AgentID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id.AgentID
}

// Start loads the identity, registering when there is none, and keeps the
// agent's session open (reconnecting) until ctx ends. It returns once the
// first session is established, or with the error that prevents one.
func (c *Client) Start(ctx context.Context) error {
	if err := c.loadIdentity(); err != nil {
		return err
	}
	if c.AgentID() == "" {
		if err := c.register(ctx); err != nil {
			return err
		}
	}
	first := make(chan error, 1)
	go c.sessionLoop(ctx, first)
	select {
	case err := <-first:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) loadIdentity() error {
	b, err := os.ReadFile(c.o.IdentityFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read agent identity: %w", err)
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil || id.AgentID == "" || id.Token == "" {
		return fmt.Errorf("agent identity %s is damaged (remove it to register again): %v", c.o.IdentityFile, err)
	}
	c.mu.Lock()
	c.id = id
	c.mu.Unlock()
	return nil
}

func (c *Client) register(ctx context.Context) error {
	if c.o.RegistrationToken == "" {
		return errors.New("this agent has no identity yet: give a registration token (--token), created with POST /api/v1/registration-tokens")
	}
	var resp *agentpb.RegisterResponse
	err := c.retry(ctx, func(ctx context.Context) error {
		var err error
		resp, err = c.rpc.Register(ctx, &agentpb.RegisterRequest{RegistrationToken: c.o.RegistrationToken, Info: c.o.Info}, grpc.WaitForReady(true))
		return err
	})
	if err != nil {
		return fmt.Errorf("register: %s", status.Convert(err).Message())
	}
	id := identity{AgentID: resp.AgentId, Token: resp.AgentToken}
	b, _ := json.MarshalIndent(id, "", "  ")
	if err := os.MkdirAll(filepath.Dir(c.o.IdentityFile), 0o700); err != nil {
		return err
	}
	tmp := c.o.IdentityFile + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save agent identity: %w", err)
	}
	if err := os.Rename(tmp, c.o.IdentityFile); err != nil {
		return fmt.Errorf("save agent identity: %w", err)
	}
	c.mu.Lock()
	c.id = id
	c.mu.Unlock()
	c.log.Info("registered", "agent_id", id.AgentID)
	return nil
}

// sessionLoop keeps a Connect stream open.
func (c *Client) sessionLoop(ctx context.Context, first chan<- error) {
	backoff := 100 * time.Millisecond
	reported := false
	for ctx.Err() == nil {
		err := c.session(ctx, func() {
			backoff = 100 * time.Millisecond
			if !reported {
				reported = true
				first <- nil
			}
		})
		if ctx.Err() != nil {
			break
		}
		if status.Code(err) == codes.Unauthenticated {
			c.log.Warn("the server no longer knows this agent's identity", "err", status.Convert(err).Message())
			if c.o.RegistrationToken != "" {
				if rerr := c.register(ctx); rerr == nil {
					continue
				} else {
					err = rerr
				}
			}
			if !reported {
				first <- fmt.Errorf("connect: %s", status.Convert(err).Message())
				return
			}
		} else if status.Code(err) == codes.InvalidArgument && !reported {
			first <- fmt.Errorf("connect: %s", status.Convert(err).Message())
			return
		}
		c.log.Warn("session with the server ended; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	if !reported {
		first <- ctx.Err()
	}
}

func (c *Client) session(ctx context.Context, connected func()) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	running := make([]string, 0, len(c.running))
	for id := range c.running {
		running = append(running, id)
	}
	c.mu.Unlock()
	first := false
	select {
	case <-c.ready:
	default:
		first = true // no session yet in this process
	}
	stream, err := c.rpc.Connect(sctx, &agentpb.ConnectRequest{Info: c.o.Info, RunningJobRunIds: running, FirstSession: first}, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return err
		}
		switch e := ev.Event.(type) {
		case *agentpb.ServerEvent_Connected:
			cd := e.Connected
			c.mu.Lock()
			c.lease = time.Duration(cd.LeaseDurationMs) * time.Millisecond
			c.mu.Unlock()
			c.log.Info("connected", "agent_id", cd.AgentId, "labels", worker.FormatLabels(cd.Labels), "disabled", cd.Disabled, "lease", c.lease)
			for _, id := range cd.HandedBackJobRunIds {
				c.log.Warn("the server handed back a job this agent no longer runs", "job_run_id", id)
			}
			select {
			case <-c.ready:
			default:
				close(c.ready)
			}
			connected()
		case *agentpb.ServerEvent_Cancel:
			c.log.Info("job cancelled", "job_run_id", e.Cancel.JobRunId, "reason", e.Cancel.Reason)
			c.cancelJob(e.Cancel.JobRunId)
		}
	}
}

func (c *Client) cancelJob(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.running[id]; r != nil && !r.closed {
		r.closed = true
		close(r.cancel)
	}
}

func (c *Client) forget(id string) {
	c.mu.Lock()
	delete(c.running, id)
	c.mu.Unlock()
}

// retry runs fn until it succeeds, fails for good, or ctx ends. Transient
// failures (the server is restarting, a replica died and the connection
// moves to another) are retried with backoff: a report lost in a failover
// would otherwise cost the job its lease.
func (c *Client) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		err := fn(ctx)
		switch status.Code(err) {
		case codes.Unavailable, codes.Unknown:
		default:
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		c.log.Debug("retrying a call", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// sourceError turns a call's error into what the agent loop understands.
func sourceError(err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	if st.Code() == codes.Aborted {
		return fmt.Errorf("%s: %w", st.Message(), runnel.ErrLeaseLost)
	}
	return fmt.Errorf("%s: %s", st.Code(), st.Message())
}

func leaseOf(cl *worker.Claim) *agentpb.Lease {
	return &agentpb.Lease{JobRunId: cl.JobRunID, RunId: cl.RunID, LeaseId: cl.LeaseID}
}

// Claim waits for the next job (Start must have succeeded).
func (c *Client) Claim(ctx context.Context) (*worker.Claim, error) {
	select {
	case <-c.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		var resp *agentpb.ClaimResponse
		err := c.retry(ctx, func(ctx context.Context) error {
			cctx, cancel := context.WithTimeout(ctx, MaxClaimWait+15*time.Second)
			defer cancel()
			var err error
			resp, err = c.rpc.Claim(cctx, &agentpb.ClaimRequest{WaitMs: (MaxClaimWait - 5*time.Second).Milliseconds()}, grpc.WaitForReady(true))
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if status.Code(err) == codes.DeadlineExceeded {
				continue
			}
			return nil, sourceError(err)
		}
		if resp.Job == nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		return c.claimFrom(ctx, resp.Job)
	}
}

func (c *Client) claimFrom(ctx context.Context, j *agentpb.Job) (*worker.Claim, error) {
	l := j.Lease
	if l == nil {
		return nil, errors.New("the server sent a job without a lease")
	}
	cl := &worker.Claim{
		JobRef:  worker.JobRef{RunID: l.RunId, JobRunID: l.JobRunId, JobKey: j.Key, LeaseID: l.LeaseId},
		Name:    j.Name,
		Attempt: int(j.Attempt), EncodedRequest: j.Request,
	}
	if j.LeaseExpiresAtUnixMs != 0 {
		cl.LeaseExpiresAt = time.UnixMilli(j.LeaseExpiresAtUnixMs).UTC()
	}
	for _, st := range j.Steps {
		cl.Steps = append(cl.Steps, &worker.Step{ID: st.Id, Index: int(st.Index), Name: st.Name})
	}
	req, err := engine.DecodeRequest(j.Request)
	if err != nil {
		// The job cannot run here (a newer server?): fail it with the reason.
		reason := "the agent cannot decode the job: " + err.Error()
		c.log.Error("cannot run a claimed job", "job_run_id", cl.JobRunID, "err", err)
		ierr := c.retry(ctx, func(ctx context.Context) error {
			_, err := c.rpc.Complete(ctx, &agentpb.CompleteRequest{Lease: l, Result: &agentpb.JobResult{Status: string(runnel.JobFailed), Reason: reason}}, grpc.WaitForReady(true))
			return err
		})
		if ierr != nil {
			c.log.Error("report an undecodable job", "job_run_id", cl.JobRunID, "err", ierr)
		}
		return nil, errors.New(reason)
	}
	req.Env.Secrets = j.Secrets
	req.Credentials = credentialsFromPB(j.Credentials)
	cl.Request = req
	rj := &runningJob{cancel: make(chan struct{})}
	if j.Cancelled {
		rj.closed = true
		close(rj.cancel)
	}
	c.mu.Lock()
	c.running[cl.JobRunID] = rj
	c.mu.Unlock()
	cl.Cancelled = rj.cancel
	return cl, nil
}

// Heartbeat renews the lease.
func (c *Client) Heartbeat(ctx context.Context, cl *worker.Claim) (bool, error) {
	var resp *agentpb.ExtendLeaseResponse
	err := c.retry(ctx, func(ctx context.Context) error {
		var err error
		resp, err = c.rpc.ExtendLease(ctx, &agentpb.ExtendLeaseRequest{Lease: leaseOf(cl)}, grpc.WaitForReady(true))
		return err
	})
	if err != nil {
		err = sourceError(err)
		if errors.Is(err, runnel.ErrLeaseLost) {
			c.forget(cl.JobRunID)
		}
		return false, err
	}
	return resp.Cancelled, nil
}

// StepStatus reports a step's status.
func (c *Client) StepStatus(ctx context.Context, cl *worker.Claim, r engine.StepReport) error {
	return sourceError(c.retry(ctx, func(ctx context.Context) error {
		_, err := c.rpc.ReportStep(ctx, &agentpb.ReportStepRequest{Lease: leaseOf(cl), Step: stepToPB(r)}, grpc.WaitForReady(true))
		return err
	}))
}

// AppendLogs sends a batch of a step's log lines.
func (c *Client) AppendLogs(ctx context.Context, cl *worker.Claim, step int, lines []runnel.LogLine) error {
	req := &agentpb.AppendLogsRequest{Lease: leaseOf(cl), Step: int32(step), Lines: make([]*agentpb.LogLine, len(lines))}
	for i, l := range lines {
		req.Lines[i] = &agentpb.LogLine{TimeUnixNano: l.Time.UnixNano(), Level: l.Level, Message: l.Message}
	}
	return sourceError(c.retry(ctx, func(ctx context.Context) error {
		_, err := c.rpc.AppendLogs(ctx, req, grpc.WaitForReady(true))
		return err
	}))
}

// Complete reports the job's result.
func (c *Client) Complete(ctx context.Context, cl *worker.Claim, res engine.JobResult) error {
	defer c.forget(cl.JobRunID)
	return sourceError(c.retry(ctx, func(ctx context.Context) error {
		_, err := c.rpc.Complete(ctx, &agentpb.CompleteRequest{Lease: leaseOf(cl), Result: resultToPB(res)}, grpc.WaitForReady(true))
		return err
	}))
}

// Interrupt hands a job back unfinished.
func (c *Client) Interrupt(ctx context.Context, cl *worker.Claim, reason string) error {
	defer c.forget(cl.JobRunID)
	return sourceError(c.retry(ctx, func(ctx context.Context) error {
		_, err := c.rpc.Interrupt(ctx, &agentpb.InterruptRequest{Lease: leaseOf(cl), Reason: reason}, grpc.WaitForReady(true))
		return err
	}))
}

// Abandon forgets a claim the agent drops without a report.
func (c *Client) Abandon(cl *worker.Claim) { c.forget(cl.JobRunID) }

// LeaseDuration is the server's lease, learned when the session opened.
func (c *Client) LeaseDuration() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lease <= 0 {
		return worker.DefaultLeaseDuration
	}
	return c.lease
}

func stepToPB(r engine.StepReport) *agentpb.StepReport {
	p := &agentpb.StepReport{Index: int32(r.Index), Name: r.Name, Status: string(r.Status), Error: r.Error, Outputs: r.Outputs}
	if r.ExitCode != nil {
		c := int32(*r.ExitCode)
		p.ExitCode = &c
	}
	if !r.Started.IsZero() {
		p.StartedUnixNano = r.Started.UnixNano()
	}
	if !r.Ended.IsZero() {
		p.EndedUnixNano = r.Ended.UnixNano()
	}
	return p
}

func resultToPB(r engine.JobResult) *agentpb.JobResult {
	p := &agentpb.JobResult{Status: string(r.Status), AllowedFailure: r.AllowedFailure, Outputs: r.Outputs, Reason: r.Reason}
	for _, st := range r.Steps {
		p.Steps = append(p.Steps, stepToPB(st))
	}
	return p
}

func credentialsFromPB(m map[string]*agentpb.Credential) map[string]runnel.Credential {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]runnel.Credential, len(m))
	for id, c := range m {
		out[id] = runnel.Credential{ID: c.GetId(), Kind: c.GetKind(), Host: c.GetHost(), Username: c.GetUsername(), Secret: c.GetSecret()}
	}
	return out
}
