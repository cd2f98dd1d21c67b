-- The audit log, for PostgreSQL. Keep it in step with
-- ../sqlite/00014_audit.sql: the Go code is the same for both. Times are
-- BIGINT Unix microseconds (UTC).

-- +goose Up
-- One row per change made through the API.
CREATE TABLE audit_entries (
    id          BIGSERIAL PRIMARY KEY,
    time        BIGINT  NOT NULL,
    actor       TEXT    NOT NULL DEFAULT '',
    actor_id    TEXT    NOT NULL DEFAULT '',
    token_id    TEXT    NOT NULL DEFAULT '',
    action      TEXT    NOT NULL DEFAULT '',
    resource    TEXT    NOT NULL DEFAULT '',
    status      INTEGER NOT NULL,
    remote_addr TEXT    NOT NULL DEFAULT '',
    request_id  TEXT    NOT NULL DEFAULT ''
);
-- Time bounds and retention; the actor and action filters, newest first.
CREATE INDEX audit_entries_time ON audit_entries (time);
CREATE INDEX audit_entries_actor ON audit_entries (actor, id);
CREATE INDEX audit_entries_action ON audit_entries (action, id);

-- +goose Down
DROP TABLE audit_entries;
