package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// ListCronTicks lists every cron schedule's state.
func (s *Store) ListCronTicks(ctx context.Context) ([]*store.CronTick, error) {
	rows, err := s.query(ctx, s.r, `SELECT pipeline_id, schedule_key, schedule, last_tick FROM cron_state
		ORDER BY pipeline_id, schedule_key`)
	if err != nil {
		return nil, fmt.Errorf("list cron ticks: %w", err)
	}
	ts, err := collect(rows, scanCronTick)
	if err != nil {
		return nil, fmt.Errorf("list cron ticks: %w", err)
	}
	return ts, nil
}

func scanCronTick(sc scanner) (*store.CronTick, error) {
	var (
		t    store.CronTick
		last int64
	)
	if err := sc.Scan(&t.PipelineID, &t.ScheduleKey, &t.Schedule, &last); err != nil {
		return nil, err
	}
	t.LastTick = fromMicros(last)
	return &t, nil
}

// StartCronSchedule inserts the schedule's state unless the same schedule is
// recorded; a different schedule under the key is replaced. The upsert is one
// statement, so concurrent starts by several replicas keep the first one.
func (s *Store) StartCronSchedule(ctx context.Context, t *store.CronTick) (*store.CronTick, error) {
	op := "start cron schedule"
	if t == nil || t.PipelineID == "" || t.ScheduleKey == "" || t.Schedule == "" {
		return nil, invalid(op, "the pipeline id, schedule key and schedule must not be empty")
	}
	op += fmt.Sprintf(" %s of pipeline %s", t.ScheduleKey, t.PipelineID)
	var got *store.CronTick
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO cron_state (pipeline_id, schedule_key, schedule, last_tick)
			VALUES (?, ?, ?, ?)
			ON CONFLICT (pipeline_id, schedule_key) DO UPDATE
			SET schedule = excluded.schedule, last_tick = excluded.last_tick
			WHERE cron_state.schedule <> excluded.schedule`,
			t.PipelineID, t.ScheduleKey, t.Schedule, micros(t.LastTick))
		if err != nil {
			return err
		}
		got, err = scanCronTick(s.queryRow(ctx, tx, `SELECT pipeline_id, schedule_key, schedule, last_tick
			FROM cron_state WHERE pipeline_id = ? AND schedule_key = ?`, t.PipelineID, t.ScheduleKey))
		return err
	})
	if s.d.isForeignKey(err) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return got, nil
}

// AdvanceCronTick moves LastTick forward with a conditional UPDATE: two
// replicas advancing to the same tick change the row once.
func (s *Store) AdvanceCronTick(ctx context.Context, pipelineID, key, schedule string, tick time.Time) (bool, error) {
	op := fmt.Sprintf("advance cron schedule %s of pipeline %s", key, pipelineID)
	var changed bool
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var err error
		changed, err = s.execOne(ctx, tx, `UPDATE cron_state SET last_tick = ?
			WHERE pipeline_id = ? AND schedule_key = ? AND schedule = ? AND last_tick < ?`,
			micros(tick), pipelineID, key, schedule, micros(tick))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	if changed {
		return true, nil
	}
	var one int
	err = s.queryRow(ctx, s.r, `SELECT 1 FROM cron_state WHERE pipeline_id = ? AND schedule_key = ?`,
		pipelineID, key).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, notFound(op)
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	return false, nil
}
