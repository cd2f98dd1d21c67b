// Package agent is the worker loop: claim a job, run its steps on a backend
// through the engine's Executor, report status and logs as they happen, renew
// the lease, stop when the run is stopped or the lease is lost, and report the
// result. The embedded agent of `runnel server` runs it in-process; remote
// agents will run the same loop over gRPC.
package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/worker"
)

// Source is where an agent gets work and reports it: scheduler.LocalSource
// for the server's embedded agent, agentrpc.Client for a remote agent.
type Source interface {
	// Claim blocks until a job for this agent is leased to it, or ctx ends.
	Claim(ctx context.Context) (*worker.Claim, error)
	Heartbeat(ctx context.Context, c *worker.Claim) (cancelled bool, err error)
	StepStatus(ctx context.Context, c *worker.Claim, r engine.StepReport) error
	AppendLogs(ctx context.Context, c *worker.Claim, step int, lines []runnel.LogLine) error
	Complete(ctx context.Context, c *worker.Claim, res engine.JobResult) error
	// Interrupt hands a job back unfinished (the agent is shutting down): it is
	// retried if its retry allows, else failed with reason.
	Interrupt(ctx context.Context, c *worker.Claim, reason string) error
	// Abandon tells the source the agent drops the claim without a report
	// (its lease was lost, or it could not acknowledge it).
	Abandon(c *worker.Claim)
	LeaseDuration() time.Duration
	// Storage binds the claim to the run's artifacts and the pipeline's
	// caches; nil when there are none.
	Storage(c *worker.Claim) action.Storage
}

// Agent runs up to Capacity jobs at once.
type Agent struct {
	// ID names the agent in logs.
	ID       string
	Capacity int
	Source   Source
	Executor *engine.Executor
	Logger   *slog.Logger
	// FlushInterval bounds how long log lines wait before they are stored.
	FlushInterval time.Duration
}

// Run claims and executes jobs until ctx ends; running jobs are then stopped
// and reported.
func (a *Agent) Run(ctx context.Context) error {
	log := a.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	capacity := max(a.Capacity, 1)
	slots := make(chan struct{}, capacity)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := a.Source.Claim(ctx)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			log.Error("claim a job", "agent_id", a.ID, "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			a.execute(ctx, c, log)
		}()
	}
}

// execute runs one claimed job to its end and reports the result.
func (a *Agent) execute(agentCtx context.Context, c *worker.Claim, log *slog.Logger) {
	// soft: the run was stopped (always() steps still run); hard: the lease was
	// lost or the agent shuts down (nothing more runs).
	soft, cancelSoft := context.WithCancel(context.Background())
	defer cancelSoft()
	hard, cancelHard := context.WithCancel(context.Background())
	defer cancelHard()
	stopHard := context.AfterFunc(agentCtx, cancelHard)
	defer stopHard()

	// Acknowledge the claim before running anything: a claim is only
	// provisional (its lease is short) until the agent renews it once. A job
	// that was handed to an agent that never acknowledged it (frozen, cut
	// off, or restarted before the answer arrived) provably never ran, and
	// goes back to the queue without costing an attempt.
	ackCtx, ackCancel := context.WithTimeout(agentCtx, a.Source.LeaseDuration())
	cancelled, err := a.Source.Heartbeat(ackCtx, c)
	ackCancel()
	if err != nil {
		log.Warn("claim not acknowledged: the job is left to the server", "job_run_id", c.JobRunID, "err", err)
		a.Source.Abandon(c)
		return
	}
	if cancelled {
		cancelSoft()
	}

	done := make(chan struct{})
	leaseLost := false
	var hbWG sync.WaitGroup
	hbWG.Add(1)
	go func() {
		defer hbWG.Done()
		// Renew at a third of the lease, so two renewals may fail before it
		// runs out. Cancellation does not wait for it: it arrives on
		// c.Cancelled as soon as the run is stopped.
		every := min(max(a.Source.LeaseDuration()/3, 100*time.Millisecond), 10*time.Second)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-c.Cancelled:
				cancelSoft()
				c.Cancelled = nil // a nil channel blocks: checked once
			case <-t.C:
				cancelled, err := a.Source.Heartbeat(hard, c)
				switch {
				case errors.Is(err, runnel.ErrLeaseLost):
					log.Warn("lease lost: stopping the job", "job_run_id", c.JobRunID)
					leaseLost = true
					cancelHard()
					return
				case err != nil:
					log.Warn("heartbeat failed", "job_run_id", c.JobRunID, "err", err)
				case cancelled:
					cancelSoft()
				}
			}
		}
	}()

	rep := newReporter(a, c, log)
	req := c.Request
	req.Hard = hard
	req.Storage = a.Source.Storage(c)
	res := a.Executor.Execute(soft, req, rep)
	rep.close()
	close(done)
	hbWG.Wait()
	if leaseLost {
		rep.dropHeld()
		a.Source.Abandon(c)
		return // the job belongs to someone else now: report nothing
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(agentCtx), 30*time.Second)
	defer cancel()
	if agentCtx.Err() != nil && soft.Err() == nil {
		// The agent is shutting down, the run was not stopped: the job did not
		// fail, it was interrupted. It goes back to the scheduler.
		rep.sendHeld()
		if err := a.Source.Interrupt(ctx, c, "interrupted: the agent shut down"); err != nil {
			log.Error("hand back an interrupted job", "job_run_id", c.JobRunID, "err", err)
		}
		return
	}
	// The result carries every step's final report: a last report still
	// held need not travel on its own.
	rep.dropHeld()
	if err := a.Source.Complete(ctx, c, res); err != nil {
		log.Error("report job result", "job_run_id", c.JobRunID, "err", err)
	}
}

