// Package event owns what happens to a run's recorded events after they are
// committed: the live streams (a run's status changes and a step's log lines,
// replayed from the database then followed, across replicas), and the
// delivery of CDEvents and notifications through the outbox.
package event

import (
	"context"
	"errors"

	"github.com/runnel-ci/runnel/internal/store"
)

// ErrTooSlow ends a stream whose consumer fell too far behind: it is told so
// and disconnected, so that it cannot hold memory or stall the server.
var ErrTooSlow = errors.New("the client fell too far behind the stream and was disconnected; reconnect and resume from the last seq received")

// Filter selects the runs whose events Watch streams: those of a project, of
// a pipeline, or of both; empty fields match all.
type Filter struct {
	ProjectID  string
	PipelineID string
}

// Source is what the WebSocket gateway and the gRPC stream.v1 service read.
// Each method calls send for every item in order, from the calling
// goroutine, until ctx ends (returning ctx's error), send fails (returning
// its error), or the stream is complete (nil). Unknown runs and steps are
// runnel.ErrNotFound; a consumer whose send blocks too long gets ErrTooSlow.
// LogBatchSource is a Source that can hand over a step's log lines a page
// at a time: TailLogs's stream in the same order, with the same ending, but
// in slices (never empty), so a gateway can send a batch per message.
type LogBatchSource interface {
	TailLogBatches(ctx context.Context, stepRunID string, fromSeq int64, send func([]store.LogLine) error) error
}

type Source interface {
	// WatchRun streams the run's events with Seq > fromSeq: the recorded
	// ones first, then new ones as they commit on any replica, each once,
	// in Seq order. It returns nil after the event that ends the run (the
	// run final and every job ended).
	WatchRun(ctx context.Context, runID string, fromSeq int64, send func(*store.RunEvent) error) error
	// TailLogs streams the step's log lines with Seq > fromSeq: the stored
	// ones, then new ones as they are appended, each once, in Seq order. It
	// returns nil once the step is final and every line was sent.
	TailLogs(ctx context.Context, stepRunID string, fromSeq int64, send func(store.LogLine) error) error
	// Watch streams events of the runs f selects from now on, in order per
	// run: every event recorded after ready is called (ready may be nil).
	// It never completes by itself.
	Watch(ctx context.Context, f Filter, ready func(), send func(*store.RunEvent) error) error
}
