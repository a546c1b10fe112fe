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

// GetSessionUser reads the session and its user in one round trip (the
// browser's single sign-on check on every authorization).
func (p *Postgres) GetSessionUser(ctx context.Context, idDigest string, now time.Time) (Session, User, error) {
	var s Session
	var u User
	err := p.pool.QueryRow(ctx, `
		SELECT s.id_digest, s.auth_time, s.created_at, s.expires_at,
			u.id, u.provider, u.subject, u.login, u.email, u.email_verified, u.name, u.groups, u.domain,
			u.disabled, u.created_at, u.updated_at, u.last_login_at
		FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.id_digest = $1 AND s.expires_at > $2`, idDigest, now).Scan(
		&s.IDDigest, &s.AuthTime, &s.CreatedAt, &s.ExpiresAt,
		&u.ID, &u.Provider, &u.Subject, &u.Login, &u.Email, &u.EmailVerified, &u.Name, &u.Groups, &u.Domain,
		&u.Disabled, &u.CreatedAt, &u.UpdatedAt, &u.LastLoginAt)
	if err != nil {
		return Session{}, User{}, mapErr(err)
	}
	s.UserID = u.ID
	return s, u, nil
}

// DeleteSession ends a browser session; deleting an unknown one is not an
// error (signing out twice is fine).
func (p *Postgres) DeleteSession(ctx context.Context, idDigest string) error {
	_, err := p.pool.Exec(ctx, `DELETE FROM sessions WHERE id_digest = $1`, idDigest)
	return mapErr(err)
}
