-- Image build repositories for SQLite. Keep it in step with
-- ../postgres/00011_images.sql: the Go code is the same for both. Times are
-- INTEGER Unix microseconds (UTC); booleans are INTEGER 0/1.

-- +goose Up
CREATE TABLE image_repositories (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace            TEXT    NOT NULL,
    name                 TEXT    NOT NULL,
    description          TEXT    NOT NULL DEFAULT '',
    full_description     TEXT    NOT NULL DEFAULT '',
    is_public            INTEGER NOT NULL DEFAULT 0,
    pipeline_id          TEXT    NOT NULL UNIQUE REFERENCES pipelines (id) ON DELETE CASCADE,
    source_client        TEXT    NOT NULL DEFAULT '',
    source_namespace     TEXT    NOT NULL DEFAULT '',
    source_name          TEXT    NOT NULL DEFAULT '',
    source_host          TEXT    NOT NULL DEFAULT '',
    source_clone_url     TEXT    NOT NULL DEFAULT '',
    source_credential_id TEXT    NOT NULL DEFAULT '',
    build_node           TEXT    NOT NULL DEFAULT '',
    email_enabled        INTEGER NOT NULL DEFAULT 0,
    created_by           TEXT    NOT NULL DEFAULT '',
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    UNIQUE (namespace, name)
) STRICT;

CREATE TABLE image_tag_configs (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    repository_id        INTEGER NOT NULL REFERENCES image_repositories (id) ON DELETE CASCADE,
    position             INTEGER NOT NULL,
    code_repo_type       TEXT    NOT NULL DEFAULT '',
    code_repo_type_value TEXT    NOT NULL DEFAULT '',
    docker_repo_tag      TEXT    NOT NULL DEFAULT '',
    dockerfile_location  TEXT    NOT NULL DEFAULT '',
    build_context_path   TEXT    NOT NULL DEFAULT '',
    is_active            INTEGER NOT NULL DEFAULT 0,
    build_cache_enabled  INTEGER NOT NULL DEFAULT 0,
    version_tagging      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX image_tag_configs_repository ON image_tag_configs (repository_id, position);

CREATE INDEX runs_pipeline_created ON runs (pipeline_id, created_at);

-- +goose Down
DROP INDEX runs_pipeline_created;
DROP TABLE image_tag_configs;
DROP TABLE image_repositories;
