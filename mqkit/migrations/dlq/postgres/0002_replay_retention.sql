-- mqkit dead-letter archive, version 2 (PostgreSQL): as
-- migrations/dlq/mysql/0002_replay_retention.sql.
ALTER TABLE mqkit_dead_letters
    ADD COLUMN IF NOT EXISTS replayed_at TIMESTAMP(3) NULL,
    ADD COLUMN IF NOT EXISTS replays INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS ix_mqkit_dead_letters_archived_at ON mqkit_dead_letters (archived_at);
CREATE INDEX IF NOT EXISTS ix_mqkit_dead_letters_queue ON mqkit_dead_letters (original_queue, failed_at);
CREATE INDEX IF NOT EXISTS ix_mqkit_dead_letters_key ON mqkit_dead_letters (business_key);
