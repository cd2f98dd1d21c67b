package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/runnel-ci/runnel/internal/store"
)

// maxListLogs bounds one ListLogs page (Limit 0 or larger asks for this many).
const maxListLogs = 10000

// AppendLogs appends lines to a step's log under the step row's lock (FOR
// UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite), so concurrent appends to
// one step get distinct, increasing seqs.
//
// Messages are made valid UTF-8 without NUL bytes (PostgreSQL's TEXT refuses
// both; the same rule applies to SQLite so that both store the same text),
// and a zero Time becomes now.
//
// The cap (maxBytes > 0) counts the bytes of the messages (step_runs.log_bytes
// and StepRun.LogBytes; the marker line is not counted). When an append would
// exceed it, the oldest lines are dropped, old ones first and then, if the
// batch alone is too big, the batch's first ones, until the rest fits. A
// single line longer than the cap is cut to fit (at a UTF-8 boundary) and
// then everything before it is dropped. Whenever something is dropped or cut,
// one marker line (level "warn") placed just before the first kept line says
// how many bytes in how many lines were dropped, and how many lines were cut,
// since the log began: its seq is the first kept line's seq minus one (a seq
// that belonged to a dropped line), and any earlier marker is deleted with the
// dropped lines, so there is one marker, always first, and seqs only grow. A
// reader resuming after seq N sees the marker only if it had not read up to
// that point. In the one case where no earlier seq is free (the log's first
// line is cut), the marker takes the next seq and the line the one after.
//
// It returns the stored lines of this call: the marker first when this call
// wrote one, then the kept lines with their seqs. Lines of the batch that the
// cap dropped are not returned.
func (s *Store) AppendLogs(ctx context.Context, stepRunID string, lines []store.LogLine, maxBytes int64) ([]store.LogLine, error) {
	return s.appendLogs(ctx, false, "", stepRunID, lines, maxBytes)
}

// AppendStepLogs is AppendLogs for an agent: in the same write transaction,
// before anything is written, the step's job run must hold leaseID, running
// and unexpired (ErrLeaseLost otherwise, ErrNotFound for an unknown step).
// On PostgreSQL the job row is share-locked for the check, as in UpdateStep,
// so the lines of an agent whose job is being taken away are either stored
// before the scheduler's transaction commits or refused after it. An empty
// append only checks the lease.
func (s *Store) AppendStepLogs(ctx context.Context, leaseID, stepRunID string, lines []store.LogLine, maxBytes int64) ([]store.LogLine, error) {
	return s.appendLogs(ctx, true, leaseID, stepRunID, lines, maxBytes)
}

