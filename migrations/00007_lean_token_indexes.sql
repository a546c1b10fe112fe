-- Less work per refresh-token rotation (issue 22; docs/performance.md,
-- "Database work per operation"). Every rotation inserts a refresh token,
-- which paid an entry in each of its five indexes and two foreign-key
-- checks.
--
-- refresh_tokens.client_id: its foreign key (and the index that served only
-- its cascade) duplicated the grant's. A refresh token belongs to a grant of
-- the same client (the store inserts one only with its grant's client), and
-- deleting a client deletes its grants, whose foreign key deletes their
-- refresh tokens. The check cost a key-share lock on the client row per
-- rotation: with concurrent refreshes of one client, a MultiXact and two WAL
-- records on one hot row each time.
--
-- refresh_tokens (grant_id) and (parent) WHERE parent <> '': one index
-- (grant_id, parent) serves every query of both (a grant's tokens, for
-- revocation and the cascade; a token's successors within its grant, for
-- the retry rule), with one entry per rotation instead of two.
--
-- NO TRANSACTION, so the indexes are built and dropped CONCURRENTLY, with no
-- lock that stops reads or writes of a live database. Each statement is
-- safe to run again: a run that stopped half-way (an INVALID index left by a
-- failed concurrent build included) is completed by the next. Dropping the
-- foreign key takes a short exclusive lock on both tables; it gives up
-- after 5 s rather than queue every request behind a long transaction
-- (run the migration again then).

-- +goose NO TRANSACTION
-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '5s';
    ALTER TABLE refresh_tokens DROP CONSTRAINT IF EXISTS refresh_tokens_client_id_fkey;
END $$;
-- +goose StatementEnd
DROP INDEX CONCURRENTLY IF EXISTS refresh_tokens_client_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS refresh_tokens_grant_id_parent_idx;
CREATE INDEX CONCURRENTLY refresh_tokens_grant_id_parent_idx ON refresh_tokens (grant_id, parent);
DROP INDEX CONCURRENTLY IF EXISTS refresh_tokens_grant_id_idx;
DROP INDEX CONCURRENTLY IF EXISTS refresh_tokens_parent_idx;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS refresh_tokens_parent_idx;
CREATE INDEX CONCURRENTLY refresh_tokens_parent_idx ON refresh_tokens (parent) WHERE parent <> '';
DROP INDEX CONCURRENTLY IF EXISTS refresh_tokens_grant_id_idx;
CREATE INDEX CONCURRENTLY refresh_tokens_grant_id_idx ON refresh_tokens (grant_id);
DROP INDEX CONCURRENTLY IF EXISTS refresh_tokens_grant_id_parent_idx;

DROP INDEX CONCURRENTLY IF EXISTS refresh_tokens_client_id_idx;
CREATE INDEX CONCURRENTLY refresh_tokens_client_id_idx ON refresh_tokens (client_id);
-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '5s';
    ALTER TABLE refresh_tokens DROP CONSTRAINT IF EXISTS refresh_tokens_client_id_fkey;
    ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_client_id_fkey
        FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE NOT VALID;
END $$;
-- +goose StatementEnd
ALTER TABLE refresh_tokens VALIDATE CONSTRAINT refresh_tokens_client_id_fkey;
