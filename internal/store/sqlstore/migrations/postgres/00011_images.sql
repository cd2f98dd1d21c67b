-- Image build repositories: the source repository an image is built from,
-- and its tag configs (which branches or tags become which image tags, in
-- order). Each repository owns a pipeline the server manages for it; its
-- builds are that pipeline's runs, and deleting the pipeline deletes the
-- repository and its tag configs.

-- +goose Up
CREATE TABLE image_repositories (
    id                   BIGSERIAL PRIMARY KEY,
    namespace            TEXT    NOT NULL,
    name                 TEXT    NOT NULL,
    description          TEXT    NOT NULL DEFAULT '',
    full_description     TEXT    NOT NULL DEFAULT '',
    is_public            BOOLEAN NOT NULL DEFAULT FALSE,
    pipeline_id          TEXT    NOT NULL UNIQUE REFERENCES pipelines (id) ON DELETE CASCADE,
    -- Where the code comes from (store.ImageSource).
    source_client        TEXT    NOT NULL DEFAULT '',
    source_namespace     TEXT    NOT NULL DEFAULT '',
    source_name          TEXT    NOT NULL DEFAULT '',
    source_host          TEXT    NOT NULL DEFAULT '',
    source_clone_url     TEXT    NOT NULL DEFAULT '',
    source_credential_id TEXT    NOT NULL DEFAULT '',
    build_node           TEXT    NOT NULL DEFAULT '',
    email_enabled        BOOLEAN NOT NULL DEFAULT FALSE,
    created_by           TEXT    NOT NULL DEFAULT '',
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL,
    UNIQUE (namespace, name)
);

CREATE TABLE image_tag_configs (
    id                   BIGSERIAL PRIMARY KEY,
    repository_id        BIGINT  NOT NULL REFERENCES image_repositories (id) ON DELETE CASCADE,
    -- position orders a repository's tag configs (not unique: a reorder
    -- rewrites the positions row by row).
    position             INTEGER NOT NULL,
    code_repo_type       TEXT    NOT NULL DEFAULT '',
    code_repo_type_value TEXT    NOT NULL DEFAULT '',
    docker_repo_tag      TEXT    NOT NULL DEFAULT '',
    dockerfile_location  TEXT    NOT NULL DEFAULT '',
    build_context_path   TEXT    NOT NULL DEFAULT '',
    is_active            BOOLEAN NOT NULL DEFAULT FALSE,
    build_cache_enabled  BOOLEAN NOT NULL DEFAULT FALSE,
    -- 0 no extra tag, 1 a time tag, 2 the commit id.
    version_tagging      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX image_tag_configs_repository ON image_tag_configs (repository_id, position);

-- Listing image builds: the runs of given pipelines, newest first
-- (runs_pipeline_status orders a pipeline's runs by number, not by time).
CREATE INDEX runs_pipeline_created ON runs (pipeline_id, created_at);

-- +goose Down
DROP INDEX runs_pipeline_created;
DROP TABLE image_tag_configs;
DROP TABLE image_repositories;
