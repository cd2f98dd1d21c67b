package sqlstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
)

// claimable is the queue condition shared by QueuedRoutes, ClaimJob's lookup
// of route heads and the claim itself. The literal 'queued' lets both databases use the partial
// indexes (job_runs_queue, job_runs_route), also in generic plans.
const claimable = `status = 'queued' AND (retry_at IS NULL OR retry_at <= ?)`

// QueuedRoutes lists the distinct runs_on values of the job runs claimable at
// now, exactly as stored (so each can be passed back to ClaimJob), in byte
// order.
//
// It is a loose index scan over job_runs_route (runs_on first): a recursive
// query that jumps from one runs_on value to the next greater one, one index
// probe per distinct value, so its cost grows with the number of routes, not
// with the number of queued job runs (10,000 waiting for the same labels cost
// one probe). Job runs still waiting for their retry time are skipped within
// a value's range.
func (s *Store) QueuedRoutes(ctx context.Context, now time.Time) ([]string, error) {
	const next = `SELECT runs_on FROM job_runs WHERE ` + claimable
	rows, err := s.query(ctx, s.r, `WITH RECURSIVE routes (runs_on) AS (
			SELECT (`+next+` ORDER BY runs_on LIMIT 1)
			UNION ALL
			SELECT (`+next+` AND runs_on > routes.runs_on ORDER BY runs_on LIMIT 1)
			FROM routes WHERE routes.runs_on IS NOT NULL
		)
		SELECT runs_on FROM routes WHERE runs_on IS NOT NULL`, micros(now), micros(now))
	if err != nil {
		return nil, fmt.Errorf("queued routes: %w", err)
	}
	routes, err := collect(rows, scanString)
	if err != nil {
		return nil, fmt.Errorf("queued routes: %w", err)
	}
	// The databases order text by different collations: byte order is the
	// same everywhere.
	slices.Sort(routes)
	return routes, nil
}

