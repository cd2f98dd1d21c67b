-- Approval gates: one row per gate of a run (the pipeline's, a stage's, a
-- job's) once the run reaches it; decided once (approved, rejected, or
-- expired at its timeout).

-- +goose Up
CREATE TABLE approvals (
    id           TEXT   NOT NULL PRIMARY KEY,
    run_id       TEXT   NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    -- pipeline | stage | job; target: "" for the pipeline, the stage name,
    -- or the job's key.
    scope        TEXT   NOT NULL,
    target       TEXT   NOT NULL DEFAULT '',
    message      TEXT   NOT NULL DEFAULT '',
    approvers    TEXT   NOT NULL DEFAULT '[]',
    status       TEXT   NOT NULL,
    requested_at BIGINT NOT NULL,
    timeout_at   BIGINT,
    decided_by   TEXT   NOT NULL DEFAULT '',
    decided_at   BIGINT,
    comment      TEXT   NOT NULL DEFAULT '',
    UNIQUE (run_id, scope, target)
);

-- +goose Down
DROP TABLE approvals;
