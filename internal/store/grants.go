package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

const grantColumns = `id, client_id, coalesce(user_id, '') AS user_id, scopes, resources,
	auth_time, created_at, last_used_at, expires_at, revoked_at`

// GetGrant returns the grant in any state (revoked or expired included);
// callers decide what the state means for them.
func (p *Postgres) GetGrant(ctx context.Context, id string) (Grant, error) {
	return getGrant(ctx, p.pool, id)
}

func getGrant(ctx context.Context, q querier, id string) (Grant, error) {
	rows, err := q.Query(ctx, `SELECT `+grantColumns+` FROM grants WHERE id = $1`, id)
	if err != nil {
		return Grant{}, mapErr(err)
	}
	g, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Grant])
	return g, mapErr(err)
}

// joinedGrantUser selects a grant (g) and its user (u) for scanGrantUser.
const joinedGrantUser = `g.id, g.client_id, g.scopes, g.resources, g.auth_time, g.created_at,
	g.last_used_at, g.expires_at, g.revoked_at,
	u.id, u.provider, u.subject, u.login, u.email, u.email_verified, u.name, u.groups, u.domain,
	u.disabled, u.created_at, u.updated_at, u.last_login_at`

// grantUserDest lists where joinedGrantUser's columns scan to.
func grantUserDest(g *Grant, u *User) []any {
	return []any{&g.ID, &g.ClientID, &g.Scopes, &g.Resources, &g.AuthTime, &g.CreatedAt,
		&g.LastUsedAt, &g.ExpiresAt, &g.RevokedAt,
		&u.ID, &u.Provider, &u.Subject, &u.Login, &u.Email, &u.EmailVerified, &u.Name, &u.Groups, &u.Domain,
		&u.Disabled, &u.CreatedAt, &u.UpdatedAt, &u.LastLoginAt}
}

// GetGrantUser reads the grant and its user in one round trip.
func (p *Postgres) GetGrantUser(ctx context.Context, id string) (Grant, User, error) {
	var g Grant
	var u User
	err := p.pool.QueryRow(ctx, `
		SELECT `+joinedGrantUser+`
		FROM grants g JOIN users u ON u.id = g.user_id
		WHERE g.id = $1`, id).Scan(grantUserDest(&g, &u)...)
	if err != nil {
		return Grant{}, User{}, mapErr(err)
	}
	g.UserID = u.ID
	return g, u, nil
}

// ListGrants returns all the user's grants, revoked and expired ones
// included, oldest first.
func (p *Postgres) ListGrants(ctx context.Context, userID string) ([]Grant, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT `+grantColumns+` FROM grants
		WHERE user_id = $1
		ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, mapErr(err)
	}
	gs, err := pgx.CollectRows(rows, pgx.RowToStructByName[Grant])
	return gs, mapErr(err)
}

// RevokeGrant marks the grant revoked, its unused refresh tokens used (so
// none can be rotated) and its opaque access tokens revoked, in one
// transaction. Revoking again keeps the first times.
func (p *Postgres) RevokeGrant(ctx context.Context, id string, now time.Time) error {
	return p.withTx(ctx, func(tx pgx.Tx) error {
		return revokeGrant(ctx, tx, id, now)
	})
}

// revokeGrant runs in tx. It locks the grant row before its tokens, the
// order RotateRefreshToken locks in too, so the two cannot deadlock.
func revokeGrant(ctx context.Context, tx pgx.Tx, id string, now time.Time) error {
	tag, err := tx.Exec(ctx, `UPDATE grants SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1`, id, now)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	if _, err := tx.Exec(ctx, `
		UPDATE refresh_tokens SET used_at = $2
		WHERE grant_id = $1 AND used_at IS NULL`, id, now); err != nil {
		return mapErr(err)
	}
	_, err = tx.Exec(ctx, `
		UPDATE access_tokens SET revoked_at = $2
		WHERE grant_id = $1 AND revoked_at IS NULL`, id, now)
	return mapErr(err)
}

func insertGrant(ctx context.Context, q querier, g Grant) error {
	_, err := q.Exec(ctx, `
		INSERT INTO grants (id, client_id, user_id, scopes, resources, auth_time, created_at,
			last_used_at, expires_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		g.ID, g.ClientID, nullString(g.UserID), g.Scopes, g.Resources, g.AuthTime, g.CreatedAt,
		g.LastUsedAt, g.ExpiresAt, g.RevokedAt)
	return mapErr(err)
}
