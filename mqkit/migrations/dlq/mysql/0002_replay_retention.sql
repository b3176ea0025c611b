-- mqkit dead-letter archive, version 2 (MySQL/MariaDB): replay from the
-- archive (`mqkit dlq replay --from-archive`) marks each row it republished
-- (replayed_at, UTC; replays, how often), and retention
-- (MQKIT_DLQ_ARCHIVE_RETENTION) deletes by archived_at through its index.
-- business_key is indexed on a prefix (utf8mb4 keys are limited to 3072 bytes).
ALTER TABLE mqkit_dead_letters
    ADD COLUMN replayed_at DATETIME(3) NULL,
    ADD COLUMN replays INT UNSIGNED NOT NULL DEFAULT 0,
    ADD KEY ix_mqkit_dead_letters_archived_at (archived_at),
    ADD KEY ix_mqkit_dead_letters_queue (original_queue, failed_at),
    ADD KEY ix_mqkit_dead_letters_key (business_key(191));
