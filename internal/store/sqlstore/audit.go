package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

const auditCols = `id, time, actor, actor_id, token_id, action, resource, status, remote_addr, request_id`

func scanAudit(sc scanner) (*store.AuditEntry, error) {
	var (
		e  store.AuditEntry
		ts int64
	)
	if err := sc.Scan(&e.ID, &ts, &e.Actor, &e.ActorID, &e.TokenID, &e.Action, &e.Resource, &e.Status,
		&e.RemoteAddr, &e.RequestID); err != nil {
		return nil, err
	}
	e.Time = fromMicros(ts)
	return &e, nil
}

// AppendAudit stores e and sets e.ID; a zero Time is stored as now. The text
// fields come from requests: invalid UTF-8 and NUL bytes, which PostgreSQL
// refuses, are stored as U+FFFD on both databases.
func (s *Store) AppendAudit(ctx context.Context, e *store.AuditEntry) error {
	const op = "append audit entry"
	if e == nil {
		return invalid(op, "no entry")
	}
	var id int64
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		return s.queryRow(ctx, tx, `INSERT INTO audit_entries (time, actor, actor_id, token_id, action, resource,
			status, remote_addr, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			micros(orNow(e.Time, s.nowUTC())), cleanText(e.Actor), cleanText(e.ActorID), cleanText(e.TokenID),
			cleanText(e.Action), cleanText(e.Resource), e.Status, cleanText(e.RemoteAddr),
			cleanText(e.RequestID)).Scan(&id)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	e.ID = id
	return nil
}

// ListAudit returns a page of the entries f selects, newest first, and how
// many it selects in all. Limit 0 means no limit, as for the other lists.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]*store.AuditEntry, int, error) {
	const op = "list audit entries"
	if f.Offset < 0 || f.Limit < 0 {
		return nil, 0, invalid(op, "offset and limit must not be negative")
	}
	var (
		where []string
		args  []any
	)
	if f.Actor != "" {
		where = append(where, "actor = ?")
		args = append(args, cleanText(f.Actor))
	}
	if f.Action != "" {
		where = append(where, "action = ?")
		args = append(args, cleanText(f.Action))
	}
	if f.Resource != "" {
		// A prefix match without LIKE: no character of the prefix is a
		// wildcard, and the comparison is case-sensitive on both databases
		// (SQLite's LIKE is not). The CAST types the parameter for
		// PostgreSQL's length().
		r := cleanText(f.Resource)
		where = append(where, "substr(resource, 1, length(CAST(? AS TEXT))) = ?")
		args = append(args, r, r)
	}
	if f.Since != nil {
		where = append(where, "time >= ?")
		args = append(args, ceilMicros(*f.Since))
	}
	if f.Until != nil {
		where = append(where, "time < ?")
		args = append(args, ceilMicros(*f.Until))
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var total int
	if err := s.queryRow(ctx, s.r, `SELECT COUNT(*) FROM audit_entries`+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	page, pargs := s.d.page(f.Limit, f.Offset)
	rows, err := s.query(ctx, s.r, `SELECT `+auditCols+` FROM audit_entries`+cond+` ORDER BY id DESC`+page,
		append(args, pargs...)...)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	es, err := collect(rows, scanAudit)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	return es, total, nil
}

// ceilMicros is t in Unix microseconds, rounded up: a stored time (whole
// microseconds) is before t exactly when it is before ceilMicros(t).
func ceilMicros(t time.Time) int64 {
	m := t.UnixMicro()
	if time.UnixMicro(m).Before(t) {
		m++
	}
	return m
}

// DeleteAuditBefore removes the entries whose Time is before t and says how
// many it removed.
func (s *Store) DeleteAuditBefore(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM audit_entries WHERE time < ?`, ceilMicros(t))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete audit entries before %s: %w", t.UTC().Format(time.RFC3339Nano), err)
	}
	return int(n), nil
}
