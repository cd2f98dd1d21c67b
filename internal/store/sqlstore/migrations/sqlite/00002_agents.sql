-- Agents, registration tokens and label routing for SQLite. Keep it in
-- step with ../postgres/00002_agents.sql: the Go code is the same for both.
-- Times are INTEGER Unix microseconds (UTC); JSON values are TEXT.

-- +goose Up
CREATE TABLE agents (
    id                    TEXT    NOT NULL PRIMARY KEY,
    name                  TEXT    NOT NULL DEFAULT '',
    kind                  TEXT    NOT NULL DEFAULT '',
    -- reported_labels is a JSON object (never null: no labels is '{}');
    -- admin_labels is NULL when the admin did not set any, so that an
    -- explicit '{}' ("no labels") differs from "use the reported ones".
    reported_labels       TEXT    NOT NULL DEFAULT '{}',
    admin_labels          TEXT,
    capacity              INTEGER NOT NULL DEFAULT 0,
    version               TEXT    NOT NULL DEFAULT '',
    hostname              TEXT    NOT NULL DEFAULT '',
    platform              TEXT    NOT NULL DEFAULT '',
    disabled              INTEGER NOT NULL DEFAULT 0,
    -- The registration token the agent registered with ('' for none). Not a
    -- foreign key: deleting a token does not delete the agents it admitted.
    registration_token_id TEXT    NOT NULL DEFAULT '',
    created_at            INTEGER NOT NULL,
    last_seen_at          INTEGER
) STRICT;

CREATE TABLE registration_tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL DEFAULT '',
    hash         BLOB    NOT NULL UNIQUE,
    created_by   TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    -- max_uses bounds the registrations (0: unlimited); uses counts them.
    max_uses     INTEGER NOT NULL DEFAULT 0,
    uses         INTEGER NOT NULL DEFAULT 0,
    last_used_at INTEGER
) STRICT;

-- Routing: ClaimJob takes the oldest claimable job run of some runs_on
-- values, and QueuedRoutes lists the distinct runs_on values of claimable
-- job runs (a loose index scan). Both stay fast however many job runs wait
-- for labels no agent has. retry_at comes last so that the claimable test
-- needs no table row where the index alone can answer.
CREATE INDEX job_runs_route ON job_runs (runs_on, queued_at, id, retry_at) WHERE status = 'queued';

-- acked: the agent holding the job renewed its lease at least once. A claim
-- is provisional (its lease short) until then; a job whose agent never
-- acknowledged it never ran, and goes back to the queue without costing an
-- attempt.
ALTER TABLE job_runs ADD COLUMN acked INTEGER NOT NULL DEFAULT 0;

-- The claim now goes by route (job_runs_route): the old queue index is unused
-- and harmful. With 10,000 jobs waiting for other labels, PostgreSQL's
-- generic plan for the prepared claim walked it in time order filtering on
-- runs_on (34-56 ms per claim instead of ~3 ms; docs/benchmarks.md).
DROP INDEX job_runs_queue;

-- +goose Down
CREATE INDEX job_runs_queue ON job_runs (queued_at, id, retry_at) WHERE status = 'queued';
ALTER TABLE job_runs DROP COLUMN acked;
DROP INDEX job_runs_route;
DROP TABLE registration_tokens;
DROP TABLE agents;
