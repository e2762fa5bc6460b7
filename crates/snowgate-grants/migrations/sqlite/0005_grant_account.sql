-- Grants carry the Snowflake account their role belongs to (`[[roles]] account`). A grant from
-- before accounts had names keeps NULL here and no `account` in its body: it is the config's
-- only (or default) account's, which is how the broker reads a NULL.
ALTER TABLE grants ADD COLUMN account TEXT;

CREATE INDEX grants_by_account ON grants (account, created_at) WHERE account IS NOT NULL;
