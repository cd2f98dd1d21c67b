package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/runnel-ci/runnel/internal/store"
)

const approvalCols = `id, run_id, scope, target, message, approvers, status, requested_at, timeout_at, decided_by,
	decided_at, comment`

func scanApproval(sc scanner) (*store.Approval, error) {
	var (
		a                  store.Approval
		approvers          string
		requested          int64
		timeout, decidedAt sql.NullInt64
	)
	if err := sc.Scan(&a.ID, &a.RunID, &a.Scope, &a.Target, &a.Message, &approvers, &a.Status, &requested, &timeout,
		&a.DecidedBy, &decidedAt, &a.Comment); err != nil {
		return nil, err
	}
	if err := decodeJSON(approvers, &a.Approvers); err != nil {
		return nil, fmt.Errorf("approval %s: approvers: %w", a.ID, err)
	}
	if len(a.Approvers) == 0 {
		a.Approvers = nil
	}
	a.RequestedAt, a.TimeoutAt, a.DecidedAt = fromMicros(requested), timePtr(timeout), timePtr(decidedAt)
	return &a, nil
}

func (s *Store) listApprovals(ctx context.Context, q querier, runID string) ([]*store.Approval, error) {
	rows, err := s.query(ctx, q, `SELECT `+approvalCols+` FROM approvals WHERE run_id = ? ORDER BY requested_at, id`, runID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanApproval)
}

// ListApprovals lists a run's gates.
func (s *Store) ListApprovals(ctx context.Context, runID string) ([]*store.Approval, error) {
	op := "approvals of run " + runID
	out, err := s.listApprovals(ctx, s.r, runID)
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

// GetApproval returns one gate.
func (s *Store) GetApproval(ctx context.Context, id string) (*store.Approval, error) {
	a, err := scanApproval(s.queryRow(ctx, s.r, `SELECT `+approvalCols+` FROM approvals WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("get approval " + id)
	}
	if err != nil {
		return nil, fmt.Errorf("get approval %s: %w", id, err)
	}
	return a, nil
}

func (t *runTx) Approvals() ([]*store.Approval, error) {
	out, err := t.s.listApprovals(t.ctx, t.tx, t.runID)
	if err != nil {
		return nil, fmt.Errorf("approvals of run %s: %w", t.runID, err)
	}
	return out, nil
}

// PutApproval inserts a gate, or writes the decision of an existing one.
func (t *runTx) PutApproval(a *store.Approval) error {
	op := "put approval of run " + t.runID
	if a == nil || a.ID == "" || (a.RunID != "" && a.RunID != t.runID) {
		return invalid(op, "an approval needs an id and must belong to the locked run")
	}
	switch a.Scope {
	case "pipeline", "stage", "job":
	default:
		return invalid(op, fmt.Sprintf("scope %q: want pipeline, stage or job", a.Scope))
	}
	approvers, err := encodeList(op, a.Approvers)
	if err != nil {
		return err
	}
	a.RunID = t.runID
	a.RequestedAt = orNow(a.RequestedAt, t.s.nowUTC())
	ok, err := t.s.execOne(t.ctx, t.tx, `UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, comment = ?
		WHERE id = ? AND run_id = ?`, a.Status, a.DecidedBy, nullMicros(a.DecidedAt), a.Comment, a.ID, t.runID)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if ok {
		return nil
	}
	_, err = t.s.exec(t.ctx, t.tx, `INSERT INTO approvals (`+approvalCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, t.runID, a.Scope, a.Target, a.Message, approvers, a.Status, micros(a.RequestedAt), nullMicros(a.TimeoutAt),
		a.DecidedBy, nullMicros(a.DecidedAt), a.Comment)
	if t.s.d.isUnique(err) {
		return fmt.Errorf("%s: the run already has a %s gate %q: %w", op, a.Scope, a.Target, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}
