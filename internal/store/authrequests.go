package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// authRequestColumns: the nullable key columns read back as "" when absent
// (client_id is NULL for the sign-in offered on /apps).
const authRequestColumns = `id_digest, coalesce(client_id, '') AS client_id, redirect_uri, redirect_uri_provided, state,
	scopes, resources, code_challenge, code_challenge_method, nonce, prompt, max_age, login_hint,
	upstream, coalesce(upstream_state_digest, '') AS upstream_state_digest,
	coalesce(user_id, '') AS user_id, auth_time, created_at, expires_at`

func (p *Postgres) CreateAuthRequest(ctx context.Context, r AuthRequest) error {
	_, err := p.pool.Exec(ctx, `
		INSERT INTO auth_requests (id_digest, client_id, redirect_uri, redirect_uri_provided, state,
			scopes, resources, code_challenge, code_challenge_method, nonce, prompt, max_age, login_hint,
			upstream, upstream_state_digest, user_id, auth_time, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
		r.IDDigest, nullString(r.ClientID), r.RedirectURI, r.RedirectURIProvided, r.State,
		r.Scopes, r.Resources, r.CodeChallenge, r.CodeChallengeMethod, r.Nonce, r.Prompt, r.MaxAge, r.LoginHint,
		r.Upstream, nullString(r.UpstreamStateDigest), nullString(r.UserID), r.AuthTime, r.CreatedAt, r.ExpiresAt)
	return mapErr(err)
}

func (p *Postgres) GetAuthRequest(ctx context.Context, idDigest string, now time.Time) (AuthRequest, error) {
	return collectAuthRequest(p.pool.Query(ctx, `
		SELECT `+authRequestColumns+` FROM auth_requests
		WHERE id_digest = $1 AND expires_at > $2`, idDigest, now))
}

func (p *Postgres) GetAuthRequestByUpstreamState(ctx context.Context, stateDigest string, now time.Time) (AuthRequest, error) {
	if stateDigest == "" {
		return AuthRequest{}, ErrNotFound
	}
	return collectAuthRequest(p.pool.Query(ctx, `
		SELECT `+authRequestColumns+` FROM auth_requests
		WHERE upstream_state_digest = $1 AND expires_at > $2`, stateDigest, now))
}

// UpdateAuthRequest replaces the fields that change while the user signs in
// and consents. ErrConflict if the upstream state digest is taken.
func (p *Postgres) UpdateAuthRequest(ctx context.Context, r AuthRequest) error {
	tag, err := p.pool.Exec(ctx, `
		UPDATE auth_requests SET
			upstream = $2, upstream_state_digest = $3, user_id = $4, auth_time = $5,
			scopes = $6, resources = $7
		WHERE id_digest = $1`,
		r.IDDigest, r.Upstream, nullString(r.UpstreamStateDigest), nullString(r.UserID), r.AuthTime,
		r.Scopes, r.Resources)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// ConsumeAuthRequest deletes and returns an unexpired request. DELETE …
// RETURNING makes it one-time: of concurrent callers, only the one whose
// delete removed the row gets it.
func (p *Postgres) ConsumeAuthRequest(ctx context.Context, idDigest string, now time.Time) (AuthRequest, error) {
	return collectAuthRequest(p.pool.Query(ctx, `
		DELETE FROM auth_requests
		WHERE id_digest = $1 AND expires_at > $2
		RETURNING `+authRequestColumns, idDigest, now))
}

// ClaimAuthRequest is the upstream callback's first write, before it calls
// the upstream: a conditional UPDATE … RETURNING that matches only a
// request still waiting for this upstream answer and makes it wait for
// none (state, user and auth_time cleared). Of concurrent claims, the
// first takes the row lock; the others wait for that lock, re-check the
// condition on the row as it is now (PostgreSQL's READ COMMITTED
// re-evaluation) and match nothing. Only a claim that matched nothing pays
// a second statement, to tell why.
func (p *Postgres) ClaimAuthRequest(ctx context.Context, idDigest, stateDigest string, now time.Time) (AuthRequest, error) {
	rows, err := p.pool.Query(ctx, `
		UPDATE auth_requests SET upstream_state_digest = $4, user_id = NULL, auth_time = NULL
		WHERE id_digest = $1 AND upstream_state_digest = $2 AND expires_at > $3
		RETURNING `+authRequestColumns, idDigest, stateDigest, now, ClaimedState(stateDigest))
	return p.matchedOrWhy(ctx, rows, err, idDigest, now)
}

// SettleAuthRequest is the callback's write after the upstream answered:
// on a request its claim left waiting for nothing (no upstream state, no
// user), it records the sign-in (UPDATE) or deletes the request (DELETE).
func (p *Postgres) SettleAuthRequest(ctx context.Context, idDigest, stateDigest string, now time.Time, signIn *SignIn) (AuthRequest, error) {
	const claimed = `
		WHERE id_digest = $1 AND upstream_state_digest = $2 AND user_id IS NULL AND expires_at > $3
		RETURNING ` + authRequestColumns
	var rows pgx.Rows
	var err error
	if signIn == nil {
		rows, err = p.pool.Query(ctx, `DELETE FROM auth_requests`+claimed, idDigest, ClaimedState(stateDigest), now)
	} else {
		rows, err = p.pool.Query(ctx, `UPDATE auth_requests SET upstream_state_digest = NULL, user_id = $4, auth_time = $5`+claimed,
			idDigest, ClaimedState(stateDigest), now, signIn.UserID, signIn.AuthTime)
	}
	return p.matchedOrWhy(ctx, rows, err, idDigest, now)
}

// matchedOrWhy returns the row a conditional write matched, or, when it
// matched none, the request as it is with ErrConflict (ErrNotFound if it
// is gone).
func (p *Postgres) matchedOrWhy(ctx context.Context, rows pgx.Rows, err error, idDigest string, now time.Time) (AuthRequest, error) {
	if err != nil {
		return AuthRequest{}, mapErr(err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[AuthRequest])
	if !errors.Is(err, pgx.ErrNoRows) {
		return r, mapErr(err) // matched, or failed (a missing user: ErrNotFound wrapped)
	}
	cur, err := p.GetAuthRequest(ctx, idDigest, now)
	if err != nil {
		return AuthRequest{}, err
	}
	return cur, ErrConflict
}

func collectAuthRequest(rows pgx.Rows, err error) (AuthRequest, error) {
	if err != nil {
		return AuthRequest{}, mapErr(err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[AuthRequest])
	return r, mapErr(err)
}
