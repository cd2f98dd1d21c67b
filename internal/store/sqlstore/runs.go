package sqlstore

import (
	"cmp"
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

// CreateRun stores a run with its job runs, step runs and a "triggered"
// timeline entry in one transaction, and makes it the pipeline's latest run
// (LastExecutionID, LastRunState…), so the pipeline shows it from the start.
//
// The run number comes from pipelines.next_run_number, incremented under the
// pipeline row's lock, which serialises run creation per pipeline: numbers
// are consecutive from 1 and never duplicated, and a request id is checked
// under that lock, so concurrent calls with one RequestID create one run (the
// others get it back with replayed=true and their transaction, number
// increment included, is rolled back).
//
// The caller sets the ids of the run, its jobs and its steps. Empty statuses
// default to pending, a zero CreatedAt to now, and a queued job without
// QueuedAt gets now (the queue is ordered by it). nr is not modified: the
// stored run is returned.
func (s *Store) CreateRun(ctx context.Context, nr *store.NewRun) (*store.Run, bool, error) {
	op := "create run"
	if nr == nil || nr.Run == nil {
		return nil, false, invalid(op, "no run given")
	}
	run := *nr.Run
	if run.ID == "" || run.PipelineID == "" {
		return nil, false, invalid(op, "the run's id and pipeline id must not be empty")
	}
	op = fmt.Sprintf("create run %s of pipeline %s", run.ID, run.PipelineID)
	now := s.nowUTC()
	if run.Status == "" {
		run.Status = runnel.RunPending
	}
	run.CreatedAt = orNow(run.CreatedAt, now)
	vars, err := encodeJSON(op, run.Variables)
	if err != nil {
		return nil, false, err
	}
	jobRows, stepRows, err := s.newRunRows(op, &run, nr, now)
	if err != nil {
		return nil, false, err
	}

	if run.RequestID != "" {
		prev, err := s.runByRequest(ctx, s.r, run.PipelineID, run.RequestID)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", op, err)
		}
		if prev != nil {
			return prev, true, nil
		}
	}
	var replay *store.Run
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		replay = nil
		// Lock the pipeline and take a number in one statement; what the
		// run's events need of the pipeline comes with it.
		er := &eventRun{id: run.ID, pipelineID: run.PipelineID}
		var sinks string
		err := s.queryRow(ctx, tx, `UPDATE pipelines SET next_run_number = next_run_number + 1
			WHERE id = ? RETURNING next_run_number - 1, project_id, event_sinks,
			COALESCE((SELECT CASE WHEN b.job_statuses THEN 2 ELSE 1 END FROM pipeline_repos b
			WHERE b.pipeline_id = pipelines.id), 0)`, run.PipelineID).
			Scan(&run.Number, &er.projectID, &sinks, &er.forge)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: pipeline %s: %w", op, run.PipelineID, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if run.RequestID != "" {
			if replay, err = s.runByRequest(ctx, tx, run.PipelineID, run.RequestID); err != nil {
				return err
			}
			if replay != nil {
				return errRollback
			}
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO runs (`+runCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			run.ID, run.PipelineID, run.Number, run.Status, run.TriggerType, run.TriggeredBy, run.RequestID, vars,
			run.SpecVersion, run.Commit, run.Reason, micros(run.CreatedAt), nullMicros(run.StartedAt),
			nullMicros(run.EndedAt), triggerJSON(run.Trigger), run.TriggerUserID); err != nil {
			return err
		}
		if d := nr.Definition; d != nil {
			if _, err := s.exec(ctx, tx, `INSERT INTO run_definitions (run_id, source, file, commit_sha, content)
				VALUES (?, ?, ?, ?, ?)`, run.ID, d.Source, d.File, d.CommitSHA, string(d.Content)); err != nil {
				return err
			}
		}
		if err := s.insertMany(ctx, tx, `INSERT INTO job_runs (`+jobCols+`) VALUES `, jobRows); err != nil {
			return err
		}
		if err := s.insertMany(ctx, tx, `INSERT INTO step_runs (`+stepCols+`) VALUES `, stepRows); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO run_timeline (run_id, ts, action, operator, reason, job_run_id)
			VALUES (?, ?, 'triggered', ?, ?, '')`,
			run.ID, micros(run.CreatedAt), run.TriggeredBy, run.TriggerType); err != nil {
			return err
		}
		er.number = run.Number
		if err := decodeJSON(sinks, &er.sinks); err != nil {
			return fmt.Errorf("pipeline %s: event sinks: %w", run.PipelineID, err)
		}
		if err := s.createRunEvents(ctx, tx, er, &run, nr); err != nil {
			return err
		}
		if err := s.setPipelineStatus(ctx, tx, run.PipelineID, &run); err != nil {
			return err
		}
		if nr.Then == nil {
			return nil
		}
		// The rows are this transaction's own: no other one can lock them
		// before it commits.
		rt := &runTx{s: s, ctx: ctx, tx: tx, runID: run.ID, pipelineID: run.PipelineID, number: run.Number, er: er,
			known: map[string]known{}}
		return nr.Then(rt)
	})
	switch {
	case err == nil && replay != nil:
		return replay, true, nil
	case err == nil:
		return &run, false, nil
	case errors.Is(err, store.ErrNotFound):
		return nil, false, err
	case s.d.isUnique(err):
		return nil, false, fmt.Errorf("%s: the run id, a job run id, a step run id or a job key is already used: %w",
			op, store.ErrConflict)
	default:
		return nil, false, fmt.Errorf("%s: %w", op, err)
	}
}

