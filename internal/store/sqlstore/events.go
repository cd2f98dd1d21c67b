package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
)

// Run events are written by the transactions that change what they describe:
// CreateRun, UpdateRunTx (UpdateRun, UpdateJob, UpdateStep, AddEvent), and
// the agent's own reports that change a status (UpdateStep, and the first
// ExtendLease, which acknowledges a claim and makes the job "running" in
// events). Each holds the run row's lock (FOR UPDATE on PostgreSQL, taken
// first; SQLite has one writer) when it takes the run's next seq, and keeps
// it to commit: a run's events commit in seq order, and a reader following
// a run by seq never skips one.
// Lock order is the run row first, then job rows, then step rows, in every
// transaction that records events, as in UpdateRunTx, so none can deadlock
// with another.

// maxListEvents bounds one page of events.
const maxListEvents = 1000

// eventRun is what an event needs to know about its run.
type eventRun struct {
	id, pipelineID, projectID string
	number                    int64
	sinks                     []string // the pipeline's own
	// forge: the pipeline is bound to a forge repository (its runs report
	// commit statuses): 0 no, 1 the run's statuses, 2 the jobs' too.
	forge int
}

// forgeStatuses is eventRun.forge of the run r's pipeline, as SQL.
const forgeStatuses = `COALESCE((SELECT CASE WHEN b.job_statuses THEN 2 ELSE 1 END FROM pipeline_repos b
		WHERE b.pipeline_id = r.pipeline_id), 0)`

// lockEventRun reads (and on PostgreSQL locks) the run an event is about.
func (s *Store) lockEventRun(ctx context.Context, tx *sql.Tx, runID string) (*eventRun, error) {
	q := `SELECT r.pipeline_id, r.number, p.project_id, p.event_sinks,
		` + forgeStatuses + ` FROM runs r
		JOIN pipelines p ON p.id = r.pipeline_id WHERE r.id = ?`
	if s.d.postgres {
		q += ` FOR UPDATE OF r`
	}
	er := &eventRun{id: runID}
	var sinks string
	if err := s.queryRow(ctx, tx, q, runID).Scan(&er.pipelineID, &er.number, &er.projectID, &sinks, &er.forge); err != nil {
		return nil, err
	}
	if err := decodeJSON(sinks, &er.sinks); err != nil {
		return nil, fmt.Errorf("pipeline %s: event sinks: %w", er.pipelineID, err)
	}
	return er, nil
}

// finalRun reports whether a run status is final.
func finalRun(status string) bool { return runnel.RunStatus(status).Terminal() }

// publicJobStatus is a job's status as events tell it: a claim the agent has
// not acknowledged yet may still go back to the queue, so it is "queued".
func publicJobStatus(status string, acked bool) string {
	if status == string(runnel.JobRunning) && !acked {
		return string(runnel.JobQueued)
	}
	return status
}

// outboxSinks says where an event must be delivered (see store.Events).
func (s *Store) outboxSinks(er *eventRun, typ string, sc *store.StatusChange) []string {
	var out []string
	cd := false
	switch typ {
	case store.EventRunStatus:
		cd = true
		if finalRun(sc.Status) && !finalRun(sc.Previous) {
			out = append(out, store.NotifySink)
		}
	case store.EventJobStatus:
		cd = sc.Status != sc.Previous && (sc.Status == string(runnel.JobRunning) || sc.Previous == string(runnel.JobRunning))
	}
	if cd && (er.forge == 2 || (er.forge == 1 && typ == store.EventRunStatus)) {
		out = append(out, store.ForgeStatusSink)
	}
	if cd {
		for _, sink := range append(slices.Clone(s.sinks), er.sinks...) {
			if sink != "" && !slices.Contains(out, sink) {
				out = append(out, sink)
			}
		}
	}
	return out
}

