package upstreamtokens_test

import (
	"errors"
	"fmt"
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

// When the upstream cannot be reached the check is inconclusive: nothing
// is revoked, the memberships of the last sign-in apply, and the check is
// tried again a minute later, not a whole interval (a kept grant that is
// missing or dead: TestRecheckWithoutKeptGrantFails).
func TestRecheckInconclusive(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), 8*time.Hour)
			policy := allowlist.Policy{GitHubOrgs: []string{"acme"}}
			b := f.broker(t, nil)
			b.Allowed = policy.Check
			ctx := t.Context()
			g := authdGrant(t, f.st, f.user)
			f.gh.SetMemberships("octo", nil, nil)
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
			// GitHub is back; two minutes later (well within the interval) the
			// check is made, and the user, no longer in the org, loses the grant.
			f.gh.FailAPI("/user/orgs", 0)
			f.advance(2 * time.Minute)
			if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
				t.Fatalf("RecheckMemberships once GitHub is back: %v, want ErrNoLongerAllowed", err)
			}
		})
	}
}

// recheckFixture is a broker over f whose allowlist needs the Acme org
// (it depends on memberships), checking every 15 minutes, with the
// fixture user's grant kept, and one authd grant of theirs.
func recheckFixture(t *testing.T, f *fixture, revokeOnUpstream bool) (*upstreamtokens.Broker, store.Grant) {
	t.Helper()
	policy := allowlist.Policy{GitHubOrgs: []string{"acme"}}
	b := f.broker(t, nil)
	b.Allowed = policy.Check
	up := b.Upstreams["github"]
	up.MembershipCheckInterval = 15 * time.Minute
	up.RevokeOnUpstreamRevocation = revokeOnUpstream
	b.Upstreams["github"] = up
	if err := b.Keep(t.Context(), f.user.ID, "github", f.ident.Grant); err != nil {
		t.Fatal(err)
	}
	return b, authdGrant(t, f.st, f.user)
}

// TestRecheckUpstreamRevoked: the user revokes authd at GitHub (OAuth App
// tokens never expire, so no refresh notices): the membership read gets
// 401, which is the upstream grant's end, not an inconclusive check: the
// kept grant is dead, the check fails, and the user's grants end (with
// revoke_on_upstream_revocation, and also without it: a check that can
// never be made again must not pass for good).
func TestRecheckUpstreamRevoked(t *testing.T) {
	t.Parallel()
	for _, revoke := range []bool{true, false} {
		t.Run(fmt.Sprintf("revoke_on_upstream_revocation=%v", revoke), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, store.NewMemory(), 0) // 0: GitHub OAuth App tokens, no expiry
			b, g := recheckFixture(t, f, revoke)
			ctx := t.Context()
			f.gh.RevokeGrant("octo")
			f.advance(16 * time.Minute)
			if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
				t.Fatalf("RecheckMemberships after the user revoked authd at GitHub: %v, want ErrNoLongerAllowed", err)
			}
			if got, _ := f.st.GetGrant(ctx, g.ID); got.RevokedAt == nil {
				t.Fatal("the authd grant outlived the upstream grant")
			}
			if _, err := b.Token(ctx, f.user.ID, "github"); !errors.Is(err, upstreamtokens.ErrGrantDead) && !errors.Is(err, upstreamtokens.ErrNotStored) {
				t.Fatalf("Token after the upstream revoked the grant: %v, want it dead or gone", err)
			}
			if !strings.Contains(f.logBuf.String(), `"event":"upstream_grant_revoked"`) {
				t.Fatal("no upstream_grant_revoked audit record")
			}
		})
	}
}

