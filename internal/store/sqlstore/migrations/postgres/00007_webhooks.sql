-- Webhooks for PostgreSQL. Keep it in step with ../sqlite/00007_webhooks.sql:
-- the Go code is the same for both. Times are BIGINT Unix microseconds (UTC).
--
-- pipeline_webhooks holds each pipeline's webhook secret, sealed by the
-- server like a secret's value (ciphertext only; key_id names the key).
-- webhook_deliveries remembers every delivery that was verified, so that a
-- redelivery (the forge's retry, or a second replica behind a load balancer)
-- answers with the runs of the first instead of starting new ones.

-- +goose Up
CREATE TABLE pipeline_webhooks (
    pipeline_id       TEXT    NOT NULL PRIMARY KEY REFERENCES pipelines (id) ON DELETE CASCADE,
    secret_ciphertext BYTEA   NOT NULL,
    key_id            TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);

CREATE TABLE webhook_deliveries (
    pipeline_id TEXT    NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    provider    TEXT    NOT NULL,
    delivery_id TEXT    NOT NULL,
    -- JSON array of the run ids the delivery started (empty when ignored).
    run_ids     TEXT    NOT NULL DEFAULT '[]',
    -- triggered | ignored
    status      TEXT    NOT NULL,
    reason      TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (pipeline_id, provider, delivery_id)
);
-- A future retention sweep, oldest first.
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE pipeline_webhooks;
