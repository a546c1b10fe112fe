package upstreamtokens

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream"
)

// ErrNoLongerAllowed: the memberships read again from the upstream no
// longer pass the allowlist; the user's grants were revoked.
var ErrNoLongerAllowed = errors.New("upstreamtokens: the user no longer matches the allowlist at the upstream")

// RecheckMemberships re-reads, with the kept upstream token, what the
// allowlist depends on (GitHub orgs and teams, OIDC groups via UserInfo,
// Google's hd) when the last check of u at their upstream is at least
// membership_check_interval old; replicas share the time of the last
// check (store.ClaimMembershipCheck), so that one of them does it. A user
// who no longer matches loses every grant at authd at once (with their
// tokens and the kept upstream token), with an audit record saying why,
// and the error wraps ErrNoLongerAllowed.
//
// When u passes the allowlist only through memberships, the check fails
// closed whenever it can never be made again: no kept grant (the user
// disconnected the upstream on /apps, or signed in before store_tokens),
// a dead one (the upstream refused its refresh), or a 401 on the read
// (the user revoked authd at the upstream; that marks the kept grant dead
// as a refused refresh does). Otherwise the user could stop the checks
// themselves.
//
// It returns nil when no check is due and when the check cannot be made
// for now (the upstream unreachable): then the memberships of the last
// sign-in keep applying and a warning is logged; the check is tried again
// after inconclusiveRetry rather than a whole interval. Other errors are
// the database's (the caller answers 503 and keeps the grant).
func (b *Broker) RecheckMemberships(ctx context.Context, u store.User) error {
	if b == nil {
		return nil
	}
	up, ok := b.Upstreams[u.Provider]
	if !ok || up.Memberships == nil || b.Allowed == nil {
		return nil
	}
	now := b.now()
	interval := up.MembershipCheckInterval
	if interval <= 0 {
		interval = upstream.DefaultMembershipCheckInterval
	}
	due, err := b.Store.ClaimMembershipCheck(ctx, u.ID, up.ID, now, interval)
	if err != nil {
		return err
	}
	if !due {
		// Not due, or no live kept grant to claim the check on: only
		// the latter matters, and only to a user whom memberships let in.
		if !b.needsMemberships(up, u) {
			return nil
		}
		row, err := b.Store.GetUpstreamToken(ctx, u.ID, up.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return b.deprovision(ctx, up, u, now, fmt.Sprintf("no %s grant is kept to re-check the memberships the allowlist needs", up.ID))
		case err != nil:
			return err
		case row.DeadAt != nil:
			return b.deprovision(ctx, up, u, now, fmt.Sprintf("the kept %s grant is dead: the memberships the allowlist needs cannot be re-checked", up.ID))
		}
		return nil
	}
	inconclusive := func(err error) error {
		b.log().WarnContext(ctx, "membership re-check not possible; the memberships of the last sign-in apply", "upstream", up.ID, "user_id", u.ID, "err", err)
		b.retrySoon(ctx, up, u.ID, now, interval)
		return nil
	}
	tok, err := b.Token(ctx, u.ID, up.ID)
	switch {
	case errors.Is(err, ErrNotStored), errors.Is(err, ErrGrantDead), errors.Is(err, ErrDecrypt):
		// A grant sealed under a secret no longer configured can never
		// be read again: as gone, not as a check to retry for ever.
		if b.needsMemberships(up, u) {
			return b.deprovision(ctx, up, u, now, fmt.Sprintf("the kept %s grant is gone or dead: the memberships the allowlist needs cannot be re-checked", up.ID))
		}
		return nil
	case errors.Is(err, errRevokeFailed):
		// The upstream answered (it refused the kept grant), but ending
		// the user's access failed: not inconclusive. As a failed
		// deprovisioning: refused for now, and checked again at once.
		b.checkAgain(ctx, up, u.ID, now)
		return err
	case err != nil:
		return inconclusive(err)
	}
	m, err := up.Memberships.Memberships(ctx, tok.AccessToken)
	if errors.Is(err, upstream.ErrTokenRejected) {
		// The user revoked authd at the upstream: as a refused refresh.
		if rerr := b.markDead(ctx, up, u.ID, tok.AccessToken, now, err); rerr != nil && !b.needsMemberships(up, u) {
			// Not marked dead, nothing revoked: refused for now, and
			// checked again at once.
			b.checkAgain(ctx, up, u.ID, now)
			return rerr
		}
		if b.needsMemberships(up, u) {
			return b.deprovision(ctx, up, u, now, fmt.Sprintf("%s rejected the kept token: the memberships the allowlist needs cannot be re-checked", up.ID))
		}
		return nil
	}
	if err != nil {
		return inconclusive(err)
	}
	if m.Subject != u.Subject {
		return b.deprovision(ctx, up, u, now, fmt.Sprintf("the kept %s token belongs to another account", up.ID))
	}
	current := u
	switch up.Type {
	case upstream.TypeGitHub, upstream.TypeOIDC:
		current.Groups = m.Groups
	case upstream.TypeGoogle:
		current.Domain = m.Domain
	}
	if err := b.Allowed(up.Type, current); err != nil {
		return b.deprovision(ctx, up, u, now, err.Error())
	}
	if !slices.Equal(current.Groups, u.Groups) || current.Domain != u.Domain {
		b.log().InfoContext(ctx, "memberships changed at the upstream; still allowed", "upstream", up.ID, "user_id", u.ID)
	}
	return nil
}