// TestRecheckWithoutKeptGrantFails: for an allowlist that depends on
// memberships, a due check without a kept grant fails closed: the user
// disconnected the upstream on /apps (row gone), or the kept grant is dead
// and revoke_on_upstream_revocation is off. Otherwise the user could stop
// every future check themselves.
func TestRecheckWithoutKeptGrantFails(t *testing.T) {
	t.Parallel()
	t.Run("disconnected", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, store.NewMemory(), 8*time.Hour)
		b, g := recheckFixture(t, f, true)
		ctx := t.Context()
		if err := b.Disconnect(ctx, f.user.ID, "github"); err != nil {
			t.Fatal(err)
		}
		f.gh.SetMemberships("octo", nil, nil) // what the user wants to hide
		f.advance(16 * time.Minute)
		if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
			t.Fatalf("RecheckMemberships after disconnect: %v, want ErrNoLongerAllowed", err)
		}
		if got, _ := f.st.GetGrant(ctx, g.ID); got.RevokedAt == nil {
			t.Fatal("the grant outlived a check that could not be made")
		}
	})
	t.Run("sealed under a secret no longer configured", func(t *testing.T) {
		t.Parallel()
		// The kept grant can never be opened again: the memberships
		// cannot be re-checked, now or later, so the check fails rather
		// than being retried for ever.
		f := newFixture(t, store.NewMemory(), 8*time.Hour)
		b, g := recheckFixture(t, f, true)
		ctx := t.Context()
		if _, err := f.st.UpdateUpstreamToken(ctx, f.user.ID, "github", func(r store.UpstreamToken) (*store.UpstreamToken, error) {
			r.KeyID = "a-secret-removed-since"
			return &r, nil
		}); err != nil {
			t.Fatal(err)
		}
		f.advance(16 * time.Minute)
		if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
			t.Fatalf("RecheckMemberships with an undecryptable kept grant: %v, want ErrNoLongerAllowed", err)
		}
		if got, _ := f.st.GetGrant(ctx, g.ID); got.RevokedAt == nil {
			t.Fatal("the grant outlived a check that can never be made")
		}
	})
	t.Run("dead, no revocation", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, store.NewMemory(), 10*time.Minute)
		b, g := recheckFixture(t, f, false)
		ctx := t.Context()
		f.gh.RevokeGrant("octo")
		f.advance(11 * time.Minute)
		if _, err := b.Token(ctx, f.user.ID, "github"); !errors.Is(err, upstreamtokens.ErrGrantDead) {
			t.Fatalf("Token after the refresh was refused: %v, want ErrGrantDead", err)
		}
		if got, _ := f.st.GetGrant(ctx, g.ID); got.RevokedAt != nil {
			t.Fatal("revoke_on_upstream_revocation: false, yet the refusal revoked the grant")
		}
		f.advance(16 * time.Minute)
		if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
			t.Fatalf("RecheckMemberships with a dead kept grant: %v, want ErrNoLongerAllowed", err)
		}
		if got, _ := f.st.GetGrant(ctx, g.ID); got.RevokedAt == nil {
			t.Fatal("the grant outlived a check that could not be made")
		}
	})
	t.Run("allowlist without memberships", func(t *testing.T) {
		t.Parallel()
		// The user is allowed by login: memberships do not matter, and
		// a missing kept grant changes nothing.
		f := newFixture(t, store.NewMemory(), 8*time.Hour)
		b, g := recheckFixture(t, f, true)
		policy := allowlist.Policy{GitHubOrgs: []string{"acme"}, GitHubUsers: []string{"octo"}}
		b.Allowed = policy.Check
		ctx := t.Context()
		if err := b.Disconnect(ctx, f.user.ID, "github"); err != nil {
			t.Fatal(err)
		}
		f.advance(16 * time.Minute)
		if err := b.RecheckMemberships(ctx, f.user); err != nil {
			t.Fatalf("RecheckMemberships for a user allowed by login: %v", err)
		}
		if got, _ := f.st.GetGrant(ctx, g.ID); got.RevokedAt != nil {
			t.Fatal("a user allowed by login lost their grant")
		}
	})
}

// TestMembershipRevokedDeletesKeptToken: membership_revoked ends the
// user's grants and deletes the kept upstream token with them.
func TestMembershipRevokedDeletesKeptToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, store.NewMemory(), 8*time.Hour)
	b, _ := recheckFixture(t, f, true)
	ctx := t.Context()
	f.gh.SetMemberships("octo", nil, nil)
	f.advance(16 * time.Minute)
	if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
		t.Fatalf("RecheckMemberships after removal from the org: %v", err)
	}
	if _, err := f.st.GetUpstreamToken(ctx, f.user.ID, "github"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("kept token after membership_revoked: %v, want it deleted", err)
	}
}

// A due membership check whose refresh is cut off after the upstream
// spent the single-use refresh token is inconclusive; scheduling its retry
// must not wipe the refresh lease and its unsettled mark, or the next
// refresh takes the upstream's refusal for a revocation and ends the
// user's grants at authd (as TestRefusalAfterLostRefreshKeepsGrants, by
// way of the membership check).
func TestRecheckLostRefreshKeepsGrants(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), time.Hour)
			b, g := recheckFixture(t, f, true)
			b.RefreshTimeout = 100 * time.Millisecond
			ctx := t.Context()
			f.advance(2 * time.Hour) // the check is due and the token expired
			f.gh.SetRefreshDelay(400 * time.Millisecond)
			if err := b.RecheckMemberships(ctx, f.user); err != nil {
				t.Fatalf("RecheckMemberships with the refresh cut off: %v, want nil (inconclusive)", err)
			}
			if !strings.Contains(f.logBuf.String(), "membership re-check not possible") {
				t.Fatal("the cut-off refresh did not make the check inconclusive")
			}
			row, err := f.st.GetUpstreamToken(ctx, f.user.ID, "github")
			if err != nil {
				t.Fatal(err)
			}
			if row.RefreshLeaseUntil == nil {
				t.Fatal("scheduling the retry of the check cleared the refresh lease of the lost refresh")
			}
			f.gh.SetRefreshDelay(0)
			time.Sleep(500 * time.Millisecond) // the fake has spent the refresh token
			f.advance(time.Minute)             // past the back-off
			if _, err := b.Token(ctx, f.user.ID, "github"); !errors.Is(err, upstreamtokens.ErrGrantDead) {
				t.Fatalf("Token after the lost refresh: %v, want ErrGrantDead", err)
			}
			if _, refused := f.gh.Refreshes(); refused != 1 {
				t.Fatalf("the upstream refused %d refreshes, want 1", refused)
			}
			got, err := f.st.GetGrant(ctx, g.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.RevokedAt != nil {
				t.Fatal("a refusal after a refresh lost during a membership check revoked the user's grants at authd")
			}
			if !strings.Contains(f.logBuf.String(), "upstream_grant_uncertain") {
				t.Fatalf("no upstream_grant_uncertain audit record; log: %s", f.logBuf.String())
			}
		})
	}
}
