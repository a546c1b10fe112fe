package store

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// clientColumns are named after Client's fields, so rows scan with
// pgx.RowToStructByName.
const clientColumns = `id, source, secret_hash, secret_expires_at, registration_token_hash,
	metadata, fingerprint, allowed_scopes, allowed_resources, skip_consent, can_introspect,
	disabled, created_at, updated_at, last_used_at, expires_at`

// CreateClient inserts c; ErrConflict if the id is taken. Registrations
// arriving together share one statement (batch.go).
func (p *Postgres) CreateClient(ctx context.Context, c Client) error {
	if !clientBatchable(c) {
		return p.insertClient(ctx, c)
	}
	return p.clientBatch.do(ctx, c)
}

func (p *Postgres) insertClient(ctx context.Context, c Client) error {
	_, err := p.pool.Exec(ctx, `
		INSERT INTO clients (`+clientColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		c.ID, c.Source, c.SecretHash, c.SecretExpiresAt, c.RegistrationTokenHash,
		c.Metadata, c.Fingerprint, c.AllowedScopes, c.AllowedResources, c.SkipConsent, c.CanIntrospect,
		c.Disabled, c.CreatedAt, c.UpdatedAt, c.LastUsedAt, c.ExpiresAt)
	return mapErr(err)
}

// GetClient returns the client unless it is unknown or past its idle expiry.
func (p *Postgres) GetClient(ctx context.Context, id string, now time.Time) (Client, error) {
	if !storableText(id) {
		// Postgres rejects such text outright (an error, not a miss); no
		// client can have this id.
		return Client{}, ErrNotFound
	}
	return getClient(ctx, p.pool, `
		SELECT `+clientColumns+` FROM clients
		WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)`, id, now)
}

// FindClientByFingerprint returns the newest unexpired client registered with
// that fingerprint.
func (p *Postgres) FindClientByFingerprint(ctx context.Context, fingerprint string, now time.Time) (Client, error) {
	if fingerprint == "" {
		return Client{}, ErrNotFound
	}
	return getClient(ctx, p.pool, `
		SELECT `+clientColumns+` FROM clients
		WHERE fingerprint = $1 AND (expires_at IS NULL OR expires_at > $2)
		ORDER BY created_at DESC, id DESC
		LIMIT 1`, fingerprint, now)
}

