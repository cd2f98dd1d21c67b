-- The trigger context of a run (event, ref, branch, commit, pull request…),
-- kept so that every replica rebuilds the same plan for it.

-- +goose Up
ALTER TABLE runs ADD COLUMN trigger_context TEXT NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE runs DROP COLUMN trigger_context;