// emitStatus records a status change of er's run.
func (s *Store) emitStatus(ctx context.Context, tx *sql.Tx, er *eventRun, typ string, sc *store.StatusChange) error {
	sc.RunID, sc.PipelineID, sc.RunNumber = er.id, er.pipelineID, er.number
	data, err := json.Marshal(sc)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", typ, err)
	}
	_, err = s.emit(ctx, tx, er, typ, data, s.outboxSinks(er, typ, sc))
	return err
}

// emit records an event of er's run and queues it for sinks.
func (s *Store) emit(ctx context.Context, tx *sql.Tx, er *eventRun, typ string, data []byte, sinks []string) (*store.RunEvent, error) {
	now := s.nowUTC()
	e := &store.RunEvent{RunID: er.id, PipelineID: er.pipelineID, ProjectID: er.projectID, Type: typ,
		Data: json.RawMessage(data), Time: now}
	// The next seq of the run: one probe of the (run_id, seq) index. The
	// caller holds the run row's lock (or created the run), so no other
	// transaction takes a seq of this run until this one commits.
	if err := s.queryRow(ctx, tx, `INSERT INTO run_events (run_id, seq, pipeline_id, project_id, type, data, created_at)
		SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ? FROM run_events WHERE run_id = ?
		RETURNING id, seq`, e.RunID, e.PipelineID, e.ProjectID, e.Type, string(data), micros(now), e.RunID).
		Scan(&e.ID, &e.Seq); err != nil {
		return nil, fmt.Errorf("record %s event: %w", typ, err)
	}
	for _, sink := range sinks {
		if _, err := s.exec(ctx, tx, `INSERT INTO event_outbox (event_id, run_id, sink, next_attempt_at, created_at)
			VALUES (?, ?, ?, ?, ?)`, e.ID, e.RunID, sink, micros(now), micros(now)); err != nil {
			return nil, fmt.Errorf("queue %s event for delivery: %w", typ, err)
		}
	}
	return e, nil
}

// runChange is the StatusChange of a run.
func runChange(r *store.Run, prev string) *store.StatusChange {
	return &store.StatusChange{Status: string(r.Status), Previous: prev, Reason: r.Reason,
		StartedAt: r.StartedAt, EndedAt: r.EndedAt}
}

// jobChange is the StatusChange of a job run (status as events tell it).
func jobChange(j *store.JobRun, prev string) *store.StatusChange {
	return &store.StatusChange{JobRunID: j.ID, Key: j.Key, Name: j.Name, Stage: j.Stage,
		Status: publicJobStatus(string(j.Status), j.Acked), Previous: prev, Attempt: j.Attempt, AgentID: j.AgentID,
		Reason: j.Reason, StartedAt: j.StartedAt, EndedAt: j.EndedAt}
}

// stepChange is the StatusChange of a step run.
func stepChange(jobRunID string, st *store.StepRun, prev string) *store.StatusChange {
	return &store.StatusChange{JobRunID: jobRunID, StepRunID: st.ID, StepIndex: st.Index, Name: st.Name,
		Status: string(st.Status), Previous: prev, Reason: st.Error, ExitCode: st.ExitCode,
		StartedAt: st.StartedAt, EndedAt: st.EndedAt}
}

// systemError reports whether none of a run's jobs ever started.
func (s *Store) systemError(ctx context.Context, tx *sql.Tx, runID string) (bool, error) {
	var n int
	err := s.queryRow(ctx, tx, `SELECT COUNT(*) FROM job_runs WHERE run_id = ? AND started_at IS NOT NULL`, runID).Scan(&n)
	return n == 0, err
}

