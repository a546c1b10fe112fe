package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const refreshTokenColumns = `digest, grant_id, client_id, parent, created_at, expires_at, used_at`

func (p *Postgres) CreateRefreshToken(ctx context.Context, rt RefreshToken) error {
	return insertRefreshToken(ctx, p.pool, rt)
}

// GetRefreshToken returns the token in any state (used or expired included).
func (p *Postgres) GetRefreshToken(ctx context.Context, digest string) (RefreshToken, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+refreshTokenColumns+` FROM refresh_tokens WHERE digest = $1`, digest)
	if err != nil {
		return RefreshToken{}, mapErr(err)
	}
	rt, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[RefreshToken])
	return rt, mapErr(err)
}

// GetRefreshTokenGrant reads the token, its grant and the grant's user in
// one round trip: the refresh grant needs all three before it rotates.
func (p *Postgres) GetRefreshTokenGrant(ctx context.Context, digest string) (RefreshToken, Grant, User, error) {
	var rt RefreshToken
	var g Grant
	var u User
	dest := append([]any{&rt.Digest, &rt.GrantID, &rt.ClientID, &rt.Parent, &rt.CreatedAt, &rt.ExpiresAt, &rt.UsedAt},
		grantUserDest(&g, &u)...)
	err := p.pool.QueryRow(ctx, `
		SELECT rt.digest, rt.grant_id, rt.client_id, rt.parent, rt.created_at, rt.expires_at, rt.used_at,
			`+joinedGrantUser+`
		FROM refresh_tokens rt
		JOIN grants g ON g.id = rt.grant_id
		JOIN users u ON u.id = g.user_id
		WHERE rt.digest = $1`, digest).Scan(dest...)
	if err != nil {
		return RefreshToken{}, Grant{}, User{}, mapErr(err)
	}
	g.UserID = u.ID
	return rt, g, u, nil
}

// RotateRefreshToken marks old used and inserts next in one transaction,
// which first locks the grant row: rotations of one grant (and revocations,
// which lock the grant first too) are serialised there, so of concurrent
// callers with one token exactly one finds it unused.
//
// Presenting a token that was already rotated means two parties hold the
// chain (OAuth 2.1 §4.3.1), unless it is the same client retrying within
// retryWindow while the chain has not moved on (see the Store contract):
// otherwise the grant and its tokens are revoked, the revocation is
// committed, and ErrAlreadyUsed is returned with the grant.
// The checks run in the order the contract lists: an unknown or expired
// token, or a revoked or expired grant, is ErrNotFound before reuse is
// considered.
//
// The common case, a live token rotated once in a grant with no retried
// token, takes one statement (one round trip, one commit) instead of a
// transaction of several: see rotateFast. Anything else falls back to the
// transaction, which sorts out which case it is.
func (p *Postgres) RotateRefreshToken(ctx context.Context, old string, now time.Time, next RefreshToken, retryWindow time.Duration) (Grant, error) {
	g, err := p.rotateFast(ctx, old, now, next)
	if !errors.Is(err, ErrNotFound) {
		return g, err
	}
	return p.rotateTx(ctx, old, now, next, retryWindow)
}

// rotateFast rotates old in one statement that locks in the order
// rotateTx and revokeGrant do (the grant row first, FOR NO KEY UPDATE,
// evaluated as an InitPlan before any refresh token row is touched), marks
// old used only if it is unused, unexpired, of next's grant and client,
// and that grant is live, and inserts next and bumps the grant only if
// that UPDATE matched. Of concurrent rotations of one token, the losers'
// UPDATE re-checks "used_at IS NULL" on the winner's committed row and
// matches nothing. ErrNotFound means "not the common case", not "unknown".
//
// It declines a grant marked retried: a retry may have inserted a sibling
// of old that this statement's snapshot (taken before it waited for the
// grant's lock) cannot see, so it could not supersede it. The lock
// re-reads the grant row as committed (READ COMMITTED re-checks a locked
// row's WHERE clause on its newest version), so the mark is never missed.
func (p *Postgres) rotateFast(ctx context.Context, old string, now time.Time, next RefreshToken) (Grant, error) {
	rows, err := p.pool.Query(ctx, `
		WITH live AS (
			SELECT id FROM grants
			WHERE id = $3 AND revoked_at IS NULL AND expires_at > $2 AND NOT retried
			FOR NO KEY UPDATE
		), used AS (
			UPDATE refresh_tokens SET used_at = $2
			WHERE digest = $1 AND used_at IS NULL AND expires_at > $2
				AND grant_id = (SELECT id FROM live) AND client_id = $4
			RETURNING grant_id
		), inserted AS (
			INSERT INTO refresh_tokens (`+refreshTokenColumns+`)
			SELECT $5, grant_id, $4, $6, $7, $8, NULL FROM used
		)
		UPDATE grants SET last_used_at = $2
		WHERE id = (SELECT grant_id FROM used)
		RETURNING `+grantColumns,
		old, now, next.GrantID, next.ClientID, next.Digest, next.Parent, next.CreatedAt, next.ExpiresAt)
	if err != nil {
		return Grant{}, mapErr(err)
	}
	g, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Grant])
	return g, mapErr(err)
}

