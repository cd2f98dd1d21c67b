// Package streamrpc implements the stream.v1 gRPC service
// (proto/runnel/stream/v1): live run events and step logs for users, read
// from an event.Source and served on the same gRPC server as agent.v1.
//
// The service authenticates each call itself, with a user or admin API
// token; agentrpc's interceptors only guard the agent service.
package streamrpc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/event"
	"github.com/runnel-ci/runnel/internal/identity"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/streampb"
)

const (
	// maxIDLen bounds the ids a request names (real ids are far shorter).
	maxIDLen = 256
	// touchEvery bounds last-used writes per token.
	touchEvery = time.Minute
)

// Options configure a Server.
type Options struct {
	// Source streams the events and log lines.
	Source event.Source
	// Tokens authenticates callers (TokenByHash; TouchToken records use).
	Tokens store.Tokens
	// Users refuses the tokens of disabled or deleted users (nil: tokens are
	// taken as they are).
	Users identity.UserGetter
	// Access decides which streams a caller may follow (the same rules as
	// the HTTP API's; nil: every stream).
	Access Access
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Access is the access policy's stream check (package access implements
// it): ErrNotFound for what the caller may not see; allow filters an
// unfiltered stream by project.
type Access interface {
	Stream(ctx context.Context, projectID, pipelineID, runID, stepRunID string) (allow func(projectID string) bool, err error)
}

// Server implements streampb.StreamServiceServer.
type Server struct {
	streampb.UnimplementedStreamServiceServer
	src    event.Source
	tokens store.Tokens
	users  identity.UserGetter
	access Access
	log    *slog.Logger
	now    func() time.Time
}

// NewServer returns the stream service; add it to a gRPC server with Attach.
func NewServer(o Options) *Server {
	s := &Server{src: o.Source, tokens: o.Tokens, users: o.Users, access: o.Access, log: o.Logger, now: o.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Attach registers StreamService on g.
func (s *Server) Attach(g *grpc.Server) { streampb.RegisterStreamServiceServer(g, s) }

// WatchRun streams a run's events after from_seq, then live ones, until the
// run is over.
func (s *Server) WatchRun(req *streampb.WatchRunRequest, stream grpc.ServerStreamingServer[streampb.Event]) error {
	ctx, err := s.authenticate(stream.Context())
	if err != nil {
		return err
	}
	if err := checkID("run_id", req.RunId); err != nil {
		return err
	}
	if _, err := s.check(ctx, "", "", req.RunId, ""); err != nil {
		return err
	}
	if err := checkFromSeq(req.FromSeq); err != nil {
		return err
	}
	send, sent := s.eventSender(ctx, stream, nil)
	err = s.src.WatchRun(ctx, req.RunId, req.FromSeq, send)
	return s.streamError(ctx, err, *sent, "WatchRun", "run "+req.RunId, slog.String("run_id", req.RunId))
}

// TailLogs streams a step run's log lines after from_seq, then live ones,
// until the step is final.
func (s *Server) TailLogs(req *streampb.TailLogsRequest, stream grpc.ServerStreamingServer[streampb.LogLine]) error {
	ctx, err := s.authenticate(stream.Context())
	if err != nil {
		return err
	}
	if err := checkID("step_run_id", req.StepRunId); err != nil {
		return err
	}
	if _, err := s.check(ctx, "", "", "", req.StepRunId); err != nil {
		return err
	}
	if err := checkFromSeq(req.FromSeq); err != nil {
		return err
	}
	var sendErr error
	err = s.src.TailLogs(ctx, req.StepRunId, req.FromSeq, func(l store.LogLine) error {
		if err := stream.Send(logLineToPB(l)); err != nil {
			sendErr = err
			return err
		}
		return nil
	})
	return s.streamError(ctx, err, sendErr, "TailLogs", "step run "+req.StepRunId, slog.String("step_run_id", req.StepRunId))
}

// WatchEvents streams the events of a project's or a pipeline's runs from
// now on; it ends only when the client goes away (or on an error).
func (s *Server) WatchEvents(req *streampb.WatchEventsRequest, stream grpc.ServerStreamingServer[streampb.Event]) error {
	ctx, err := s.authenticate(stream.Context())
	if err != nil {
		return err
	}
	if req.ProjectId == "" && req.PipelineId == "" {
		return status.Error(codes.InvalidArgument, "project_id or pipeline_id: at least one is required")
	}
	if len(req.ProjectId) > maxIDLen {
		return status.Errorf(codes.InvalidArgument, "project_id: longer than %d bytes", maxIDLen)
	}
	if len(req.PipelineId) > maxIDLen {
		return status.Errorf(codes.InvalidArgument, "pipeline_id: longer than %d bytes", maxIDLen)
	}
	allow, err := s.check(ctx, req.ProjectId, req.PipelineId, "", "")
	if err != nil {
		return err
	}
	send, sent := s.eventSender(ctx, stream, allow)
	// The response headers tell the client that events recorded from now
	// on will reach it.
	ready := func() { _ = stream.SendHeader(nil) }
	err = s.src.Watch(ctx, event.Filter{ProjectID: req.ProjectId, PipelineID: req.PipelineId}, ready, send)
	return s.streamError(ctx, err, *sent, "WatchEvents", "project or pipeline",
		slog.String("project_id", req.ProjectId), slog.String("pipeline_id", req.PipelineId))
}

// eventSender returns the send function handed to the Source, and a pointer
// to the error its last failed Send returned (the Source calls send from the
// calling goroutine, so no locking is needed).
func (s *Server) eventSender(ctx context.Context, stream grpc.ServerStreamingServer[streampb.Event], allow func(string) bool) (func(*store.RunEvent) error, *error) {
	sendErr := new(error)
	return func(ev *store.RunEvent) error {
		if ev == nil || (allow != nil && !allow(ev.ProjectID)) {
			return nil
		}
		pb, derr := eventToPB(ev)
		if derr != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "event sent without its status: undecodable data",
				slog.Int64("event_id", ev.ID), slog.String("run_id", ev.RunID), slog.String("type", ev.Type), slog.Any("error", derr))
		}
		if err := stream.Send(pb); err != nil {
			*sendErr = err
			return err
		}
		return nil
	}, sendErr
}

// streamError maps what the Source returned to the status the stream ends
// with; sent is the error of a failed Send, if any. what names the streamed entity in a NOT_FOUND message; attrs identify
// the stream in the log.
func (s *Server) streamError(ctx context.Context, err, sent error, rpc, what string, attrs ...slog.Attr) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, runnel.ErrNotFound):
		return status.Errorf(codes.NotFound, "%s: not found", what)
	case errors.Is(err, event.ErrTooSlow):
		return status.Error(codes.ResourceExhausted, err.Error())
	case ctx.Err() != nil:
		// The client went away or its deadline passed: whatever the Source
		// said (ctx's error, a failed Send), the stream ends for that reason.
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case sent != nil && errors.Is(err, sent):
		// Send failed (the transport broke): its status says why.
		if _, ok := status.FromError(sent); ok {
			return sent
		}
		return status.Error(codes.Unavailable, "sending to the client failed")
	}
	s.log.LogAttrs(ctx, slog.LevelError, "stream failed",
		append([]slog.Attr{slog.String("rpc", rpc)}, append(attrs, slog.Any("error", err))...)...)
	return status.Errorf(codes.Internal, "internal error while streaming %s; retry later (resume from the last seq received)", what)
}

