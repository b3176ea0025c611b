-- mqkit dead-letter archive, version 1: one row per dead letter, written by the DLQ
-- archiver (mqkit feature `dlq`, MQKIT_DLQ_ARCHIVE_URL). MySQL 5.7+ / MariaDB 10.2+.
--
-- message_id is the AMQP message id, or `uuid5:<UUID v5 (SHA-1) of the body>`
-- for a message without one, so that distinct id-less dead letters stay
-- distinct and archiving the same one again hits the unique key. failed_at is UTC
-- (x-mqkit-failed-at, else the time of the latest x-death entry, else
-- 1970-01-01 for a message that says nothing about when it failed).
CREATE TABLE IF NOT EXISTS mqkit_dead_letters (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    original_queue VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    message_id     VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    failed_at      DATETIME(3) NOT NULL,
    dlq            VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    business_key   VARCHAR(1024) NULL,
    error_kind     VARCHAR(64) NOT NULL,
    error_text     TEXT NOT NULL,
    attempts       INT UNSIGNED NULL,
    headers        LONGTEXT NOT NULL,
    properties     LONGTEXT NOT NULL,
    body           LONGBLOB NOT NULL,
    archived_at    DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY uq_mqkit_dead_letter (original_queue, message_id, failed_at),
    KEY ix_mqkit_dead_letters_failed_at (failed_at),
    KEY ix_mqkit_dead_letters_kind (error_kind, failed_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
