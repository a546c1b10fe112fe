-- Less work per token insert (issue 22; docs/performance.md, "Database work
-- per operation").
--
-- access_tokens.client_id: its foreign key checked every inserted row with
-- a query of its own (under load, 128 client_credentials tokens inserted
-- in one statement ran 128 checks of their one client, 40 % of the
-- statement's time). The store now locks the client row itself, once per
-- statement (FOR KEY SHARE, as the check did), and DeleteClient and the
-- purge delete a client's tokens explicitly, in the transaction that
-- deletes the client, after locking its row: a token is either inserted
-- before and deleted with its client, or finds the client gone and is not
-- inserted. The index on client_id stays (those deletes use it).
-- While replicas of an older version still run, their client deletes
-- (which relied on the cascade) leave that client's tokens behind until
-- they expire and are purged; introspection answers inactive for a token
-- whose client is gone.
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
-- failed concurrent build included) is completed by the next. Dropping a
-- foreign key takes a short exclusive lock on both tables; it gives up
-- after 5 s rather than queue every request behind a long transaction
-- (run the migration again then).

-- +goose NO TRANSACTION
-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '5s';
    ALTER TABLE access_tokens DROP CONSTRAINT IF EXISTS access_tokens_client_id_fkey;
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
-- Tokens an older version's client delete left behind go first: the
-- foreign keys would not validate with them.
DELETE FROM access_tokens t WHERE NOT EXISTS (SELECT 1 FROM clients c WHERE c.id = t.client_id);
DELETE FROM refresh_tokens t WHERE NOT EXISTS (SELECT 1 FROM clients c WHERE c.id = t.client_id);
-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '5s';
    ALTER TABLE refresh_tokens DROP CONSTRAINT IF EXISTS refresh_tokens_client_id_fkey;
    ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_client_id_fkey
        FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE NOT VALID;
    ALTER TABLE access_tokens DROP CONSTRAINT IF EXISTS access_tokens_client_id_fkey;
    ALTER TABLE access_tokens ADD CONSTRAINT access_tokens_client_id_fkey
        FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE NOT VALID;
END $$;
-- +goose StatementEnd
ALTER TABLE refresh_tokens VALIDATE CONSTRAINT refresh_tokens_client_id_fkey;
ALTER TABLE access_tokens VALIDATE CONSTRAINT access_tokens_client_id_fkey;