// inconclusiveRetry is how soon a check that could not be made (the
// upstream unreachable) is tried again: not a whole interval later.
const inconclusiveRetry = time.Minute

// needsMemberships reports whether u passes the allowlist only through
// what a membership check re-reads (orgs, teams, groups, hd): without
// them u would be refused.
func (b *Broker) needsMemberships(up Upstream, u store.User) bool {
	bare := u
	bare.Groups, bare.Domain = nil, ""
	return b.Allowed(up.Type, bare) != nil
}

// retrySoon moves the time of the last check back so that the next one
// is due inconclusiveRetry from now. Failing only delays the retry.
func (b *Broker) retrySoon(ctx context.Context, up Upstream, userID string, now time.Time, interval time.Duration) {
	if interval <= inconclusiveRetry {
		return
	}
	at := now.Add(inconclusiveRetry - interval)
	// Only the time of the check: a refresh that failed during the check
	// left its lease and unsettled mark, which the next refresh needs.
	_, err := b.Store.DeferMembershipCheck(ctx, userID, up.ID, now, at)
	if err != nil {
		b.log().WarnContext(ctx, "membership re-check: cannot schedule the retry", "upstream", up.ID, "user_id", userID, "err", err)
	}
}

// markDead marks the kept grant dead after the upstream rejected its
// access token `rejected`, as a refused refresh does, and follows
// revoke_on_upstream_revocation. The user's access at authd ends first,
// and only then is the grant marked dead: a revocation that fails leaves
// the grant live (a dead one is never checked again) and returns its
// error, so that the next check reads the 401 again and retries. The mark
// applies only to the rejected token: a sign-in that replaced it
// meanwhile keeps its own.
func (b *Broker) markDead(ctx context.Context, up Upstream, userID, rejected string, now time.Time, cause error) error {
	b.log().InfoContext(ctx, "audit", "event", "upstream_grant_revoked", "upstream", up.ID, "user_id", userID, "reason", cause.Error())
	if up.RevokeOnUpstreamRevocation {
		if err := b.revokeAccess(ctx, up, userID, now); err != nil {
			return err
		}
	}
	ctx, cancel := detached(ctx, writeTimeout)
	defer cancel()
	_, err := b.Store.UpdateUpstreamToken(ctx, userID, up.ID, func(cur store.UpstreamToken) (*store.UpstreamToken, error) {
		if cur.DeadAt != nil {
			return nil, nil
		}
		if s, err := b.Keys.open(cur.KeyID, userID, up.ID, cur.Sealed); err == nil && s.AccessToken != rejected {
			return nil, nil // replaced by a sign-in since
		}
		dead := cur
		dead.DeadAt, dead.UpdatedAt = &now, now
		return &dead, nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		b.log().ErrorContext(ctx, "marking a rejected upstream grant dead", "upstream", up.ID, "user_id", userID, "err", err)
	}
	return nil
}

// deprovision revokes u's grants because of what the upstream now says,
// and ends their sign-in at authd: a user the allowlist no longer lets in
// must sign in at the upstream again (where it is applied) instead of
// getting a new grant through authd's session. The grants with their
// tokens, the sessions and the kept upstream token go in one transaction
// (store.LogoutUser): all of them or, if it fails, none, and then the next
// use of a grant checks again rather than an interval later.
func (b *Broker) deprovision(ctx context.Context, up Upstream, u store.User, now time.Time, why string) error {
	// Its own database budget: the request's may be spent already, and a
	// revocation cut short would leave the user signed in.
	ctx, cancel := detached(ctx, b.revokeTimeout())
	defer cancel()
	l, err := b.Store.LogoutUser(ctx, u.ID, now, true)
	if errors.Is(err, store.ErrNotFound) { // the user was deleted: nothing left
		err = nil
	}
	if err != nil {
		b.log().ErrorContext(ctx, "revoking the grants of a user the allowlist no longer lets in; the next use checks again",
			"upstream", up.ID, "user_id", u.ID, "err", err)
		b.checkAgain(ctx, up, u.ID, now)
		return fmt.Errorf("%w (%s); revoking their grants: %w", ErrNoLongerAllowed, why, err)
	}
	b.log().InfoContext(ctx, "audit", "event", "membership_revoked", "upstream", up.ID, "user_id", u.ID,
		"subject", u.Subject, "login", u.Login, "reason", why, "grants", len(l.Grants), "sessions", l.Sessions)
	return fmt.Errorf("%w: %s", ErrNoLongerAllowed, why)
}

// checkAgain makes the next membership check of userID due at once, after
// a revocation that failed: the check claimed at now would otherwise let
// the kept grant pass for a whole interval. It gets a budget of its own
// (the revocation may have failed by spending its own, waiting for a
// lock) and asks an overloaded store again. Failing (the database is
// likely down too) only leaves the claim as it is.
func (b *Broker) checkAgain(ctx context.Context, up Upstream, userID string, now time.Time) {
	interval := up.MembershipCheckInterval
	if interval <= 0 {
		interval = upstream.DefaultMembershipCheckInterval
	}
	ctx, cancel := detached(ctx, writeTimeout)
	defer cancel()
	_, err := retryOverloaded(ctx, func() (bool, error) {
		return b.Store.DeferMembershipCheck(ctx, userID, up.ID, now, now.Add(-interval))
	})
	if err != nil {
		b.log().WarnContext(ctx, "membership re-check: cannot schedule the retry of a failed revocation", "upstream", up.ID, "user_id", userID, "err", err)
	}
}
