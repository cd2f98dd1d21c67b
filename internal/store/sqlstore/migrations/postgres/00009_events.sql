-- Run events and their outbox. Every status change of a run, a job run or a
-- step run is recorded in run_events by the transaction that makes it, with
-- a per-run sequence number allocated under the run row's lock (so a run's
-- events commit in seq order); the live streams read them. event_outbox
-- holds, in the same transaction, what must still be delivered to an event
-- sink (CDEvents over HTTP) or to the notifier: a delivery worker sends each
-- (sink, run)'s rows in order and deletes them once delivered.

-- +goose Up
-- JSON array of the pipeline's own CDEvents sink URLs.
ALTER TABLE pipelines ADD COLUMN event_sinks TEXT NOT NULL DEFAULT '[]';

CREATE TABLE run_events (
    id          BIGSERIAL PRIMARY KEY,
    run_id      TEXT   NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    pipeline_id TEXT   NOT NULL,
    project_id  TEXT   NOT NULL,
    type        TEXT   NOT NULL,
    data        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (run_id, seq)
);

CREATE TABLE event_outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_id        BIGINT NOT NULL REFERENCES run_events (id) ON DELETE CASCADE,
    run_id          TEXT   NOT NULL,
    sink            TEXT   NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT   NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL
);
-- The head of each (sink, run) queue, and due rows.
CREATE INDEX event_outbox_order ON event_outbox (sink, run_id, id);
CREATE INDEX event_outbox_due ON event_outbox (next_attempt_at, id);
CREATE INDEX event_outbox_event ON event_outbox (event_id);

-- +goose Down
DROP TABLE event_outbox;
DROP TABLE run_events;
ALTER TABLE pipelines DROP COLUMN event_sinks;
