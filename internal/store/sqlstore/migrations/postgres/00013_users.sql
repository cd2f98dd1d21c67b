-- Users, and API tokens that belong to them, for PostgreSQL. Keep it in step
-- with ../sqlite/00013_users.sql: the Go code is the same for both. Times are
-- BIGINT Unix microseconds (UTC).

-- +goose Up
-- login is unique: it is the subject the rest of Runnel records (createdBy,
-- triggeredBy, approvers).
CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    login         TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL DEFAULT '',
    email         TEXT    NOT NULL DEFAULT '',
    avatar_url    TEXT    NOT NULL DEFAULT '',
    admin         BOOLEAN NOT NULL DEFAULT FALSE,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL,
    last_login_at BIGINT
);

-- user_id is the user a token belongs to: NULL for agent tokens. Not a
-- foreign key: DeleteUser removes the user's tokens itself, in the same
-- transaction. scopes is a comma-separated list; '' for tokens made before
-- scopes existed, which may do all their user may.
ALTER TABLE api_tokens ADD COLUMN user_id TEXT;
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
CREATE INDEX api_tokens_user ON api_tokens (user_id, created_at, id);

-- Every subject of an admin or user token becomes a user (an admin if any of
-- its tokens is), created when its first token was, and owns those tokens.
-- The id is usr_ and 20 random lowercase hex digits.
INSERT INTO users (id, login, admin, created_at)
SELECT 'usr_' || substr(md5(random()::text || clock_timestamp()::text), 1, 20), subject,
    bool_or(role = 'admin'), MIN(created_at)
FROM api_tokens
WHERE role IN ('admin', 'user') AND subject <> ''
GROUP BY subject;

UPDATE api_tokens SET user_id = u.id FROM users u
WHERE u.login = api_tokens.subject AND api_tokens.role IN ('admin', 'user') AND api_tokens.subject <> '';

-- +goose Down
DROP INDEX api_tokens_user;
ALTER TABLE api_tokens DROP COLUMN scopes;
ALTER TABLE api_tokens DROP COLUMN user_id;
DROP TABLE users;
