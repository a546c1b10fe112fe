-- Registration is a hot path (one INSERT per request), and every dynamic
-- client used to add an entry under the same key, 'dynamic', to
-- clients_source_idx: all concurrent registrations contended for that key's
-- leaf page, and each paid a WAL record for it. No query needs dynamic
-- clients by source: ListClients and CountClients filter with
-- "$1 = '' OR source = $1", which only a plan made for one value can turn
-- into an index lookup, and that pays off only for the few clients that are
-- not dynamic (config and metadata-document clients among many registered
-- ones). The index keeps just those.

-- +goose Up
DROP INDEX clients_source_idx;
CREATE INDEX clients_source_idx ON clients (source) WHERE source <> 'dynamic';

-- +goose Down
DROP INDEX clients_source_idx;
CREATE INDEX clients_source_idx ON clients (source);
