-- Forges (seed 001): applications that connect accounts as well as sign
-- users in; connected accounts as personal credentials (their refresh
-- token sealed beside the access token); pipelines bound to a repository on
-- a forge, with the webhook Runnel manages there; the status each run
-- reports on its commit. Times are Unix microseconds (UTC).

-- +goose Up
ALTER TABLE login_states ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
ALTER TABLE auth_providers ADD COLUMN sign_in INTEGER NOT NULL DEFAULT 1;
ALTER TABLE auth_providers ADD COLUMN connect INTEGER NOT NULL DEFAULT 0;

ALTER TABLE credentials ADD COLUMN owner_id TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN provider TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN account_id TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN login_name TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN avatar_url TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN refresh_ciphertext BLOB;
ALTER TABLE credentials ADD COLUMN refresh_key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN expires_at INTEGER;

ALTER TABLE pipelines ADD COLUMN deactivated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pipelines ADD COLUMN webhook_disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pipelines ADD COLUMN fork_pull_requests TEXT NOT NULL DEFAULT '';

-- A pipeline's repository on a forge and the webhook Runnel manages there.
CREATE TABLE pipeline_repos (
    pipeline_id     TEXT    NOT NULL PRIMARY KEY REFERENCES pipelines(id) ON DELETE CASCADE,
    provider        TEXT    NOT NULL DEFAULT '',
    kind            TEXT    NOT NULL,
    api_base        TEXT    NOT NULL,
    full_name       TEXT    NOT NULL,
    hook_id         TEXT    NOT NULL DEFAULT '',
    hook_state      TEXT    NOT NULL DEFAULT '',
    hook_error      TEXT    NOT NULL DEFAULT '',
    hook_checked_at INTEGER,
    status_context  TEXT    NOT NULL DEFAULT '',
    job_statuses    INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX pipeline_repos_repo ON pipeline_repos (kind, full_name);

-- The last status a run reported on its commit (one row per run and
-- context: the run's, and each job's when job statuses are on).
CREATE TABLE commit_statuses (
    run_id      TEXT    NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    context     TEXT    NOT NULL,
    sha         TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    target_url  TEXT    NOT NULL DEFAULT '',
    error       TEXT    NOT NULL DEFAULT '',
    attempts    INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (run_id, context)
) STRICT;

-- +goose Down
DROP TABLE commit_statuses;
DROP TABLE pipeline_repos;
ALTER TABLE pipelines DROP COLUMN fork_pull_requests;
ALTER TABLE pipelines DROP COLUMN webhook_disabled;
ALTER TABLE pipelines DROP COLUMN deactivated;
ALTER TABLE credentials DROP COLUMN expires_at;
ALTER TABLE credentials DROP COLUMN refresh_key_id;
ALTER TABLE credentials DROP COLUMN refresh_ciphertext;
ALTER TABLE credentials DROP COLUMN avatar_url;
ALTER TABLE credentials DROP COLUMN login_name;
ALTER TABLE credentials DROP COLUMN account_id;
ALTER TABLE credentials DROP COLUMN provider;
ALTER TABLE credentials DROP COLUMN owner_id;
ALTER TABLE auth_providers DROP COLUMN connect;
ALTER TABLE auth_providers DROP COLUMN sign_in;
ALTER TABLE login_states DROP COLUMN user_id;
