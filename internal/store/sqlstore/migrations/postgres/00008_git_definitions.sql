-- Git-backed definitions: the credential a pipeline reads and writes its
-- repository with, and the definition each run was planned from when it did
-- not come from a stored spec version (a file read from Git at the
-- triggering commit, or a configuration extension's answer), so that every
-- replica rebuilds the same plan and the run shows what it ran.

-- +goose Up
ALTER TABLE pipelines ADD COLUMN credential_id TEXT NOT NULL DEFAULT '';

CREATE TABLE run_definitions (
    run_id     TEXT NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    source     TEXT NOT NULL,
    file       TEXT NOT NULL DEFAULT '',
    commit_sha TEXT NOT NULL DEFAULT '',
    content    TEXT NOT NULL
);

-- +goose Down
DROP TABLE run_definitions;
ALTER TABLE pipelines DROP COLUMN credential_id;
