-- Team mode: audit records waiting for the team server, oldest first. A row leaves only once
-- the server has taken it (or refused it for good), so neither a restart nor a long outage
-- loses one. `id` orders them; they are sent in that order.
CREATE TABLE outbox (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    kind     TEXT NOT NULL,
    grant_id TEXT,
    role     TEXT,
    details  TEXT NOT NULL
) STRICT;