func checkID(field, v string) error {
	if v == "" {
		return status.Errorf(codes.InvalidArgument, "%s: missing", field)
	}
	if len(v) > maxIDLen {
		return status.Errorf(codes.InvalidArgument, "%s: longer than %d bytes", field, maxIDLen)
	}
	return nil
}

func checkFromSeq(v int64) error {
	if v < 0 {
		return status.Errorf(codes.InvalidArgument, "from_seq: %d is negative; want 0 (from the start) or the last seq received", v)
	}
	return nil
}

// authenticate checks the user or admin API token in the authorization
// metadata and returns it. Only the SHA-256 of a token is stored, so the
// lookup is by hash; the stored hash is still compared in constant time, so
// that a store matching loosely can never let a different token through.
// check asks the access policy whether the caller in ctx may follow a
// stream: what they may not see is NOT_FOUND, as on the HTTP API.
func (s *Server) check(ctx context.Context, projectID, pipelineID, runID, stepRunID string) (func(string) bool, error) {
	if s.access == nil {
		return nil, nil
	}
	allow, err := s.access.Stream(ctx, projectID, pipelineID, runID, stepRunID)
	switch {
	case err == nil:
		return allow, nil
	case errors.Is(err, runnel.ErrNotFound):
		return nil, status.Error(codes.NotFound, err.Error())
	case ctx.Err() != nil:
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "cannot check a stream's access", slog.Any("error", err))
	return nil, status.Error(codes.Unavailable, "cannot check access right now; retry later")
}

// authenticate checks the call's token and returns ctx carrying its
// principal.
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	t, err := s.token(ctx)
	if err != nil {
		return nil, err
	}
	p := runnel.Principal{TokenID: t.ID, Subject: t.Subject, Role: t.Role, Scopes: t.Scopes}
	if s.users != nil {
		if p, err = identity.PrincipalOf(ctx, s.users, t); err != nil {
			return nil, status.Error(codes.Unavailable, "cannot check the API token right now; retry later")
		}
	}
	return runnel.WithPrincipal(ctx, p), nil
}