// failedJobs lists a run's failed job runs in plan order for its end event
// (store.ListFailedJobs), as tx sees them.
func (s *Store) failedJobs(ctx context.Context, tx *sql.Tx, runID string) ([]store.FailedJob, int, error) {
	rows, err := s.query(ctx, tx, `SELECT id, job_key, name, reason, allowed_failure FROM job_runs
		WHERE run_id = ? AND status = 'failed' ORDER BY idx, job_key`, runID)
	if err != nil {
		return nil, 0, err
	}
	jobs, err := collect(rows, func(sc scanner) (*store.JobRun, error) {
		j := &store.JobRun{Status: runnel.JobFailed}
		return j, sc.Scan(&j.ID, &j.Key, &j.Name, &j.Reason, &j.AllowedFailure)
	})
	if err != nil {
		return nil, 0, err
	}
	out, n := store.ListFailedJobs(jobs)
	return out, n, nil
}

const eventCols = `id, run_id, seq, pipeline_id, project_id, type, data, created_at`

func scanEvent(sc scanner) (*store.RunEvent, error) {
	var (
		e       store.RunEvent
		data    string
		created int64
	)
	if err := sc.Scan(&e.ID, &e.RunID, &e.Seq, &e.PipelineID, &e.ProjectID, &e.Type, &data, &created); err != nil {
		return nil, err
	}
	e.Data, e.Time = json.RawMessage(data), fromMicros(created)
	return &e, nil
}

func eventLimit(limit int) int {
	if limit <= 0 || limit > maxListEvents {
		return maxListEvents
	}
	return limit
}

