package agentserver

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/agentpb"
	"github.com/runnel-ci/runnel/internal/agentrpc"
)

// storageError maps storage outcomes to gRPC codes (see the proto).
func storageError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, action.ErrNoArtifact), errors.Is(err, action.ErrCacheMiss):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, action.ErrArtifactExists), errors.Is(err, action.ErrCacheExists):
		return status.Error(codes.AlreadyExists, err.Error())
	}
	return grpcError(err)
}

// storageFor binds a claim of the calling agent to its storage.
func (s *Server) storageFor(ctx context.Context, l *agentpb.Lease) (action.Storage, error) {
	c, err := s.claim(ctx, l)
	if err != nil {
		return nil, err
	}
	st := s.sched.Storage(c)
	if st == nil {
		return nil, status.Error(codes.FailedPrecondition, "the server has no artifact and cache storage configured")
	}
	return st, nil
}

// UploadArtifact stores an artifact streamed by the agent.
func (s *Server) UploadArtifact(stream grpc.ClientStreamingServer[agentpb.UploadArtifactRequest, agentpb.UploadArtifactResponse]) error {
	h, r, err := receiveUpload(stream.Recv)
	if err != nil {
		return err
	}
	st, err := s.storageFor(stream.Context(), h.Lease)
	if err != nil {
		return err
	}
	info, err := st.UploadArtifact(stream.Context(), h.Name, r)
	if err != nil {
		return storageError(err)
	}
	return stream.SendAndClose(&agentpb.UploadArtifactResponse{Info: &agentpb.ArtifactInfo{Name: info.Name, Size: info.Size, Sha256: info.SHA256}})
}

// DownloadArtifact streams an artifact of the job's run to the agent.
func (s *Server) DownloadArtifact(req *agentpb.DownloadArtifactRequest, stream grpc.ServerStreamingServer[agentpb.DownloadArtifactResponse]) error {
	st, err := s.storageFor(stream.Context(), req.Lease)
	if err != nil {
		return err
	}
	rc, info, err := st.DownloadArtifact(stream.Context(), req.Name)
	if err != nil {
		return storageError(err)
	}
	defer rc.Close()
	if err := stream.Send(&agentpb.DownloadArtifactResponse{Msg: &agentpb.DownloadArtifactResponse_Info{Info: &agentpb.ArtifactInfo{Name: info.Name, Size: info.Size, Sha256: info.SHA256}}}); err != nil {
		return err
	}
	return sendChunks(rc, func(b []byte) error {
		return stream.Send(&agentpb.DownloadArtifactResponse{Msg: &agentpb.DownloadArtifactResponse_Data{Data: b}})
	})
}

// RestoreCache streams the cache entry found for the keys.
func (s *Server) RestoreCache(req *agentpb.RestoreCacheRequest, stream grpc.ServerStreamingServer[agentpb.RestoreCacheResponse]) error {
	if len(req.Keys) == 0 {
		return status.Error(codes.InvalidArgument, "keys: at least one")
	}
	st, err := s.storageFor(stream.Context(), req.Lease)
	if err != nil {
		return err
	}
	key, rc, err := st.RestoreCache(stream.Context(), req.Keys)
	if err != nil {
		return storageError(err)
	}
	defer rc.Close()
	if err := stream.Send(&agentpb.RestoreCacheResponse{Msg: &agentpb.RestoreCacheResponse_Key{Key: key}}); err != nil {
		return err
	}
	return sendChunks(rc, func(b []byte) error {
		return stream.Send(&agentpb.RestoreCacheResponse{Msg: &agentpb.RestoreCacheResponse_Data{Data: b}})
	})
}

// SaveCache stores a cache entry streamed by the agent.
func (s *Server) SaveCache(stream grpc.ClientStreamingServer[agentpb.SaveCacheRequest, agentpb.SaveCacheResponse]) error {
	h, r, err := receiveUpload(stream.Recv)
	if err != nil {
		return err
	}
	st, err := s.storageFor(stream.Context(), h.Lease)
	if err != nil {
		return err
	}
	if err := st.SaveCache(stream.Context(), h.Key, r); err != nil {
		return storageError(err)
	}
	return stream.SendAndClose(&agentpb.SaveCacheResponse{})
}

func sendChunks(r io.Reader, send func([]byte) error) error {
	buf := make([]byte, agentrpc.ChunkSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if serr := send(buf[:n]); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Internal, "read stored data: %v", err)
		}
	}
}

// uploadMessage is a message of an upload stream: a header first, then data.
type uploadMessage[H comparable] interface {
	GetHeader() H
	GetData() []byte
}

// receiveUpload reads an upload stream's header and returns it with a reader
// of the data messages that follow; a missing or second header is refused.
func receiveUpload[M uploadMessage[H], H comparable](recv func() (M, error)) (H, *agentrpc.ChunkReader, error) {
	var none H
	first, err := recv()
	if err != nil {
		return none, nil, err
	}
	h := first.GetHeader()
	if h == none {
		return none, nil, status.Error(codes.InvalidArgument, "the first message must be the header")
	}
	return h, &agentrpc.ChunkReader{Recv: func() ([]byte, error) {
		m, err := recv()
		if err != nil {
			return nil, err
		}
		if m.GetHeader() != none {
			return nil, status.Error(codes.InvalidArgument, "a second header")
		}
		return m.GetData(), nil
	}}, nil
}
