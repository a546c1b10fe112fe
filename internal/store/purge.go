package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// purgeBatch bounds how many rows one DELETE removes, so that purging never
// holds many row locks or a long transaction.
const purgeBatch = 5000

// purgeTargets lists what Purge deletes, in order. Clients go first: their
// deletion cascades to what was issued to them (their access tokens are
// deleted explicitly, see purgeClients). Deleting a grant cascades to its
// refresh and access tokens.
var purgeTargets = []struct {
	table string
	where string // $1 is now
	batch int
}{
	// Config clients never expire; dynamic and metadata-document clients do
	// when idle. Each one may cascade to many rows, hence the small batch.
	{"clients", `expires_at <= $1 AND source <> 'config'`, 200},
	{"grants", `expires_at <= $1`, 1000},
	{"refresh_tokens", `expires_at <= $1`, purgeBatch},
	{"access_tokens", `expires_at <= $1`, purgeBatch},
	// A used code is the evidence that a replay must revoke its grant
	// (OAuth 2.1 §4.1.3): it stays while that grant is live.
	{"auth_codes", `expires_at <= $1 AND (used_at IS NULL OR NOT EXISTS (
		SELECT 1 FROM grants g WHERE g.id = auth_codes.grant_id AND g.revoked_at IS NULL AND g.expires_at > $1))`, purgeBatch},
	{"auth_requests", `expires_at <= $1`, purgeBatch},
	{"sessions", `expires_at <= $1`, purgeBatch},
	{"revoked_jtis", `expires_at <= $1`, purgeBatch},
	{"upstream_logout_tokens", `expires_at <= $1`, purgeBatch},
	{"signing_keys", `state = 'retired' AND expires_at <= $1`, purgeBatch},
	{"metadata_documents", `expires_at <= $1`, purgeBatch},
	// Upstream grants that can no longer be used: refused by the upstream,
	// or expired with no refresh token to renew them.
	{"upstream_tokens", `dead_at IS NOT NULL OR (NOT refreshable AND expires_at <= $1)`, purgeBatch},
}

// Purge deletes expired rows in batches, each its own short statement. Rows
// another replica's purge holds are skipped (SKIP LOCKED), so several
// replicas can purge at once without waiting on each other; what one skips,
// the other deletes.
func (p *Postgres) Purge(ctx context.Context, now time.Time) (PurgeResult, error) {
	res := PurgeResult{}
	for _, t := range purgeTargets {
		q := `DELETE FROM ` + t.table + ` WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM ` + t.table + ` WHERE ` + t.where + `
			LIMIT $2 FOR UPDATE SKIP LOCKED))`
		for {
			var n int64
			var err error
			if t.table == "clients" {
				n, err = p.purgeClients(ctx, q, now, t.batch)
			} else {
				var tag pgconn.CommandTag
				tag, err = p.pool.Exec(ctx, q, now, t.batch)
				n = tag.RowsAffected()
			}
			if err != nil {
				return res, mapErr(err)
			}
			res[t.table] += n
			if n < int64(t.batch) {
				break
			}
		}
	}
	return res, nil
}

// purgeClients runs q, the DELETE of a batch of expired clients, and
// deletes their access tokens in the same transaction (see DeleteClient),
// in a statement of its own: it sees every token committed before the
// DELETE locked the clients, and no token can be inserted for them since.
// Clients whose rows a token insert holds are skipped (SKIP LOCKED): they
// are in use, and a later purge takes them.
func (p *Postgres) purgeClients(ctx context.Context, q string, now time.Time, batch int) (int64, error) {
	var n int64
	err := p.withTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q+` RETURNING id`, now, batch)
		if err != nil {
			return mapErr(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return mapErr(err)
		}
		n = int64(len(ids))
		if len(ids) == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `DELETE FROM access_tokens WHERE client_id = ANY($1)`, ids)
		return mapErr(err)
	})
	return n, err
}

// Stats counts what `authd stats` prints.
func (p *Postgres) Stats(ctx context.Context, now time.Time) (Stats, error) {
	var s Stats
	err := p.pool.QueryRow(ctx, `
		SELECT
			(SELECT count(*) FROM clients WHERE expires_at IS NULL OR expires_at > $1),
			(SELECT count(*) FROM users),
			(SELECT count(*) FROM grants WHERE revoked_at IS NULL AND expires_at > $1),
			(SELECT count(*) FROM refresh_tokens)`, now).
		Scan(&s.Clients, &s.Users, &s.ActiveGrants, &s.RefreshTokens)
	return s, mapErr(err)
}
