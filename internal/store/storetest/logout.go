package storetest

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/store"
)

// testLogoutUser: an upstream's back-channel logout ends the user's
// sessions and signed-in pending requests, not another user's; with
// revokeGrants it also revokes the grants and tokens DisableUser would and
// deletes the kept upstream tokens, and the user stays enabled either way.
func testLogoutUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, stranger := user(t, s), user(t, s)
	c := client(t, s)
	now := t0.Add(time.Hour)

	s1, s2, sOther := newSession(u), newSession(u), newSession(stranger)
	for _, x := range []store.Session{s1, s2, sOther} {
		must(t, s.CreateSession(ctx, x), "CreateSession")
	}
	signedIn, fresh := newAuthRequest(c), newAuthRequest(c)
	signedIn.UserID, signedIn.AuthTime = u.ID, ptr(t0)
	for _, r := range []store.AuthRequest{signedIn, fresh} {
		must(t, s.CreateAuthRequest(ctx, r), "CreateAuthRequest")
	}
	g, rt := grant(t, s, c, u)
	at := createAccessToken(t, s, newAccessToken(g))
	putUpstreamToken(t, s, newUpstreamToken(u, "sso"))

	l, err := s.LogoutUser(ctx, u.ID, now, false)
	must(t, err, "LogoutUser")
	if l.Sessions != 2 || len(l.Grants) != 0 || l.RefreshTokens != 0 || l.AccessTokens != 0 {
		t.Fatalf("LogoutUser without grants reports %+v, want 2 sessions only", l)
	}
	for _, x := range []store.Session{s1, s2} {
		_, err := s.GetSession(ctx, x.IDDigest, t0)
		wantErr(t, err, store.ErrNotFound, "GetSession after LogoutUser")
	}
	_, err = s.GetSession(ctx, sOther.IDDigest, t0)
	must(t, err, "GetSession of another user")
	_, err = s.GetAuthRequest(ctx, signedIn.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequest of a signed-in request after LogoutUser")
	_, err = s.GetAuthRequest(ctx, fresh.IDDigest, t0)
	must(t, err, "GetAuthRequest of a request nobody signed in to")
	gotG, err := s.GetGrant(ctx, g.ID)
	must(t, err, "GetGrant")
	if gotG.RevokedAt != nil {
		t.Fatal("LogoutUser without revokeGrants revoked the grant")
	}
	_, err = s.GetUpstreamToken(ctx, u.ID, "sso")
	must(t, err, "GetUpstreamToken after LogoutUser without grants")

	l, err = s.LogoutUser(ctx, u.ID, now, true)
	must(t, err, "LogoutUser with grants")
	if l.Sessions != 0 || len(l.Grants) != 1 || l.Grants[0].ID != g.ID || l.RefreshTokens != 1 || l.AccessTokens != 1 {
		t.Fatalf("LogoutUser with grants reports %+v, want the grant, 1 refresh and 1 access token", l)
	}
	gotRT, err := s.GetRefreshToken(ctx, rt.Digest)
	must(t, err, "GetRefreshToken")
	timeEqual(t, "UsedAt of the logged-out user's refresh token", gotRT.UsedAt, now)
	gotAT, err := s.GetAccessToken(ctx, at.Digest)
	must(t, err, "GetAccessToken")
	timeEqual(t, "RevokedAt of the logged-out user's access token", gotAT.RevokedAt, now)
	_, err = s.GetUpstreamToken(ctx, u.ID, "sso")
	wantErr(t, err, store.ErrNotFound, "GetUpstreamToken after LogoutUser with grants")
	gotU, err := s.GetUser(ctx, u.ID)
	must(t, err, "GetUser")
	if gotU.Disabled {
		t.Fatal("LogoutUser disabled the user")
	}
	_, err = s.LogoutUser(ctx, uuid.NewString(), now, true)
	wantErr(t, err, store.ErrNotFound, "LogoutUser of an unknown user")
}

// testUseLogoutToken: a jti is accepted once per upstream; the same jti
// from another upstream is another token.
func testUseLogoutToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	jti := uuid.NewString()
	exp := t0.Add(2 * time.Minute)
	must(t, s.UseLogoutToken(ctx, "sso", jti, exp), "UseLogoutToken")
	wantErr(t, s.UseLogoutToken(ctx, "sso", jti, exp), store.ErrConflict, "UseLogoutToken replayed")
	wantErr(t, s.UseLogoutToken(ctx, "sso", jti, exp.Add(time.Hour)), store.ErrConflict, "UseLogoutToken replayed with another exp")
	must(t, s.UseLogoutToken(ctx, "other-sso", jti, exp), "UseLogoutToken of another upstream")
}

// testAuthRequestWithoutClient: the sign-in offered on /apps has no
// client; it is stored, found by its upstream state, updated and consumed
// like any other, with ClientID "".
func testAuthRequestWithoutClient(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	r := store.AuthRequest{IDDigest: digest(), UpstreamStateDigest: digest(), Upstream: "github", CreatedAt: t0, ExpiresAt: t0.Add(requestLife)}
	must(t, s.CreateAuthRequest(ctx, r), "CreateAuthRequest without client")
	got, err := s.GetAuthRequestByUpstreamState(ctx, r.UpstreamStateDigest, t0)
	must(t, err, "GetAuthRequestByUpstreamState")
	if got.ClientID != "" || got.IDDigest != r.IDDigest {
		t.Fatalf("read back %+v", got)
	}
	got.UserID, got.AuthTime = u.ID, ptr(t0)
	must(t, s.UpdateAuthRequest(ctx, got), "UpdateAuthRequest")
	got, err = s.ConsumeAuthRequest(ctx, r.IDDigest, t0)
	must(t, err, "ConsumeAuthRequest")
	if got.ClientID != "" || got.UserID != u.ID {
		t.Fatalf("consumed %+v", got)
	}
}
