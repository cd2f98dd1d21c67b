package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/worker"
)

// Bus topics.
const (
	// topicWork: jobs were queued (payload unused): waiting claimers look again.
	topicWork = "work"
	// topicCancel: a run was stopped (payload: run id).
	topicCancel = "cancel"
)

// waiter is one claimer blocked in Claim.
type waiter struct {
	agentID string
	labels  map[string]string
	sig     string
	// ch receives exactly one value once the dispatcher took the waiter
	// (taken): the claim, or nil when nothing was claimable after all.
	ch    chan *worker.Claim
	taken bool
	gone  bool
}

// Claim waits up to maxWait for a queued job that an agent with these labels
// may take, and leases it to agentID. It returns (nil, nil) when nothing
// arrived in time, ctx.Err() when ctx ended first.
//
// Claimers do not poll the database each on their own: they wait in this
// process's dispatcher, grouped by label set (agents with equal labels accept
// the same jobs). When work may have arrived (a job was queued by any
// replica — the bus carries the signal — or the poll interval passed), the
// dispatcher reads the distinct route keys of the queue once, and for each
// group with an accepted route claims jobs one at a time for its waiters
// until the queue has nothing more for that group. With many idle agents a
// queued job therefore costs one successful claim and one empty one, not one
// query per agent.
func (s *Scheduler) Claim(ctx context.Context, agentID string, labels map[string]string, maxWait time.Duration) (*worker.Claim, error) {
	if agentID == "" {
		return nil, invalid("claim: no agent id")
	}
	w := &waiter{agentID: agentID, labels: labels, sig: labelSignature(labels), ch: make(chan *worker.Claim, 1)}
	s.mu.Lock()
	s.waiters[w.sig] = append(s.waiters[w.sig], w)
	s.mu.Unlock()
	s.kickDispatcher()
	t := time.NewTimer(maxWait)
	defer t.Stop()
	var cause error
	select {
	case c := <-w.ch:
		return c, nil
	case <-t.C:
	case <-ctx.Done():
		cause = ctx.Err()
	}
	s.mu.Lock()
	if !w.taken {
		s.removeWaiterLocked(w)
		s.mu.Unlock()
		return nil, cause
	}
	w.gone = true
	s.mu.Unlock()
	c := <-w.ch // the dispatcher is claiming for us right now
	if c != nil && cause != nil {
		// The caller went away: put the job back where it was.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.Release(rctx, c); err != nil {
			s.log.Warn("release a claim nobody took", "job_run_id", c.JobRunID, "err", err)
		}
		return nil, cause
	}
	return c, cause
}

// ClaimForAgent waits up to maxWait for a job the registered agent agentID
// may take as its record says now: its labels (an administrator's override
// included), nothing while it is disabled. A claim that no longer fits the
// record when it arrives (the agent was disabled or relabelled while it
// waited) goes back to the queue. (nil, nil): nothing in time.
func (s *Scheduler) ClaimForAgent(ctx context.Context, agentID string, maxWait time.Duration) (*worker.Claim, error) {
	deadline := time.Now().Add(maxWait)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		a, err := s.st.GetAgent(ctx, agentID)
		if err != nil {
			return nil, err
		}
		if a.Disabled {
			// Disabled agents get nothing; enabling takes effect within a
			// poll interval.
			t := time.NewTimer(min(left, s.poll))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
			continue
		}
		c, err := s.Claim(ctx, agentID, a.Labels(), left)
		if c == nil || err != nil {
			return c, err
		}
		now, err := s.st.GetAgent(ctx, agentID)
		if err == nil && !now.Disabled && s.Accepts(now.Labels(), c.RunsOn) {
			return c, nil
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if rerr := s.Release(rctx, c); rerr != nil {
			s.log.Warn("give back a claim", "job_run_id", c.JobRunID, "err", rerr)
		}
		cancel()
		if err != nil {
			return nil, err
		}
	}
}

// ackTimeout is the provisional lease of a claim: an agent that does not
// acknowledge a claim within it (by renewing the lease) loses the job, which
// goes back to the queue as it was.
func (s *Scheduler) ackTimeout() time.Duration {
	return min(s.lease, 10*time.Second)
}

// Accepts reports whether an agent with labels may take a job whose stored
// runsOn is routeKey.
func (s *Scheduler) Accepts(labels map[string]string, routeKey string) bool {
	return s.routes.Matches(routeKey, labels)
}

// Release puts a claim that was not delivered back in the queue, in its
// place, without counting an attempt.
func (s *Scheduler) Release(ctx context.Context, c *worker.Claim) error {
	s.forgetClaim(c.JobRunID)
	err := s.st.ReleaseJob(ctx, c.JobRunID, c.LeaseID)
	s.kickDispatcher()
	return err
}

func (s *Scheduler) removeWaiterLocked(w *waiter) {
	list := s.waiters[w.sig]
	if i := slices.Index(list, w); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(s.waiters, w.sig)
	} else {
		s.waiters[w.sig] = list
	}
}

func (s *Scheduler) kickDispatcher() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// dispatch runs the dispatcher until ctx ends.
func (s *Scheduler) dispatch(ctx context.Context) {
	work, unsub := s.bus.Subscribe(topicWork, 1)
	defer unsub()
	poll := time.NewTicker(s.poll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-work:
		case <-poll.C:
		}
		s.dispatchOnce(ctx)
	}
}

