package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// upstreamTokenWriteColumns are written by Put; upstreamTokenColumns are
// read (the lease columns are the refresh's own).
const upstreamTokenWriteColumns = `user_id, upstream, key_id, sealed, expires_at, refreshable, scopes,
	dead_at, membership_checked_at, created_at, updated_at`

const upstreamTokenColumns = upstreamTokenWriteColumns + `, refresh_lease_until, refresh_unsettled`

// PutUpstreamToken creates or replaces the row of (t.UserID, t.Upstream),
// keeping the first CreatedAt.
func (p *Postgres) PutUpstreamToken(ctx context.Context, t UpstreamToken) error {
	if err := checkUpstreamToken(t); err != nil {
		return err
	}
	_, err := p.pool.Exec(ctx, `
		INSERT INTO upstream_tokens (`+upstreamTokenWriteColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (user_id, upstream) DO UPDATE SET
			key_id = excluded.key_id, sealed = excluded.sealed, expires_at = excluded.expires_at,
			refreshable = excluded.refreshable, scopes = excluded.scopes, dead_at = excluded.dead_at,
			membership_checked_at = excluded.membership_checked_at, updated_at = excluded.updated_at,
			refresh_lease_until = NULL, refresh_unsettled = false`,
		upstreamTokenArgs(t)...)
	return mapErr(err)
}

func upstreamTokenArgs(t UpstreamToken) []any {
	return []any{t.UserID, t.Upstream, t.KeyID, t.Sealed, t.ExpiresAt, t.Refreshable, t.Scopes,
		t.DeadAt, t.MembershipCheckedAt, t.CreatedAt, t.UpdatedAt}
}

func checkUpstreamToken(t UpstreamToken) error {
	if t.UserID == "" || t.Upstream == "" || t.KeyID == "" || len(t.Sealed) == 0 {
		return fmt.Errorf("store: an upstream token needs UserID, Upstream, KeyID and Sealed")
	}
	return nil
}

func (p *Postgres) GetUpstreamToken(ctx context.Context, userID, upstream string) (UpstreamToken, error) {
	return getUpstreamToken(ctx, p.pool, userID, upstream, "")
}

func getUpstreamToken(ctx context.Context, q querier, userID, upstream, lock string) (UpstreamToken, error) {
	rows, err := q.Query(ctx, `SELECT `+upstreamTokenColumns+` FROM upstream_tokens
		WHERE user_id = $1 AND upstream = $2 `+lock, userID, upstream)
	if err != nil {
		return UpstreamToken{}, mapErr(err)
	}
	t, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[UpstreamToken])
	return t, mapErr(err)
}

func (p *Postgres) ListUpstreamTokens(ctx context.Context, userID string) ([]UpstreamToken, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+upstreamTokenColumns+` FROM upstream_tokens
		WHERE user_id = $1 ORDER BY created_at, upstream`, userID)
	if err != nil {
		return nil, mapErr(err)
	}
	ts, err := pgx.CollectRows(rows, pgx.RowToStructByName[UpstreamToken])
	return ts, mapErr(err)
}

func (p *Postgres) DeleteUpstreamToken(ctx context.Context, userID, upstream string) error {
	_, err := p.pool.Exec(ctx, `DELETE FROM upstream_tokens WHERE user_id = $1 AND upstream = $2`, userID, upstream)
	return mapErr(err)
}

// UpdateUpstreamToken holds the row with SELECT ... FOR UPDATE while update
// runs, so that replicas refreshing the same upstream grant at once take
// turns: the first refreshes, the next sees its result.
func (p *Postgres) UpdateUpstreamToken(ctx context.Context, userID, upstream string, update func(UpstreamToken) (*UpstreamToken, error)) (UpstreamToken, error) {
	var out UpstreamToken
	err := p.withTx(ctx, func(tx pgx.Tx) error {
		cur, err := getUpstreamToken(ctx, tx, userID, upstream, "FOR UPDATE")
		if err != nil {
			return err
		}
		next, err := update(cur)
		if err != nil {
			return err
		}
		if next == nil {
			out = cur
			return nil
		}
		if next.UserID != userID || next.Upstream != upstream {
			return fmt.Errorf("store: UpdateUpstreamToken: the update changed the row's user or upstream")
		}
		if err := checkUpstreamToken(*next); err != nil {
			return err
		}
		n := *next
		n.CreatedAt = cur.CreatedAt
		if _, err := tx.Exec(ctx, `
			UPDATE upstream_tokens SET key_id = $3, sealed = $4, expires_at = $5, refreshable = $6,
				scopes = $7, dead_at = $8, membership_checked_at = $9, updated_at = $10,
				refresh_lease_until = NULL, refresh_unsettled = false
			WHERE user_id = $1 AND upstream = $2`,
			n.UserID, n.Upstream, n.KeyID, n.Sealed, n.ExpiresAt, n.Refreshable, n.Scopes,
			n.DeadAt, n.MembershipCheckedAt, n.UpdatedAt); err != nil {
			return mapErr(err)
		}
		out = n
		return nil
	})
	return out, err
}

// ClaimUpstreamRefresh: one autocommitted compare-and-set UPDATE; SET's
// right-hand sides see the row as it was, so refresh_unsettled records
// whether the previous lease was still in place.
func (p *Postgres) ClaimUpstreamRefresh(ctx context.Context, userID, upstream string, now, expiresBefore, until time.Time) (UpstreamToken, bool, error) {
	rows, err := p.pool.Query(ctx, `
		UPDATE upstream_tokens SET refresh_lease_until = $5,
			refresh_unsettled = (refresh_lease_until IS NOT NULL)
		WHERE user_id = $1 AND upstream = $2 AND dead_at IS NULL
			AND (expires_at IS NOT NULL AND expires_at < $4)
			AND (refresh_lease_until IS NULL OR refresh_lease_until <= $3)
		RETURNING `+upstreamTokenColumns,
		userID, upstream, now, expiresBefore, until.Truncate(time.Microsecond))
	if err != nil {
		return UpstreamToken{}, false, mapErr(err)
	}
	t, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[UpstreamToken])
	if err == nil {
		return t, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return UpstreamToken{}, false, mapErr(err)
	}
	t, err = p.GetUpstreamToken(ctx, userID, upstream)
	return t, false, err
}

func (p *Postgres) FinishUpstreamRefresh(ctx context.Context, userID, upstream string, lease time.Time, next *UpstreamToken, retryAt time.Time) (bool, error) {
	lease = lease.Truncate(time.Microsecond)
	if next == nil {
		tag, err := p.pool.Exec(ctx, `UPDATE upstream_tokens SET refresh_lease_until = $4
			WHERE user_id = $1 AND upstream = $2 AND refresh_lease_until = $3`,
			userID, upstream, lease, retryAt.Truncate(time.Microsecond))
		if err != nil {
			return false, mapErr(err)
		}
		return tag.RowsAffected() == 1, nil
	}
	if next.UserID != userID || next.Upstream != upstream {
		return false, fmt.Errorf("store: FinishUpstreamRefresh: the update changed the row's user or upstream")
	}
	if err := checkUpstreamToken(*next); err != nil {
		return false, err
	}
	n := next
	// A dead row keeps its ciphertext (see the Store contract): $9 is
	// DeadAt.
	tag, err := p.pool.Exec(ctx, `
		UPDATE upstream_tokens SET
			key_id = CASE WHEN $9::timestamptz IS NULL THEN $4 ELSE key_id END,
			sealed = CASE WHEN $9::timestamptz IS NULL THEN $5::bytea ELSE sealed END,
			expires_at = $6, refreshable = $7,
			scopes = $8, dead_at = $9, updated_at = $10,
			refresh_lease_until = NULL, refresh_unsettled = false
		WHERE user_id = $1 AND upstream = $2 AND refresh_lease_until = $3`,
		userID, upstream, lease, n.KeyID, n.Sealed, n.ExpiresAt, n.Refreshable, n.Scopes, n.DeadAt, n.UpdatedAt)
	if err != nil {
		return false, mapErr(err)
	}
	return tag.RowsAffected() == 1, nil
}

// FinishUpstreamRefreshRevoked: see Store. The user row is locked first,
// as logoutUser and DisableUser lock it before the grants and the
// upstream tokens, so that none of them waits for another in the
// opposite order; a sign-in's UpdateUpstreamToken of the row either
// commits first (the lease is gone: nothing is done) or waits for this
// transaction and then replaces the dead row.
func (p *Postgres) FinishUpstreamRefreshRevoked(ctx context.Context, userID, upstream string, lease, now time.Time) (bool, UserLogout, error) {
	var (
		done bool
		l    UserLogout
	)
	err := p.withTx(ctx, func(tx pgx.Tx) error {
		done, l = false, UserLogout{}
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE`, userID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // deleted, and their upstream tokens with them
		}
		if err != nil {
			return mapErr(err)
		}
		tag, err := tx.Exec(ctx, `
			UPDATE upstream_tokens SET dead_at = $4, updated_at = $4,
				refresh_lease_until = NULL, refresh_unsettled = false
			WHERE user_id = $1 AND upstream = $2 AND refresh_lease_until = $3`,
			userID, upstream, lease.Truncate(time.Microsecond), now)
		if err != nil {
			return mapErr(err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		done = true
		l, err = logoutUser(ctx, tx, userID, now, true, false)
		return err
	})
	if err != nil {
		return false, UserLogout{}, err
	}
	return done, l, nil
}

