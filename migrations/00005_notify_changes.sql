-- Changes every replica must see at once are announced with NOTIFY on the
-- channel authd_changes (store.Listen): each replica reloads its signing
-- keys or drops a client from its cache within milliseconds instead of at
-- its next periodic reload or cache expiry. Triggers, not the application,
-- send them, so that every writer counts: another replica, the admin CLI
-- (another process), a migration or an operator's SQL. NOTIFY is
-- transactional: listeners hear of a change only once it is committed.
--
-- Payloads: 'keys' (any change to signing_keys), 'client:<id>' (a client
-- deleted, or changed in anything but the use bookkeeping TouchClient
-- writes on every request), 'user:<id>' (a user deleted or disabled or
-- enabled).

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION authd_notify_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('authd_changes', 'keys');
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION authd_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('authd_changes', TG_ARGV[0] || ':' || OLD.id);
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- Per row, not per statement: the purge's DELETE on signing_keys runs on
-- every replica at every purge interval and usually deletes nothing, and a
-- statement trigger would make every replica reload its keys each time.
-- PostgreSQL sends identical payloads of one transaction once.
CREATE TRIGGER signing_keys_notify AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION authd_notify_keys();

-- A client that expired is refused by every cache already (it checks
-- expires_at); the purge's deletes of such clients need no announcement.
CREATE TRIGGER clients_notify_delete AFTER DELETE ON clients
    FOR EACH ROW WHEN (OLD.expires_at IS NULL OR OLD.expires_at > now())
    EXECUTE FUNCTION authd_notify_row('client');
CREATE TRIGGER clients_notify_update AFTER UPDATE ON clients
    FOR EACH ROW WHEN (
        (OLD.source, OLD.secret_hash, OLD.secret_expires_at, OLD.registration_token_hash, OLD.metadata,
         OLD.allowed_scopes, OLD.allowed_resources, OLD.skip_consent, OLD.can_introspect, OLD.disabled)
        IS DISTINCT FROM
        (NEW.source, NEW.secret_hash, NEW.secret_expires_at, NEW.registration_token_hash, NEW.metadata,
         NEW.allowed_scopes, NEW.allowed_resources, NEW.skip_consent, NEW.can_introspect, NEW.disabled))
    EXECUTE FUNCTION authd_notify_row('client');

CREATE TRIGGER users_notify_delete AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION authd_notify_row('user');
CREATE TRIGGER users_notify_update AFTER UPDATE ON users
    FOR EACH ROW WHEN (OLD.disabled IS DISTINCT FROM NEW.disabled)
    EXECUTE FUNCTION authd_notify_row('user');

-- +goose Down
DROP TRIGGER users_notify_update ON users;
DROP TRIGGER users_notify_delete ON users;
DROP TRIGGER clients_notify_update ON clients;
DROP TRIGGER clients_notify_delete ON clients;
DROP TRIGGER signing_keys_notify ON signing_keys;
DROP FUNCTION authd_notify_row();
DROP FUNCTION authd_notify_keys();
