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
// tokens), with an audit record saying why, and the error wraps
// ErrNoLongerAllowed.
//
// It returns nil when no check is due, when u's upstream keeps no tokens,
// and when the check cannot be made (no kept grant, the upstream
// unreachable): then the memberships of the last sign-in keep applying,
// as without store_tokens, and a warning is logged.
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
	if err != nil || !due {
		return err
	}
	inconclusive := func(err error) error {
		b.log().WarnContext(ctx, "membership re-check not possible; the memberships of the last sign-in apply", "upstream", up.ID, "user_id", u.ID, "err", err)
		return nil
	}
	tok, err := b.Token(ctx, u.ID, up.ID)
	if err != nil {
		return inconclusive(err)
	}
	m, err := up.Memberships.Memberships(ctx, tok.AccessToken)
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

// deprovision revokes u's grants because of what the upstream now says.
func (b *Broker) deprovision(ctx context.Context, up Upstream, u store.User, now time.Time, why string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	n, err := b.revokeGrants(ctx, u.ID, now)
	b.log().InfoContext(ctx, "audit", "event", "membership_revoked", "upstream", up.ID, "user_id", u.ID,
		"subject", u.Subject, "login", u.Login, "reason", why, "grants", n)
	if err != nil {
		return fmt.Errorf("%w (%s); revoking their grants: %w", ErrNoLongerAllowed, why, err)
	}
	return fmt.Errorf("%w: %s", ErrNoLongerAllowed, why)
}
