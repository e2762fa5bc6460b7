-- The audit journal (src/journal.rs): a record a statement waits for is written to an
-- append-only file next to this one first, and moved into `audit` in batches. The transaction
-- that moves a batch also sets `moved_upto`, the journal position of the batch's last record,
-- so after a crash the journal is replayed from exactly there: nothing twice, nothing lost.
CREATE TABLE audit_journal (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    moved_upto INTEGER NOT NULL
) STRICT;

INSERT INTO audit_journal (id, moved_upto) VALUES (1, 0);
