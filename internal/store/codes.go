package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const codeColumns = `digest, client_id, user_id, redirect_uri, redirect_uri_provided, scopes, resources,
	code_challenge, code_challenge_method, nonce, auth_time, created_at, expires_at, used_at,
	coalesce(grant_id, '') AS grant_id`

func (p *Postgres) CreateAuthCode(ctx context.Context, c AuthCode) error {
	_, err := p.pool.Exec(ctx, `
		INSERT INTO auth_codes (digest, client_id, user_id, redirect_uri, redirect_uri_provided,
			scopes, resources, code_challenge, code_challenge_method, nonce, auth_time, created_at,
			expires_at, used_at, grant_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		c.Digest, c.ClientID, c.UserID, c.RedirectURI, c.RedirectURIProvided,
		c.Scopes, c.Resources, c.CodeChallenge, c.CodeChallengeMethod, c.Nonce, c.AuthTime, c.CreatedAt,
		c.ExpiresAt, c.UsedAt, nullString(c.GrantID))
	return mapErr(err)
}

// GetAuthCode returns an unexpired code, used or not.
func (p *Postgres) GetAuthCode(ctx context.Context, digest string, now time.Time) (AuthCode, error) {
	return getAuthCode(ctx, p.pool, digest, now)
}

// RedeemAuthCode claims the code with one conditional UPDATE, so that of
// concurrent redemptions exactly one matches "used_at IS NULL" (the others
// wait for its row lock, then see it used), and creates the grant and first
// refresh token in the same transaction: either all of it happens or none.
// A grant without an ID gets a fresh uuid.
//
// The common case, an unused code, takes one statement (see redeemFast);
// otherwise the transaction below finds out what happened.
func (p *Postgres) RedeemAuthCode(ctx context.Context, digest string, now time.Time, g Grant, rt *RefreshToken) (AuthCode, error) {
	if g.ID == "" {
		g.ID = uuid.NewString()
	}
	code, err := p.redeemFast(ctx, digest, now, g, rt)
	if !errors.Is(err, ErrNotFound) {
		return code, err
	}
	return p.redeemTx(ctx, digest, now, g, rt)
}

// redeemFast claims the code and creates the grant and refresh token in
// one statement, so one round trip and one commit: the inserts select from
// the claiming UPDATE, so they happen only if it matched, and a conflict
// in either aborts the whole statement, leaving the code unused. The
// foreign key from the refresh token to the grant is checked at the end of
// the statement, when both rows exist. ErrNotFound means "not claimed".
func (p *Postgres) redeemFast(ctx context.Context, digest string, now time.Time, g Grant, rt *RefreshToken) (AuthCode, error) {
	var rtDigest, rtParent *string
	var rtCreated, rtExpires *time.Time
	if rt != nil {
		if rt.GrantID != g.ID || rt.ClientID != g.ClientID {
			return AuthCode{}, ErrNotFound // let redeemTx's constraints decide
		}
		rtDigest, rtParent, rtCreated, rtExpires = &rt.Digest, &rt.Parent, &rt.CreatedAt, &rt.ExpiresAt
	}
	rows, err := p.pool.Query(ctx, `
		WITH code AS (
			UPDATE auth_codes SET used_at = $2, grant_id = $3
			WHERE digest = $1 AND used_at IS NULL AND expires_at > $2
			RETURNING `+codeColumns+`
		), grant_row AS (
			INSERT INTO grants (id, client_id, user_id, scopes, resources, auth_time, created_at,
				last_used_at, expires_at, revoked_at)
			SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM code
			RETURNING id
		), refresh AS (
			INSERT INTO refresh_tokens (`+refreshTokenColumns+`)
			SELECT $13, id, $4, $14, $15, $16, NULL FROM grant_row
			WHERE $13::text IS NOT NULL
		)
		SELECT * FROM code`,
		digest, now, g.ID, g.ClientID, nullString(g.UserID), g.Scopes, g.Resources, g.AuthTime, g.CreatedAt,
		g.LastUsedAt, g.ExpiresAt, g.RevokedAt, rtDigest, rtParent, rtCreated, rtExpires)
	if err != nil {
		return AuthCode{}, mapErr(err)
	}
	code, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[AuthCode])
	return code, mapErr(err)
}

// redeemTx is RedeemAuthCode as a transaction that tells every outcome
// apart.
func (p *Postgres) redeemTx(ctx context.Context, digest string, now time.Time, g Grant, rt *RefreshToken) (AuthCode, error) {
	var code AuthCode
	err := p.withTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			UPDATE auth_codes SET used_at = $2, grant_id = $3
			WHERE digest = $1 AND used_at IS NULL AND expires_at > $2
			RETURNING `+codeColumns, digest, now, g.ID)
		if err != nil {
			return mapErr(err)
		}
		code, err = pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[AuthCode])
		if errors.Is(err, pgx.ErrNoRows) {
			// Used before, or unknown/expired. Tell which; write nothing.
			code, err = getAuthCode(ctx, tx, digest, now)
			if err != nil {
				return err
			}
			if code.UsedAt == nil { // created after the UPDATE looked: as good as unknown
				return ErrNotFound
			}
			return ErrAlreadyUsed
		}
		if err != nil {
			return mapErr(err)
		}
		if err := insertGrant(ctx, tx, g); err != nil {
			return err
		}
		if rt != nil {
			if err := insertRefreshToken(ctx, tx, *rt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrAlreadyUsed) {
		return AuthCode{}, err
	}
	return code, err
}

// GetAuthCodeUser reads the code and its user in one round trip: /token
// checks the user before it redeems the code.
func (p *Postgres) GetAuthCodeUser(ctx context.Context, digest string, now time.Time) (AuthCode, User, error) {
	var c AuthCode
	var u User
	err := p.pool.QueryRow(ctx, `
		SELECT c.digest, c.client_id, c.redirect_uri, c.redirect_uri_provided, c.scopes, c.resources,
			c.code_challenge, c.code_challenge_method, c.nonce, c.auth_time, c.created_at, c.expires_at, c.used_at,
			coalesce(c.grant_id, ''),
			u.id, u.provider, u.subject, u.login, u.email, u.email_verified, u.name, u.groups, u.domain,
			u.disabled, u.created_at, u.updated_at, u.last_login_at
		FROM auth_codes c JOIN users u ON u.id = c.user_id
		WHERE c.digest = $1 AND (c.expires_at > $2 OR c.used_at IS NOT NULL)`, digest, now).Scan(
		&c.Digest, &c.ClientID, &c.RedirectURI, &c.RedirectURIProvided, &c.Scopes, &c.Resources,
		&c.CodeChallenge, &c.CodeChallengeMethod, &c.Nonce, &c.AuthTime, &c.CreatedAt, &c.ExpiresAt, &c.UsedAt,
		&c.GrantID,
		&u.ID, &u.Provider, &u.Subject, &u.Login, &u.Email, &u.EmailVerified, &u.Name, &u.Groups, &u.Domain,
		&u.Disabled, &u.CreatedAt, &u.UpdatedAt, &u.LastLoginAt)
	if err != nil {
		return AuthCode{}, User{}, mapErr(err)
	}
	c.UserID = u.ID
	return c, u, nil
}

func getAuthCode(ctx context.Context, q querier, digest string, now time.Time) (AuthCode, error) {
	rows, err := q.Query(ctx, `
		SELECT `+codeColumns+` FROM auth_codes
		WHERE digest = $1 AND (expires_at > $2 OR used_at IS NOT NULL)`, digest, now)
	if err != nil {
		return AuthCode{}, mapErr(err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[AuthCode])
	return c, mapErr(err)
}
