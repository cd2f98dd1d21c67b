-- Approval gates for SQLite. Keep it in step with ../postgres/00010_approvals.sql.

-- +goose Up
CREATE TABLE approvals (
    id           TEXT    NOT NULL PRIMARY KEY,
    run_id       TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    scope        TEXT    NOT NULL,
    target       TEXT    NOT NULL DEFAULT '',
    message      TEXT    NOT NULL DEFAULT '',
    approvers    TEXT    NOT NULL DEFAULT '[]',
    status       TEXT    NOT NULL,
    requested_at INTEGER NOT NULL,
    timeout_at   INTEGER,
    decided_by   TEXT    NOT NULL DEFAULT '',
    decided_at   INTEGER,
    comment      TEXT    NOT NULL DEFAULT '',
    UNIQUE (run_id, scope, target)
) STRICT;

-- +goose Down
DROP TABLE approvals;
