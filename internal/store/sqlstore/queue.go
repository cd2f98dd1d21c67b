package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// claimBatch is how many queued job runs one claim reads at a time to offer
// to match.
const claimBatch = 32

// claimable is the queue condition shared by the claim and its cheap
// pre-check. The literal 'queued' lets SQLite use the partial index.
const claimable = `status = 'queued' AND (retry_at IS NULL OR retry_at <= ?)`

// ClaimJob leases the oldest claimable job run that match accepts (nil
// accepts any) to agentID for d.
//
// It reads candidates in queue order (oldest queued_at first) a batch at a
// time, offers them to match, and locks the first accepted one with FOR
// UPDATE SKIP LOCKED on PostgreSQL: a row another claimer is taking is
// skipped, not waited for, and the lock re-checks that the row is still
// claimable (the batch was read without locks). match is asked again on the
// locked, current row, then the row is updated. On SQLite the same runs in a
// BEGIN IMMEDIATE transaction, which excludes every other claimer. Either way
// a job run is handed out once.
//
// Only the row being claimed is locked, not the whole batch: locking 32 rows
// to take one would hide the other 31 from concurrent claimers, who would
// then report "nothing claimable" (and wait for their next poll) although
// work is queued.
//
// match runs inside the transaction, possibly more than once for one job
// run: it must be quick, free of side effects, and must not use the Store.
func (s *Store) ClaimJob(ctx context.Context, agentID string, match func(*store.JobRun) bool, d time.Duration) (*store.JobRun, error) {
	op := "claim job for agent " + agentID
	if agentID == "" || d <= 0 {
		return nil, invalid(op, "the agent id must not be empty and the lease must be positive")
	}
	if match == nil {
		match = func(*store.JobRun) bool { return true }
	}
	now := s.nowUTC()
	// Idle agents poll: answer "nothing" from the read pool, without a write
	// transaction (which on SQLite would queue behind every writer).
	var one int
	err := s.queryRow(ctx, s.r, `SELECT 1 FROM job_runs WHERE `+claimable+` LIMIT 1`, micros(now)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: no job run is claimable: %w", op, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	lease := newLeaseID()
	var claimed *store.JobRun
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		claimed = nil
		var (
			after   bool
			afterAt int64
			afterID string
		)
		for {
			q := `SELECT ` + jobCols + ` FROM job_runs WHERE ` + claimable
			args := []any{micros(now)}
			if after {
				// Keyset paging in queue order; queued rows always have a
				// queued_at (the store sets it when a job is queued).
				q += ` AND (queued_at > ? OR (queued_at = ? AND id > ?))`
				args = append(args, afterAt, afterAt, afterID)
			}
			rows, err := s.query(ctx, tx, q+` ORDER BY queued_at, id LIMIT ?`, append(args, claimBatch)...)
			if err != nil {
				return err
			}
			batch, err := collect(rows, scanJob)
			if err != nil {
				return err
			}
			for _, j := range batch {
				if !match(j) {
					continue
				}
				cur, err := scanJob(s.queryRow(ctx, tx, `SELECT `+jobCols+` FROM job_runs WHERE id = ? AND `+
					claimable+s.d.skipLocked, j.ID, micros(now)))
				if errors.Is(err, sql.ErrNoRows) {
					continue // taken (or being taken) by another claimer
				}
				if err != nil {
					return err
				}
				if !match(cur) {
					continue
				}
				claimed, err = scanJob(s.queryRow(ctx, tx, `UPDATE job_runs SET status = 'running', agent_id = ?,
					lease_id = ?, lease_expires_at = ?, started_at = COALESCE(started_at, ?)
					WHERE id = ? RETURNING `+jobCols,
					agentID, lease, micros(now.Add(d)), micros(now), j.ID))
				return err
			}
			if len(batch) < claimBatch {
				return nil
			}
			last := batch[len(batch)-1]
			after, afterID = true, last.ID
			if last.QueuedAt != nil {
				afterAt = micros(*last.QueuedAt)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if claimed == nil {
		return nil, fmt.Errorf("%s: no claimable job run matches: %w", op, store.ErrNotFound)
	}
	return claimed, nil
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
	var ok bool
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var err error
		ok, err = s.execOne(ctx, tx, `UPDATE job_runs SET lease_expires_at = ?
			WHERE id = ? AND lease_id = ? AND status = 'running' AND lease_expires_at > ?`,
			micros(exp), jobRunID, leaseID, micros(now))
		return err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", op, err)
	}
	if !ok {
		return time.Time{}, fmt.Errorf("%s: %w", op, store.ErrLeaseLost)
	}
	return exp, nil
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
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var one int
		err := s.queryRow(ctx, tx, `SELECT 1 FROM job_runs
			WHERE id = (SELECT job_run_id FROM step_runs WHERE id = ?)
			AND lease_id = ? AND lease_id <> '' AND status = 'running' AND lease_expires_at > ?`+s.d.forShare,
			st.ID, leaseID, micros(now)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			err = s.queryRow(ctx, tx, `SELECT 1 FROM step_runs WHERE id = ?`, st.ID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return notFound(op)
			}
			if err != nil {
				return err
			}
			return fmt.Errorf("%s: %w", op, store.ErrLeaseLost)
		}
		if err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `UPDATE step_runs SET status = ?, exit_code = ?, error = ?, started_at = ?,
			ended_at = ? WHERE id = ?`,
			st.Status, nullInt(st.ExitCode), st.Error, nullMicros(st.StartedAt), nullMicros(st.EndedAt), st.ID)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrLeaseLost) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return err
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
