-- Exactly-once desktop reports (`POST /v1/audit/records`). A desktop's record carries the
-- random id of the desktop's ledger (`source`) and its place in that ledger's outbox
-- (`source_seq`). A record already taken is acknowledged and not appended again; the unique
-- index makes a second copy impossible whatever the code does. Records appended by the server
-- itself, or reported by desktops that send no ids, leave both NULL.
ALTER TABLE audit ADD COLUMN source TEXT;
ALTER TABLE audit ADD COLUMN source_seq BIGINT;

CREATE UNIQUE INDEX audit_by_source ON audit (source, source_seq) WHERE source IS NOT NULL;

-- Within one source, each person's records arrive in order: the last one taken for the pair
-- is one index descent away.
CREATE INDEX audit_by_source_actor ON audit (source, actor, source_seq) WHERE source IS NOT NULL;