// ListRunEvents lists a run's events after a seq.
func (s *Store) ListRunEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]*store.RunEvent, error) {
	op := "list events of run " + runID
	rows, err := s.query(ctx, s.r, `SELECT `+eventCols+` FROM run_events WHERE run_id = ? AND seq > ?
		ORDER BY seq LIMIT ?`, runID, afterSeq, eventLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	out, err := collect(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if len(out) == 0 {
		if _, err := s.GetRun(ctx, runID); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	return out, nil
}

// ListEventsAfter lists events after an id, in id order.
func (s *Store) ListEventsAfter(ctx context.Context, afterID int64, limit int) ([]*store.RunEvent, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+eventCols+` FROM run_events WHERE id > ? ORDER BY id LIMIT ?`,
		afterID, eventLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("list events after %d: %w", afterID, err)
	}
	out, err := collect(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("list events after %d: %w", afterID, err)
	}
	return out, nil
}

// LastEventID returns the greatest event id.
func (s *Store) LastEventID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	if err := s.queryRow(ctx, s.r, `SELECT MAX(id) FROM run_events`).Scan(&id); err != nil {
		return 0, fmt.Errorf("last event id: %w", err)
	}
	return id.Int64, nil
}

// ClaimDeliveries leases the due heads of the outbox's (sink, run) queues.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*store.Delivery, error) {
	const op = "claim event deliveries"
	if lease <= 0 || limit <= 0 {
		return nil, invalid(op, "the lease and the limit must be positive")
	}
	// Nothing due, the usual answer, costs a read instead of a write
	// transaction.
	var one int
	err := s.queryRow(ctx, s.r, `SELECT 1 FROM event_outbox WHERE next_attempt_at <= ? AND locked_until <= ? LIMIT 1`,
		micros(now), micros(now)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var ids []int64
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		rows, err := s.query(ctx, tx, `SELECT o.id FROM event_outbox o
			WHERE o.next_attempt_at <= ? AND o.locked_until <= ?
			AND NOT EXISTS (SELECT 1 FROM event_outbox p WHERE p.sink = o.sink AND p.run_id = o.run_id AND p.id < o.id)
			ORDER BY o.next_attempt_at, o.id LIMIT ?`+s.d.skipLocked, micros(now), micros(now), limit)
		if err != nil {
			return err
		}
		if ids, err = collect(rows, func(sc scanner) (int64, error) {
			var id int64
			return id, sc.Scan(&id)
		}); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		args := []any{micros(now.Add(lease))}
		for _, id := range ids {
			args = append(args, id)
		}
		_, err = s.exec(ctx, tx, `UPDATE event_outbox SET locked_until = ? WHERE id IN (`+
			strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")+`)`, args...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	out := make([]*store.Delivery, 0, len(ids))
	for _, id := range ids {
		var (
			d       store.Delivery
			created int64
		)
		row := s.queryRow(ctx, s.r, `SELECT o.id, o.sink, o.attempts, o.last_error, o.created_at,
			e.id, e.run_id, e.seq, e.pipeline_id, e.project_id, e.type, e.data, e.created_at
			FROM event_outbox o JOIN run_events e ON e.id = o.event_id WHERE o.id = ?`, id)
		ev, err := scanEvent(scannerFunc(func(dest ...any) error {
			return row.Scan(append([]any{&d.ID, &d.Sink, &d.Attempts, &d.LastError, &created}, dest...)...)
		}))
		if errors.Is(err, sql.ErrNoRows) {
			continue // delivered by another replica meanwhile, or its run deleted
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		d.CreatedAt, d.Event = fromMicros(created), ev
		out = append(out, &d)
	}
	return out, nil
}

// scannerFunc adapts a function to scanner.
type scannerFunc func(dest ...any) error

func (f scannerFunc) Scan(dest ...any) error { return f(dest...) }

// DeliveryDone removes a delivered outbox entry.
func (s *Store) DeliveryDone(ctx context.Context, id int64) error {
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `DELETE FROM event_outbox WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("event delivery %d done: %w", id, err)
	}
	return nil
}

// DeliveriesDone removes delivered entries, in one transaction (missing ones
// are not an error).
func (s *Store) DeliveriesDone(ctx context.Context, ids []int64) error {
	const chunk = 64
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		for rest := ids; len(rest) > 0; {
			n := min(len(rest), chunk)
			args := make([]any, n)
			for i, id := range rest[:n] {
				args[i] = id
			}
			if _, err := s.exec(ctx, tx, `DELETE FROM event_outbox WHERE id IN (`+
				strings.TrimSuffix(strings.Repeat("?, ", n), ", ")+`)`, args...); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%d event deliveries done: %w", len(ids), err)
	}
	return nil
}

// DeliveryFailed reschedules an outbox entry after a failed attempt.
func (s *Store) DeliveryFailed(ctx context.Context, id int64, next time.Time, errMsg string) error {
	if len(errMsg) > 2000 {
		errMsg = truncateUTF8(errMsg, 2000)
	}
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `UPDATE event_outbox SET attempts = attempts + 1, last_error = ?,
			next_attempt_at = ?, locked_until = 0 WHERE id = ?`, cleanText(errMsg), micros(next), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("event delivery %d failed: %w", id, err)
	}
	return nil
}

// PendingDeliveries counts the outbox.
func (s *Store) PendingDeliveries(ctx context.Context) (int, error) {
	var n int
	if err := s.queryRow(ctx, s.r, `SELECT COUNT(*) FROM event_outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count event deliveries: %w", err)
	}
	return n, nil
}

// ProjectOfStepRun returns the project of a step run's pipeline.
func (s *Store) ProjectOfStepRun(ctx context.Context, stepRunID string) (string, error) {
	var p string
	err := s.queryRow(ctx, s.r, `SELECT p.project_id FROM step_runs st
		JOIN job_runs j ON j.id = st.job_run_id
		JOIN runs r ON r.id = j.run_id
		JOIN pipelines p ON p.id = r.pipeline_id
		WHERE st.id = ?`, stepRunID).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("project of step run " + stepRunID)
	}
	if err != nil {
		return "", fmt.Errorf("project of step run %s: %w", stepRunID, err)
	}
	return p, nil
}

// GetStepRun returns one step run.
func (s *Store) GetStepRun(ctx context.Context, id string) (*store.StepRun, error) {
	st, err := scanStep(s.queryRow(ctx, s.r, `SELECT `+stepCols+` FROM step_runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("get step run " + id)
	}
	if err != nil {
		return nil, fmt.Errorf("get step run %s: %w", id, err)
	}
	return st, nil
}