// createRunEvents records a new run's events: it was queued ("pending"
// from ""), then, when it was created in another status (a run that failed
// before it could be planned), that change; and every job created in a
// status other than pending.
func (s *Store) createRunEvents(ctx context.Context, tx *sql.Tx, er *eventRun, run *store.Run, nr *store.NewRun) error {
	queued := *run
	queued.Status, queued.Reason, queued.StartedAt, queued.EndedAt = runnel.RunPending, "", nil, nil
	if err := s.emitStatus(ctx, tx, er, store.EventRunStatus, runChange(&queued, "")); err != nil {
		return err
	}
	if run.Status != runnel.RunPending {
		sc := runChange(run, string(runnel.RunPending))
		if run.Status == runnel.RunFailed {
			sc.SystemError = !slices.ContainsFunc(nr.Jobs, func(j *store.JobRun) bool { return j.StartedAt != nil })
		}
		if run.Status.Terminal() && run.EndedAt != nil {
			jobs := slices.Clone(nr.Jobs)
			slices.SortStableFunc(jobs, func(a, b *store.JobRun) int {
				return cmp.Or(cmp.Compare(a.Index, b.Index), strings.Compare(a.Key, b.Key))
			})
			sc.FailedJobs, sc.FailedJobCount = store.ListFailedJobs(jobs)
		}
		if err := s.emitStatus(ctx, tx, er, store.EventRunStatus, sc); err != nil {
			return err
		}
	}
	for _, j := range nr.Jobs {
		if j.Status != "" && j.Status != runnel.JobPending {
			if err := s.emitStatus(ctx, tx, er, store.EventJobStatus, jobChange(j, string(runnel.JobPending))); err != nil {
				return err
			}
		}
	}
	return nil
}

