-- encryption_secrets: the fingerprint of the keys.encryption_secret each
-- replica started with (the upstream-token key id derived from it, an HKDF
-- output under its own label that reveals nothing of the secret). `authd
-- keys reencrypt` refuses to rewrite stored keys and tokens under a secret
-- no replica has started with: a mistyped or regenerated secret would move
-- them where no replica can read them.

-- +goose Up
CREATE TABLE encryption_secrets (
    fingerprint   text PRIMARY KEY,
    first_seen_at timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL
);

-- +goose Down
DROP TABLE encryption_secrets;