// rotateTx is RotateRefreshToken as one transaction that tells every
// outcome apart. Every statement after the grant's lock sees what earlier
// holders of the lock committed (READ COMMITTED takes a snapshot per
// statement), so the successors it counts and supersedes are all there are.
func (p *Postgres) rotateTx(ctx context.Context, old string, now time.Time, next RefreshToken, retryWindow time.Duration) (Grant, error) {
	var g Grant
	reused := false
	err := p.withTx(ctx, func(tx pgx.Tx) error {
		var cur RefreshToken
		rows, err := tx.Query(ctx, `
			SELECT `+refreshTokenColumns+` FROM refresh_tokens
			WHERE digest = $1 AND expires_at > $2`, old, now)
		if err != nil {
			return mapErr(err)
		}
		if cur, err = pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[RefreshToken]); err != nil {
			return mapErr(err)
		}
		var live bool
		if err := tx.QueryRow(ctx, `
			SELECT revoked_at IS NULL AND expires_at > $2 FROM grants
			WHERE id = $1 FOR NO KEY UPDATE`, cur.GrantID, now).Scan(&live); err != nil {
			return mapErr(err)
		}
		if !live {
			return ErrNotFound
		}
		// Under the grant's lock: whoever held it before us has committed,
		// so this sees the token's final state.
		tag, err := tx.Exec(ctx, `
			UPDATE refresh_tokens SET used_at = $2
			WHERE digest = $1 AND used_at IS NULL`, old, now)
		if err != nil {
			return mapErr(err)
		}
		retry := tag.RowsAffected() == 0
		if retry {
			ok, err := mayRetry(ctx, tx, cur, now, next.ClientID, retryWindow)
			if err != nil {
				return err
			}
			if !ok {
				reused = true
				if err := revokeGrant(ctx, tx, cur.GrantID, now); err != nil {
					return err
				}
				g, err = getGrant(ctx, tx, cur.GrantID)
				return err // commit the revocation
			}
		} else if cur.Parent != "" {
			// old's siblings left by a retry of its parent: the chain
			// goes on from old alone (one live refresh token per family).
			if _, err := tx.Exec(ctx, `
				UPDATE refresh_tokens SET used_at = $3
				WHERE parent = $2 AND grant_id = $1 AND used_at IS NULL`,
				cur.GrantID, cur.Parent, now); err != nil {
				return mapErr(err)
			}
		}

		if next.GrantID != cur.GrantID || next.ClientID != cur.ClientID {
			return fmt.Errorf("store: next refresh token must belong to grant %q of client %q", cur.GrantID, cur.ClientID)
		}
		if err := insertRefreshToken(ctx, tx, next); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `
			UPDATE grants SET last_used_at = $2, retried = $3 WHERE id = $1
			RETURNING `+grantColumns, cur.GrantID, now, retry)
		if err != nil {
			return mapErr(err)
		}
		g, err = pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Grant])
		return mapErr(err)
	})
	if err != nil {
		return Grant{}, err
	}
	if reused {
		return g, ErrAlreadyUsed
	}
	return g, nil
}

// mayRetry tells whether the used token cur may be rotated again (the
// retry rule of the Store contract): by its own client, within window of
// its first use, and while it has successors (it was rotated, not
// superseded or revoked) none of which is used yet. Called under the
// grant's lock, so the answer holds until the transaction ends.
func mayRetry(ctx context.Context, tx pgx.Tx, cur RefreshToken, now time.Time, clientID string, window time.Duration) (bool, error) {
	if window <= 0 || clientID != cur.ClientID {
		return false, nil
	}
	var usedAt time.Time
	var successors, usedSuccessors int
	err := tx.QueryRow(ctx, `
		SELECT t.used_at, count(s.digest), count(s.used_at)
		FROM refresh_tokens t
		LEFT JOIN refresh_tokens s ON s.parent = t.digest AND s.grant_id = t.grant_id
		WHERE t.digest = $1
		GROUP BY t.used_at`, cur.Digest).Scan(&usedAt, &successors, &usedSuccessors)
	if err != nil {
		return false, mapErr(err)
	}
	return now.Before(usedAt.Add(window)) && successors > 0 && usedSuccessors == 0, nil
}

