-- mqkit transactional consumers (handlers that take `mqkit::Tx`), PostgreSQL 11+.
--
-- mqkit_inbox: one row per business event a transactional consumer handled,
-- inserted in the handler's own transaction before the handler runs, so a
-- committed row means "done" and a copy of the same key waits on the row
-- while the first is in flight. consumer is the work queue; dedup_key is the
-- idempotency fields (`A-1:created`, `:` and `%` percent-encoded) or, without
-- them, `id:` + the message id. claim_id is the transaction's own id, read
-- back just before COMMIT: a transaction that was aborted or ended inside
-- the handler is never taken for committed.
CREATE TABLE IF NOT EXISTS mqkit_inbox (
    consumer    TEXT NOT NULL,
    dedup_key   TEXT NOT NULL,
    message_id  TEXT NULL,
    claim_id    UUID NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (consumer, dedup_key)
);
CREATE INDEX IF NOT EXISTS ix_mqkit_inbox_received_at ON mqkit_inbox (received_at);

-- mqkit_outbox: messages a handler staged with `tx.publish_json(...)`,
-- committed with its effects, published by the relay (publisher confirm,
-- mandatory, persistent, the row's message_id) and then marked sent_at.
-- batch_id groups the rows of one transaction; they are published in id
-- order, and only by whoever holds the locks on all of the batch's unsent
-- rows. Unsent rows inserted more than a few seconds ago are the sweeper's;
-- sent rows are deleted after MQKIT_OUTBOX_RETENTION.
CREATE TABLE IF NOT EXISTS mqkit_outbox (
    id              BIGSERIAL PRIMARY KEY,
    batch_id        UUID NOT NULL,
    consumer        TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    exchange        TEXT NOT NULL,
    routing_key     TEXT NOT NULL,
    properties      TEXT NOT NULL,
    body            BYTEA NOT NULL,
    mandatory       BOOLEAN NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    sent_at         TIMESTAMPTZ NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    last_error      TEXT NULL
);
CREATE INDEX IF NOT EXISTS ix_mqkit_outbox_unsent ON mqkit_outbox (id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_mqkit_outbox_batch ON mqkit_outbox (batch_id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_mqkit_outbox_sent_at ON mqkit_outbox (sent_at) WHERE sent_at IS NOT NULL;
