-- The session reaper's work list. The transaction that ends an active grant (its expiry or its
-- revocation) inserts the grant's row here, so no ended grant is missed whatever happens to a
-- replica afterwards. A replica with `[reaper]` configured claims one due row at a time with
-- `FOR UPDATE SKIP LOCKED`, holds the lock while it ends the grant's Snowflake sessions, and
-- commits `done_at` with the audit records of what it did; on failure it moves `next_attempt`
-- (backoff) and keeps the error. Times are Unix milliseconds.
CREATE TABLE reaps (
    grant_id     TEXT PRIMARY KEY NOT NULL REFERENCES grants (id),
    ended_at     BIGINT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL,
    done_at      BIGINT,
    last_error   TEXT
);

CREATE INDEX reaps_due ON reaps (next_attempt) WHERE done_at IS NULL;
