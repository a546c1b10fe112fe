package store

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const userColumns = `id, provider, subject, login, email, email_verified, name, groups, domain,
	disabled, created_at, updated_at, last_login_at`

// UpsertUser inserts the user or refreshes the profile of the one with the
// same (Provider, Subject), keeping its ID, CreatedAt and Disabled. A new
// user gets a fresh uuid unless u.ID is set (ErrConflict if that is taken).
func (p *Postgres) UpsertUser(ctx context.Context, u User) (User, error) {
	if u.ID == "" {
		u.ID = uuid.NewString()
	}
	rows, err := p.pool.Query(ctx, `
		INSERT INTO users AS u (`+userColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (provider, subject) DO UPDATE SET
			login = excluded.login, email = excluded.email, email_verified = excluded.email_verified,
			name = excluded.name, groups = excluded.groups, domain = excluded.domain,
			updated_at = excluded.updated_at, last_login_at = excluded.last_login_at
		RETURNING `+userColumns,
		u.ID, u.Provider, u.Subject, u.Login, u.Email, u.EmailVerified, u.Name, u.Groups, u.Domain,
		u.Disabled, u.CreatedAt, u.UpdatedAt, u.LastLoginAt)
	if err != nil {
		return User{}, mapErr(err)
	}
	stored, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[User])
	return stored, mapErr(err)
}

func (p *Postgres) GetUser(ctx context.Context, id string) (User, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id)
	if err != nil {
		return User{}, mapErr(err)
	}
	u, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[User])
	return u, mapErr(err)
}

func (p *Postgres) SetUserDisabled(ctx context.Context, id string, disabled bool) error {
	tag, err := p.pool.Exec(ctx, `UPDATE users SET disabled = $2 WHERE id = $1`, id, disabled)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
