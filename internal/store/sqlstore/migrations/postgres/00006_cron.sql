-- Cron triggers for PostgreSQL. Keep it in step with
-- ../sqlite/00006_cron.sql: the Go code is the same for both.
-- Times are BIGINT Unix microseconds (UTC).

-- +goose Up
-- The pipeline's own cron schedule (the seed's flat fields), besides the
-- head spec's cron triggers: '' is none; an empty zone is UTC.
ALTER TABLE pipelines ADD COLUMN trigger_cron_expression TEXT NOT NULL DEFAULT '';
ALTER TABLE pipelines ADD COLUMN trigger_timezone TEXT NOT NULL DEFAULT '';

-- The cron service's progress, shared by every replica: per schedule of a
-- pipeline (schedule_key: the trigger's index in the head spec, or
-- 'pipeline' for the flat fields) the last tick handled. schedule holds the
-- definition (expression and zone) the tick belongs to: a changed definition
-- starts afresh.
CREATE TABLE cron_state (
    pipeline_id  TEXT    NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    schedule_key TEXT    NOT NULL,
    schedule     TEXT    NOT NULL,
    last_tick    BIGINT  NOT NULL,
    PRIMARY KEY (pipeline_id, schedule_key)
);

-- +goose Down
DROP TABLE cron_state;
ALTER TABLE pipelines DROP COLUMN trigger_timezone;
ALTER TABLE pipelines DROP COLUMN trigger_cron_expression;
