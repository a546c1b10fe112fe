package storetest

import (
	"errors"
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

// testLogoutUpstreamUser: a logout token is acted on once: the user of
// (upstream, subject) is logged out as LogoutUser does, with or without
// their grants; the same jti again is ErrConflict and ends nothing (not
// the session the user signed in with since); a token for a user nobody
// knows (or one of another upstream) records its jti and ends nothing.
func testLogoutUpstreamUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, stranger := user(t, s), user(t, s)
	c := client(t, s)
	now := t0.Add(time.Hour)
	sess, sOther := newSession(u), newSession(stranger)
	for _, x := range []store.Session{sess, sOther} {
		must(t, s.CreateSession(ctx, x), "CreateSession")
	}
	signedIn := newAuthRequest(c)
	signedIn.UserID, signedIn.AuthTime = u.ID, ptr(t0)
	must(t, s.CreateAuthRequest(ctx, signedIn), "CreateAuthRequest")
	g, rt := grant(t, s, c, u)
	at := createAccessToken(t, s, newAccessToken(g))
	putUpstreamToken(t, s, newUpstreamToken(u, u.Provider))

	// Sessions only.
	first := store.UpstreamLogout{Upstream: u.Provider, Subject: u.Subject, JTI: uuid.NewString(), Expiry: t0.Add(2 * time.Minute)}
	l, err := s.LogoutUpstreamUser(ctx, first, now)
	must(t, err, "LogoutUpstreamUser")
	if l.UserID != u.ID || l.Sessions != 1 || len(l.Grants) != 0 || l.RefreshTokens != 0 || l.AccessTokens != 0 {
		t.Fatalf("LogoutUpstreamUser without grants reports %+v, want user %s, 1 session only", l, u.ID)
	}
	_, err = s.GetSession(ctx, sess.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetSession after LogoutUpstreamUser")
	_, err = s.GetAuthRequest(ctx, signedIn.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequest of a signed-in request after LogoutUpstreamUser")
	_, err = s.GetSession(ctx, sOther.IDDigest, t0)
	must(t, err, "GetSession of another user")
	if got, err := s.GetGrant(ctx, g.ID); err != nil || got.RevokedAt != nil {
		t.Fatalf("LogoutUpstreamUser without RevokeGrants: grant %+v, err %v; want live", got, err)
	}
	_, err = s.GetUpstreamToken(ctx, u.ID, u.Provider)
	must(t, err, "GetUpstreamToken after LogoutUpstreamUser without grants")

	// A replay, even one asking for more, ends nothing.
	again := newSession(u)
	must(t, s.CreateSession(ctx, again), "CreateSession (signed in again)")
	replay := first
	replay.RevokeGrants = true
	_, err = s.LogoutUpstreamUser(ctx, replay, now)
	wantErr(t, err, store.ErrConflict, "LogoutUpstreamUser replayed")
	_, err = s.GetSession(ctx, again.IDDigest, t0)
	must(t, err, "GetSession after a replayed logout token")
	if got, _ := s.GetGrant(ctx, g.ID); got.RevokedAt != nil {
		t.Fatal("a replayed logout token revoked the grant")
	}
	wantErr(t, s.UseLogoutToken(ctx, first.Upstream, first.JTI, first.Expiry), store.ErrConflict, "UseLogoutToken of a jti LogoutUpstreamUser recorded")

	// With grants.
	withGrants := store.UpstreamLogout{Upstream: u.Provider, Subject: u.Subject, JTI: uuid.NewString(), Expiry: t0.Add(2 * time.Minute), RevokeGrants: true}
	l, err = s.LogoutUpstreamUser(ctx, withGrants, now)
	must(t, err, "LogoutUpstreamUser with grants")
	if l.UserID != u.ID || l.Sessions != 1 || len(l.Grants) != 1 || l.Grants[0].ID != g.ID || l.RefreshTokens != 1 || l.AccessTokens != 1 {
		t.Fatalf("LogoutUpstreamUser with grants reports %+v, want 1 session, the grant, 1 refresh and 1 access token", l)
	}
	gotRT, err := s.GetRefreshToken(ctx, rt.Digest)
	must(t, err, "GetRefreshToken")
	timeEqual(t, "UsedAt of the logged-out user's refresh token", gotRT.UsedAt, now)
	gotAT, err := s.GetAccessToken(ctx, at.Digest)
	must(t, err, "GetAccessToken")
	timeEqual(t, "RevokedAt of the logged-out user's access token", gotAT.RevokedAt, now)
	_, err = s.GetUpstreamToken(ctx, u.ID, u.Provider)
	wantErr(t, err, store.ErrNotFound, "GetUpstreamToken after LogoutUpstreamUser with grants")
	if gotU, err := s.GetUser(ctx, u.ID); err != nil || gotU.Disabled {
		t.Fatalf("LogoutUpstreamUser disabled the user (or lost them: %v)", err)
	}

	// Nobody: the user's subject at another upstream, and an unknown subject.
	for _, nobody := range []store.UpstreamLogout{
		{Upstream: "other-" + u.Provider, Subject: stranger.Subject, JTI: uuid.NewString(), Expiry: t0.Add(2 * time.Minute), RevokeGrants: true},
		{Upstream: u.Provider, Subject: "nobody-" + uuid.NewString(), JTI: uuid.NewString(), Expiry: t0.Add(2 * time.Minute)},
	} {
		l, err = s.LogoutUpstreamUser(ctx, nobody, now)
		must(t, err, "LogoutUpstreamUser of an unknown user")
		if l.UserID != "" || l.Sessions != 0 || len(l.Grants) != 0 {
			t.Fatalf("LogoutUpstreamUser of an unknown user reports %+v, want nothing", l)
		}
		_, err = s.LogoutUpstreamUser(ctx, nobody, now)
		wantErr(t, err, store.ErrConflict, "LogoutUpstreamUser of an unknown user, replayed")
	}
	_, err = s.GetSession(ctx, sOther.IDDigest, t0)
	must(t, err, "GetSession of the user with that subject at another upstream")
}

// testRevokeUserAccess: the user's sessions, signed-in pending requests,
// grants and tokens end in one call, their kept upstream tokens stay, the
// user stays enabled, and another user keeps everything.
func testRevokeUserAccess(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, stranger := user(t, s), user(t, s)
	c := client(t, s)
	now := t0.Add(time.Hour)
	sess, sOther := newSession(u), newSession(stranger)
	for _, x := range []store.Session{sess, sOther} {
		must(t, s.CreateSession(ctx, x), "CreateSession")
	}
	signedIn := newAuthRequest(c)
	signedIn.UserID, signedIn.AuthTime = u.ID, ptr(t0)
	must(t, s.CreateAuthRequest(ctx, signedIn), "CreateAuthRequest")
	g1, rt1 := grant(t, s, c, u)
	g2, _ := grant(t, s, c, u)
	gOther, _ := grant(t, s, c, stranger)
	at := createAccessToken(t, s, newAccessToken(g1))
	putUpstreamToken(t, s, newUpstreamToken(u, u.Provider))

	l, err := s.RevokeUserAccess(ctx, u.ID, now)
	must(t, err, "RevokeUserAccess")
	if l.UserID != u.ID || l.Sessions != 1 || len(l.Grants) != 2 || l.RefreshTokens != 2 || l.AccessTokens != 1 {
		t.Fatalf("RevokeUserAccess reports %+v, want 1 session, 2 grants, 2 refresh and 1 access token", l)
	}
	for _, id := range []string{g1.ID, g2.ID} {
		got, err := s.GetGrant(ctx, id)
		must(t, err, "GetGrant")
		timeEqual(t, "RevokedAt of the user's grant", got.RevokedAt, now)
	}
	gotRT, err := s.GetRefreshToken(ctx, rt1.Digest)
	must(t, err, "GetRefreshToken")
	timeEqual(t, "UsedAt of the user's refresh token", gotRT.UsedAt, now)
	gotAT, err := s.GetAccessToken(ctx, at.Digest)
	must(t, err, "GetAccessToken")
	timeEqual(t, "RevokedAt of the user's access token", gotAT.RevokedAt, now)
	_, err = s.GetSession(ctx, sess.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetSession after RevokeUserAccess")
	_, err = s.GetAuthRequest(ctx, signedIn.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequest of a signed-in request after RevokeUserAccess")
	_, err = s.GetUpstreamToken(ctx, u.ID, u.Provider)
	must(t, err, "GetUpstreamToken after RevokeUserAccess (it stays)")
	if gotU, err := s.GetUser(ctx, u.ID); err != nil || gotU.Disabled {
		t.Fatalf("RevokeUserAccess disabled the user (or lost them: %v)", err)
	}
	_, err = s.GetSession(ctx, sOther.IDDigest, t0)
	must(t, err, "GetSession of another user")
	if got, err := s.GetGrant(ctx, gOther.ID); err != nil || got.RevokedAt != nil {
		t.Fatalf("RevokeUserAccess touched another user's grant: %+v, %v", got, err)
	}
	_, err = s.RevokeUserAccess(ctx, uuid.NewString(), now)
	wantErr(t, err, store.ErrNotFound, "RevokeUserAccess of an unknown user")
}

// testConcurrentLogoutUpstreamUser: one logout token delivered to several
// replicas at once is acted on by exactly one; the others get ErrConflict.
func testConcurrentLogoutUpstreamUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	c := client(t, s)
	grant(t, s, c, u)
	must(t, s.CreateSession(ctx, newSession(u)), "CreateSession")
	l := store.UpstreamLogout{Upstream: u.Provider, Subject: u.Subject, JTI: uuid.NewString(), Expiry: t0.Add(2 * time.Minute), RevokeGrants: true}
	results := make([]store.UserLogout, racers)
	errs := make([]error, racers)
	race(racers, func(i int) {
		results[i], errs[i] = s.LogoutUpstreamUser(ctx, l, t0.Add(time.Hour))
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("LogoutUpstreamUser acted twice on one token (racers %d and %d)", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("racer %d: got %v, want ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no racer acted on the token")
	}
	if r := results[winner]; r.UserID != u.ID || r.Sessions != 1 || len(r.Grants) != 1 {
		t.Fatalf("the winner reports %+v, want the user's session and grant", r)
	}
}

// testFinishUpstreamRefreshRevoked: the upstream refused the refresh
// token of a leased row: with another lease nothing changes; with the
// row's lease the row is marked dead (lease cleared, token fields kept)
// and the user's sessions, signed-in pending requests, grants and tokens
// end, as RevokeUserAccess ends them; another user keeps everything.
func testFinishUpstreamRefreshRevoked(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, stranger := user(t, s), user(t, s)
	c := client(t, s)
	sess, sOther := newSession(u), newSession(stranger)
	for _, x := range []store.Session{sess, sOther} {
		must(t, s.CreateSession(ctx, x), "CreateSession")
	}
	signedIn := newAuthRequest(c)
	signedIn.UserID, signedIn.AuthTime = u.ID, ptr(t0)
	must(t, s.CreateAuthRequest(ctx, signedIn), "CreateAuthRequest")
	g1, rt1 := grant(t, s, c, u)
	gOther, _ := grant(t, s, c, stranger)
	at := createAccessToken(t, s, newAccessToken(g1))
	row := putUpstreamToken(t, s, newUpstreamToken(u, u.Provider)) // expires at t0+8h
	now := t0.Add(9 * time.Hour)
	lease := now.Add(15 * time.Second)
	if _, claimed, err := s.ClaimUpstreamRefresh(ctx, u.ID, u.Provider, now, now.Add(time.Minute), lease); err != nil || !claimed {
		t.Fatalf("ClaimUpstreamRefresh = %v, %v; want claimed", claimed, err)
	}

	ok, l, err := s.FinishUpstreamRefreshRevoked(ctx, u.ID, u.Provider, lease.Add(time.Second), now)
	must(t, err, "FinishUpstreamRefreshRevoked with another lease")
	if ok || l.UserID != "" || len(l.Grants) != 0 {
		t.Fatalf("FinishUpstreamRefreshRevoked with a lease the row does not hold = %v, %+v; want nothing done", ok, l)
	}
	if got, err := s.GetGrant(ctx, g1.ID); err != nil || got.RevokedAt != nil {
		t.Fatalf("FinishUpstreamRefreshRevoked with another lease revoked the grant: %+v, %v", got, err)
	}
	_, err = s.GetSession(ctx, sess.IDDigest, t0)
	must(t, err, "GetSession after FinishUpstreamRefreshRevoked with another lease")
	if got, err := s.GetUpstreamToken(ctx, u.ID, u.Provider); err != nil || got.DeadAt != nil || got.RefreshLeaseUntil == nil {
		t.Fatalf("row after FinishUpstreamRefreshRevoked with another lease: %+v, %v; want live and leased", got, err)
	}

	ok, l, err = s.FinishUpstreamRefreshRevoked(ctx, u.ID, u.Provider, lease, now)
	must(t, err, "FinishUpstreamRefreshRevoked")
	if !ok || l.UserID != u.ID || l.Sessions != 1 || len(l.Grants) != 1 || l.RefreshTokens != 1 || l.AccessTokens != 1 {
		t.Fatalf("FinishUpstreamRefreshRevoked = %v, %+v; want done, 1 session, 1 grant, 1 refresh and 1 access token", ok, l)
	}
	got, err := s.GetUpstreamToken(ctx, u.ID, u.Provider)
	must(t, err, "GetUpstreamToken after FinishUpstreamRefreshRevoked (it stays, dead)")
	timeEqual(t, "DeadAt of the refused row", got.DeadAt, now)
	if got.RefreshLeaseUntil != nil || got.RefreshUnsettled || got.KeyID != row.KeyID || string(got.Sealed) != string(row.Sealed) || !got.UpdatedAt.Equal(now) {
		t.Fatalf("row after FinishUpstreamRefreshRevoked: %+v; want dead, lease cleared, token fields kept", got)
	}
	gotG, err := s.GetGrant(ctx, g1.ID)
	must(t, err, "GetGrant")
	timeEqual(t, "RevokedAt of the user's grant", gotG.RevokedAt, now)
	gotRT, err := s.GetRefreshToken(ctx, rt1.Digest)
	must(t, err, "GetRefreshToken")
	timeEqual(t, "UsedAt of the user's refresh token", gotRT.UsedAt, now)
	gotAT, err := s.GetAccessToken(ctx, at.Digest)
	must(t, err, "GetAccessToken")
	timeEqual(t, "RevokedAt of the user's access token", gotAT.RevokedAt, now)
	_, err = s.GetSession(ctx, sess.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetSession after FinishUpstreamRefreshRevoked")
	_, err = s.GetAuthRequest(ctx, signedIn.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequest of a signed-in request after FinishUpstreamRefreshRevoked")
	if gotU, err := s.GetUser(ctx, u.ID); err != nil || gotU.Disabled {
		t.Fatalf("FinishUpstreamRefreshRevoked disabled the user (or lost them: %v)", err)
	}
	_, err = s.GetSession(ctx, sOther.IDDigest, t0)
	must(t, err, "GetSession of another user")
	if got, err := s.GetGrant(ctx, gOther.ID); err != nil || got.RevokedAt != nil {
		t.Fatalf("FinishUpstreamRefreshRevoked touched another user's grant: %+v, %v", got, err)
	}
	// Done once: the lease is gone.
	if ok, _, err := s.FinishUpstreamRefreshRevoked(ctx, u.ID, u.Provider, lease, now); err != nil || ok {
		t.Fatalf("FinishUpstreamRefreshRevoked again = %v, %v; want false", ok, err)
	}
	if ok, _, err := s.FinishUpstreamRefreshRevoked(ctx, uuid.NewString(), u.Provider, lease, now); err != nil || ok {
		t.Fatalf("FinishUpstreamRefreshRevoked of an unknown user = %v, %v; want false", ok, err)
	}
}
