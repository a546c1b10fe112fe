-- Consent per resource. consents.scopes and consents.resources are unions
-- across everything a user approved for a client, so approving admin for
-- resource A and read for resource B looked like consent to admin on B (a
-- confused deputy). approvals maps each resource URI ('' for a request
-- bound to no resource) to the JSON array of scopes approved for it, and
-- only it decides whether a request is covered. The unions stay, for the
-- connected-apps page.
--
-- Rows from before this migration get '{}': they cover nothing, so their
-- users are asked again, which is safe.

-- +goose Up
ALTER TABLE consents ADD COLUMN approvals jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(approvals) = 'object');

-- +goose Down
ALTER TABLE consents DROP COLUMN approvals;
