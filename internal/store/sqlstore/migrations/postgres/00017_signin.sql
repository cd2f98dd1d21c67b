-- Single sign-on: the providers an admin configured (client secrets sealed
-- by the server's key), the identities that sign users in, pending logins
-- (one use, short-lived) and browser sessions (stored as the SHA-256 of the
-- cookie's value). Same shape for both databases; times are Unix
-- microseconds (UTC).

-- +goose Up
CREATE TABLE auth_providers (
    name            TEXT    NOT NULL PRIMARY KEY,
    kind            TEXT    NOT NULL,
    display_name    TEXT    NOT NULL DEFAULT '',
    url             TEXT    NOT NULL DEFAULT '',
    client_id       TEXT    NOT NULL,
    ciphertext      BYTEA    NOT NULL,
    key_id          TEXT    NOT NULL,
    scopes          TEXT    NOT NULL DEFAULT '',
    allowed_orgs    TEXT    NOT NULL DEFAULT '',
    allowed_domains TEXT    NOT NULL DEFAULT '',
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

-- A user's identity at a provider: the provider's stable subject.
CREATE TABLE user_identities (
    provider   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

-- A login under way: keyed by its state, used once.
CREATE TABLE login_states (
    state      TEXT    NOT NULL PRIMARY KEY,
    provider   TEXT    NOT NULL,
    nonce      TEXT    NOT NULL,
    verifier   TEXT    NOT NULL,
    return_to  TEXT    NOT NULL DEFAULT '',
    expires_at BIGINT  NOT NULL
);

CREATE TABLE sessions (
    id           TEXT    NOT NULL PRIMARY KEY,
    hash         BYTEA    NOT NULL UNIQUE,
    user_id      TEXT    NOT NULL,
    provider     TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    last_seen_at BIGINT  NOT NULL,
    user_agent   TEXT    NOT NULL DEFAULT '',
    remote_addr  TEXT    NOT NULL DEFAULT '',
    -- scopes limit a session opened with a scoped API token (comma-separated;
    -- '': every scope of its user)
    scopes       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id, created_at);

-- The command line's sign-in (runnel login): a signed-in user grants it
-- from the web UI; the grant is kept by the SHA-256 of its one-use code and
-- bound to the PKCE challenge only the command line can answer.
CREATE TABLE cli_grants (
    code_hash  BYTEA    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    challenge  TEXT    NOT NULL,
    scopes     TEXT    NOT NULL DEFAULT '',
    expires_at BIGINT  NOT NULL
);

-- +goose Down
DROP TABLE cli_grants;
DROP TABLE sessions;
DROP TABLE login_states;
DROP TABLE user_identities;
DROP TABLE auth_providers;
