package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// EncryptionSecret records that replicas started with the
// keys.encryption_secret of this fingerprint (see
// RecordEncryptionSecret).
type EncryptionSecret struct {
	Fingerprint string
	FirstSeenAt time.Time
	LastSeenAt  time.Time
}

// RecordEncryptionSecret: one upsert; a later start moves LastSeenAt on,
// never back.
func (p *Postgres) RecordEncryptionSecret(ctx context.Context, fingerprint string, now time.Time) error {
	if fingerprint == "" {
		return fmt.Errorf("store: RecordEncryptionSecret needs a fingerprint")
	}
	_, err := p.pool.Exec(ctx, `
		INSERT INTO encryption_secrets (fingerprint, first_seen_at, last_seen_at) VALUES ($1, $2, $2)
		ON CONFLICT (fingerprint) DO UPDATE SET
			last_seen_at = greatest(encryption_secrets.last_seen_at, excluded.last_seen_at)`,
		fingerprint, now)
	return mapErr(err)
}

func (p *Postgres) ListEncryptionSecrets(ctx context.Context) ([]EncryptionSecret, error) {
	rows, err := p.pool.Query(ctx, `SELECT fingerprint, first_seen_at, last_seen_at FROM encryption_secrets
		ORDER BY last_seen_at DESC, fingerprint`)
	if err != nil {
		return nil, mapErr(err)
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[EncryptionSecret])
	return rs, mapErr(err)
}

// CountUpstreamTokensByKey: one aggregate over the table; no ciphertext
// is read.
func (p *Postgres) CountUpstreamTokensByKey(ctx context.Context) (map[string]int, error) {
	rows, err := p.pool.Query(ctx, `SELECT key_id, count(*) FROM upstream_tokens GROUP BY key_id`)
	if err != nil {
		return nil, mapErr(err)
	}
	out := map[string]int{}
	var kid string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&kid, &n}, func() error {
		out[kid] = n
		return nil
	})
	return out, mapErr(err)
}

func (m *Memory) RecordEncryptionSecret(_ context.Context, fingerprint string, now time.Time) error {
	if fingerprint == "" {
		return fmt.Errorf("store: RecordEncryptionSecret needs a fingerprint")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now = trunc(now)
	r, ok := m.encryptionSecrets[fingerprint]
	if !ok {
		r = EncryptionSecret{Fingerprint: fingerprint, FirstSeenAt: now, LastSeenAt: now}
	} else if now.After(r.LastSeenAt) {
		r.LastSeenAt = now
	}
	m.encryptionSecrets[fingerprint] = r
	return nil
}

func (m *Memory) ListEncryptionSecrets(context.Context) ([]EncryptionSecret, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]EncryptionSecret, 0, len(m.encryptionSecrets))
	for _, r := range m.encryptionSecrets {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b EncryptionSecret) int {
		return cmp.Or(b.LastSeenAt.Compare(a.LastSeenAt), cmp.Compare(a.Fingerprint, b.Fingerprint))
	})
	return out, nil
}

func (m *Memory) CountUpstreamTokensByKey(context.Context) (map[string]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for _, r := range m.upstreamTable().rows {
		out[r.KeyID]++
	}
	return out, nil
}

func (b *Bounded) RecordEncryptionSecret(ctx context.Context, fingerprint string, now time.Time) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.RecordEncryptionSecret(ctx, fingerprint, now) })
}

func (b *Bounded) ListEncryptionSecrets(ctx context.Context) ([]EncryptionSecret, error) {
	return run1(b, ctx, func(ctx context.Context) ([]EncryptionSecret, error) { return b.s.ListEncryptionSecrets(ctx) })
}

func (b *Bounded) CountUpstreamTokensByKey(ctx context.Context) (map[string]int, error) {
	return run1(b, ctx, func(ctx context.Context) (map[string]int, error) { return b.s.CountUpstreamTokensByKey(ctx) })
}
