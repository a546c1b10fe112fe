package store

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

const consentColumns = `user_id, client_id, scopes, resources, approvals, created_at, updated_at`

// consentSelect reads consentColumns, with no approvals as NULL (a nil map).
const consentSelect = `user_id, client_id, scopes, resources, nullif(approvals, '{}') AS approvals, created_at, updated_at`

// Covers reports whether the consent covers a request: only if, for every
// requested resource (or "" when none is requested), every requested scope
// was approved for that very resource.
func (c Consent) Covers(resources, scopes []string) bool {
	for _, r := range approvalKeys(resources) {
		approved, ok := c.Approvals[r]
		if !ok {
			return false
		}
		for _, s := range scopes {
			if !slices.Contains(approved, s) {
				return false
			}
		}
	}
	return true
}

// ApprovalsFor is what approving scopes for resources records in
// Consent.Approvals: the scopes for each resource ("" when none).
func ApprovalsFor(resources, scopes []string) map[string][]string {
	out := map[string][]string{}
	for _, r := range approvalKeys(resources) {
		out[r] = slices.Clone(scopes)
	}
	return normalApprovals(out)
}

// approvalKeys is the Approvals keys a request's resources are looked up by.
func approvalKeys(resources []string) []string {
	if len(resources) == 0 {
		return []string{""}
	}
	return resources
}

// normalApprovals returns a fresh copy of a with each list deduplicated and
// never nil (so both stores hand back the same values), nil if a is empty.
func normalApprovals(a map[string][]string) map[string][]string {
	if len(a) == 0 {
		return nil
	}
	out := make(map[string][]string, len(a))
	for r, scopes := range a {
		out[r] = dedup(append([]string{}, scopes...))
	}
	return out
}

func (p *Postgres) GetConsent(ctx context.Context, userID, clientID string) (Consent, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT `+consentSelect+` FROM consents
		WHERE user_id = $1 AND client_id = $2`, userID, clientID)
	if err != nil {
		return Consent{}, mapErr(err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Consent])
	return c, mapErr(err)
}

// AddConsent merges c's scopes, resources and approvals into the stored
// consent in one statement (so concurrent approvals both count): the stored
// values keep their order, and new ones are appended in the order given.
func (p *Postgres) AddConsent(ctx context.Context, c Consent) error {
	approvals := normalApprovals(c.Approvals)
	if approvals == nil {
		approvals = map[string][]string{}
	}
	_, err := p.pool.Exec(ctx, `
		INSERT INTO consents AS c (`+consentColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (user_id, client_id) DO UPDATE SET
			scopes = `+arrayUnion("c.scopes", "excluded.scopes")+`,
			resources = `+arrayUnion("c.resources", "excluded.resources")+`,
			approvals = `+approvalsUnion("c.approvals", "excluded.approvals")+`,
			updated_at = excluded.updated_at`,
		c.UserID, c.ClientID, dedup(c.Scopes), dedup(c.Resources), approvals, c.CreatedAt, c.UpdatedAt)
	return mapErr(err)
}

// approvalsUnion is SQL for the jsonb objects a and b (resource → array of
// scopes) merged per resource: a's scopes followed by those of b's it lacks.
func approvalsUnion(a, b string) string {
	return `(SELECT coalesce(jsonb_object_agg(key, CASE
			WHEN o.value IS NULL THEN n.value
			WHEN n.value IS NULL THEN o.value
			ELSE o.value || coalesce((
				SELECT jsonb_agg(x ORDER BY i) FROM jsonb_array_elements(n.value) WITH ORDINALITY AS e(x, i)
				WHERE NOT o.value @> jsonb_build_array(x)), '[]')
			END), '{}')
		FROM jsonb_each(` + a + `) AS o FULL JOIN jsonb_each(` + b + `) AS n USING (key))`
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
		SELECT `+consentSelect+` FROM consents
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
func (p *Postgres) ForgetClientConsents(ctx context.Context, clientID string) error {
	_, err := p.pool.Exec(ctx, `DELETE FROM consents WHERE client_id = $1`, clientID)
	return mapErr(err)
}

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
