// Package worker holds the words the scheduler shares with what runs its jobs
// (the agent loop, in the server's process or remote, and the artifact and
// cache storage bound to a claim), so that neither side needs the other's
// package.
package worker

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
