package upstreamtokens_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/allowlist"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstreamtokens"
)

// A user removed from the org at GitHub loses access at the next check:
// not before membership_check_interval has passed since the last one, then
// once (one replica claims the check), with their grants revoked and an
// audit record saying why.
func TestRemovedFromOrgLosesGrants(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), 8*time.Hour)
			policy := allowlist.Policy{GitHubOrgs: []string{"acme"}}
			b := f.broker(t, nil)
			b.Allowed = policy.Check
			up := b.Upstreams["github"]
			up.MembershipCheckInterval = 15 * time.Minute
			b.Upstreams["github"] = up
			ctx := t.Context()
			if err := b.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
				t.Fatal(err)
			}
			if err := policy.Check("github", f.user); err != nil {
				t.Fatalf("the fixture user is not allowed to begin with: %v", err)
			}
			g := authdGrant(t, f.st, f.user)

			// Still a member: the check passes and revokes nothing.
			f.advance(16 * time.Minute)
			if err := b.RecheckMemberships(ctx, f.user); err != nil {
				t.Fatalf("RecheckMemberships of a member: %v", err)
			}

			f.gh.SetMemberships("octo", nil, nil)
			// Within the interval of the last check nothing is read.
			f.advance(5 * time.Minute)
			if err := b.RecheckMemberships(ctx, f.user); err != nil {
				t.Fatalf("RecheckMemberships within the interval: %v", err)
			}
			if got, _ := f.st.GetGrant(ctx, g.ID); got.RevokedAt != nil {
				t.Fatal("the grant was revoked before the check was due")
			}

			f.advance(11 * time.Minute)
			err := b.RecheckMemberships(ctx, f.user)
			if !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
				t.Fatalf("RecheckMemberships after removal from the org: got %v, want ErrNoLongerAllowed", err)
			}
			got, err := f.st.GetGrant(ctx, g.ID)
			if err != nil || got.RevokedAt == nil {
				t.Fatalf("grant after the user left the org: err %v, RevokedAt %v; want revoked", err, got.RevokedAt)
			}
			logs := f.logBuf.String()
			if !strings.Contains(logs, `"event":"membership_revoked"`) || !strings.Contains(logs, `"login":"octo"`) {
				t.Fatalf("no audit record of the deprovisioning in %s", logs)
			}
			if strings.Contains(logs, f.ident.Grant.AccessToken) {
				t.Fatal("the upstream token reached the log")
			}
		})
	}
}

// Without a kept grant (store_tokens off, or never signed in since) and
// when the upstream cannot be reached, the check is inconclusive: nothing
// is revoked, the memberships of the last sign-in apply.
func TestRecheckInconclusive(t *testing.T) {
	t.Parallel()
	f := newFixture(t, store.NewMemory(), 8*time.Hour)
	policy := allowlist.Policy{GitHubOrgs: []string{"acme"}}
	b := f.broker(t, nil)
	b.Allowed = policy.Check
	ctx := t.Context()
	g := authdGrant(t, f.st, f.user)
	f.gh.SetMemberships("octo", nil, nil)
	if err := b.RecheckMemberships(ctx, f.user); err != nil {
		t.Fatalf("without a kept grant: %v", err)
	}
	if err := b.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
		t.Fatal(err)
	}
	f.gh.FailAPI("/user/orgs", 503)
	f.advance(time.Hour)
	if err := b.RecheckMemberships(ctx, f.user); err != nil {
		t.Fatalf("upstream unavailable: %v", err)
	}
	if got, _ := f.st.GetGrant(ctx, g.ID); got.RevokedAt != nil {
		t.Fatal("an inconclusive check revoked the grant")
	}
	if !strings.Contains(f.logBuf.String(), "membership re-check not possible") {
		t.Fatal("an inconclusive check logged no warning")
	}
}
