package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const signingKeyColumns = `id, algorithm, state, public_jwk, encrypted_private_key, created_at,
	activated_at, retired_at, expires_at`

// ListSigningKeys returns every key, oldest first.
func (p *Postgres) ListSigningKeys(ctx context.Context) ([]SigningKey, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, mapErr(err)
	}
	ks, err := pgx.CollectRows(rows, pgx.RowToStructByName[SigningKey])
	return ks, mapErr(err)
}

// CreateSigningKey inserts k. The partial unique index on active keys makes
// a second active key an ErrConflict, so of replicas racing to create the
// first key exactly one succeeds and the others load it.
func (p *Postgres) CreateSigningKey(ctx context.Context, k SigningKey) error {
	_, err := p.pool.Exec(ctx, `
		INSERT INTO signing_keys (`+signingKeyColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		k.ID, k.Algorithm, k.State, k.PublicJWK, k.EncryptedPrivateKey, k.CreatedAt,
		k.ActivatedAt, k.RetiredAt, k.ExpiresAt)
	return mapErr(err)
}

// ActivateSigningKey makes kid the active key and retires the one it
// replaces; ErrConflict for a retired key. Activations are serialised by a transaction-scoped advisory
// lock, so two at once both succeed in turn (the later one wins) rather than
// tripping over the one-active-key index.
func (p *Postgres) ActivateSigningKey(ctx context.Context, kid string, now, retireExpiry time.Time) error {
	return p.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('authd.signing_keys.activate'))`); err != nil {
			return mapErr(err)
		}
		var state KeyState
		if err := tx.QueryRow(ctx, `SELECT state FROM signing_keys WHERE id = $1`, kid).Scan(&state); err != nil {
			return mapErr(err)
		}
		switch state {
		case KeyActive:
			return nil
		case KeyRetired:
			// Retirement is final: past its expiry the key is no longer
			// published, and verifiers may have dropped it.
			return fmt.Errorf("%w: signing key %q is retired", ErrConflict, kid)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE signing_keys SET state = 'retired', retired_at = $1, expires_at = $2
			WHERE state = 'active'`, now, retireExpiry); err != nil {
			return mapErr(err)
		}
		_, err := tx.Exec(ctx, `
			UPDATE signing_keys SET state = 'active', activated_at = $2
			WHERE id = $1`, kid, now)
		return mapErr(err)
	})
}

// ResealSigningKeys: one UPDATE joined to the reseals (a statement is a
// transaction of its own); the old ciphertext in the join makes each row's
// write a compare-and-set.
func (p *Postgres) ResealSigningKeys(ctx context.Context, rs []SigningKeyReseal) (int, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	ids := make([]string, len(rs))
	olds, news := make([][]byte, len(rs)), make([][]byte, len(rs))
	for i, r := range rs {
		if err := checkSigningKeyReseal(r); err != nil {
			return 0, err
		}
		ids[i], olds[i], news[i] = r.ID, r.Old, r.New
	}
	tag, err := p.pool.Exec(ctx, `
		UPDATE signing_keys k SET encrypted_private_key = r.new
		FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS r(id, old, new)
		WHERE k.id = r.id AND k.encrypted_private_key = r.old`, ids, olds, news)
	if err != nil {
		return 0, mapErr(err)
	}
	return int(tag.RowsAffected()), nil
}

func checkSigningKeyReseal(r SigningKeyReseal) error {
	if r.ID == "" || len(r.Old) == 0 || len(r.New) == 0 {
		return fmt.Errorf("store: a signing key reseal needs ID, Old and New")
	}
	return nil
}
