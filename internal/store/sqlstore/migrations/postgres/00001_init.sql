-- Runnel's schema for PostgreSQL. Keep it in step with ../sqlite/00001_init.sql:
-- the Go code is the same for both, so column names and meanings must match.
-- Times are BIGINT Unix microseconds (UTC); JSON values are TEXT.

-- +goose Up
CREATE TABLE pipelines (
    id                 TEXT    NOT NULL PRIMARY KEY,
    project_id         TEXT    NOT NULL,
    name               TEXT    NOT NULL,
    -- name_lower is strings.ToLower(name), kept by the Go code, so that the
    -- case-insensitive search behaves the same (Unicode included) on both databases.
    name_lower         TEXT    NOT NULL,
    description        TEXT    NOT NULL DEFAULT '',
    repo_url           TEXT    NOT NULL DEFAULT '',
    default_branch     TEXT    NOT NULL DEFAULT '',
    pipeline_file_path TEXT    NOT NULL DEFAULT '',
    save_mode          TEXT    NOT NULL DEFAULT '',
    pr_target_branch   TEXT    NOT NULL DEFAULT '',
    metadata           TEXT    NOT NULL DEFAULT 'null',
    created_by         TEXT    NOT NULL DEFAULT '',
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    -- next_run_number is the number the next run gets; incrementing it locks
    -- the row, which serialises run creation per pipeline.
    next_run_number    BIGINT  NOT NULL DEFAULT 1,
    head_version       BIGINT  NOT NULL DEFAULT 0,
    head_commit_sha    TEXT    NOT NULL DEFAULT '',
    last_execution_id  TEXT    NOT NULL DEFAULT '',
    -- last_run_number orders status updates: an older run never overwrites a newer one's.
    last_run_number    BIGINT  NOT NULL DEFAULT 0,
    last_run_state     TEXT    NOT NULL DEFAULT '',
    last_started       BIGINT,
    last_ended         BIGINT,
    UNIQUE (project_id, name)
);

CREATE TABLE spec_versions (
    pipeline_id    TEXT    NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    version        BIGINT  NOT NULL,
    commit_sha     TEXT    NOT NULL,
    spec           TEXT    NOT NULL,
    format         TEXT    NOT NULL DEFAULT '',
    commit_message TEXT    NOT NULL DEFAULT '',
    editor         TEXT    NOT NULL DEFAULT '',
    request_id     TEXT    NOT NULL DEFAULT '',
    created_at     BIGINT  NOT NULL,
    PRIMARY KEY (pipeline_id, version)
);
CREATE UNIQUE INDEX spec_versions_request ON spec_versions (pipeline_id, request_id) WHERE request_id <> '';

CREATE TABLE runs (
    id           TEXT    NOT NULL PRIMARY KEY,
    pipeline_id  TEXT    NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    number       BIGINT  NOT NULL,
    status       TEXT    NOT NULL,
    trigger_type TEXT    NOT NULL DEFAULT '',
    triggered_by TEXT    NOT NULL DEFAULT '',
    request_id   TEXT    NOT NULL DEFAULT '',
    variables    TEXT    NOT NULL DEFAULT 'null',
    spec_version BIGINT  NOT NULL DEFAULT 0,
    commit_sha   TEXT    NOT NULL DEFAULT '',
    reason       TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    started_at   BIGINT,
    ended_at     BIGINT,
    UNIQUE (pipeline_id, number)
);
CREATE UNIQUE INDEX runs_request ON runs (pipeline_id, request_id) WHERE request_id <> '';
-- Listing a pipeline's runs by status, newest first.
CREATE INDEX runs_pipeline_status ON runs (pipeline_id, status, number);
-- Listing all runs newest first, and ActiveRuns (by status, oldest first).
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_status ON runs (status, created_at);

