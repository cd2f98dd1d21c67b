-- Secrets: values for steps, encrypted by the server before they reach the
-- database (ciphertext only; key_id names the key that sealed it). Scoped to
-- a project or a pipeline; names are unique per scope.

-- +goose Up
CREATE TABLE secrets (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    scope_id   TEXT    NOT NULL,
    ciphertext BLOB    NOT NULL,
    key_id     TEXT    NOT NULL,
    created_by TEXT    NOT NULL DEFAULT '',
    created_at INTEGER  NOT NULL,
    updated_at INTEGER  NOT NULL,
    UNIQUE (scope, scope_id, name)
) STRICT;

-- Source-code credentials: the token or private key is sealed like a
-- secret's value; the rest is shown by the API.
CREATE TABLE credentials (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    kind       TEXT    NOT NULL,
    host       TEXT    NOT NULL DEFAULT '',
    username   TEXT    NOT NULL DEFAULT '',
    project_id TEXT    NOT NULL DEFAULT '',
    ciphertext BLOB    NOT NULL,
    key_id     TEXT    NOT NULL,
    created_by TEXT    NOT NULL DEFAULT '',
    created_at INTEGER  NOT NULL,
    updated_at INTEGER  NOT NULL
) STRICT;

-- +goose Down
DROP TABLE credentials;
DROP TABLE secrets;
