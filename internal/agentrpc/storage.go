package agentrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/agentpb"
	"github.com/runnel-ci/runnel/internal/worker"
)

// ChunkSize is the size of the data messages of artifact and cache streams.
const ChunkSize = 256 << 10

// ChunkReader reads the data messages of a stream (after its header, for
// a client stream): Recv returns the next message's data.
type ChunkReader struct {
	Recv func() ([]byte, error)
	buf  []byte
}

func (r *ChunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		b, err := r.Recv()
		if err != nil {
			return 0, err
		}
		r.buf = b
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// remoteStorage is action.Storage over agent.v1 for one claim. Streams are
// not retried: a failed transfer fails the step (or, for caches, is a
// warning), which is retried by the job's own retry policy.
type remoteStorage struct {
	c  *Client
	cl *worker.Claim
}

// Storage binds a claim to the server's artifact and cache storage.
func (c *Client) Storage(cl *worker.Claim) action.Storage { return &remoteStorage{c: c, cl: cl} }

// clientStorageError maps gRPC codes back to the storage errors.
func clientStorageError(err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.NotFound:
		return fmt.Errorf("%s: %w", st.Message(), action.ErrNoArtifact)
	case codes.AlreadyExists:
		return fmt.Errorf("%s: %w", st.Message(), action.ErrArtifactExists)
	case codes.Aborted:
		return fmt.Errorf("%s: %w", st.Message(), runnel.ErrLeaseLost)
	case codes.Canceled:
		return context.Canceled
	}
	return fmt.Errorf("%s: %s", st.Code(), st.Message())
}

func (r *remoteStorage) UploadArtifact(ctx context.Context, name string, src io.Reader) (action.ArtifactInfo, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := r.c.rpc.UploadArtifact(ctx, grpc.WaitForReady(true))
	if err != nil {
		return action.ArtifactInfo{}, clientStorageError(err)
	}
	if err := stream.Send(&agentpb.UploadArtifactRequest{Msg: &agentpb.UploadArtifactRequest_Header{Header: &agentpb.ArtifactHeader{Lease: leaseOf(r.cl), Name: name}}}); err != nil {
		_, err = stream.CloseAndRecv()
		return action.ArtifactInfo{}, clientStorageError(err)
	}
	if err := sendAll(src, func(b []byte) error {
		return stream.Send(&agentpb.UploadArtifactRequest{Msg: &agentpb.UploadArtifactRequest_Data{Data: b}})
	}); err != nil {
		// The source failed (or the server ended the stream): cancelling
		// tells the server to store nothing.
		if errors.Is(err, io.EOF) {
			_, err = stream.CloseAndRecv()
			return action.ArtifactInfo{}, clientStorageError(err)
		}
		cancel()
		return action.ArtifactInfo{}, err
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return action.ArtifactInfo{}, clientStorageError(err)
	}
	i := resp.GetInfo()
	return action.ArtifactInfo{Name: i.GetName(), Size: i.GetSize(), SHA256: i.GetSha256()}, nil
}

func (r *remoteStorage) SaveCache(ctx context.Context, key string, src io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := r.c.rpc.SaveCache(ctx, grpc.WaitForReady(true))
	if err != nil {
		return clientStorageError(err)
	}
	if err := stream.Send(&agentpb.SaveCacheRequest{Msg: &agentpb.SaveCacheRequest_Header{Header: &agentpb.CacheHeader{Lease: leaseOf(r.cl), Key: key}}}); err != nil {
		_, err = stream.CloseAndRecv()
		return cacheSaveError(err)
	}
	if err := sendAll(src, func(b []byte) error {
		return stream.Send(&agentpb.SaveCacheRequest{Msg: &agentpb.SaveCacheRequest_Data{Data: b}})
	}); err != nil {
		if errors.Is(err, io.EOF) {
			_, err = stream.CloseAndRecv()
			return cacheSaveError(err)
		}
		cancel()
		return err
	}
	_, err = stream.CloseAndRecv()
	return cacheSaveError(err)
}

func cacheSaveError(err error) error {
	if status.Code(err) == codes.AlreadyExists {
		return fmt.Errorf("%s: %w", status.Convert(err).Message(), action.ErrCacheExists)
	}
	return clientStorageError(err)
}

// sendAll reads src to its end, sending chunks. A send error is returned as
// io.EOF (the server ended the stream: its status tells why); a read error
// as itself.
func sendAll(src io.Reader, send func([]byte) error) error {
	buf := make([]byte, ChunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if send(buf[:n]) != nil {
				return io.EOF
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (r *remoteStorage) DownloadArtifact(ctx context.Context, name string) (io.ReadCloser, action.ArtifactInfo, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := r.c.rpc.DownloadArtifact(ctx, &agentpb.DownloadArtifactRequest{Lease: leaseOf(r.cl), Name: name}, grpc.WaitForReady(true))
	if err != nil {
		cancel()
		return nil, action.ArtifactInfo{}, clientStorageError(err)
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, action.ArtifactInfo{}, clientStorageError(err)
	}
	i := first.GetInfo()
	if i == nil {
		cancel()
		return nil, action.ArtifactInfo{}, errors.New("download artifact: the server sent no header")
	}
	rc := &streamReadCloser{cancel: cancel, recv: func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return m.GetData(), nil
	}}
	return rc, action.ArtifactInfo{Name: i.Name, Size: i.Size, SHA256: i.Sha256}, nil
}

func (r *remoteStorage) RestoreCache(ctx context.Context, keys []string) (string, io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := r.c.rpc.RestoreCache(ctx, &agentpb.RestoreCacheRequest{Lease: leaseOf(r.cl), Keys: keys}, grpc.WaitForReady(true))
	if err != nil {
		cancel()
		return "", nil, cacheRestoreError(err)
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		return "", nil, cacheRestoreError(err)
	}
	key, ok := first.Msg.(*agentpb.RestoreCacheResponse_Key)
	if !ok {
		cancel()
		return "", nil, errors.New("restore cache: the server sent no key")
	}
	rc := &streamReadCloser{cancel: cancel, recv: func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return m.GetData(), nil
	}}
	return key.Key, rc, nil
}

func cacheRestoreError(err error) error {
	if status.Code(err) == codes.NotFound {
		return action.ErrCacheMiss
	}
	return clientStorageError(err)
}

// streamReadCloser reads data messages of a server stream; Close cancels
// the stream.
type streamReadCloser struct {
	ChunkReader
	recv   func() ([]byte, error)
	cancel context.CancelFunc
	once   sync.Once
}

func (s *streamReadCloser) Read(p []byte) (int, error) {
	if s.ChunkReader.Recv == nil {
		s.ChunkReader.Recv = func() ([]byte, error) {
			b, err := s.recv()
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, clientStorageError(err)
			}
			return b, err
		}
	}
	return s.ChunkReader.Read(p)
}

func (s *streamReadCloser) Close() error {
	s.once.Do(s.cancel)
	return nil
}
