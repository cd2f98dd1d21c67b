// Package engine drives runs: the run-level state machine that decides which job
// starts, is skipped or retried (State), the job executor that runs a job's
// steps on a backend (Executor), and an in-process driver tying both together
// (Runner) used by `runnel exec`. The server drives the same State and Executor
// with a database and a queue in between. The statuses it decides are the
// vocabulary's (package runnel).
package engine