// newRunRows checks a new run's jobs and steps and returns their rows in
// jobCols and stepCols order.
func (s *Store) newRunRows(op string, run *store.Run, nr *store.NewRun, now time.Time) (jobs, steps [][]any, err error) {
	ids := make(map[string]bool, len(nr.Jobs))
	for _, j := range nr.Jobs {
		if j == nil || j.ID == "" || j.Key == "" {
			return nil, nil, invalid(op, "a job run has no id or no key")
		}
		if j.RunID != "" && j.RunID != run.ID {
			return nil, nil, invalid(op, fmt.Sprintf("job run %s belongs to run %s", j.ID, j.RunID))
		}
		if ids[j.ID] {
			return nil, nil, invalid(op, fmt.Sprintf("job run id %s is used twice", j.ID))
		}
		ids[j.ID] = true
		c := *j
		c.RunID = run.ID
		if c.Status == "" {
			c.Status = runnel.JobPending
		}
		row, err := jobRow(op, &c, now)
		if err != nil {
			return nil, nil, err
		}
		jobs = append(jobs, row)
	}
	for jobID, list := range nr.Steps {
		if !ids[jobID] {
			return nil, nil, invalid(op, fmt.Sprintf("steps are given for job run %s, which is not in the run", jobID))
		}
		for _, st := range list {
			if st == nil || st.ID == "" {
				return nil, nil, invalid(op, "a step run has no id")
			}
			if st.JobRunID != "" && st.JobRunID != jobID {
				return nil, nil, invalid(op, fmt.Sprintf("step run %s is listed under job run %s but belongs to %s",
					st.ID, jobID, st.JobRunID))
			}
			status := st.Status
			if status == "" {
				status = runnel.StepPending
			}
			steps = append(steps, []any{st.ID, jobID, st.Index, st.Name, st.Uses, st.Run, status,
				nullInt(st.ExitCode), st.Error, nullMicros(st.StartedAt), nullMicros(st.EndedAt), int64(0)})
		}
	}
	return jobs, steps, nil
}

// jobRow returns j's values in jobCols order.
func jobRow(op string, j *store.JobRun, now time.Time) ([]any, error) {
	outputs, err := encodeJSON(op, j.Outputs)
	if err != nil {
		return nil, err
	}
	request, err := rawJSON(op, "the request of job run "+j.ID, j.Request)
	if err != nil {
		return nil, err
	}
	runsOn, err := rawJSON(op, "the runsOn of job run "+j.ID, j.RunsOn)
	if err != nil {
		return nil, err
	}
	queued := j.QueuedAt
	if j.Status == runnel.JobQueued && queued == nil {
		queued = &now
	}
	return []any{j.ID, j.RunID, j.Key, j.Name, j.Stage, j.StageIndex, j.Index, j.Status, j.Attempt,
		j.AllowedFailure, outputs, j.Reason, request, runsOn, j.AgentID, j.LeaseID, nullMicros(j.LeaseExpiresAt),
		nullMicros(j.RetryAt), nullMicros(queued), nullMicros(j.StartedAt), nullMicros(j.EndedAt), j.Acked}, nil
}

