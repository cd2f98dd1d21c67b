-- Run events and their outbox for SQLite. Keep it in step with
-- ../postgres/00009_events.sql: the Go code is the same for both.

-- +goose Up
ALTER TABLE pipelines ADD COLUMN event_sinks TEXT NOT NULL DEFAULT '[]';

CREATE TABLE run_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    pipeline_id TEXT    NOT NULL,
    project_id  TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (run_id, seq)
) STRICT;

CREATE TABLE event_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        INTEGER NOT NULL REFERENCES run_events (id) ON DELETE CASCADE,
    run_id          TEXT    NOT NULL,
    sink            TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX event_outbox_order ON event_outbox (sink, run_id, id);
CREATE INDEX event_outbox_due ON event_outbox (next_attempt_at, id);
CREATE INDEX event_outbox_event ON event_outbox (event_id);

-- +goose Down
DROP TABLE event_outbox;
DROP TABLE run_events;
ALTER TABLE pipelines DROP COLUMN event_sinks;