// SettleUpstreamRefresh: see Store. One compare-and-set statement.
func (p *Postgres) SettleUpstreamRefresh(ctx context.Context, userID, upstream string, lease time.Time) (bool, error) {
	tag, err := p.pool.Exec(ctx, `
		UPDATE upstream_tokens SET refresh_lease_until = NULL, refresh_unsettled = false
		WHERE user_id = $1 AND upstream = $2 AND refresh_lease_until = $3`,
		userID, upstream, lease.Truncate(time.Microsecond))
	if err != nil {
		return false, mapErr(err)
	}
	return tag.RowsAffected() == 1, nil
}

// DeleteUpstreamTokensExcept deletes the rows of upstreams not in keep
// last written before writtenBefore.
func (p *Postgres) DeleteUpstreamTokensExcept(ctx context.Context, keep []string, writtenBefore time.Time) (int64, error) {
	if keep == nil {
		keep = []string{}
	}
	// GREATEST ignores NULL: a row never checked is judged by updated_at.
	tag, err := p.pool.Exec(ctx, `
		DELETE FROM upstream_tokens
		WHERE NOT (upstream = ANY($1)) AND GREATEST(updated_at, membership_checked_at) < $2`,
		keep, writtenBefore)
	if err != nil {
		return 0, mapErr(err)
	}
	return tag.RowsAffected(), nil
}