// appendLogs is AppendLogs, or AppendStepLogs when fenced (leaseID must then
// be held).
func (s *Store) appendLogs(ctx context.Context, fenced bool, leaseID, stepRunID string, lines []store.LogLine, maxBytes int64) ([]store.LogLine, error) {
	op := "append logs of step run " + stepRunID
	now := s.nowUTC()
	if len(lines) == 0 {
		if !fenced {
			if err := s.stepExists(ctx, op, stepRunID); err != nil {
				return nil, err
			}
			return []store.LogLine{}, nil
		}
		err := s.checkLease(ctx, s.r, op, leaseID, stepRunID, now, "")
		if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrLeaseLost) {
			err = fmt.Errorf("%s: %w", op, err)
		}
		if err != nil {
			return nil, err
		}
		return []store.LogLine{}, nil
	}
	batch := make([]store.LogLine, len(lines))
	cut := make([]int64, len(lines)) // bytes cut off each line
	for i, l := range lines {
		msg := cleanText(l.Message)
		if maxBytes > 0 && int64(len(msg)) > maxBytes {
			short := truncateUTF8(msg, int(maxBytes))
			cut[i] = int64(len(msg) - len(short))
			msg = short
		}
		batch[i] = store.LogLine{Time: orNow(l.Time, now), Level: l.Level, Message: msg}
	}
	var out []store.LogLine
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		if s.d.postgres {
			// Log lines are the busiest and least precious writes: let their
			// commit return before the WAL reaches the disk. A crash of the
			// database server can lose the last fraction of a second of
			// logs, never a part of a batch (the transaction stays atomic),
			// and every other write keeps full durability.
			if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit TO OFF`); err != nil {
				return err
			}
		}
		if fenced {
			if err := s.checkLease(ctx, tx, op, leaseID, stepRunID, now, s.d.forShare); err != nil {
				return err
			}
		}
		var err error
		out, err = s.appendLogsTx(ctx, tx, op, stepRunID, batch, cut, maxBytes)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrLeaseLost) {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return out, err
}

// logState is a step's log bookkeeping (step_runs.log_*).
type logState struct {
	bytes, seq, marker                             int64
	droppedBytes, droppedLines, cutBytes, cutLines int64
}

func (s *Store) appendLogsTx(ctx context.Context, tx *sql.Tx, op, stepRunID string, batch []store.LogLine, cut []int64, maxBytes int64) ([]store.LogLine, error) {
	var st logState
	err := s.queryRow(ctx, tx, `SELECT log_bytes, log_seq, log_marker_seq, log_dropped_bytes, log_dropped_lines,
		log_truncated_bytes, log_truncated_lines FROM step_runs WHERE id = ?`+s.d.forUpdate, stepRunID).
		Scan(&st.bytes, &st.seq, &st.marker, &st.droppedBytes, &st.droppedLines, &st.cutBytes, &st.cutLines)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, err
	}
	var newBytes int64
	lastCut := -1
	for i, l := range batch {
		newBytes += int64(len(l.Message))
		if cut[i] > 0 {
			lastCut = i
			st.cutLines++
			st.cutBytes += cut[i]
		}
	}
	base := st.seq + 1 // seq of batch[0]
	need := int64(0)   // bytes to drop
	if maxBytes > 0 {
		need = st.bytes + newBytes - maxBytes
	}
	if need <= 0 && lastCut < 0 {
		// The common case: everything fits.
		for i := range batch {
			batch[i].Seq = base + int64(i)
		}
		if err := s.insertLogLines(ctx, tx, stepRunID, batch); err != nil {
			return nil, err
		}
		_, err := s.exec(ctx, tx, `UPDATE step_runs SET log_bytes = ?, log_seq = ? WHERE id = ?`,
			st.bytes+newBytes, base+int64(len(batch))-1, stepRunID)
		return batch, err
	}

	// k is the first kept line of the batch; dropAll: every stored line goes.
	k, dropAll := 0, false
	if need > st.bytes {
		dropAll = true
		rest := need - st.bytes
		for k < len(batch) && rest > 0 {
			rest -= int64(len(batch[k].Message))
			k++
		}
	}
	if lastCut >= k {
		// A line cut to the cap takes (nearly) all of it: it starts the kept part.
		dropAll, k = true, lastCut
	}
	for _, l := range batch[:k] {
		st.droppedBytes += int64(len(l.Message))
	}
	st.droppedLines += int64(k)

	var (
		firstKept  int64 // seq of the first kept line
		firstTime  int64 // and its time, which the marker takes
		keptStored int64 // bytes of the stored lines kept
	)
	if !dropAll {
		// Drop stored lines, oldest first, until need bytes are gone.
		var found bool
		firstKept, firstTime, found, err = s.dropOldest(ctx, tx, stepRunID, &st, need)
		if err != nil {
			return nil, err
		}
		keptStored = st.bytes
		// Otherwise every stored line had to go and the batch starts the log.
		dropAll = !found
	} else {
		var n int64
		if err := s.queryRow(ctx, tx, `SELECT COUNT(*) FROM log_lines WHERE step_run_id = ? AND seq > ?`,
			stepRunID, st.marker).Scan(&n); err != nil {
			return nil, err
		}
		st.droppedBytes += st.bytes
		st.droppedLines += n
	}
	if dropAll {
		keptStored = 0
		if st.seq == 0 && k == 0 {
			// The log's very first line was cut: no earlier seq is free for
			// the marker, so the batch moves up by one.
			base++
		}
		firstKept = base + int64(k)
		firstTime = micros(batch[k].Time)
	}
	marker := firstKept - 1

	kept := batch[k:]
	var keptBytes int64
	for i := range kept {
		kept[i].Seq = base + int64(k+i)
		keptBytes += int64(len(kept[i].Message))
	}
	// Nothing lies below the old marker: the lower bound keeps PostgreSQL's
	// index scan from walking the dead entries of earlier trims.
	if _, err := s.exec(ctx, tx, `DELETE FROM log_lines WHERE step_run_id = ? AND seq >= ? AND seq < ?`,
		stepRunID, st.marker, firstKept); err != nil {
		return nil, err
	}
	m := store.LogLine{Seq: marker, Time: fromMicros(firstTime), Level: "warn", Message: markerText(&st, maxBytes)}
	out := append([]store.LogLine{m}, kept...)
	if err := s.insertLogLines(ctx, tx, stepRunID, out); err != nil {
		return nil, err
	}
	_, err = s.exec(ctx, tx, `UPDATE step_runs SET log_bytes = ?, log_seq = ?, log_marker_seq = ?,
		log_dropped_bytes = ?, log_dropped_lines = ?, log_truncated_bytes = ?, log_truncated_lines = ?
		WHERE id = ?`,
		keptStored+keptBytes, kept[len(kept)-1].Seq, marker, st.droppedBytes, st.droppedLines,
		st.cutBytes, st.cutLines, stepRunID)
	return out, err
}

// dropOldest walks the stored lines after the marker in seq order and counts
// the oldest ones whose bytes make up need into st's dropped totals (the
// caller deletes them). It returns the first line that stays, if any; st.bytes
// is left with the bytes of the stored lines that stay.
func (s *Store) dropOldest(ctx context.Context, tx *sql.Tx, stepRunID string, st *logState, need int64) (seq, ts int64, found bool, err error) {
	after := st.marker
	for {
		rows, err := s.query(ctx, tx, `SELECT seq, ts, size FROM log_lines WHERE step_run_id = ? AND seq > ?
			ORDER BY seq LIMIT 256`, stepRunID, after)
		if err != nil {
			return 0, 0, false, err
		}
		n := 0
		for rows.Next() {
			var lseq, lts, size int64
			if err := rows.Scan(&lseq, &lts, &size); err != nil {
				_ = rows.Close()
				return 0, 0, false, err
			}
			n++
			after = lseq
			if need <= 0 {
				_ = rows.Close()
				return lseq, lts, true, nil
			}
			need -= size
			st.bytes -= size
			st.droppedBytes += size
			st.droppedLines++
		}
		if err := rows.Close(); err != nil {
			return 0, 0, false, err
		}
		if n < 256 {
			return 0, 0, false, nil
		}
	}
}

func markerText(st *logState, maxBytes int64) string {
	var parts []string
	if st.droppedLines > 0 {
		parts = append(parts, fmt.Sprintf("%d bytes in %d earlier %s dropped",
			st.droppedBytes, st.droppedLines, plural(st.droppedLines, "line was", "lines were")))
	}
	if st.cutLines > 0 {
		parts = append(parts, fmt.Sprintf("%d %s longer than the limit, cut by %d bytes",
			st.cutLines, plural(st.cutLines, "line was", "lines were"), st.cutBytes))
	}
	return fmt.Sprintf("[runnel: %s: the log is limited to %d bytes]", strings.Join(parts, "; "), maxBytes)
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// insertLogLines inserts lines in multi-row statements of bounded size (a
// line can be megabytes long).
func (s *Store) insertLogLines(ctx context.Context, tx *sql.Tx, stepRunID string, lines []store.LogLine) error {
	const maxRows, maxBytes = 500, 4 << 20
	for len(lines) > 0 {
		n, size := 0, 0
		for n < len(lines) && n < maxRows && (n == 0 || size+len(lines[n].Message) <= maxBytes) {
			size += len(lines[n].Message)
			n++
		}
		var b strings.Builder
		b.WriteString(`INSERT INTO log_lines (step_run_id, seq, ts, level, message, size) VALUES `)
		args := make([]any, 0, n*6)
		for i, l := range lines[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?, ?, ?)")
			args = append(args, stepRunID, l.Seq, micros(l.Time), l.Level, l.Message, int64(len(l.Message)))
		}
		if _, err := s.exec(ctx, tx, b.String(), args...); err != nil {
			return err
		}
		lines = lines[n:]
	}
	return nil
}

// cleanText returns s as valid UTF-8 without NUL bytes.
func cleanText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ListLogs returns a step's lines in seq order, within the inclusive time
// window, paged by Offset and Limit (0 or more than 10,000 → 10,000). An
// unknown step is ErrNotFound.
func (s *Store) ListLogs(ctx context.Context, stepRunID string, q store.LogQuery) ([]store.LogLine, error) {
	op := "list logs of step run " + stepRunID
	if q.Offset < 0 || q.Limit < 0 {
		return nil, invalid(op, "offset and limit must not be negative")
	}
	query := `SELECT seq, ts, level, message FROM log_lines WHERE step_run_id = ?`
	args := []any{stepRunID}
	if q.AfterSeq > 0 {
		query += ` AND seq > ?`
		args = append(args, q.AfterSeq)
	}
	if !q.Start.IsZero() {
		query += ` AND ts >= ?`
		args = append(args, micros(q.Start))
	}
	if !q.End.IsZero() {
		query += ` AND ts <= ?`
		args = append(args, micros(q.End))
	}
	limit := q.Limit
	if limit == 0 || limit > maxListLogs {
		limit = maxListLogs
	}
	page, pargs := s.d.page(limit, q.Offset)
	rows, err := s.query(ctx, s.r, query+` ORDER BY seq`+page, append(args, pargs...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	out, err := collect(rows, func(sc scanner) (store.LogLine, error) {
		var (
			l  store.LogLine
			ts int64
		)
		err := sc.Scan(&l.Seq, &ts, &l.Level, &l.Message)
		l.Time = fromMicros(ts)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if len(out) == 0 {
		if err := s.stepExists(ctx, op, stepRunID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// stepExists tells an unknown step run (ErrNotFound) from one with no lines.
func (s *Store) stepExists(ctx context.Context, op, stepRunID string) error {
	var one int
	err := s.queryRow(ctx, s.r, `SELECT 1 FROM step_runs WHERE id = ?`, stepRunID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(op)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}
