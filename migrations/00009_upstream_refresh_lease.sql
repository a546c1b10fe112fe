-- Upstream refresh takes a lease instead of a row lock held across the
-- upstream call (which held a database connection for up to the whole
-- network call, so that a burst of refreshes took every pooled connection).
--
-- refresh_lease_until: a replica about to call the upstream claims the row
-- with a compare-and-set UPDATE (no unexpired lease held), commits, calls
-- the upstream without holding a connection, then writes the result and
-- clears the lease in one statement guarded by the lease. Other replicas
-- poll briefly for the result instead of calling again. A failed call
-- leaves the lease in place until a short back-off has passed.
--
-- refresh_unsettled: the previous lease ended without a result written
-- (failed, cut off, or its write lost): the single-use refresh token may
-- have been spent upstream. A refusal right after such an attempt marks
-- the kept grant dead but does not revoke the user's grants at authd.

-- +goose Up
ALTER TABLE upstream_tokens
    ADD COLUMN refresh_lease_until timestamptz,
    ADD COLUMN refresh_unsettled   boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE upstream_tokens
    DROP COLUMN refresh_unsettled,
    DROP COLUMN refresh_lease_until;
