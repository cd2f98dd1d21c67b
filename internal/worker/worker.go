// Package worker holds the words the scheduler shares with what runs its jobs
// (the agent loop, in the server's process or remote, the agent's gRPC
// client, and the artifact and cache storage bound to a claim), so that
// neither side needs the other's package.
package worker

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/spec"
)

// DefaultLeaseDuration is how long a claim lasts without a heartbeat when
// the server does not say otherwise.
const DefaultLeaseDuration = 30 * time.Second

// JobRef names a claimed job for storage: writes check that LeaseID still
// holds the job run.
type JobRef struct {
	PipelineID string
	RunID      string
	JobRunID   string
	// JobKey is the plan's job id ("stage/job[k=v]"), the same across attempts.
	JobKey  string
	LeaseID string
}

// Claim is a job handed to an agent under a lease: what to run, and the
// lease that fences every report about it.
type Claim struct {
	JobRef
	Name    string
	Attempt int
	// AgentID holds the lease; RunsOn is the job's routing key.
	AgentID        string
	RunsOn         string
	LeaseExpiresAt time.Time
	// EncodedRequest is the job request as stored (without secrets): what a
	// remote agent is sent. Request is it decoded, with the secrets and
	// credentials the job refers to.
	EncodedRequest []byte
	Request        engine.JobRequest
	Steps          []*Step
	// Cancelled is closed when the run is stopped. The scheduler closes it for
	// claims made in its process; a remote agent's client closes its own copy
	// when its session hears of the cancellation (Heartbeat tells it too).
	Cancelled <-chan struct{}
}

// Step is one step of a claimed job and the state last recorded for it
// (kept by the side that records reports; an agent only needs the names).
type Step struct {
	ID        string
	Index     int
	Name      string
	Status    runnel.StepStatus
	ExitCode  *int
	Error     string
	StartedAt *time.Time
	EndedAt   *time.Time
}

// FormatLabels writes labels as k=v,k=v (sorted), for messages.
func FormatLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return "(no labels)"
	}
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

// ParseLabels reads k=v,k=v (as given to --labels). Keys and values follow
// the label rules of runsOn.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", part)
		}
		if err := spec.CheckLabel(k, v); err != nil {
			return nil, fmt.Errorf("label %q: %v", part, err)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("label %q: key %s given twice", part, k)
		}
		out[k] = v
	}
	return out, nil
}