// insertRefreshToken inserts rt only into a grant of rt's client;
// ErrNotFound otherwise. No foreign key checks the client (migration
// 00007): deleting a client deletes its grants, and they their refresh
// tokens, so a refresh token must be of its grant's client.
func insertRefreshToken(ctx context.Context, q querier, rt RefreshToken) error {
	tag, err := q.Exec(ctx, `
		INSERT INTO refresh_tokens (`+refreshTokenColumns+`)
		SELECT $1, id, client_id, $4, $5, $6, $7 FROM grants WHERE id = $2 AND client_id = $3`,
		rt.Digest, rt.GrantID, rt.ClientID, rt.Parent, rt.CreatedAt, rt.ExpiresAt, rt.UsedAt)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

const accessTokenColumns = `digest, coalesce(grant_id, '') AS grant_id, client_id,
	coalesce(user_id, '') AS user_id, scopes, resources, auth_time, created_at, expires_at, revoked_at`

// CreateAccessToken stores an opaque access token. A token of a grant is
// inserted only while the grant is live, checked
// under a share lock on the grant row: RevokeGrant updates that row first,
// so either it waits for this insert to commit and then revokes the new
// token with the others, or this insert waits for it and then sees the
// grant revoked. Without the lock, a token issued during a concurrent
// revocation (reuse detection, code replay, /revoke) could outlive it.
//
// Every token is inserted only while its client exists, checked under a
// key-share lock on the client row, taken after the grant's (the order
// DeleteClient locks in). No foreign key does it (migration 00007): the
// check ran once per row, where a batch of tokens now locks its client
// once. DeleteClient (and Purge) lock the client row before they delete
// its tokens, so a token is either inserted before and deleted with the
// client, or finds the client gone and is not inserted (ErrNotFound).
//
// Tokens without a grant (client_credentials) issued together share one
// statement (batch.go).
func (p *Postgres) CreateAccessToken(ctx context.Context, t AccessToken) error {
	if tokenBatchable(t) {
		return p.tokenBatch.do(ctx, t)
	}
	return p.insertAccessToken(ctx, t)
}

func (p *Postgres) insertAccessToken(ctx context.Context, t AccessToken) error {
	tag, err := p.pool.Exec(ctx, `
		INSERT INTO access_tokens (digest, grant_id, client_id, user_id, scopes, resources,
			auth_time, created_at, expires_at, revoked_at)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10
		WHERE CASE WHEN $2::text IS NULL OR EXISTS (
				SELECT 1 FROM grants WHERE id = $2 AND revoked_at IS NULL FOR SHARE)
			THEN EXISTS (SELECT 1 FROM clients WHERE id = $3 FOR KEY SHARE) END`,
		t.Digest, nullString(t.GrantID), t.ClientID, nullString(t.UserID), t.Scopes, t.Resources,
		t.AuthTime, t.CreatedAt, t.ExpiresAt, t.RevokedAt)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// GetAccessToken returns the token in any state (revoked or expired
// included).
func (p *Postgres) GetAccessToken(ctx context.Context, digest string) (AccessToken, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+accessTokenColumns+` FROM access_tokens WHERE digest = $1`, digest)
	if err != nil {
		return AccessToken{}, mapErr(err)
	}
	t, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[AccessToken])
	return t, mapErr(err)
}

// RevokeAccessToken revokes an opaque access token; revoking it again keeps
// the first revocation time. ErrNotFound if unknown.
func (p *Postgres) RevokeAccessToken(ctx context.Context, digest string, now time.Time) error {
	tag, err := p.pool.Exec(ctx, `
		UPDATE access_tokens SET revoked_at = coalesce(revoked_at, $2)
		WHERE digest = $1`, digest, now)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// RevokeJTI remembers a revoked JWT access token until exp (the later exp if
// revoked twice).
func (p *Postgres) RevokeJTI(ctx context.Context, jti string, exp time.Time) error {
	_, err := p.pool.Exec(ctx, `
		INSERT INTO revoked_jtis AS r (jti, expires_at) VALUES ($1, $2)
		ON CONFLICT (jti) DO UPDATE SET expires_at = greatest(r.expires_at, excluded.expires_at)`,
		jti, exp)
	return mapErr(err)
}

func (p *Postgres) IsJTIRevoked(ctx context.Context, jti string, now time.Time) (bool, error) {
	var revoked bool
	err := p.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM revoked_jtis WHERE jti = $1 AND expires_at > $2)`, jti, now).Scan(&revoked)
	return revoked, mapErr(err)
}

// CheckJWTGrant answers the jti and the grant questions of a user's JWT in
// one round trip (introspection's hot path).
func (p *Postgres) CheckJWTGrant(ctx context.Context, jti, grantID string, now time.Time) (bool, Grant, User, error) {
	var revoked bool
	var g Grant
	var u User
	err := p.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM revoked_jtis WHERE jti = $1 AND expires_at > $2),
			`+joinedGrantUser+`
		FROM grants g JOIN users u ON u.id = g.user_id
		WHERE g.id = $3`, jti, now, grantID).Scan(append([]any{&revoked}, grantUserDest(&g, &u)...)...)
	if err != nil {
		return false, Grant{}, User{}, mapErr(err)
	}
	g.UserID = u.ID
	return revoked, g, u, nil
}
