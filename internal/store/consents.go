package store

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

const consentColumns = `user_id, client_id, scopes, resources, created_at, updated_at`

func (p *Postgres) GetConsent(ctx context.Context, userID, clientID string) (Consent, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT `+consentColumns+` FROM consents
		WHERE user_id = $1 AND client_id = $2`, userID, clientID)
	if err != nil {
		return Consent{}, mapErr(err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Consent])
	return c, mapErr(err)
}

// AddConsent merges c's scopes and resources into the stored consent in one
// statement (so concurrent approvals both count): the stored values keep
// their order, and new ones are appended in the order given.
func (p *Postgres) AddConsent(ctx context.Context, c Consent) error {
	_, err := p.pool.Exec(ctx, `
		INSERT INTO consents AS c (`+consentColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (user_id, client_id) DO UPDATE SET
			scopes = `+arrayUnion("c.scopes", "excluded.scopes")+`,
			resources = `+arrayUnion("c.resources", "excluded.resources")+`,
			updated_at = excluded.updated_at`,
		c.UserID, c.ClientID, dedup(c.Scopes), dedup(c.Resources), c.CreatedAt, c.UpdatedAt)
	return mapErr(err)
}

// dedup returns s without repeats, in first-seen order (nil stays nil).
func dedup(s []string) []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s))
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// arrayUnion is SQL for a followed by the elements of b not in a (as
// oauth.Union), NULL only if both are.
func arrayUnion(a, b string) string {
	return `CASE WHEN ` + b + ` IS NULL THEN ` + a + ` ELSE coalesce(` + a + `, '{}') || ARRAY(
		SELECT x FROM unnest(` + b + `) WITH ORDINALITY AS n(x, i)
		WHERE x <> ALL (coalesce(` + a + `, '{}'))
		GROUP BY x ORDER BY min(i)) END`
}

// ListConsents returns the user's consents, oldest first.
func (p *Postgres) ListConsents(ctx context.Context, userID string) ([]Consent, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT `+consentColumns+` FROM consents
		WHERE user_id = $1
		ORDER BY created_at, client_id`, userID)
	if err != nil {
		return nil, mapErr(err)
	}
	cs, err := pgx.CollectRows(rows, pgx.RowToStructByName[Consent])
	return cs, mapErr(err)
}

// DeleteConsent forgets what the user approved for the client and revokes
// the user's grants to it (and their tokens), in one transaction. Nothing to
// delete is not an error.
func (p *Postgres) DeleteConsent(ctx context.Context, userID, clientID string, now time.Time) error {
	return p.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM consents WHERE user_id = $1 AND client_id = $2`, userID, clientID); err != nil {
			return mapErr(err)
		}
		rows, err := tx.Query(ctx, `
			SELECT id FROM grants WHERE user_id = $1 AND client_id = $2
			ORDER BY id FOR NO KEY UPDATE`, userID, clientID)
		if err != nil {
			return mapErr(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return mapErr(err)
		}
		for _, id := range ids {
			if err := revokeGrant(ctx, tx, id, now); err != nil {
				return err
			}
		}
		return nil
	})
}
