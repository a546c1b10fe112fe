-- authd schema, version 1.
--
-- Conventions: every secret (code, token, session id, registration token) is
-- stored as its digest, never in clear. Optional strings that take part in a
-- foreign key or a unique index are NULL when absent; other optional strings
-- are ''. Arrays are NULL when the caller passed nil, so that "no
-- restriction" (nil) and "nothing allowed" (empty) stay distinct.
--
-- Everything issued to a client or a user hangs off it with ON DELETE CASCADE,
-- so that deleting a client removes its codes, grants, tokens, consents and
-- pending requests in one statement.

-- +goose Up
CREATE TABLE clients (
    id                      text        PRIMARY KEY,
    source                  text        NOT NULL,
    secret_hash             text        NOT NULL DEFAULT '',
    secret_expires_at       timestamptz,
    registration_token_hash text        NOT NULL DEFAULT '',
    metadata                jsonb       NOT NULL DEFAULT '{}',
    fingerprint             text        NOT NULL DEFAULT '',
    allowed_scopes          text[],
    allowed_resources       text[],
    skip_consent            boolean     NOT NULL DEFAULT false,
    can_introspect          boolean     NOT NULL DEFAULT false,
    disabled                boolean     NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    last_used_at            timestamptz NOT NULL,
    expires_at              timestamptz
);
-- Re-registration dedup looks clients up by fingerprint; several clients may
-- share one (an expired one and its successor), so it is not unique.
CREATE INDEX clients_fingerprint_idx ON clients (fingerprint) WHERE fingerprint <> '';
CREATE INDEX clients_source_idx ON clients (source);
CREATE INDEX clients_expires_at_idx ON clients (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE users (
    id             text        PRIMARY KEY,
    provider       text        NOT NULL,
    subject        text        NOT NULL,
    login          text        NOT NULL DEFAULT '',
    email          text        NOT NULL DEFAULT '',
    email_verified boolean     NOT NULL DEFAULT false,
    name           text        NOT NULL DEFAULT '',
    groups         text[],
    domain         text        NOT NULL DEFAULT '',
    disabled       boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    last_login_at  timestamptz NOT NULL,
    CONSTRAINT users_provider_subject_key UNIQUE (provider, subject)
);

CREATE TABLE auth_requests (
    id_digest             text        PRIMARY KEY,
    client_id             text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    redirect_uri          text        NOT NULL DEFAULT '',
    redirect_uri_provided boolean     NOT NULL DEFAULT false,
    state                 text        NOT NULL DEFAULT '',
    scopes                text[],
    resources             text[],
    code_challenge        text        NOT NULL DEFAULT '',
    code_challenge_method text        NOT NULL DEFAULT '',
    nonce                 text        NOT NULL DEFAULT '',
    prompt                text[],
    max_age               integer,
    login_hint            text        NOT NULL DEFAULT '',
    upstream              text        NOT NULL DEFAULT '',
    upstream_state_digest text,
    user_id               text        REFERENCES users (id) ON DELETE CASCADE,
    auth_time             timestamptz,
    created_at            timestamptz NOT NULL,
    expires_at            timestamptz NOT NULL
);
CREATE UNIQUE INDEX auth_requests_upstream_state_digest_key
    ON auth_requests (upstream_state_digest) WHERE upstream_state_digest IS NOT NULL;
CREATE INDEX auth_requests_client_id_idx ON auth_requests (client_id);
CREATE INDEX auth_requests_user_id_idx ON auth_requests (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX auth_requests_expires_at_idx ON auth_requests (expires_at);

CREATE TABLE sessions (
    id_digest  text        PRIMARY KEY,
    user_id    text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time  timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE consents (
    user_id    text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scopes     text[],
    resources  text[],
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX consents_client_id_idx ON consents (client_id);

CREATE TABLE grants (
    id           text        PRIMARY KEY,
    client_id    text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id      text        REFERENCES users (id) ON DELETE CASCADE, -- NULL for client_credentials
    scopes       text[],
    resources    text[],
    auth_time    timestamptz NOT NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX grants_client_id_idx ON grants (client_id);
CREATE INDEX grants_user_id_idx ON grants (user_id, client_id) WHERE user_id IS NOT NULL;
CREATE INDEX grants_expires_at_idx ON grants (expires_at);

CREATE TABLE auth_codes (
    digest                text        PRIMARY KEY,
    client_id             text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id               text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri          text        NOT NULL DEFAULT '',
    redirect_uri_provided boolean     NOT NULL DEFAULT false,
    scopes                text[],
    resources             text[],
    code_challenge        text        NOT NULL DEFAULT '',
    code_challenge_method text        NOT NULL DEFAULT '',
    nonce                 text        NOT NULL DEFAULT '',
    auth_time             timestamptz NOT NULL,
    created_at            timestamptz NOT NULL,
    expires_at            timestamptz NOT NULL,
    used_at               timestamptz,
    -- The grant the code produced. No foreign key: the code is claimed before
    -- the grant is inserted, and a purged grant must not take the code (the
    -- replay evidence) with it.
    grant_id              text
);
CREATE INDEX auth_codes_client_id_idx ON auth_codes (client_id);
CREATE INDEX auth_codes_user_id_idx ON auth_codes (user_id);
CREATE INDEX auth_codes_expires_at_idx ON auth_codes (expires_at);

CREATE TABLE refresh_tokens (
    digest     text        PRIMARY KEY,
    grant_id   text        NOT NULL REFERENCES grants (id) ON DELETE CASCADE, -- the token family
    client_id  text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    parent     text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_grant_id_idx ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_client_id_idx ON refresh_tokens (client_id);
CREATE INDEX refresh_tokens_expires_at_idx ON refresh_tokens (expires_at);

-- Opaque access tokens only; JWT access tokens are not stored.
CREATE TABLE access_tokens (
    digest     text        PRIMARY KEY,
    grant_id   text        REFERENCES grants (id) ON DELETE CASCADE,  -- NULL for client_credentials
    client_id  text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id    text        REFERENCES users (id) ON DELETE CASCADE,   -- NULL for client_credentials
    scopes     text[],
    resources  text[],
    auth_time  timestamptz,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX access_tokens_grant_id_idx ON access_tokens (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX access_tokens_client_id_idx ON access_tokens (client_id);
CREATE INDEX access_tokens_user_id_idx ON access_tokens (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX access_tokens_expires_at_idx ON access_tokens (expires_at);

-- Revoked JWT access tokens, remembered until they would have expired anyway.
CREATE TABLE revoked_jtis (
    jti        text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_jtis_expires_at_idx ON revoked_jtis (expires_at);

CREATE TABLE signing_keys (
    id                    text        PRIMARY KEY,
    algorithm             text        NOT NULL,
    state                 text        NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    public_jwk            bytea       NOT NULL, -- JSON, kept byte for byte
    encrypted_private_key bytea       NOT NULL,
    created_at            timestamptz NOT NULL,
    activated_at          timestamptz,
    retired_at            timestamptz,
    expires_at            timestamptz
);
-- At most one active key, so replicas racing to create the first key (or to
-- activate the next one) cannot end up signing with different keys.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

CREATE TABLE metadata_documents (
    url        text        PRIMARY KEY,
    document   bytea       NOT NULL, -- the JSON as fetched, byte for byte
    etag       text        NOT NULL DEFAULT '',
    fetched_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX metadata_documents_expires_at_idx ON metadata_documents (expires_at);

-- +goose Down
DROP TABLE metadata_documents;
DROP TABLE signing_keys;
DROP TABLE revoked_jtis;
DROP TABLE access_tokens;
DROP TABLE refresh_tokens;
DROP TABLE auth_codes;
DROP TABLE grants;
DROP TABLE consents;
DROP TABLE sessions;
DROP TABLE auth_requests;
DROP TABLE users;
DROP TABLE clients;
