-- The user whose token triggered a run (seed 001's triggerUserId): empty for
-- cron and webhook runs and for runs from before users existed. Same for both
-- databases.

-- +goose Up
ALTER TABLE runs ADD COLUMN trigger_user_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE runs DROP COLUMN trigger_user_id;
