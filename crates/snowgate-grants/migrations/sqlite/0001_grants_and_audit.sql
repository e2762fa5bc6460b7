-- Grants: one row per grant, holding its latest version. `body` is the whole grant as JSON
-- and is authoritative; the other columns are copies for filtering and indexes.
CREATE TABLE grants (
    id                TEXT PRIMARY KEY NOT NULL,
    role              TEXT NOT NULL,
    requester         TEXT NOT NULL,
    state             TEXT NOT NULL,
    awaiting_decision INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER,
    next_deadline     INTEGER,
    version           INTEGER NOT NULL,
    body              TEXT NOT NULL
) STRICT;

CREATE INDEX grants_by_requester ON grants (requester, created_at);
CREATE INDEX grants_by_state ON grants (state, created_at);
CREATE INDEX grants_by_deadline ON grants (next_deadline) WHERE next_deadline IS NOT NULL;

-- The audit log: append-only and hash-chained (see src/audit/chain.rs for the definition).
-- `seq` is the rowid, assigned inside a BEGIN IMMEDIATE transaction so it has no gaps.
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY NOT NULL,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    grant_id  TEXT,
    role      TEXT,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;

CREATE INDEX audit_by_at ON audit (at);
CREATE INDEX audit_by_grant ON audit (grant_id) WHERE grant_id IS NOT NULL;

-- Append-only against mistakes. Someone with the file can drop these; the hash chain and the
-- anchor outside the database are what catch that.
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
