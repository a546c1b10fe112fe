package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const upstreamTokenColumns = `user_id, upstream, key_id, sealed, expires_at, refreshable, scopes,
	dead_at, membership_checked_at, created_at, updated_at`

// PutUpstreamToken creates or replaces the row of (t.UserID, t.Upstream),
// keeping the first CreatedAt.
func (p *Postgres) PutUpstreamToken(ctx context.Context, t UpstreamToken) error {
	if err := checkUpstreamToken(t); err != nil {
		return err
	}
	_, err := p.pool.Exec(ctx, `
		INSERT INTO upstream_tokens (`+upstreamTokenColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (user_id, upstream) DO UPDATE SET
			key_id = excluded.key_id, sealed = excluded.sealed, expires_at = excluded.expires_at,
			refreshable = excluded.refreshable, scopes = excluded.scopes, dead_at = excluded.dead_at,
			membership_checked_at = excluded.membership_checked_at, updated_at = excluded.updated_at`,
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
				scopes = $7, dead_at = $8, membership_checked_at = $9, updated_at = $10
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

// DeleteUpstreamTokensExcept deletes the rows of upstreams not in keep.
func (p *Postgres) DeleteUpstreamTokensExcept(ctx context.Context, keep []string) (int64, error) {
	if keep == nil {
		keep = []string{}
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM upstream_tokens WHERE NOT (upstream = ANY($1))`, keep)
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