// ClaimJob leases to agentID for d the oldest claimable job run (by
// queued_at, then id) whose runs_on is one of routes.
//
// First, on the read pool, it looks up the head of each route: its oldest
// claimable job run, one probe of job_runs_route (runs_on, queued_at, id)
// per route, so job runs queued for other labels cost nothing, however many.
// No head means nothing to claim: an agent with nothing to do polls, and is
// answered without a write transaction (which on SQLite would queue behind
// every writer).
//
// Then it claims from the routes in the order of their heads, oldest first,
// one route at a time with one statement, UPDATE … WHERE id = (SELECT … WHERE
// runs_on = ? ORDER BY queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED), which
// walks that route's index range in queue order. On PostgreSQL a row another
// claimer is taking is skipped, not waited for, and the lock re-checks that
// the row is still claimable; on SQLite the statement runs without the lock
// clause in a BEGIN IMMEDIATE transaction, which excludes every other
// claimer. Either way a job run is handed out once, and only the claimed row
// is locked, so concurrent claimers go on to the next one. A route emptied by
// other claimers since the lookup is passed over for the next one.
//
// (One statement with runs_on IN (…) would be simpler but, with several
// routes, must sort every claimable row of all of them to find the oldest:
// tens of milliseconds for a backlog of 10,000.)
func (s *Store) ClaimJob(ctx context.Context, agentID string, routes []string, d time.Duration) (*store.JobRun, error) {
	op := "claim job for agent " + agentID
	if agentID == "" || d <= 0 {
		return nil, invalid(op, "the agent id must not be empty and the lease must be positive")
	}
	routes = uniqueStrings(routes)
	if len(routes) == 0 {
		return nil, fmt.Errorf("%s: no route given: %w", op, store.ErrNotFound)
	}
	now := s.nowUTC()
	heads, err := s.routeHeads(ctx, routes, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if len(heads) == 0 {
		return nil, fmt.Errorf("%s: no claimable job run has one of its routes: %w", op, store.ErrNotFound)
	}
	lease := newLeaseID()
	var claimed *store.JobRun
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		for _, route := range heads {
			j, err := scanJob(s.queryRow(ctx, tx, `UPDATE job_runs SET status = 'running', agent_id = ?,
				lease_id = ?, lease_expires_at = ?, started_at = COALESCE(started_at, ?), reason = '', acked = FALSE
				WHERE id = (SELECT id FROM job_runs WHERE `+claimable+` AND runs_on = ?
					ORDER BY queued_at, id LIMIT 1`+s.d.skipLocked+`) AND status = 'queued'
				RETURNING `+jobCols,
				agentID, lease, micros(now.Add(d)), micros(now), micros(now), route))
			if errors.Is(err, sql.ErrNoRows) {
				// Taken by other claimers since the lookup (or, on
				// PostgreSQL, being taken: locked rows are skipped).
				continue
			}
			claimed = j
			return err
		}
		claimed = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if claimed == nil {
		return nil, fmt.Errorf("%s: no claimable job run has one of its routes: %w", op, store.ErrNotFound)
	}
	return claimed, nil
}

// routeHeads returns the routes that have a claimable job run at now, in the
// order of their oldest one (queued_at, then id, compared by the database as
// within a route). It reads the read pool: one index probe per route.
func (s *Store) routeHeads(ctx context.Context, routes []string, now time.Time) ([]string, error) {
	var b strings.Builder
	args := make([]any, 0, 2*len(routes))
	b.WriteString(`SELECT runs_on FROM (`)
	for i, r := range routes {
		if i > 0 {
			b.WriteString(` UNION ALL `)
		}
		fmt.Fprintf(&b, `SELECT * FROM (SELECT runs_on, queued_at, id FROM job_runs WHERE %s AND runs_on = ?
			ORDER BY queued_at, id LIMIT 1) AS h%d`, claimable, i)
		args = append(args, micros(now), r)
	}
	b.WriteString(`) AS heads ORDER BY queued_at, id`)
	rows, err := s.query(ctx, s.r, b.String(), args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanString)
}

// uniqueStrings returns ss without repeats, in first-seen order.
func uniqueStrings(ss []string) []string {
	if len(ss) < 2 {
		return ss
	}
	seen := make(map[string]bool, len(ss))
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// ReleaseJob puts a job run claimed under leaseID back in the queue, in the
// place it had: status queued, no agent, no lease, no start time; queued_at,
// retry_at and attempt are untouched. The condition (running under leaseID)
// is part of the UPDATE, so a release races safely with a scheduler taking
// the job away: whichever commits second finds it changed.
func (s *Store) ReleaseJob(ctx context.Context, jobRunID, leaseID string) error {
	op := "release job run " + jobRunID
	var ok bool
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var err error
		ok, err = s.execOne(ctx, tx, `UPDATE job_runs SET status = 'queued', agent_id = '', lease_id = '',
			lease_expires_at = NULL, started_at = NULL, acked = FALSE
			WHERE id = ? AND status = 'running' AND lease_id = ? AND lease_id <> ''`, jobRunID, leaseID)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if ok {
		return nil
	}
	var one int
	err = s.queryRow(ctx, s.r, `SELECT 1 FROM job_runs WHERE id = ?`, jobRunID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return notFound(op)
	case err != nil:
		return fmt.Errorf("%s: %w", op, err)
	default:
		return fmt.Errorf("%s: %w", op, store.ErrLeaseLost)
	}
}

// SetQueuedReason sets reason on the queued job runs of one runs_on value
// whose reason differs, and returns how many it changed (0 when they all
// said so already, so a scheduler can call it every round cheaply).
func (s *Store) SetQueuedReason(ctx context.Context, runsOn, reason string) (int, error) {
	var n int64
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE job_runs SET reason = ?
			WHERE status = 'queued' AND runs_on = ? AND reason <> ?`, reason, runsOn, reason)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("set the reason of job runs queued for %q: %w", runsOn, err)
	}
	return int(n), nil
}

// newLeaseID returns a random lease id: an agent holding an old lease of the
// same job run can never present the new one.
func newLeaseID() string {
	return "lease_" + rand.Text()
}

// ExtendLease moves a held lease's expiry to now+d. A lease that expired,
// even if nobody took the job yet, is lost: the scheduler may already be
// interrupting the job.
func (s *Store) ExtendLease(ctx context.Context, jobRunID, leaseID string, d time.Duration) (time.Time, error) {
	op := "extend lease of job run " + jobRunID
	if d <= 0 {
		return time.Time{}, invalid(op, "the lease must be positive")
	}
	if leaseID == "" {
		return time.Time{}, fmt.Errorf("%s: no lease given: %w", op, store.ErrLeaseLost)
	}
	now := s.nowUTC()
	exp := now.Add(d)
	// The first renewal acknowledges the claim: the job becomes "running" in
	// the run's events, which needs the run locked first (run, then job).
	var (
		runID string
		acked bool
	)
	err := s.queryRow(ctx, s.r, `SELECT run_id, acked FROM job_runs WHERE id = ?`, jobRunID).Scan(&runID, &acked)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, fmt.Errorf("%s: %w", op, store.ErrLeaseLost)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", op, err)
	}
	var ok bool
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var er *eventRun
		wasAcked := true
		if !acked {
			var err error
			if er, err = s.lockEventRun(ctx, tx, runID); err != nil {
				return err
			}
			// Read again under the run's lock: a concurrent first renewal
			// waits for it too, so exactly one sees false.
			if err := s.queryRow(ctx, tx, `SELECT acked FROM job_runs WHERE id = ?`, jobRunID).Scan(&wasAcked); err != nil {
				return err
			}
		}
		j, err := scanJob(s.queryRow(ctx, tx, `UPDATE job_runs SET lease_expires_at = ?, acked = TRUE
			WHERE id = ? AND lease_id = ? AND status = 'running' AND lease_expires_at > ?
			RETURNING `+jobCols, micros(exp), jobRunID, leaseID, micros(now)))
		if errors.Is(err, sql.ErrNoRows) {
			ok = false
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		if wasAcked {
			return nil
		}
		if err := s.emitStatus(ctx, tx, er, store.EventJobStatus, jobChange(j, string(runnel.JobQueued))); err != nil {
			return err
		}
		return s.queueSteps(ctx, tx, er, jobRunID)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", op, err)
	}
	if !ok {
		return time.Time{}, fmt.Errorf("%s: %w", op, store.ErrLeaseLost)
	}
	return exp, nil
}

// queueSteps makes the pending steps of a job run whose claim was just
// acknowledged queued (they wait for their turn on the agent now), and
// records their step.status events in step order. The caller holds the
// run's lock (er) and the job row.
//
// Steps become queued at the acknowledgement, not at the claim, as the job
// becomes running in events: until then the claim is provisional (it may go
// back to the queue untouched), so a step's stored status and its events
// always agree.
func (s *Store) queueSteps(ctx context.Context, tx *sql.Tx, er *eventRun, jobRunID string) error {
	rows, err := s.query(ctx, tx, `UPDATE step_runs SET status = 'queued' WHERE job_run_id = ? AND status = 'pending'
		RETURNING `+stepCols, jobRunID)
	if err != nil {
		return err
	}
	steps, err := collect(rows, scanStep)
	if err != nil {
		return err
	}
	slices.SortFunc(steps, func(a, b *store.StepRun) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), strings.Compare(a.ID, b.ID))
	})
	for _, st := range steps {
		if err := s.emitStatus(ctx, tx, er, store.EventStepStatus, stepChange(jobRunID, st, string(runnel.StepPending))); err != nil {
			return err
		}
	}
	return nil
}

// UpdateStep records an agent's report on a step: status, exit code, error
// and times of the step run st.ID, if the job run it belongs to still holds
// leaseID, running and unexpired. On PostgreSQL the job row is share-locked
// for the check, so a concurrent UpdateRunTx that takes the job away either
// commits first (and this fails) or waits for this report.
func (s *Store) UpdateStep(ctx context.Context, leaseID string, st *store.StepRun) error {
	if st == nil || st.ID == "" {
		return invalid("update step", "no step run id given")
	}
	op := "update step run " + st.ID
	now := s.nowUTC()
	// The run, to lock it first when the report changes the step's status
	// (an event is recorded): run, then job, then step, as UpdateRunTx.
	var runID, prevStatus string
	err := s.queryRow(ctx, s.r, `SELECT j.run_id, s.status FROM step_runs s JOIN job_runs j ON j.id = s.job_run_id
		WHERE s.id = ?`, st.ID).Scan(&runID, &prevStatus)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(op)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var er *eventRun
		if runnel.StepStatus(prevStatus) != st.Status {
			var err error
			if er, err = s.lockEventRun(ctx, tx, runID); err != nil {
				return err
			}
		}
		if err := s.checkLease(ctx, tx, op, leaseID, st.ID, now, s.d.forShare); err != nil {
			return err
		}
		var cur store.StepRun
		var jobRunID string
		if err := s.queryRow(ctx, tx, `SELECT job_run_id, idx, name, status FROM step_runs WHERE id = ?`, st.ID).
			Scan(&jobRunID, &cur.Index, &cur.Name, &cur.Status); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `UPDATE step_runs SET status = ?, exit_code = ?, error = ?, started_at = ?,
			ended_at = ? WHERE id = ?`,
			st.Status, nullInt(st.ExitCode), st.Error, nullMicros(st.StartedAt), nullMicros(st.EndedAt), st.ID)
		if err != nil || cur.Status == st.Status {
			return err
		}
		if er == nil {
			// Changed since it was read: retried with the run locked.
			prevStatus = string(cur.Status)
			return errStepChanged
		}
		after := *st
		after.Index, after.Name = cur.Index, cur.Name
		return s.emitStatus(ctx, tx, er, store.EventStepStatus, stepChange(jobRunID, &after, string(cur.Status)))
	})
	if errors.Is(err, errStepChanged) {
		return s.UpdateStep(ctx, leaseID, st)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrLeaseLost) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return err
}

// errStepChanged rolls back an UpdateStep that found the step's status
// changed since it was read without the run's lock.
var errStepChanged = errors.New("step status changed")

// checkLease checks that the job run of step run stepRunID holds leaseID,
// running and unexpired at now: ErrLeaseLost if not, ErrNotFound (both
// wrapped with op) if the step run does not exist. lock is appended to the
// query: FOR SHARE in a write transaction on PostgreSQL, so that the job run
// cannot be taken away before the transaction commits.
func (s *Store) checkLease(ctx context.Context, q querier, op, leaseID, stepRunID string, now time.Time, lock string) error {
	var one int
	err := s.queryRow(ctx, q, `SELECT 1 FROM job_runs
		WHERE id = (SELECT job_run_id FROM step_runs WHERE id = ?)
		AND lease_id = ? AND lease_id <> '' AND status = 'running' AND lease_expires_at > ?`+lock,
		stepRunID, leaseID, micros(now)).Scan(&one)
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	err = s.queryRow(ctx, q, `SELECT 1 FROM step_runs WHERE id = ?`, stepRunID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(op)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%s: %w", op, store.ErrLeaseLost)
}

// ExpiredLeases lists running job runs whose lease ended at or before now
// (the instant from which ExtendLease refuses it), soonest expired first.
func (s *Store) ExpiredLeases(ctx context.Context, now time.Time) ([]*store.JobRun, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+jobCols+` FROM job_runs
		WHERE status = 'running' AND lease_expires_at <= ? ORDER BY lease_expires_at, id`, micros(now))
	if err != nil {
		return nil, fmt.Errorf("expired leases: %w", err)
	}
	jobs, err := collect(rows, scanJob)
	if err != nil {
		return nil, fmt.Errorf("expired leases: %w", err)
	}
	return jobs, nil
}

// JobsOfAgent lists the running job runs leased to an agent, oldest start first.
func (s *Store) JobsOfAgent(ctx context.Context, agentID string) ([]*store.JobRun, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+jobCols+` FROM job_runs
		WHERE status = 'running' AND agent_id = ? ORDER BY started_at, id`, agentID)
	if err != nil {
		return nil, fmt.Errorf("jobs of agent %s: %w", agentID, err)
	}
	jobs, err := collect(rows, scanJob)
	if err != nil {
		return nil, fmt.Errorf("jobs of agent %s: %w", agentID, err)
	}
	return jobs, nil
}

// RunningJobsByAgent maps each agent id to the ids of its running job runs,
// oldest start first. A running job run without an agent (which the store's
// own operations never make) is listed under "".
func (s *Store) RunningJobsByAgent(ctx context.Context) (map[string][]string, error) {
	rows, err := s.query(ctx, s.r, `SELECT agent_id, id FROM job_runs WHERE status = 'running'
		ORDER BY COALESCE(started_at, 0), id`)
	if err != nil {
		return nil, fmt.Errorf("running jobs by agent: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var agent, id string
		if err := rows.Scan(&agent, &id); err != nil {
			return nil, fmt.Errorf("running jobs by agent: %w", err)
		}
		out[agent] = append(out[agent], id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("running jobs by agent: %w", err)
	}
	return out, nil
}