// ClaimMembershipCheck sets membership_checked_at = now if it was never set
// or is at least interval old, in one statement, so that of several
// replicas only one claims each check.
func (p *Postgres) ClaimMembershipCheck(ctx context.Context, userID, upstream string, now time.Time, interval time.Duration) (bool, error) {
	tag, err := p.pool.Exec(ctx, `
		UPDATE upstream_tokens SET membership_checked_at = $3
		WHERE user_id = $1 AND upstream = $2 AND dead_at IS NULL
			AND (membership_checked_at IS NULL OR membership_checked_at <= $4)`,
		userID, upstream, now, now.Add(-interval))
	if err != nil {
		return false, mapErr(err)
	}
	return tag.RowsAffected() == 1, nil
}

// DeferMembershipCheck writes membership_checked_at alone: the refresh
// lease columns are not touched.
func (p *Postgres) DeferMembershipCheck(ctx context.Context, userID, upstream string, now, at time.Time) (bool, error) {
	tag, err := p.pool.Exec(ctx, `
		UPDATE upstream_tokens SET membership_checked_at = $4
		WHERE user_id = $1 AND upstream = $2
			AND (membership_checked_at IS NULL OR membership_checked_at <= $3)`,
		userID, upstream, now, at)
	if err != nil {
		return false, mapErr(err)
	}
	return tag.RowsAffected() == 1, nil
}

// ListUpstreamTokensAfter walks the primary key (user_id, upstream): each
// page is an index range scan, whatever the table's size.
func (p *Postgres) ListUpstreamTokensAfter(ctx context.Context, afterUser, afterUpstream string, limit int) ([]UpstreamToken, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("store: ListUpstreamTokensAfter needs a positive limit, got %d", limit)
	}
	rows, err := p.pool.Query(ctx, `SELECT `+upstreamTokenColumns+` FROM upstream_tokens
		WHERE (user_id, upstream) > ($1, $2)
		ORDER BY user_id, upstream LIMIT $3`, afterUser, afterUpstream, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	ts, err := pgx.CollectRows(rows, pgx.RowToStructByName[UpstreamToken])
	return ts, mapErr(err)
}

// ResealUpstreamTokens: one UPDATE joined to the reseals (a statement is
// a transaction of its own). A row that an UpdateUpstreamToken holds is
// waited for and then compared as it is after that commit, so a sign-in's
// or refresh's new ciphertext is never overwritten with the old tokens.
func (p *Postgres) ResealUpstreamTokens(ctx context.Context, rs []UpstreamTokenReseal) (int, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	users, ups := make([]string, len(rs)), make([]string, len(rs))
	oldKIDs, kids := make([]string, len(rs)), make([]string, len(rs))
	olds, news := make([][]byte, len(rs)), make([][]byte, len(rs))
	for i, r := range rs {
		if err := checkUpstreamTokenReseal(r); err != nil {
			return 0, err
		}
		users[i], ups[i], oldKIDs[i], olds[i], kids[i], news[i] = r.UserID, r.Upstream, r.OldKeyID, r.OldSealed, r.KeyID, r.Sealed
	}
	tag, err := p.pool.Exec(ctx, `
		UPDATE upstream_tokens t SET key_id = r.key_id, sealed = r.sealed
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::bytea[])
			AS r(user_id, upstream, old_key_id, old_sealed, key_id, sealed)
		WHERE t.user_id = r.user_id AND t.upstream = r.upstream
			AND t.key_id = r.old_key_id AND t.sealed = r.old_sealed`,
		users, ups, oldKIDs, olds, kids, news)
	if err != nil {
		return 0, mapErr(err)
	}
	return int(tag.RowsAffected()), nil
}

func checkUpstreamTokenReseal(r UpstreamTokenReseal) error {
	if r.UserID == "" || r.Upstream == "" || r.OldKeyID == "" || len(r.OldSealed) == 0 || r.KeyID == "" || len(r.Sealed) == 0 {
		return fmt.Errorf("store: an upstream token reseal needs UserID, Upstream, OldKeyID, OldSealed, KeyID and Sealed")
	}
	return nil
}
