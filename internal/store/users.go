package store

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// FindUser returns the user known to provider by subject.
func (p *Postgres) FindUser(ctx context.Context, provider, subject string) (User, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+userColumns+` FROM users WHERE provider = $1 AND subject = $2`,
		provider, subject)
	if err != nil {
		return User{}, mapErr(err)
	}
	u, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[User])
	return u, mapErr(err)
}

// ListUsers returns the users f selects, newest sign-in first.
func (p *Postgres) ListUsers(ctx context.Context, f UserFilter) ([]User, error) {
	var limit *int
	if f.Limit > 0 {
		limit = &f.Limit
	}
	rows, err := p.pool.Query(ctx, `
		SELECT `+userColumns+` FROM users
		WHERE ($1 = '' OR provider = $1) AND (NOT $2 OR disabled)
		ORDER BY last_login_at DESC, id
		LIMIT $3`, f.Provider, f.Disabled, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	us, err := pgx.CollectRows(rows, pgx.RowToStructByName[User])
	return us, mapErr(err)
}

// DisableUser sets disabled and revokes the user's live grants, their
// refresh tokens and the user's opaque access tokens in one transaction.
// It locks the grants in id order before their tokens, as DeleteConsent,
// revokeGrant and RotateRefreshToken do, so that none of them deadlock
// with it; a token rotated or created concurrently is either refused or
// revoked here.
func (p *Postgres) DisableUser(ctx context.Context, id string, now time.Time) (UserRevocation, error) {
	var r UserRevocation
	err := p.withTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET disabled = true WHERE id = $1`, id)
		if err != nil {
			return mapErr(err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		if r, err = revokeUserGrants(ctx, tx, id, now); err != nil {
			return err
		}
		// The user's upstream grants go too: nothing may act upstream
		// for a disabled user, and enabling them again needs a sign-in.
		if _, err := tx.Exec(ctx, `DELETE FROM upstream_tokens WHERE user_id = $1`, id); err != nil {
			return mapErr(err)
		}
		return nil
	})
	if err != nil {
		return UserRevocation{}, err
	}
	return r, nil
}

// LogoutUser: see Store.
func (p *Postgres) LogoutUser(ctx context.Context, id string, now time.Time, revokeGrants bool) (UserLogout, error) {
	var l UserLogout
	err := p.withTx(ctx, func(tx pgx.Tx) (err error) {
		l, err = logoutUser(ctx, tx, id, now, revokeGrants, revokeGrants)
		return err
	})
	if err != nil {
		return UserLogout{}, err
	}
	return l, nil
}

// RevokeUserAccess: see Store.
func (p *Postgres) RevokeUserAccess(ctx context.Context, id string, now time.Time) (UserLogout, error) {
	var l UserLogout
	err := p.withTx(ctx, func(tx pgx.Tx) (err error) {
		l, err = logoutUser(ctx, tx, id, now, true, false)
		return err
	})
	if err != nil {
		return UserLogout{}, err
	}
	return l, nil
}

// LogoutUpstreamUser: see Store. The jti's insert comes first: a
// concurrent delivery of the same token waits on it and then finds it
// recorded (or, if this transaction fails, records it itself).
func (p *Postgres) LogoutUpstreamUser(ctx context.Context, l UpstreamLogout, now time.Time) (UserLogout, error) {
	var out UserLogout
	err := p.withTx(ctx, func(tx pgx.Tx) error {
		if err := useLogoutToken(ctx, tx, l.Upstream, l.JTI, l.Expiry); err != nil {
			return err
		}
		var id string
		err := tx.QueryRow(ctx, `SELECT id FROM users WHERE provider = $1 AND subject = $2`, l.Upstream, l.Subject).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // nobody to sign out; the jti stays recorded
		}
		if err != nil {
			return mapErr(err)
		}
		out, err = logoutUser(ctx, tx, id, now, l.RevokeGrants, l.RevokeGrants)
		if errors.Is(err, ErrNotFound) { // deleted since it was read
			out, err = UserLogout{}, nil
		}
		return err
	})
	if err != nil {
		return UserLogout{}, err
	}
	return out, nil
}

// logoutUser runs LogoutUser in tx; dropUpstreamTokens deletes the user's
// kept upstream tokens too. The user row is locked first (FOR NO KEY
// UPDATE, as DisableUser's update locks it), then the grants as
// DisableUser does.
func logoutUser(ctx context.Context, tx pgx.Tx, id string, now time.Time, revokeGrants, dropUpstreamTokens bool) (UserLogout, error) {
	l := UserLogout{UserID: id}
	var one int
	if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE`, id).Scan(&one); err != nil {
		return UserLogout{}, mapErr(err)
	}
	tag, err := tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1`, id)
	if err != nil {
		return UserLogout{}, mapErr(err)
	}
	l.Sessions = tag.RowsAffected()
	if _, err := tx.Exec(ctx, `DELETE FROM auth_requests WHERE user_id = $1`, id); err != nil {
		return UserLogout{}, mapErr(err)
	}
	if revokeGrants {
		if l.UserRevocation, err = revokeUserGrants(ctx, tx, id, now); err != nil {
			return UserLogout{}, err
		}
	}
	if dropUpstreamTokens {
		// Signed out upstream: nothing may act there for them any more.
		if _, err := tx.Exec(ctx, `DELETE FROM upstream_tokens WHERE user_id = $1`, id); err != nil {
			return UserLogout{}, mapErr(err)
		}
	}
	return l, nil
}

// revokeUserGrants revokes the user's live grants, their refresh tokens
// and the user's opaque access tokens. It locks the grants in id order
// before their tokens, as DeleteConsent, revokeGrant and
// RotateRefreshToken do, so that none of them deadlock with it; a token
// rotated or created concurrently is either refused or revoked here.
func revokeUserGrants(ctx context.Context, tx pgx.Tx, id string, now time.Time) (UserRevocation, error) {
	var r UserRevocation
	rows, err := tx.Query(ctx, `
		SELECT id FROM grants WHERE user_id = $1 AND revoked_at IS NULL
		ORDER BY id FOR NO KEY UPDATE`, id)
	if err != nil {
		return r, mapErr(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return r, mapErr(err)
	}
	rows, err = tx.Query(ctx, `
		WITH revoked AS (
			UPDATE grants SET revoked_at = $2 WHERE id = ANY($1) RETURNING *
		)
		SELECT `+grantColumns+` FROM revoked ORDER BY created_at, id`, ids, now)
	if err != nil {
		return r, mapErr(err)
	}
	if r.Grants, err = pgx.CollectRows(rows, pgx.RowToStructByName[Grant]); err != nil {
		return r, mapErr(err)
	}
	tag, err := tx.Exec(ctx, `
		UPDATE refresh_tokens SET used_at = $2
		WHERE grant_id = ANY($1) AND used_at IS NULL`, ids, now)
	if err != nil {
		return r, mapErr(err)
	}
	r.RefreshTokens = tag.RowsAffected()
	tag, err = tx.Exec(ctx, `
		UPDATE access_tokens SET revoked_at = $2
		WHERE (grant_id = ANY($1) OR user_id = $3) AND revoked_at IS NULL`, ids, now, id)
	if err != nil {
		return r, mapErr(err)
	}
	r.AccessTokens = tag.RowsAffected()
	return r, nil
}

// UseLogoutToken: see Store. The primary key makes a second insert of the
// same (upstream, jti) do nothing, on whichever replica it comes.
func (p *Postgres) UseLogoutToken(ctx context.Context, upstream, jti string, exp time.Time) error {
	return useLogoutToken(ctx, p.pool, upstream, jti, exp)
}

func useLogoutToken(ctx context.Context, q querier, upstream, jti string, exp time.Time) error {
	tag, err := q.Exec(ctx, `
		INSERT INTO upstream_logout_tokens (upstream, jti, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (upstream, jti) DO NOTHING`, upstream, jti, exp)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: logout token replayed", ErrConflict)
	}
	return nil
}