// token finds and checks the call's API token.
func (s *Server) token(ctx context.Context) (*store.APIToken, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return nil, status.Error(codes.Unauthenticated, "metadata authorization: missing; send \"authorization: Bearer <user or admin API token>\"")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, status.Error(codes.Unauthenticated, "metadata authorization: must be \"Bearer <user or admin API token>\"")
	}
	sum := sha256.Sum256([]byte(tok))
	t, err := s.tokens.TokenByHash(ctx, sum[:])
	if errors.Is(err, runnel.ErrNotFound) || (err == nil && subtle.ConstantTimeCompare(t.Hash, sum[:]) != 1) {
		return nil, status.Error(codes.Unauthenticated, "metadata authorization: unknown or revoked API token")
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		// A database outage is not the client's fault.
		s.log.LogAttrs(ctx, slog.LevelWarn, "cannot look up an API token", slog.Any("error", err))
		return nil, status.Error(codes.Unavailable, "cannot check the API token right now; retry later")
	}
	now := s.now()
	if t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) {
		return nil, status.Errorf(codes.Unauthenticated, "metadata authorization: the API token expired at %s; create a new one", t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	switch t.Role {
	case "admin", "user":
	case "agent":
		return nil, status.Errorf(codes.PermissionDenied, "metadata authorization: agent tokens (%s) cannot call the stream service; use a user or admin API token", t.Name)
	default:
		return nil, status.Errorf(codes.PermissionDenied, "metadata authorization: token role %q is not allowed to call the stream service", t.Role)
	}
	if s.users != nil {
		if _, err := identity.PrincipalOf(ctx, s.users, t); errors.Is(err, runnel.ErrUnauthenticated) {
			return nil, status.Error(codes.Unauthenticated, "metadata authorization: "+err.Error())
		} else if err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "cannot look up a token's user", slog.Any("error", err))
			return nil, status.Error(codes.Unavailable, "cannot check the API token right now; retry later")
		}
	}
	s.touch(ctx, t, now)
	return t, nil
}

// touch records the token's use, at most about once per touchEvery (by the
// stored LastUsedAt). A failed write is logged, never fatal.
func (s *Server) touch(ctx context.Context, t *store.APIToken, now time.Time) {
	if t.LastUsedAt != nil && now.Sub(*t.LastUsedAt) < touchEvery {
		return
	}
	if err := s.tokens.TouchToken(ctx, t.ID, now.UTC()); err != nil && ctx.Err() == nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "cannot record token use", slog.String("token_id", t.ID), slog.Any("error", err))
	}
}

// eventToPB converts a recorded event. The Event is always returned; for the
// .status types, Status holds the decoded StatusChange, left unset (with the
// decoding error returned) when the data cannot be decoded: the caller sends
// the Event anyway, with its raw data_json.
func eventToPB(ev *store.RunEvent) (*streampb.Event, error) {
	pb := &streampb.Event{
		Id: ev.ID, RunId: ev.RunID, Seq: ev.Seq, PipelineId: ev.PipelineID, ProjectId: ev.ProjectID,
		Type: ev.Type, Time: timestamp(ev.Time), DataJson: string(ev.Data),
	}
	if len(ev.Data) == 0 {
		pb.DataJson = "null"
	}
	switch ev.Type {
	case store.EventRunStatus, store.EventJobStatus, store.EventStepStatus:
		var c store.StatusChange
		if err := json.Unmarshal(ev.Data, &c); err != nil {
			return pb, fmt.Errorf("event %d (%s): data: %w", ev.ID, ev.Type, err)
		}
		pb.Status = statusChangeToPB(&c)
	}
	return pb, nil
}

// statusChangeToPB converts the data of a .status event field by field.
func statusChangeToPB(c *store.StatusChange) *streampb.StatusChange {
	pb := &streampb.StatusChange{
		RunId: c.RunID, PipelineId: c.PipelineID, RunNumber: c.RunNumber,
		JobRunId: c.JobRunID, StepRunId: c.StepRunID,
		Key: c.Key, Name: c.Name, Stage: c.Stage, StepIndex: int32(c.StepIndex),
		Status: c.Status, Previous: c.Previous, Attempt: int32(c.Attempt), AgentId: c.AgentID,
		Reason: c.Reason, SystemError: c.SystemError,
	}
	if c.ExitCode != nil {
		code := int32(*c.ExitCode)
		pb.ExitCode = &code
	}
	if c.StartedAt != nil {
		pb.StartedAt = timestamppb.New(*c.StartedAt)
	}
	if c.EndedAt != nil {
		pb.EndedAt = timestamppb.New(*c.EndedAt)
	}
	return pb
}

// logLineToPB converts a stored log line.
func logLineToPB(l store.LogLine) *streampb.LogLine {
	return &streampb.LogLine{Seq: l.Seq, Time: timestamp(l.Time), Level: l.Level, Message: l.Message}
}

// timestamp converts t, leaving the zero time unset.
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
