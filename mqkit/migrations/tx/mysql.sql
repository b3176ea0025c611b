-- mqkit transactional consumers (handlers that take `mqkit::Tx<sqlx::MySql>`),
-- MySQL 8.0+ / MariaDB 10.6+ (FOR UPDATE SKIP LOCKED). See postgres.sql for
-- what each column means. The inbox key columns are bytes (VARBINARY), so
-- keys compare byte for byte: `A-1`, `a-1` and `A-1 ` are three business keys
-- (a _bin collation would still ignore trailing spaces).
CREATE TABLE IF NOT EXISTS mqkit_inbox (
    consumer    VARBINARY(1020) NOT NULL,
    dedup_key   VARBINARY(2048) NOT NULL,
    message_id  VARBINARY(255) NULL,
    claim_id    CHAR(36) CHARACTER SET ascii NOT NULL,
    received_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (consumer, dedup_key),
    KEY ix_mqkit_inbox_received_at (received_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS mqkit_outbox (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    batch_id        CHAR(36) CHARACTER SET ascii NOT NULL,
    consumer        VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    message_id      VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    exchange        VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    routing_key     VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    properties      LONGTEXT NOT NULL,
    body            LONGBLOB NOT NULL,
    mandatory       BOOLEAN NOT NULL,
    created_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    sent_at         DATETIME(6) NULL,
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    last_error      TEXT NULL,
    KEY ix_mqkit_outbox_unsent (sent_at, id),
    KEY ix_mqkit_outbox_batch (batch_id, sent_at),
    KEY ix_mqkit_outbox_sent_at (sent_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