// dispatchOnce hands queued jobs to waiting claimers.
func (s *Scheduler) dispatchOnce(ctx context.Context) {
	s.mu.Lock()
	groups := make([]*waiter, 0, len(s.waiters))
	for _, list := range s.waiters {
		if len(list) > 0 {
			groups = append(groups, list[0]) // a representative of each label set
		}
	}
	s.mu.Unlock()
	if len(groups) == 0 {
		return
	}
	routes, err := s.st.QueuedRoutes(ctx, s.now())
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("read the queue", "err", err)
		}
		return
	}
	if len(routes) == 0 {
		return
	}
	for _, rep := range groups {
		var accepted []string
		for _, r := range routes {
			if s.routes.Matches(r, rep.labels) {
				accepted = append(accepted, r)
			}
		}
		if len(accepted) == 0 {
			continue
		}
		for ctx.Err() == nil {
			w := s.takeWaiter(rep.sig)
			if w == nil {
				break
			}
			c, err := s.claimFor(ctx, w.agentID, accepted)
			s.mu.Lock()
			if c != nil || w.gone {
				s.removeWaiterLocked(w)
				w.ch <- c
			} else {
				w.taken = false
			}
			s.mu.Unlock()
			if c == nil {
				if err != nil && ctx.Err() == nil {
					s.log.Error("claim a job", "agent_id", w.agentID, "err", err)
				}
				break
			}
		}
	}
}

// takeWaiter marks the first free waiter of a label set as taken.
func (s *Scheduler) takeWaiter(sig string) *waiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.waiters[sig] {
		if !w.taken && !w.gone {
			w.taken = true
			return w
		}
	}
	return nil
}

// claimFor claims one job for an agent; (nil, nil) when none is claimable.
func (s *Scheduler) claimFor(ctx context.Context, agentID string, routes []string) (*worker.Claim, error) {
	for {
		j, err := s.st.ClaimJob(ctx, agentID, routes, s.ackTimeout())
		if errors.Is(err, runnel.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		c, err := s.prepareClaim(ctx, j)
		if err == nil {
			return c, nil
		}
		// A job whose request cannot be decoded can never run: fail it
		// rather than hand it out again.
		s.log.Error("claimed job cannot run", "job_run_id", j.ID, "err", err)
		if ferr := s.interrupt(ctx, j.RunID, j.ID, j.LeaseID, "the job cannot be executed: "+err.Error(), false); ferr != nil {
			return nil, ferr
		}
	}
}

// onCancel tells the agents running jobs of a stopped run: agents in this
// process through their claim's channel, remote ones through the cancel
// listeners (their sessions on this replica).
func (s *Scheduler) onCancel(ctx context.Context, runID string) {
	tree, err := s.st.GetRunTree(ctx, runID)
	if err != nil {
		if !errors.Is(err, runnel.ErrNotFound) {
			s.log.Warn("look up a stopped run", "run_id", runID, "err", err)
		}
		return
	}
	var ids []string
	for _, j := range tree.Jobs {
		if j.Status != runnel.JobRunning {
			continue
		}
		ids = append(ids, j.ID)
		s.mu.Lock()
		ls := slices.Clone(s.cancelListeners)
		s.mu.Unlock()
		for _, l := range ls {
			l(j.AgentID, j.ID, j.LeaseID, tree.Run.Reason)
		}
	}
	s.cancelLocal(ids)
}

// OnCancel registers a function called, on every replica, for each running
// job of a run that was stopped: the agent holding it should stop it.
func (s *Scheduler) OnCancel(fn func(agentID, jobRunID, leaseID, reason string)) {
	s.mu.Lock()
	s.cancelListeners = append(s.cancelListeners, fn)
	s.mu.Unlock()
}

// checkRoutes explains, on each queued job, why it waits when no online agent
// may take it ("" once one can). Every replica may run it; the writes are
// idempotent.
func (s *Scheduler) checkRoutes(ctx context.Context) error {
	now := s.now()
	routes, err := s.st.QueuedRoutes(ctx, now)
	if err != nil || len(routes) == 0 {
		return err
	}
	agents, err := s.st.ListAgents(ctx)
	if err != nil {
		return err
	}
	for _, r := range routes {
		reason := s.waitReason(r, agents, now)
		if _, err := s.st.SetQueuedReason(ctx, r, reason); err != nil {
			return err
		}
	}
	return nil
}

// Online reports whether an agent counts as connected at now.
func (s *Scheduler) Online(a *store.Agent, now time.Time) bool {
	return a.LastSeenAt != nil && now.Sub(*a.LastSeenAt) < s.offlineAfter
}

// waitReason says why jobs with route key r cannot start, or "" when an
// online, enabled agent may take them.
func (s *Scheduler) waitReason(r string, agents []*store.Agent, now time.Time) string {
	parsed := s.routes.get(r)
	if parsed.err != nil {
		return "waiting: the job's runsOn cannot be evaluated: " + parsed.err.Error()
	}
	var offline, disabled []string
	online := 0
	for _, a := range agents {
		match := parsed.matches(a.Labels())
		on := s.Online(a, now)
		switch {
		case match && on && !a.Disabled:
			return ""
		case match && a.Disabled:
			disabled = append(disabled, a.ID)
		case match:
			offline = append(offline, a.ID)
		}
		if on && !a.Disabled {
			online++
		}
	}
	want := "any agent"
	if r != "" {
		want = "runsOn " + r
	}
	var b strings.Builder
	fmt.Fprintf(&b, "waiting: no online agent matches %s", want)
	if online == 0 {
		b.WriteString("; no agent is online")
	} else {
		fmt.Fprintf(&b, "; %d online agent(s) do not match", online)
	}
	if len(offline) > 0 {
		fmt.Fprintf(&b, "; matching but offline: %s", strings.Join(firstN(offline, 5), ", "))
	}
	if len(disabled) > 0 {
		fmt.Fprintf(&b, "; matching but disabled: %s", strings.Join(firstN(disabled, 5), ", "))
	}
	return b.String()
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}