// UpdateClient replaces every field but ID and CreatedAt.
func (p *Postgres) UpdateClient(ctx context.Context, c Client) error {
	tag, err := p.pool.Exec(ctx, `
		UPDATE clients SET
			source = $2, secret_hash = $3, secret_expires_at = $4, registration_token_hash = $5,
			metadata = $6, fingerprint = $7, allowed_scopes = $8, allowed_resources = $9,
			skip_consent = $10, can_introspect = $11, disabled = $12,
			updated_at = $13, last_used_at = $14, expires_at = $15
		WHERE id = $1`,
		c.ID, c.Source, c.SecretHash, c.SecretExpiresAt, c.RegistrationTokenHash,
		c.Metadata, c.Fingerprint, c.AllowedScopes, c.AllowedResources,
		c.SkipConsent, c.CanIntrospect, c.Disabled,
		c.UpdatedAt, c.LastUsedAt, c.ExpiresAt)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// UpdateClientIf is UpdateClient guarded by the stored registration token
// digest, in the same statement, so that concurrent rotations of one token
// have a single winner.
func (p *Postgres) UpdateClientIf(ctx context.Context, c Client, ratHash string) error {
	return updateClientIf(ctx, p.pool, c, ratHash)
}

// UpdateClientIfForgetConsents is UpdateClientIf and ForgetClientConsents
// in one transaction.
func (p *Postgres) UpdateClientIfForgetConsents(ctx context.Context, c Client, ratHash string) error {
	return p.withTx(ctx, func(tx pgx.Tx) error {
		if err := updateClientIf(ctx, tx, c, ratHash); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM consents WHERE client_id = $1`, c.ID)
		return mapErr(err)
	})
}

func updateClientIf(ctx context.Context, q querier, c Client, ratHash string) error {
	tag, err := q.Exec(ctx, `
		UPDATE clients SET
			source = $2, secret_hash = $3, secret_expires_at = $4, registration_token_hash = $5,
			metadata = $6, fingerprint = $7, allowed_scopes = $8, allowed_resources = $9,
			skip_consent = $10, can_introspect = $11, disabled = $12,
			updated_at = $13, last_used_at = $14, expires_at = $15
		WHERE id = $1 AND registration_token_hash = $16`,
		c.ID, c.Source, c.SecretHash, c.SecretExpiresAt, c.RegistrationTokenHash,
		c.Metadata, c.Fingerprint, c.AllowedScopes, c.AllowedResources,
		c.SkipConsent, c.CanIntrospect, c.Disabled,
		c.UpdatedAt, c.LastUsedAt, c.ExpiresAt, ratHash)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// UpsertClient creates c or replaces every field of the existing client but
// CreatedAt.
func (p *Postgres) UpsertClient(ctx context.Context, c Client) error {
	_, err := p.pool.Exec(ctx, `
		INSERT INTO clients (`+clientColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
		ON CONFLICT (id) DO UPDATE SET
			source = excluded.source, secret_hash = excluded.secret_hash,
			secret_expires_at = excluded.secret_expires_at,
			registration_token_hash = excluded.registration_token_hash,
			metadata = excluded.metadata, fingerprint = excluded.fingerprint,
			allowed_scopes = excluded.allowed_scopes, allowed_resources = excluded.allowed_resources,
			skip_consent = excluded.skip_consent, can_introspect = excluded.can_introspect,
			disabled = excluded.disabled, updated_at = excluded.updated_at,
			last_used_at = excluded.last_used_at, expires_at = excluded.expires_at`,
		c.ID, c.Source, c.SecretHash, c.SecretExpiresAt, c.RegistrationTokenHash,
		c.Metadata, c.Fingerprint, c.AllowedScopes, c.AllowedResources, c.SkipConsent, c.CanIntrospect,
		c.Disabled, c.CreatedAt, c.UpdatedAt, c.LastUsedAt, c.ExpiresAt)
	return mapErr(err)
}

// DeleteClient removes the client and everything issued to it: its access
// tokens explicitly (no foreign key links them to it, see
// CreateAccessToken), the rest by the foreign keys' cascades (codes, grants
// and with them refresh tokens and the grants' access tokens, consents,
// pending requests).
//
// The client's grants are locked first, in id order, as every other writer
// of a grant's family (rotation, revocation, disabling a user) locks the
// grant before its tokens and the client row (the foreign-key checks of
// the rows it inserts). Deleting the client row straight away would lock
// in the opposite order (client, then the cascade's grants and tokens) and
// deadlock with a concurrent refresh.
func (p *Postgres) DeleteClient(ctx context.Context, id string) error {
	return p.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM grants WHERE client_id = $1 ORDER BY id FOR UPDATE`, id); err != nil {
			return mapErr(err)
		}
		// Likewise its codes: a redemption claims the code, then inserts
		// rows whose foreign keys share-lock the client.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM auth_codes WHERE client_id = $1 ORDER BY digest FOR UPDATE`, id); err != nil {
			return mapErr(err)
		}
		// The client row next: once locked, no token of it can be
		// inserted (each takes a key-share lock on it), and the DELETE
		// below, a statement of its own, sees every one that was.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM clients WHERE id = $1 FOR UPDATE`, id); err != nil {
			return mapErr(err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE client_id = $1`, id); err != nil {
			return mapErr(err)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM clients WHERE id = $1`, id)
		if err != nil {
			return mapErr(err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// touchInterval is how stale LastUsedAt may get before TouchClient writes:
// it runs on every token request, and a write per request would turn the
// hottest read path into a write path contending on one row.
const touchInterval = time.Minute

// TouchClient records use of an unexpired client and slides its idle expiry
// (for clients that have one) to now+idle; ErrNotFound if the client is
// unknown or expired. The write is skipped when the client was touched less
// than a minute ago, so the common case is one indexed read.
func (p *Postgres) TouchClient(ctx context.Context, id string, now time.Time, idle time.Duration) error {
	return p.touchClient(ctx, id, nil, now, idle)
}

// TouchClientIf is TouchClient only while the client's fingerprint is
// still fingerprint, checked in the same statement.
func (p *Postgres) TouchClientIf(ctx context.Context, id, fingerprint string, now time.Time, idle time.Duration) error {
	if fingerprint == "" {
		return ErrNotFound
	}
	return p.touchClient(ctx, id, &fingerprint, now, idle)
}

func (p *Postgres) touchClient(ctx context.Context, id string, fingerprint *string, now time.Time, idle time.Duration) error {
	var found bool
	err := p.pool.QueryRow(ctx, `
		WITH c AS (
			SELECT id, last_used_at FROM clients
			WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)
				AND ($5::text IS NULL OR fingerprint = $5)
		), touched AS (
			UPDATE clients SET
				last_used_at = $2,
				expires_at = CASE WHEN expires_at IS NULL THEN NULL ELSE $3::timestamptz END
			WHERE id = (SELECT id FROM c WHERE last_used_at <= $4)
		)
		SELECT EXISTS (SELECT 1 FROM c)`,
		id, now, now.Add(idle), now.Add(-touchInterval), fingerprint).Scan(&found)
	if err != nil {
		return mapErr(err)
	}
	if !found {
		return ErrNotFound
	}
	return nil
}

// ListClients returns clients (expired ones included, for the operator),
// oldest first.
func (p *Postgres) ListClients(ctx context.Context, f ClientFilter) ([]Client, error) {
	var limit *int
	if f.Limit > 0 {
		limit = &f.Limit
	}
	rows, err := p.pool.Query(ctx, `
		SELECT `+clientColumns+` FROM clients
		WHERE $1 = '' OR source = $1
		ORDER BY created_at, id
		LIMIT $2`, f.Source, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	cs, err := pgx.CollectRows(rows, pgx.RowToStructByName[Client])
	return cs, mapErr(err)
}

// CountClients counts the clients from source (all sources if empty).
func (p *Postgres) CountClients(ctx context.Context, source ClientSource) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, `SELECT count(*) FROM clients WHERE $1 = '' OR source = $1`, source).Scan(&n)
	return n, mapErr(err)
}

func getClient(ctx context.Context, q querier, sql string, args ...any) (Client, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return Client{}, mapErr(err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Client])
	return c, mapErr(err)
}

// storableText reports whether s can be stored in a Postgres text column:
// valid UTF-8 without NUL. Lookups by a caller-supplied key check it first,
// so hostile input is a miss rather than a database error (a 500).
func storableText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}
