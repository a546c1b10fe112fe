package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

const sessionColumns = `id_digest, user_id, auth_time, created_at, expires_at`

func (p *Postgres) CreateSession(ctx context.Context, s Session) error {
	_, err := p.pool.Exec(ctx, `
		INSERT INTO sessions (`+sessionColumns+`) VALUES ($1, $2, $3, $4, $5)`,
		s.IDDigest, s.UserID, s.AuthTime, s.CreatedAt, s.ExpiresAt)
	return mapErr(err)
}

func (p *Postgres) GetSession(ctx context.Context, idDigest string, now time.Time) (Session, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT `+sessionColumns+` FROM sessions
		WHERE id_digest = $1 AND expires_at > $2`, idDigest, now)
	if err != nil {
		return Session{}, mapErr(err)
	}
	s, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Session])
	return s, mapErr(err)
}

// DeleteSession ends a browser session; deleting an unknown one is not an
// error (signing out twice is fine).
func (p *Postgres) DeleteSession(ctx context.Context, idDigest string) error {
	_, err := p.pool.Exec(ctx, `DELETE FROM sessions WHERE id_digest = $1`, idDigest)
	return mapErr(err)
}
