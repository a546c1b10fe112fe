package upstreamtokens_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/authd/authd/internal/allowlist"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstream/upstreamtest"
	"github.com/authd/authd/internal/upstreamtokens"
)

// An OpenID Connect upstream: the kept token is refreshed with the
// provider's single-use refresh token (a spent one is refused, and the
// refusal ends the grant), and groups are re-read from UserInfo: a user
// taken out of the allowed group loses their grants at the next check.
func TestOIDCRefreshAndGroups(t *testing.T) {
	t.Parallel()
	var skew time.Duration
	now := func() time.Time { return time.Now().Add(skew) }
	op := upstreamtest.NewOIDC(t)
	op.Now = now
	op.AddUser(upstreamtest.OIDCUser{Subject: "sub-1", Email: "ann@example.com", EmailVerified: true, Groups: []string{"admins"}})
	cfg := op.Config("corp", upstream.TypeOIDC)
	cfg.RedirectURL = "https://authd.example/callback/corp"
	cfg.Scopes = []string{"openid", "email", "groups", "offline_access"}
	cfg.StoreTokens = true
	cfg.Now = now
	conn, err := upstream.New(t.Context(), cfg, op.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ident := signIn(t, op.Client(), conn)
	if ident.Grant == nil || ident.Grant.RefreshToken == "" {
		t.Fatal("the OIDC sign-in returned no refresh token for offline_access")
	}
	st := store.NewMemory()
	u, err := st.UpsertUser(t.Context(), store.User{Provider: "corp", Subject: "sub-1", Groups: []string{"admins"},
		CreatedAt: time.Now(), UpdatedAt: time.Now(), LastLoginAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := upstreamtokens.NewKeyring(secret)
	if err != nil {
		t.Fatal(err)
	}
	policy := allowlist.Policy{Groups: []string{"admins"}}
	b := &upstreamtokens.Broker{
		Store: st, Keys: kr, Now: now, Log: slog.New(slog.DiscardHandler), Allowed: policy.Check,
		Upstreams: map[string]upstreamtokens.Upstream{"corp": {
			ID: "corp", Type: upstream.TypeOIDC, RevokeOnUpstreamRevocation: true,
			Refresher: conn.(upstream.Refresher), Memberships: conn.(upstream.MembershipReader),
		}},
	}
	ctx := t.Context()
	if err := b.Keep(ctx, u.ID, "corp", ident.Grant); err != nil {
		t.Fatal(err)
	}

	skew = 2 * time.Hour // the provider's tokens last an hour
	tok, err := b.Token(ctx, u.ID, "corp")
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if tok.AccessToken == ident.Grant.AccessToken {
		t.Fatal("the expired token was handed out")
	}
	if ok, _ := op.Refreshes(); ok != 1 {
		t.Fatalf("%d refreshes, want 1", ok)
	}
	// The first refresh token is spent: the provider refuses it.
	if _, err := conn.(upstream.Refresher).Refresh(ctx, ident.Grant.RefreshToken); !errors.Is(err, upstream.ErrGrantRevoked) {
		t.Fatalf("reusing the spent refresh token: got %v, want ErrGrantRevoked", err)
	}

	// Still in the group: nothing happens.
	if err := b.RecheckMemberships(ctx, u); err != nil {
		t.Fatalf("RecheckMemberships of a group member: %v", err)
	}
	g := authdGrant(t, st, u)
	op.SetGroups("sub-1", []string{"staff"})
	skew += 20 * time.Minute
	if err := b.RecheckMemberships(ctx, u); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
		t.Fatalf("RecheckMemberships after leaving the group: got %v, want ErrNoLongerAllowed", err)
	}
	if got, _ := st.GetGrant(ctx, g.ID); got.RevokedAt == nil {
		t.Fatal("the grant survived the user's removal from the group")
	}

	// The kept token went with the grants.
	if _, err := b.Token(ctx, u.ID, "corp"); !errors.Is(err, upstreamtokens.ErrNotStored) {
		t.Fatalf("Token after membership_revoked: got %v, want ErrNotStored", err)
	}

	// Back in the group, the user signs in again; then the provider ends
	// the grant: the next refresh is refused, the kept grant dies.
	op.SetGroups("sub-1", []string{"admins"})
	if err := b.Keep(ctx, u.ID, "corp", signIn(t, op.Client(), conn).Grant); err != nil {
		t.Fatal(err)
	}
	op.RevokeGrant("sub-1")
	skew += 2 * time.Hour
	if _, err := b.Token(ctx, u.ID, "corp"); !errors.Is(err, upstreamtokens.ErrGrantDead) {
		t.Fatalf("Token after the provider revoked the grant: got %v, want ErrGrantDead", err)
	}
}

// Google: the Workspace domain (hd) is read again from UserInfo; a user
// whose account moved out of the allowed domain loses their grants.
func TestGoogleDomainRecheck(t *testing.T) {
	t.Parallel()
	var skew time.Duration
	now := func() time.Time { return time.Now().Add(skew) }
	op := upstreamtest.NewOIDC(t)
	op.Now = now
	op.AddUser(upstreamtest.OIDCUser{Subject: "g-1", Email: "ann@example.com", EmailVerified: true, HostedDomain: "example.com"})
	cfg := op.Config("google", upstream.TypeGoogle)
	cfg.RedirectURL = "https://authd.example/callback/google"
	cfg.StoreTokens = true
	cfg.Now = now
	conn, err := upstream.New(t.Context(), cfg, op.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ident := signIn(t, op.Client(), conn)
	if ident.Grant == nil || ident.Grant.RefreshToken == "" || ident.Domain != "example.com" {
		t.Fatalf("Google sign-in with store_tokens: want offline access (a refresh token) and hd, got %v, hd %q", ident.Grant, ident.Domain)
	}
	st := store.NewMemory()
	u, err := st.UpsertUser(t.Context(), store.User{Provider: "google", Subject: "g-1", Email: "ann@example.com", EmailVerified: true,
		Domain: "example.com", CreatedAt: time.Now(), UpdatedAt: time.Now(), LastLoginAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := upstreamtokens.NewKeyring(secret)
	if err != nil {
		t.Fatal(err)
	}
	policy := allowlist.Policy{GoogleDomains: []string{"example.com"}}
	b := &upstreamtokens.Broker{
		Store: st, Keys: kr, Now: now, Log: slog.New(slog.DiscardHandler), Allowed: policy.Check,
		Upstreams: map[string]upstreamtokens.Upstream{"google": {
			ID: "google", Type: upstream.TypeGoogle, RevokeOnUpstreamRevocation: true,
			Refresher: conn.(upstream.Refresher), Memberships: conn.(upstream.MembershipReader),
		}},
	}
	ctx := t.Context()
	if err := b.Keep(ctx, u.ID, "google", ident.Grant); err != nil {
		t.Fatal(err)
	}
	g := authdGrant(t, st, u)
	skew = 20 * time.Minute
	if err := b.RecheckMemberships(ctx, u); err != nil {
		t.Fatalf("still in the domain: %v", err)
	}
	op.SetHostedDomain("g-1", "elsewhere.example")
	skew += 20 * time.Minute
	if err := b.RecheckMemberships(ctx, u); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
		t.Fatalf("after leaving the Workspace domain: got %v, want ErrNoLongerAllowed", err)
	}
	if got, _ := st.GetGrant(ctx, g.ID); got.RevokedAt == nil {
		t.Fatal("the grant survived the move out of the domain")
	}
}
