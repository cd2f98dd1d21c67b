-- The user who created a pipeline or a credential (seed 001's creatorId),
-- besides the login recorded as created_by (which a client may set). Same
-- for both databases.

-- +goose Up
ALTER TABLE pipelines ADD COLUMN creator_id TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN creator_id TEXT NOT NULL DEFAULT '';
-- What existed: the user whose login created it, when there is one.
UPDATE pipelines SET creator_id = COALESCE((SELECT u.id FROM users u WHERE u.login = pipelines.created_by), '');
UPDATE credentials SET creator_id = COALESCE((SELECT u.id FROM users u WHERE u.login = credentials.created_by), '');

-- +goose Down
ALTER TABLE credentials DROP COLUMN creator_id;
ALTER TABLE pipelines DROP COLUMN creator_id;
