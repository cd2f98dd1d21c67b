-- The audit log, for SQLite. Keep it in step with ../postgres/00014_audit.sql:
-- the Go code is the same for both. Times are INTEGER Unix microseconds (UTC).

-- +goose Up
-- One row per change made through the API. id is AUTOINCREMENT so that ids
-- keep increasing even after the newest entries were deleted.
CREATE TABLE audit_entries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        INTEGER NOT NULL,
    actor       TEXT    NOT NULL DEFAULT '',
    actor_id    TEXT    NOT NULL DEFAULT '',
    token_id    TEXT    NOT NULL DEFAULT '',
    action      TEXT    NOT NULL DEFAULT '',
    resource    TEXT    NOT NULL DEFAULT '',
    status      INTEGER NOT NULL,
    remote_addr TEXT    NOT NULL DEFAULT '',
    request_id  TEXT    NOT NULL DEFAULT ''
) STRICT;
-- Time bounds and retention; the actor and action filters, newest first.
CREATE INDEX audit_entries_time ON audit_entries (time);
CREATE INDEX audit_entries_actor ON audit_entries (actor, id);
CREATE INDEX audit_entries_action ON audit_entries (action, id);

-- +goose Down
DROP TABLE audit_entries;
