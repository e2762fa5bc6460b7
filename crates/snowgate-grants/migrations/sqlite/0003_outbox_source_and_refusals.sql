-- Team mode: exactly-once delivery of the outbox. This ledger's records carry a stable identity
-- on the wire, (source, outbox id): `source` is drawn at random once, here, and kept for the
-- life of the file, so the team server can tell a record it already took from a new one. The
-- outbox's ids are never reused (AUTOINCREMENT), so within a source they only grow.
CREATE TABLE outbox_source (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    source TEXT NOT NULL
) STRICT;

INSERT INTO outbox_source (id, source) VALUES (1, lower(hex(randomblob(16))));

-- A record the server refused for good stays, marked with when and why, and is not sent again:
-- nothing leaves the outbox unless the server took it.
ALTER TABLE outbox ADD COLUMN refused_at INTEGER;
ALTER TABLE outbox ADD COLUMN refused_reason TEXT;