CREATE TABLE job_runs (
    id               TEXT    NOT NULL PRIMARY KEY,
    run_id           TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    job_key          TEXT    NOT NULL,
    name             TEXT    NOT NULL DEFAULT '',
    stage            TEXT    NOT NULL DEFAULT '',
    stage_index      BIGINT  NOT NULL DEFAULT 0,
    idx              BIGINT  NOT NULL DEFAULT 0,
    status           TEXT    NOT NULL,
    attempt          BIGINT  NOT NULL DEFAULT 0,
    allowed_failure  BOOLEAN NOT NULL DEFAULT FALSE,
    outputs          TEXT    NOT NULL DEFAULT 'null',
    reason           TEXT    NOT NULL DEFAULT '',
    request          TEXT    NOT NULL DEFAULT '',
    runs_on          TEXT    NOT NULL DEFAULT '',
    agent_id         TEXT    NOT NULL DEFAULT '',
    lease_id         TEXT    NOT NULL DEFAULT '',
    lease_expires_at BIGINT,
    retry_at         BIGINT,
    queued_at        BIGINT,
    started_at       BIGINT,
    ended_at         BIGINT,
    UNIQUE (run_id, job_key)
);
CREATE INDEX job_runs_run ON job_runs (run_id, idx);
-- The claim query: status = 'queued', oldest queued_at first, retry_at filtered.
-- Partial, so it only holds the (few) queued rows and stays small however many
-- finished jobs accumulate.
CREATE INDEX job_runs_queue ON job_runs (queued_at, id, retry_at) WHERE status = 'queued';
-- ExpiredLeases and JobsOfAgent.
CREATE INDEX job_runs_lease ON job_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX job_runs_agent ON job_runs (agent_id) WHERE status = 'running';

CREATE TABLE step_runs (
    id                  TEXT    NOT NULL PRIMARY KEY,
    job_run_id          TEXT    NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    idx                 BIGINT  NOT NULL,
    name                TEXT    NOT NULL DEFAULT '',
    uses                TEXT    NOT NULL DEFAULT '',
    run_command         TEXT    NOT NULL DEFAULT '',
    status              TEXT    NOT NULL,
    exit_code           BIGINT,
    error               TEXT    NOT NULL DEFAULT '',
    started_at          BIGINT,
    ended_at            BIGINT,
    -- The log's bookkeeping, kept by AppendLogs: bytes and last seq of the
    -- stored lines (the marker line not counted), the marker's seq (0: none),
    -- and what the cap has dropped or truncated so far (the marker's text).
    log_bytes           BIGINT  NOT NULL DEFAULT 0,
    log_seq             BIGINT  NOT NULL DEFAULT 0,
    log_marker_seq      BIGINT  NOT NULL DEFAULT 0,
    log_dropped_bytes   BIGINT  NOT NULL DEFAULT 0,
    log_dropped_lines   BIGINT  NOT NULL DEFAULT 0,
    log_truncated_bytes BIGINT  NOT NULL DEFAULT 0,
    log_truncated_lines BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX step_runs_job ON step_runs (job_run_id, idx);

CREATE TABLE log_lines (
    step_run_id TEXT    NOT NULL REFERENCES step_runs (id) ON DELETE CASCADE,
    seq         BIGINT  NOT NULL,
    ts          BIGINT  NOT NULL,
    level       TEXT    NOT NULL DEFAULT '',
    message     TEXT    NOT NULL,
    -- size is len(message) in bytes.
    size        BIGINT  NOT NULL,
    PRIMARY KEY (step_run_id, seq)
);

CREATE TABLE run_timeline (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id     TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    ts         BIGINT  NOT NULL,
    action     TEXT    NOT NULL,
    operator   TEXT    NOT NULL DEFAULT '',
    reason     TEXT    NOT NULL DEFAULT '',
    job_run_id TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX run_timeline_run ON run_timeline (run_id, ts, id);

CREATE TABLE api_tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL DEFAULT '',
    subject      TEXT    NOT NULL DEFAULT '',
    role         TEXT    NOT NULL DEFAULT '',
    hash         BYTEA   NOT NULL UNIQUE,
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT
);

-- +goose Down
DROP TABLE api_tokens;
DROP TABLE run_timeline;
DROP TABLE log_lines;
DROP TABLE step_runs;
DROP TABLE job_runs;
DROP TABLE runs;
DROP TABLE spec_versions;
DROP TABLE pipelines;
