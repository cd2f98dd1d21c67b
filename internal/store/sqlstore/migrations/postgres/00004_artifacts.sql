-- Artifacts and caches for PostgreSQL. Keep it in step with
-- ../sqlite/00004_artifacts.sql: the Go code is the same for both.
-- Times are BIGINT Unix microseconds (UTC).
--
-- The rows describe blobs kept outside the database (blob_key). Rows go with
-- their run or pipeline (ON DELETE CASCADE); the artifact service's sweeper
-- deletes blobs that no row names any more.

-- +goose Up
CREATE TABLE artifacts (
    id         TEXT    NOT NULL PRIMARY KEY,
    run_id     TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    -- The job that uploaded it; job_key is the same across attempts, so a
    -- later attempt may replace its own artifact.
    job_run_id TEXT    NOT NULL,
    job_key    TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    size       BIGINT  NOT NULL,
    sha256     TEXT    NOT NULL,
    blob_key   TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    -- NULL: kept until its run is deleted.
    expires_at BIGINT,
    UNIQUE (run_id, name)
);
-- The retention sweep.
CREATE INDEX artifacts_expires ON artifacts (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE caches (
    id           TEXT    NOT NULL PRIMARY KEY,
    pipeline_id  TEXT    NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    cache_key    TEXT    NOT NULL,
    size         BIGINT  NOT NULL,
    sha256       TEXT    NOT NULL,
    blob_key     TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT  NOT NULL,
    UNIQUE (pipeline_id, cache_key)
);
-- Prefix lookups, newest first, within one pipeline.
CREATE INDEX caches_pipeline_created ON caches (pipeline_id, created_at);
-- The retention sweep (least recently used first).
CREATE INDEX caches_last_used ON caches (last_used_at);

-- +goose Down
DROP TABLE caches;
DROP TABLE artifacts;
