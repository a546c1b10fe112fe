-- OpenID Connect Back-Channel Logout 1.0: the jti of every logout token
-- an upstream sent, kept until the token expires, so that a replayed
-- token is refused on every replica (spec §2.6 step 9 / §4).
--
-- A pending authorization request may belong to no client: the sign-in
-- offered on /apps, which returns to /apps instead of a consent page.

-- +goose Up
CREATE TABLE upstream_logout_tokens (
    upstream   text        NOT NULL,
    jti        text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (upstream, jti)
);
CREATE INDEX upstream_logout_tokens_expires_at_idx ON upstream_logout_tokens (expires_at);

ALTER TABLE auth_requests ALTER COLUMN client_id DROP NOT NULL;

-- +goose Down
DELETE FROM auth_requests WHERE client_id IS NULL;
ALTER TABLE auth_requests ALTER COLUMN client_id SET NOT NULL;
DROP TABLE upstream_logout_tokens;