// heldFor bounds how long a step's final report waits for a next report or
// the job's result (see reporter).
const heldFor = 250 * time.Millisecond

// reporter forwards step status changes and batches log lines. A step's
// final status is held until the next report (sent first, in order), the
// job's result (which carries it: the report is dropped) or heldFor,
// whichever comes first: the last step of every job then costs one write
// less, and its final status is never later than heldFor.
type reporter struct {
	a   *Agent
	c   *worker.Claim
	log *slog.Logger

	// statusMu orders status reports: held, timer and sends.
	statusMu  sync.Mutex
	held      *engine.StepReport
	heldTimer *time.Timer

	mu      sync.Mutex
	pending map[int][]runnel.LogLine
	// flushMu serialises flushes, so a step's batches are stored in order.
	flushMu sync.Mutex
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newReporter(a *Agent, c *worker.Claim, log *slog.Logger) *reporter {
	r := &reporter{a: a, c: c, log: log, pending: map[int][]runnel.LogLine{}, stop: make(chan struct{})}
	every := a.FlushInterval
	if every <= 0 {
		every = 200 * time.Millisecond
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.flush()
			}
		}
	}()
	return r
}

func (r *reporter) StepStatus(s engine.StepReport) {
	// Lines of a step are stored before the step is reported finished, so a
	// reader that sees the final status sees the whole log.
	if s.Status.Terminal() {
		r.flush()
	}
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	r.sendHeldLocked()
	if s.Status.Terminal() {
		r.held = &s
		r.heldTimer = time.AfterFunc(heldFor, r.sendHeld)
		return
	}
	r.send(s)
}

func (r *reporter) send(s engine.StepReport) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.a.Source.StepStatus(ctx, r.c, s); err != nil {
		r.log.Warn("report step status", "job_run_id", r.c.JobRunID, "step", s.Index, "err", err)
	}
}

// sendHeld sends the held report, if any.
func (r *reporter) sendHeld() {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	r.sendHeldLocked()
}

func (r *reporter) sendHeldLocked() {
	if r.held == nil {
		return
	}
	r.heldTimer.Stop()
	s := *r.held
	r.held = nil
	r.send(s)
}

// dropHeld forgets the held report: the job's result carries it.
func (r *reporter) dropHeld() {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	if r.held != nil {
		r.heldTimer.Stop()
		r.held = nil
	}
}

func (r *reporter) StepLog(step int, t time.Time, level, line string) {
	r.mu.Lock()
	r.pending[step] = append(r.pending[step], runnel.LogLine{Time: t.UTC(), Level: level, Message: line})
	n := len(r.pending[step])
	r.mu.Unlock()
	if n >= 500 {
		r.flush()
	}
}

func (r *reporter) flush() {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	batch := r.pending
	r.pending = map[int][]runnel.LogLine{}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for step, lines := range batch {
		if err := r.a.Source.AppendLogs(ctx, r.c, step, lines); err != nil {
			r.log.Warn("store log lines", "job_run_id", r.c.JobRunID, "step", step, "lines", len(lines), "err", err)
		}
	}
}

func (r *reporter) close() {
	close(r.stop)
	r.wg.Wait()
	r.flush()
}
