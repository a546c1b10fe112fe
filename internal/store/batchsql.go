package store

import (
	"context"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// The multi-row statements behind the batchers (see batcher): the rows go
// to PostgreSQL as one JSON array parameter, unpacked by json_to_recordset
// into the same columns, with the same types and the same NULLs, as the
// single-row statements write.

const (
	// batchMaxRows bounds one statement (its JSON parameter and how long
	// it holds its locks).
	batchMaxRows = 128
	// batchMaxFlushes is how many statements of one kind may be in flight
	// at once. Fewer make bigger batches and less work for PostgreSQL
	// (with 32 concurrent requests, per registration or token: 2 in flight
	// ~0.1 statements and ~50 us of PostgreSQL CPU, 4 ~0.2 and ~70 us, 8
	// ~0.35 and ~95 us, one at a time ~170 us); more keep more requests
	// moving when each statement waits long for its commit (a slow disk,
	// a busy machine). See docs/performance.md.
	batchMaxFlushes = 4
)

func (p *Postgres) initBatchers() {
	p.clientBatch = &batcher[Client]{
		insert: p.insertClient, insertMany: p.insertClients,
		maxRows: batchMaxRows, maxFlushes: batchMaxFlushes,
	}
	p.tokenBatch = &batcher[AccessToken]{
		insert: p.insertAccessToken, insertMany: p.insertAccessTokens,
		maxRows: batchMaxRows, maxFlushes: batchMaxFlushes,
	}
}

// jsonTime is a timestamptz in a JSON batch: UTC, truncated to the
// microsecond as pgx truncates a time.Time it sends.
type jsonTime time.Time

func (t jsonTime) MarshalJSON() ([]byte, error) {
	return time.Time(t).UTC().Truncate(time.Microsecond).AppendFormat(append(make([]byte, 0, 30), '"'),
		`2006-01-02T15:04:05.000000Z07:00"`), nil
}

func jsonTimePtr(t *time.Time) *jsonTime {
	if t == nil {
		return nil
	}
	jt := jsonTime(*t)
	return &jt
}

// jsonSafe reports whether strings survive the trip through JSON unchanged.
// encoding/json replaces invalid UTF-8, which would store something other
// than what was passed where the single-row statement fails instead; rows
// with such text are inserted alone. (NUL, which text columns reject, fails
// the batch statement, and its rows are then inserted alone too.)
func jsonSafe(ss ...[]string) bool {
	for _, s := range ss {
		for _, v := range s {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

type clientRow struct {
	ID                    string          `json:"id"`
	Source                ClientSource    `json:"source"`
	SecretHash            string          `json:"secret_hash"`
	SecretExpiresAt       *jsonTime       `json:"secret_expires_at"`
	RegistrationTokenHash string          `json:"registration_token_hash"`
	Metadata              json.RawMessage `json:"metadata"`
	Fingerprint           string          `json:"fingerprint"`
	AllowedScopes         []string        `json:"allowed_scopes"`
	AllowedResources      []string        `json:"allowed_resources"`
	SkipConsent           bool            `json:"skip_consent"`
	CanIntrospect         bool            `json:"can_introspect"`
	Disabled              bool            `json:"disabled"`
	CreatedAt             jsonTime        `json:"created_at"`
	UpdatedAt             jsonTime        `json:"updated_at"`
	LastUsedAt            jsonTime        `json:"last_used_at"`
	ExpiresAt             *jsonTime       `json:"expires_at"`
}

func clientBatchable(c Client) bool {
	return jsonSafe([]string{c.ID, string(c.Source), c.SecretHash, c.RegistrationTokenHash, c.Fingerprint},
		c.AllowedScopes, c.AllowedResources)
}

// insertClients inserts clients in one statement.
func (p *Postgres) insertClients(ctx context.Context, cs []Client) error {
	rows := make([]clientRow, len(cs))
	for i, c := range cs {
		// The same encoding pgx applies to the single-row statement's
		// jsonb parameter.
		md, err := json.Marshal(c.Metadata)
		if err != nil {
			return err
		}
		rows[i] = clientRow{
			ID: c.ID, Source: c.Source, SecretHash: c.SecretHash, SecretExpiresAt: jsonTimePtr(c.SecretExpiresAt),
			RegistrationTokenHash: c.RegistrationTokenHash, Metadata: md, Fingerprint: c.Fingerprint,
			AllowedScopes: c.AllowedScopes, AllowedResources: c.AllowedResources,
			SkipConsent: c.SkipConsent, CanIntrospect: c.CanIntrospect, Disabled: c.Disabled,
			CreatedAt: jsonTime(c.CreatedAt), UpdatedAt: jsonTime(c.UpdatedAt), LastUsedAt: jsonTime(c.LastUsedAt),
			ExpiresAt: jsonTimePtr(c.ExpiresAt),
		}
	}
	batch, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	_, err = p.pool.Exec(ctx, `
		INSERT INTO clients (`+clientColumns+`)
		SELECT `+clientColumns+`
		FROM json_to_recordset($1::json) AS r(id text, source text, secret_hash text,
			secret_expires_at timestamptz, registration_token_hash text, metadata jsonb, fingerprint text,
			allowed_scopes text[], allowed_resources text[], skip_consent boolean, can_introspect boolean,
			disabled boolean, created_at timestamptz, updated_at timestamptz, last_used_at timestamptz,
			expires_at timestamptz)`, string(batch))
	return mapErr(err)
}

type accessTokenRow struct {
	Digest    string    `json:"digest"`
	ClientID  string    `json:"client_id"`
	UserID    *string   `json:"user_id"`
	Scopes    []string  `json:"scopes"`
	Resources []string  `json:"resources"`
	AuthTime  *jsonTime `json:"auth_time"`
	CreatedAt jsonTime  `json:"created_at"`
	ExpiresAt jsonTime  `json:"expires_at"`
	RevokedAt *jsonTime `json:"revoked_at"`
}

// tokenBatchable: tokens of a grant take the single-row statement, which
// checks the grant under a lock (see CreateAccessToken).
func tokenBatchable(t AccessToken) bool {
	return t.GrantID == "" && jsonSafe([]string{t.Digest, t.ClientID, t.UserID}, t.Scopes, t.Resources)
}

// insertAccessTokens inserts tokens without a grant in one statement. It
// locks each of their clients once (FOR KEY SHARE, as insertAccessToken
// does for its one row; see there): a token of a client that is gone (or
// being deleted) is left out, and a *partialInsert says which.
func (p *Postgres) insertAccessTokens(ctx context.Context, ts []AccessToken) error {
	rows := make([]accessTokenRow, len(ts))
	for i, t := range ts {
		rows[i] = accessTokenRow{
			Digest: t.Digest, ClientID: t.ClientID, UserID: nullString(t.UserID),
			Scopes: t.Scopes, Resources: t.Resources, AuthTime: jsonTimePtr(t.AuthTime),
			CreatedAt: jsonTime(t.CreatedAt), ExpiresAt: jsonTime(t.ExpiresAt), RevokedAt: jsonTimePtr(t.RevokedAt),
		}
	}
	batch, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	rs, err := p.pool.Query(ctx, `
		WITH r AS (
			SELECT * FROM json_to_recordset($1::json) AS r(digest text, client_id text, user_id text,
				scopes text[], resources text[], auth_time timestamptz, created_at timestamptz,
				expires_at timestamptz, revoked_at timestamptz)
		), c AS (
			SELECT id FROM clients WHERE id IN (SELECT client_id FROM r) FOR KEY SHARE
		)
		INSERT INTO access_tokens (digest, client_id, user_id, scopes, resources,
			auth_time, created_at, expires_at, revoked_at)
		SELECT digest, client_id, user_id, scopes, resources, auth_time, created_at, expires_at, revoked_at
		FROM r WHERE client_id IN (SELECT id FROM c)
		RETURNING digest`, string(batch))
	if err != nil {
		return mapErr(err)
	}
	inserted, err := pgx.CollectRows(rs, pgx.RowTo[string])
	if err != nil {
		return mapErr(err)
	}
	if len(inserted) == len(ts) {
		return nil
	}
	stored := make(map[string]bool, len(inserted))
	for _, d := range inserted {
		stored[d] = true
	}
	partial := &partialInsert{}
	for i, t := range ts {
		if !stored[t.Digest] {
			partial.failed = append(partial.failed, i)
		}
	}
	return partial
}
