-- Upstream grants kept for the broker (upstreams[].store_tokens): the
-- user's access and refresh token at an upstream identity provider, so
-- that MCP servers can call the upstream API as the user (token exchange)
-- and authd can re-check the memberships its allowlist depends on.
--
-- sealed is AES-256-GCM ciphertext made by internal/upstreamtokens under a
-- key derived from keys.encryption_secret; key_id names that key so the
-- secret can be rotated (rows sealed under an older key still open while
-- that secret is kept as a previous one). The associated data binds each
-- ciphertext to its (user_id, upstream): a row copied onto another user
-- does not open. Nothing secret is stored in clear: expiry, scopes and
-- whether a refresh token exists are what refresh and purge decide on.
--
-- A refresh takes the row with SELECT ... FOR UPDATE, so that of several
-- replicas refreshing at once exactly one calls the upstream (refresh
-- tokens of GitHub Apps and many OIDC providers are single-use); the
-- others wait for the lock and then find the fresh token.

-- +goose Up
CREATE TABLE upstream_tokens (
    user_id               text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    upstream              text        NOT NULL,
    key_id                text        NOT NULL,
    sealed                bytea       NOT NULL,
    expires_at            timestamptz,
    refreshable           boolean     NOT NULL DEFAULT false,
    scopes                text[],
    dead_at               timestamptz,
    membership_checked_at timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    PRIMARY KEY (user_id, upstream)
);
-- Purge looks for rows that can no longer be used.
CREATE INDEX upstream_tokens_unusable_idx ON upstream_tokens (dead_at, expires_at)
    WHERE dead_at IS NOT NULL OR NOT refreshable;

-- +goose Down
DROP TABLE upstream_tokens;
