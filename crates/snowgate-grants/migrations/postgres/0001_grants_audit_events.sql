-- Grants: one row per grant, holding its latest version. `body` is the whole grant as JSON
-- and is authoritative; the other columns are copies for filtering, indexes and the deadline
-- sweep. Times are Unix milliseconds, exactly as the grants crate's Timestamp holds them.
CREATE TABLE grants (
    id                TEXT PRIMARY KEY NOT NULL,
    role              TEXT NOT NULL,
    requester         TEXT NOT NULL,
    state             TEXT NOT NULL,
    awaiting_decision BOOLEAN NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT,
    next_deadline     BIGINT,
    version           BIGINT NOT NULL,
    body              TEXT NOT NULL
);

CREATE INDEX grants_by_requester ON grants (requester, created_at);
CREATE INDEX grants_by_state ON grants (state, created_at);
CREATE INDEX grants_by_deadline ON grants (next_deadline) WHERE next_deadline IS NOT NULL;

-- The audit log: append-only and hash-chained (see src/audit/chain.rs for the definition).
-- `seq` is assigned by the writer while it holds the lock on `chain_head`, so it has no gaps
-- however many writers (replicas) there are.
CREATE TABLE audit (
    seq       BIGINT PRIMARY KEY NOT NULL,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    grant_id  TEXT,
    role      TEXT,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

CREATE INDEX audit_by_at ON audit (at);
CREATE INDEX audit_by_grant ON audit (grant_id) WHERE grant_id IS NOT NULL;

-- The chain's head, one row. Every write locks it (SELECT ... FOR UPDATE) before anything
-- else, so writes are serialized: the audit chain stays one linear chain, and event ids become
-- visible in the order they were assigned.
CREATE TABLE chain_head (
    id   SMALLINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);

INSERT INTO chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Grant events, for the team server's event stream: one row per event of every committed
-- transition, written in the same transaction. A NOTIFY on `snowgate_events` carrying the id
-- wakes listeners; the row is the truth, the notification only a hint.
CREATE TABLE events (
    id                BIGSERIAL PRIMARY KEY,
    kind              TEXT NOT NULL,
    grant_id          TEXT NOT NULL,
    role              TEXT NOT NULL,
    -- The people it concerns: the grant's requester, and the person who caused it, if any.
    subjects          TEXT[] NOT NULL,
    -- Whether the grant waits for a decision after the transition this event belongs to.
    awaiting_decision BOOLEAN NOT NULL,
    -- The event as the grants crate serializes it (GrantEvent).
    payload           JSONB NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX events_by_subject ON events USING GIN (subjects);
CREATE INDEX events_by_role ON events (role, id);

-- Append-only against mistakes. Someone with the database can drop these; the hash chain (and
-- an anchor kept outside the database) is what catches that.
CREATE FUNCTION snowgate_audit_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;

CREATE TRIGGER audit_is_append_only
BEFORE UPDATE OR DELETE ON audit
FOR EACH ROW EXECUTE FUNCTION snowgate_audit_is_append_only();

CREATE TRIGGER audit_is_append_only_truncate
BEFORE TRUNCATE ON audit
FOR EACH STATEMENT EXECUTE FUNCTION snowgate_audit_is_append_only();
