-- The team server's record of exchanged ID tokens (`POST /v1/session`): each ID token is
-- exchanged once. `digest` is the SHA-256 (hex) of the token, never the token; a row is kept
-- until the token's own `exp` (Unix seconds), after which the token is refused anyway.
CREATE TABLE id_token_uses (
    digest     TEXT PRIMARY KEY NOT NULL,
    subject    TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX id_token_uses_by_expiry ON id_token_uses (expires_at);
