-- Retry-safe refresh. A client that lost the response to a rotation may
-- present the spent token again within a short window and get another
-- successor of it (store.RotateRefreshToken). Such a token then has several
-- unused successors until one of them is rotated, which supersedes the
-- others. grants.retried marks a grant in that state: the one-statement
-- rotation (which reads with its start-time snapshot and so cannot see a
-- successor inserted while it waited for the grant's lock) declines such a
-- grant, and the transaction, whose statements each see every committed
-- successor, supersedes them. parent is indexed because that transaction
-- looks a token's successors up by it.

-- +goose Up
ALTER TABLE grants ADD COLUMN retried boolean NOT NULL DEFAULT false;
CREATE INDEX refresh_tokens_parent_idx ON refresh_tokens (parent) WHERE parent <> '';

-- +goose Down
DROP INDEX refresh_tokens_parent_idx;
ALTER TABLE grants DROP COLUMN retried;