// insertMany inserts rows with multi-row VALUES lists, in chunks that stay
// far below both databases' bound-parameter limits (32766 and 65535).
func (s *Store) insertMany(ctx context.Context, tx *sql.Tx, head string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	ncol := len(rows[0])
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", ncol), ", ") + ")"
	per := max(1, 8000/ncol)
	for len(rows) > 0 {
		n := min(per, len(rows))
		var b strings.Builder
		b.WriteString(head)
		args := make([]any, 0, n*ncol)
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(tuple)
			args = append(args, r...)
		}
		if _, err := s.exec(ctx, tx, b.String(), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// runByRequest repeats the partial index's predicate (a non-empty request_id) so that
// both SQLite and PostgreSQL's generic plans can use the index instead of
// scanning every run of the pipeline.
func (s *Store) runByRequest(ctx context.Context, q querier, pipelineID, requestID string) (*store.Run, error) {
	r, err := scanRun(s.queryRow(ctx, q, `SELECT `+runCols+` FROM runs WHERE pipeline_id = ? AND request_id = ? AND request_id <> ''`,
		pipelineID, requestID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return r, err
}

// setPipelineStatus copies a run's status to its pipeline's flat fields,
// unless the pipeline already shows a newer run: run numbers order the
// updates, so a late report about an old run cannot hide the latest one.
func (s *Store) setPipelineStatus(ctx context.Context, tx *sql.Tx, pipelineID string, r *store.Run) error {
	_, err := s.exec(ctx, tx, `UPDATE pipelines SET last_execution_id = ?, last_run_number = ?,
		last_run_state = ?, last_started = ?, last_ended = ? WHERE id = ? AND last_run_number <= ?`,
		r.ID, r.Number, r.Status, nullMicros(r.StartedAt), nullMicros(r.EndedAt), pipelineID, r.Number)
	return err
}

// GetRun returns a run by id.
func (s *Store) GetRun(ctx context.Context, id string) (*store.Run, error) {
	r, err := scanRun(s.queryRow(ctx, s.r, `SELECT `+runCols+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("get run " + id)
	}
	if err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, err)
	}
	return r, nil
}

// RunByRequest returns the run a pipeline's requestId started.
func (s *Store) RunByRequest(ctx context.Context, pipelineID, requestID string) (*store.Run, error) {
	r, err := s.runByRequest(ctx, s.r, pipelineID, requestID)
	if err != nil {
		return nil, fmt.Errorf("run of pipeline %s by request %q: %w", pipelineID, requestID, err)
	}
	if r == nil {
		return nil, notFound(fmt.Sprintf("run of pipeline %s by request %q", pipelineID, requestID))
	}
	return r, nil
}

// GetRunDefinition returns the definition a run was planned from when it did
// not come from a stored spec version.
func (s *Store) GetRunDefinition(ctx context.Context, runID string) (*store.RunDefinition, error) {
	d := store.RunDefinition{RunID: runID}
	var content string
	err := s.queryRow(ctx, s.r, `SELECT source, file, commit_sha, content FROM run_definitions WHERE run_id = ?`, runID).
		Scan(&d.Source, &d.File, &d.CommitSHA, &content)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("get definition of run " + runID)
	}
	if err != nil {
		return nil, fmt.Errorf("get definition of run %s: %w", runID, err)
	}
	d.Content = []byte(content)
	return &d, nil
}

// GetRunTree returns a run with its job runs (by Index) and step runs (by
// Index), read from one snapshot so that jobs and steps agree.
func (s *Store) GetRunTree(ctx context.Context, id string) (*store.RunTree, error) {
	op := "get run tree " + id
	opts := &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	if !s.d.postgres {
		opts = nil // a SQLite read transaction is a snapshot already (WAL)
	}
	tx, end, err := s.begin(ctx, s.r, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer end()
	defer func() { _ = tx.Rollback() }()
	t, err := s.loadTree(ctx, tx, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return t, nil
}

func (s *Store) loadTree(ctx context.Context, q querier, id string) (*store.RunTree, error) {
	run, err := scanRun(s.queryRow(ctx, q, `SELECT `+runCols+` FROM runs WHERE id = ?`, id))
	if err != nil {
		return nil, err
	}
	rows, err := s.query(ctx, q, `SELECT `+jobCols+` FROM job_runs WHERE run_id = ? ORDER BY idx, job_key`, id)
	if err != nil {
		return nil, err
	}
	jobs, err := collect(rows, scanJob)
	if err != nil {
		return nil, err
	}
	rows, err = s.query(ctx, q, `SELECT `+stepCols+` FROM step_runs
		WHERE job_run_id IN (SELECT id FROM job_runs WHERE run_id = ?) ORDER BY job_run_id, idx, id`, id)
	if err != nil {
		return nil, err
	}
	steps, err := collect(rows, scanStep)
	if err != nil {
		return nil, err
	}
	t := &store.RunTree{Run: run, Jobs: jobs, Steps: make(map[string][]*store.StepRun, len(jobs))}
	for _, st := range steps {
		t.Steps[st.JobRunID] = append(t.Steps[st.JobRunID], st)
	}
	return t, nil
}

// ListRuns returns one page of the matching runs, newest first (by number
// within a pipeline, by creation time across pipelines), and how many match.
func (s *Store) ListRuns(ctx context.Context, f store.RunFilter) ([]*store.Run, int, error) {
	const op = "list runs"
	if f.Offset < 0 || f.Limit < 0 {
		return nil, 0, invalid(op, "offset and limit must not be negative")
	}
	var (
		where []string
		args  []any
	)
	if f.PipelineID != "" {
		where = append(where, "pipeline_id = ?")
		args = append(args, f.PipelineID)
	}
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, f.Status)
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var total int
	if err := s.queryRow(ctx, s.r, `SELECT COUNT(*) FROM runs`+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	order := " ORDER BY created_at DESC, number DESC, id DESC"
	if f.PipelineID != "" {
		order = " ORDER BY number DESC"
	}
	page, pargs := s.d.page(f.Limit, f.Offset)
	rows, err := s.query(ctx, s.r, `SELECT `+runCols+` FROM runs`+cond+order+page, append(args, pargs...)...)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	runs, err := collect(rows, scanRun)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	return runs, total, nil
}

// ActiveRuns lists pending, running and paused runs, oldest first.
func (s *Store) ActiveRuns(ctx context.Context) ([]*store.Run, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+runCols+` FROM runs WHERE status IN `+activeStatuses+
		` ORDER BY created_at, pipeline_id, number`)
	if err != nil {
		return nil, fmt.Errorf("active runs: %w", err)
	}
	runs, err := collect(rows, scanRun)
	if err != nil {
		return nil, fmt.Errorf("active runs: %w", err)
	}
	return runs, nil
}

// Timeline lists a run's timeline, oldest first; an unknown run is ErrNotFound.
func (s *Store) Timeline(ctx context.Context, runID string) ([]*store.TimelineEntry, error) {
	op := "timeline of run " + runID
	rows, err := s.query(ctx, s.r, `SELECT `+timelineCols+` FROM run_timeline WHERE run_id = ? ORDER BY ts, id`, runID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	es, err := collect(rows, scanTimeline)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if len(es) == 0 {
		if _, err := s.GetRun(ctx, runID); err != nil {
			return nil, fmt.Errorf("timeline: %w", err)
		}
	}
	return es, nil
}

// UpdateRunTx runs fn in a write transaction holding the run: on PostgreSQL
// the run row and its job rows are locked FOR UPDATE (so that no claim,
// lease renewal or step report changes a job under fn's feet); on SQLite the
// transaction began with BEGIN IMMEDIATE, which excludes every other writer.
// fn's error is returned as it is, after rollback.
//
// fn may read through the Store (the read pool: it sees committed data, not
// its own writes) but must write only through tx: a write on another
// connection would wait for this transaction's locks, which wait for fn.
func (s *Store) UpdateRunTx(ctx context.Context, runID string, fn func(tx store.RunTx) error) error {
	op := "update run " + runID
	var fnErr error
	err := s.writeTx(ctx, false, func(tx *sql.Tx) error {
		rt := &runTx{s: s, ctx: ctx, tx: tx, runID: runID, known: map[string]known{}}
		er, err := s.lockEventRun(ctx, tx, runID)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound(op)
		}
		if err != nil {
			return err
		}
		rt.pipelineID, rt.number, rt.er = er.pipelineID, er.number, er
		if s.d.postgres {
			// In id order, like every other multi-row lock of job rows, so
			// two of these cannot deadlock.
			if err := s.lockRows(ctx, tx, `SELECT id FROM job_runs WHERE run_id = ? ORDER BY id`+s.d.forUpdate, runID); err != nil {
				return err
			}
		}
		fnErr = fn(rt)
		return fnErr
	})
	switch {
	case err == nil:
		return nil
	case fnErr != nil && err == fnErr:
		return err
	case errors.Is(err, store.ErrNotFound):
		return err
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

// runTx is the RunTx of one UpdateRunTx call.
type runTx struct {
	s          *Store
	ctx        context.Context
	tx         *sql.Tx
	runID      string
	pipelineID string
	number     int64
	er         *eventRun
	// known is what the transaction knows of each run, job and step row as
	// stored (from Tree and its own writes), so that a write need not read
	// the previous status back to decide whether it is a change to record.
	known map[string]known
}

// known is a row's stored status.
type known struct {
	status   string
	acked    bool   // jobs
	ended    bool   // runs
	jobRunID string // steps
}

// eventRun returns what the locked run's events need.
func (t *runTx) eventRun() (*eventRun, error) {
	if t.er == nil {
		er, err := t.s.lockEventRun(t.ctx, t.tx, t.runID)
		if err != nil {
			return nil, fmt.Errorf("run %s: %w", t.runID, err)
		}
		t.er = er
	}
	return t.er, nil
}

// emit records a status change of the locked run.
func (t *runTx) emit(typ string, sc *store.StatusChange) error {
	er, err := t.eventRun()
	if err != nil {
		return err
	}
	return t.s.emitStatus(t.ctx, t.tx, er, typ, sc)
}

// AddEvent records an explicit event of the locked run, queued for no sink.
func (t *runTx) AddEvent(typ string, data json.RawMessage) (*store.RunEvent, error) {
	op := "add event to run " + t.runID
	if typ == "" || !json.Valid(data) {
		return nil, invalid(op, "an event needs a type and valid JSON data")
	}
	er, err := t.eventRun()
	if err != nil {
		return nil, err
	}
	e, err := t.s.emit(t.ctx, t.tx, er, typ, data, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return e, nil
}

func (t *runTx) Tree() (*store.RunTree, error) {
	tree, err := t.s.loadTree(t.ctx, t.tx, t.runID)
	if err != nil {
		return nil, fmt.Errorf("run %s: tree: %w", t.runID, err)
	}
	t.known[tree.Run.ID] = known{status: string(tree.Run.Status), ended: tree.Run.EndedAt != nil}
	for _, j := range tree.Jobs {
		t.known[j.ID] = known{status: string(j.Status), acked: j.Acked}
		for _, st := range tree.Steps[j.ID] {
			t.known[st.ID] = known{status: string(st.Status), jobRunID: j.ID}
		}
	}
	return tree, nil
}

// UpdateRun writes the run's status, reason, variables, spec version,
// commit and start and end times. The id, pipeline, number, trigger fields,
// request id and creation time do not change.
func (t *runTx) UpdateRun(r *store.Run) error {
	op := "update run " + t.runID
	if r == nil || r.ID != t.runID {
		return invalid(op, "only the locked run can be updated in its transaction")
	}
	vars, err := encodeJSON(op, r.Variables)
	if err != nil {
		return err
	}
	k, ok := t.known[r.ID]
	if !ok {
		var ended sql.NullInt64
		if err := t.s.queryRow(t.ctx, t.tx, `SELECT status, ended_at FROM runs WHERE id = ?`, r.ID).
			Scan(&k.status, &ended); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		k.ended = ended.Valid
	}
	prev := k.status
	_, err = t.s.exec(t.ctx, t.tx, `UPDATE runs SET status = ?, reason = ?, variables = ?, spec_version = ?,
		commit_sha = ?, started_at = ?, ended_at = ? WHERE id = ?`,
		r.Status, r.Reason, vars, r.SpecVersion, r.Commit, nullMicros(r.StartedAt), nullMicros(r.EndedAt), r.ID)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// A status change, or the end time of a run whose final status was set
	// before its last job ended (a stop).
	t.known[r.ID] = known{status: string(r.Status), ended: r.EndedAt != nil}
	if runnel.RunStatus(prev) != r.Status || k.ended != (r.EndedAt != nil) {
		sc := runChange(r, prev)
		if r.Status == runnel.RunFailed {
			if sc.SystemError, err = t.s.systemError(t.ctx, t.tx, r.ID); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
		}
		if r.Status.Terminal() && r.EndedAt != nil {
			// The run's end: it lists the failed jobs (as this transaction
			// left them).
			if sc.FailedJobs, sc.FailedJobCount, err = t.s.failedJobs(t.ctx, t.tx, r.ID); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
		}
		if err := t.emit(store.EventRunStatus, sc); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// UpdateJob writes every field of a job run of the locked run except its id,
// run and key. A queued job without QueuedAt gets now.
func (t *runTx) UpdateJob(j *store.JobRun) error {
	if j == nil {
		return invalid("update job run", "no job run given")
	}
	op := "update job run " + j.ID
	if j.RunID != "" && j.RunID != t.runID {
		return invalid(op, fmt.Sprintf("it belongs to run %s, not to the locked run %s", j.RunID, t.runID))
	}
	c := *j
	c.RunID = t.runID
	row, err := jobRow(op, &c, t.s.nowUTC())
	if err != nil {
		return err
	}
	k, ok := t.known[c.ID]
	if !ok {
		err = t.s.queryRow(t.ctx, t.tx, `SELECT status, acked FROM job_runs WHERE id = ? AND run_id = ?`, c.ID, t.runID).
			Scan(&k.status, &k.acked)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: not a job of run %s: %w", op, t.runID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	// row is in jobCols order: id, run_id, job_key, then the updated fields.
	ok, err = t.s.execOne(t.ctx, t.tx, `UPDATE job_runs SET name = ?, stage = ?, stage_index = ?, idx = ?,
		status = ?, attempt = ?, allowed_failure = ?, outputs = ?, reason = ?, request = ?, runs_on = ?,
		agent_id = ?, lease_id = ?, lease_expires_at = ?, retry_at = ?, queued_at = ?, started_at = ?,
		ended_at = ?, acked = ? WHERE id = ? AND run_id = ?`, append(row[3:], c.ID, t.runID)...)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if !ok {
		return fmt.Errorf("%s: not a job of run %s: %w", op, t.runID, store.ErrNotFound)
	}
	t.known[c.ID] = known{status: string(c.Status), acked: c.Acked}
	if prev := publicJobStatus(k.status, k.acked); prev != publicJobStatus(string(c.Status), c.Acked) {
		if err := t.emit(store.EventJobStatus, jobChange(&c, prev)); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// UpdateStep writes a step run of the locked run: name, what it runs,
// status, exit code, error and times. The log and its size are AppendLogs'.
func (t *runTx) UpdateStep(st *store.StepRun) error {
	if st == nil {
		return invalid("update step run", "no step run given")
	}
	op := "update step run " + st.ID
	k, ok := t.known[st.ID]
	if !ok {
		err := t.s.queryRow(t.ctx, t.tx, `SELECT status, job_run_id FROM step_runs
			WHERE id = ? AND job_run_id IN (SELECT id FROM job_runs WHERE run_id = ?)`, st.ID, t.runID).Scan(&k.status, &k.jobRunID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: not a step of run %s: %w", op, t.runID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	prev, jobRunID := k.status, k.jobRunID
	ok, err := t.s.execOne(t.ctx, t.tx, `UPDATE step_runs SET name = ?, uses = ?, run_command = ?, status = ?,
		exit_code = ?, error = ?, started_at = ?, ended_at = ?
		WHERE id = ? AND job_run_id IN (SELECT id FROM job_runs WHERE run_id = ?)`,
		st.Name, st.Uses, st.Run, st.Status, nullInt(st.ExitCode), st.Error, nullMicros(st.StartedAt),
		nullMicros(st.EndedAt), st.ID, t.runID)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if !ok {
		return fmt.Errorf("%s: not a step of run %s: %w", op, t.runID, store.ErrNotFound)
	}
	t.known[st.ID] = known{status: string(st.Status), jobRunID: jobRunID}
	if runnel.StepStatus(prev) != st.Status {
		if err := t.emit(store.EventStepStatus, stepChange(jobRunID, st, prev)); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// AppendTimeline stores e and sets its ID (and RunID and Time when empty).
func (t *runTx) AppendTimeline(e *store.TimelineEntry) error {
	op := "append to the timeline of run " + t.runID
	if e == nil || e.Action == "" {
		return invalid(op, "the action must not be empty")
	}
	if e.RunID != "" && e.RunID != t.runID {
		return invalid(op, "the entry is about run "+e.RunID)
	}
	e.RunID = t.runID
	e.Time = orNow(e.Time, t.s.nowUTC())
	err := t.s.queryRow(t.ctx, t.tx, `INSERT INTO run_timeline (run_id, ts, action, operator, reason, job_run_id)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, e.RunID, micros(e.Time), e.Action, e.Operator, e.Reason, e.JobRunID).
		Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// SetPipelineStatus copies r's status and times to the pipeline, unless the
// pipeline shows a newer run. The pipeline and the run number are the stored
// ones, not r's.
func (t *runTx) SetPipelineStatus(r *store.Run) error {
	op := "set pipeline status from run " + t.runID
	if r == nil || r.ID != t.runID {
		return invalid(op, "only the locked run can set its pipeline's status")
	}
	c := *r
	c.Number = t.number
	if err := t.s.setPipelineStatus(t.ctx, t.tx, t.pipelineID, &c); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// triggerJSON is the stored form of a run's trigger context ("{}" when none).
func triggerJSON(t json.RawMessage) string {
	if len(t) == 0 {
		return "{}"
	}
	return string(t)
}
