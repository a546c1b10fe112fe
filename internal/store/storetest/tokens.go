package storetest

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/store"
)

// Grants are readable by id and listed per user (oldest first); refresh
// tokens are created and read by digest, duplicates conflict.
func testGrantsAndRefreshTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u, other := client(t, s), user(t, s), user(t, s)
	g1, rt1 := grant(t, s, c, u, func(g *store.Grant, _ *store.RefreshToken) { g.CreatedAt = t0.Add(time.Hour) })
	g2, _ := grant(t, s, c, u)
	grant(t, s, c, other)

	got, err := s.GetGrant(ctx, g1.ID)
	must(t, err, "GetGrant")
	equal(t, "GetGrant", got, g1)
	_, err = s.GetGrant(ctx, uuid.NewString())
	wantErr(t, err, store.ErrNotFound, "GetGrant of an unknown id")

	list, err := s.ListGrants(ctx, u.ID)
	must(t, err, "ListGrants")
	if len(list) != 2 {
		t.Fatalf("ListGrants: got %d grants, want 2: %s", len(list), show(list))
	}
	equal(t, "ListGrants[0] (oldest)", list[0], g2)
	equal(t, "ListGrants[1]", list[1], g1)

	// A second token in the family, e.g. issued by a token exchange.
	rt := newRefreshToken(g1)
	rt.Parent = rt1.Digest
	must(t, s.CreateRefreshToken(ctx, rt), "CreateRefreshToken")
	gotRT, err := s.GetRefreshToken(ctx, rt.Digest)
	must(t, err, "GetRefreshToken")
	equal(t, "GetRefreshToken", gotRT, rt)
	dup := newRefreshToken(g2)
	dup.Digest = rt.Digest
	wantErr(t, s.CreateRefreshToken(ctx, dup), store.ErrConflict, "CreateRefreshToken with a duplicate digest")
	gotRT, err = s.GetRefreshToken(ctx, rt.Digest)
	must(t, err, "GetRefreshToken")
	equal(t, "refresh token after the conflicting create", gotRT, rt)
	_, err = s.GetRefreshToken(ctx, digest())
	wantErr(t, err, store.ErrNotFound, "GetRefreshToken of an unknown digest")

	// A refresh token is of its grant's client: deleting a client deletes
	// its refresh tokens through its grants (no other link is kept).
	otherClient := client(t, s)
	stray := newRefreshToken(g1)
	stray.ClientID = otherClient.ID
	wantErr(t, s.CreateRefreshToken(ctx, stray), store.ErrNotFound, "CreateRefreshToken of another client than the grant's")
	_, err = s.GetRefreshToken(ctx, stray.Digest)
	wantErr(t, err, store.ErrNotFound, "GetRefreshToken after the refused create")
	code := createCode(t, s, c, u)
	g3 := newGrant(code)
	rt3 := newRefreshToken(g3)
	rt3.ClientID = otherClient.ID
	_, err = s.RedeemAuthCode(ctx, code.Digest, t0, g3, &rt3)
	wantErr(t, err, store.ErrNotFound, "RedeemAuthCode with a refresh token of another client than the grant's")
	_, err = s.GetRefreshToken(ctx, rt3.Digest)
	wantErr(t, err, store.ErrNotFound, "GetRefreshToken after the refused redemption")
	_, err = s.GetGrant(ctx, g3.ID)
	wantErr(t, err, store.ErrNotFound, "GetGrant after the refused redemption")
	if got, err := s.GetAuthCode(ctx, code.Digest, t0); err != nil || got.UsedAt != nil {
		t.Fatalf("the code after the refused redemption: %v, %v; want it unused", show(got), err)
	}
}

// Each rotation uses up the presented token, adds its successor and bumps
// the grant; presenting a used token revokes the whole family.
func testRotateRefreshTokenChainAndReuse(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	g, rt1 := grant(t, s, c, u)

	now1 := t0.Add(time.Hour)
	rt2 := nextRefreshToken(rt1, now1)
	gotG, err := s.RotateRefreshToken(ctx, rt1.Digest, now1, rt2, 0)
	must(t, err, "RotateRefreshToken rt1")
	want := g
	want.LastUsedAt = now1
	equal(t, "grant returned by the first rotation", gotG, want)
	got, err := s.GetRefreshToken(ctx, rt1.Digest)
	must(t, err, "GetRefreshToken rt1")
	wantRT1 := rt1
	wantRT1.UsedAt = ptr(now1)
	equal(t, "rt1 after rotation", got, wantRT1)
	got, err = s.GetRefreshToken(ctx, rt2.Digest)
	must(t, err, "GetRefreshToken rt2")
	equal(t, "rt2 as inserted by the rotation", got, rt2)

	now2 := t0.Add(2 * time.Hour)
	rt3 := nextRefreshToken(rt2, now2)
	gotG, err = s.RotateRefreshToken(ctx, rt2.Digest, now2, rt3, 0)
	must(t, err, "RotateRefreshToken rt2")
	want.LastUsedAt = now2
	equal(t, "grant returned by the second rotation", gotG, want)
	gotG, err = s.GetGrant(ctx, g.ID)
	must(t, err, "GetGrant")
	equal(t, "GetGrant after two rotations", gotG, want)

	// An attacker replays rt1: the family dies, whoever holds rt3.
	now3 := t0.Add(3 * time.Hour)
	rtX := nextRefreshToken(rt1, now3)
	gotG, err = s.RotateRefreshToken(ctx, rt1.Digest, now3, rtX, 0)
	wantErr(t, err, store.ErrAlreadyUsed, "RotateRefreshToken of a used token")
	if gotG.ID != g.ID {
		t.Fatalf("grant returned with ErrAlreadyUsed: %s, want grant %s", show(gotG), g.ID)
	}
	timeEqual(t, "RevokedAt of the grant returned with ErrAlreadyUsed", gotG.RevokedAt, now3)
	gotG, err = s.GetGrant(ctx, g.ID)
	must(t, err, "GetGrant")
	timeEqual(t, "RevokedAt of the grant after reuse", gotG.RevokedAt, now3)
	_, err = s.GetRefreshToken(ctx, rtX.Digest)
	wantErr(t, err, store.ErrNotFound, "successor of a reused token")
	got, err = s.GetRefreshToken(ctx, rt3.Digest)
	must(t, err, "GetRefreshToken rt3")
	timeEqual(t, "UsedAt of the live token after reuse detection", got.UsedAt, now3)
	_, err = s.RotateRefreshToken(ctx, rt3.Digest, now3, nextRefreshToken(rt3, now3), 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken of the last token after reuse detection")
	// Replaying again finds a revoked grant: ErrNotFound, revocation time kept.
	_, err = s.RotateRefreshToken(ctx, rt1.Digest, now3.Add(time.Hour), nextRefreshToken(rt1, now3), 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken of a used token of a revoked grant")
	gotG, err = s.GetGrant(ctx, g.ID)
	must(t, err, "GetGrant")
	timeEqual(t, "RevokedAt after a second replay", gotG.RevokedAt, now3)
}

// Every refusal of RotateRefreshToken leaves the presented token unused and
// writes nothing.
func testRotateRefreshTokenRejections(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)

	unused := func(rt store.RefreshToken, what string) {
		t.Helper()
		got, err := s.GetRefreshToken(ctx, rt.Digest)
		must(t, err, what)
		if got.UsedAt != nil {
			t.Fatalf("%s: the token was used up by a refused rotation", what)
		}
	}
	notCreated := func(rt store.RefreshToken, what string) {
		t.Helper()
		_, err := s.GetRefreshToken(ctx, rt.Digest)
		wantErr(t, err, store.ErrNotFound, what)
	}

	_, err := s.RotateRefreshToken(ctx, digest(), t0, newRefreshToken(store.Grant{ID: uuid.NewString(), ClientID: c.ID}), 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken of an unknown token")

	// The token's own idle expiry.
	g, rt := grant(t, s, c, u, func(_ *store.Grant, rt *store.RefreshToken) { rt.ExpiresAt = t0.Add(day) })
	next := nextRefreshToken(rt, rt.ExpiresAt)
	_, err = s.RotateRefreshToken(ctx, rt.Digest, rt.ExpiresAt, next, 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken at the token's ExpiresAt")
	unused(rt, "expired token")
	notCreated(next, "successor of an expired token")
	if _, err := s.RotateRefreshToken(ctx, rt.Digest, rt.ExpiresAt.Add(-us), nextRefreshToken(rt, t0), 0); err != nil {
		t.Fatalf("RotateRefreshToken 1µs before the token's expiry: %v", err)
	}
	if got, _ := s.GetGrant(ctx, g.ID); got.RevokedAt != nil {
		t.Fatal("a refused rotation of an expired token revoked the grant")
	}

	// The grant's absolute expiry.
	g, rt = grant(t, s, c, u, func(g *store.Grant, _ *store.RefreshToken) { g.ExpiresAt = t0.Add(2 * day) })
	next = nextRefreshToken(rt, g.ExpiresAt)
	_, err = s.RotateRefreshToken(ctx, rt.Digest, g.ExpiresAt, next, 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken at the grant's ExpiresAt")
	unused(rt, "token of an expired grant")
	notCreated(next, "successor of a token of an expired grant")

	// A revoked grant.
	g, rt = grant(t, s, c, u)
	must(t, s.RevokeGrant(ctx, g.ID, t0.Add(time.Minute)), "RevokeGrant")
	next = nextRefreshToken(rt, t0.Add(time.Hour))
	_, err = s.RotateRefreshToken(ctx, rt.Digest, t0.Add(time.Hour), next, 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken of a revoked grant")
	notCreated(next, "successor of a token of a revoked grant")

	// A successor that belongs to another grant or client.
	g, rt = grant(t, s, c, u)
	other, _ := grant(t, s, c, u)
	now := t0.Add(time.Hour)
	foreign := nextRefreshToken(rt, now)
	foreign.GrantID = other.ID
	if _, err := s.RotateRefreshToken(ctx, rt.Digest, now, foreign, 0); err == nil {
		t.Fatal("RotateRefreshToken accepted a successor for another grant")
	}
	unused(rt, "token after a successor for another grant")
	notCreated(foreign, "successor for another grant")
	foreign = nextRefreshToken(rt, now)
	foreign.ClientID = client(t, s).ID
	if _, err := s.RotateRefreshToken(ctx, rt.Digest, now, foreign, 0); err == nil {
		t.Fatal("RotateRefreshToken accepted a successor for another client")
	}
	unused(rt, "token after a successor for another client")
	notCreated(foreign, "successor for another client")

	// A successor whose digest exists already: nothing written.
	_, existing := grant(t, s, c, u)
	dup := nextRefreshToken(rt, now)
	dup.Digest = existing.Digest
	_, err = s.RotateRefreshToken(ctx, rt.Digest, now, dup, 0)
	wantErr(t, err, store.ErrConflict, "RotateRefreshToken with a duplicate successor")
	unused(rt, "token after a duplicate successor")
	gotG, err := s.GetGrant(ctx, g.ID)
	must(t, err, "GetGrant")
	equal(t, "grant after a refused rotation (LastUsedAt unchanged)", gotG, g)
	gotRT, err := s.GetRefreshToken(ctx, existing.Digest)
	must(t, err, "GetRefreshToken")
	equal(t, "the existing token after the collision", gotRT, existing)

	// And the token still rotates normally afterwards.
	if _, err := s.RotateRefreshToken(ctx, rt.Digest, now, nextRefreshToken(rt, now), 0); err != nil {
		t.Fatalf("RotateRefreshToken after the refusals: %v", err)
	}
}

// RevokeGrant revokes the grant and, with it, every refresh and opaque
// access token; earlier timestamps survive; twice is fine.
func testRevokeGrant(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	g, rt1 := grant(t, s, c, u)
	used := t0.Add(time.Minute)
	rt2 := nextRefreshToken(rt1, used)
	_, err := s.RotateRefreshToken(ctx, rt1.Digest, used, rt2, 0)
	must(t, err, "RotateRefreshToken")
	at1 := createAccessToken(t, s, newAccessToken(g))
	at2 := createAccessToken(t, s, newAccessToken(g))
	early := t0.Add(2 * time.Minute)
	must(t, s.RevokeAccessToken(ctx, at2.Digest, early), "RevokeAccessToken")
	bystander, bystanderRT := grant(t, s, c, u)
	bystanderAT := createAccessToken(t, s, newAccessToken(bystander))

	now := t0.Add(time.Hour)
	must(t, s.RevokeGrant(ctx, g.ID, now), "RevokeGrant")
	gotG, err := s.GetGrant(ctx, g.ID)
	must(t, err, "GetGrant")
	want := g
	want.LastUsedAt = used
	want.RevokedAt = ptr(now)
	equal(t, "grant after RevokeGrant", gotG, want)

	gotRT, err := s.GetRefreshToken(ctx, rt1.Digest)
	must(t, err, "GetRefreshToken")
	timeEqual(t, "UsedAt of an already used token (kept)", gotRT.UsedAt, used)
	gotRT, err = s.GetRefreshToken(ctx, rt2.Digest)
	must(t, err, "GetRefreshToken")
	timeEqual(t, "UsedAt of the live token after RevokeGrant", gotRT.UsedAt, now)
	_, err = s.RotateRefreshToken(ctx, rt2.Digest, now, nextRefreshToken(rt2, now), 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken after RevokeGrant")

	gotAT, err := s.GetAccessToken(ctx, at1.Digest)
	must(t, err, "GetAccessToken")
	timeEqual(t, "RevokedAt of an access token after RevokeGrant", gotAT.RevokedAt, now)
	gotAT, err = s.GetAccessToken(ctx, at2.Digest)
	must(t, err, "GetAccessToken")
	timeEqual(t, "RevokedAt of an already revoked access token (kept)", gotAT.RevokedAt, early)

	must(t, s.RevokeGrant(ctx, g.ID, now.Add(time.Hour)), "RevokeGrant twice")
	gotG, err = s.GetGrant(ctx, g.ID)
	must(t, err, "GetGrant")
	equal(t, "grant after a second RevokeGrant (first RevokedAt kept)", gotG, want)

	// Another grant of the same client and user is untouched.
	gotG, err = s.GetGrant(ctx, bystander.ID)
	must(t, err, "GetGrant")
	equal(t, "an unrelated grant", gotG, bystander)
	gotAT, err = s.GetAccessToken(ctx, bystanderAT.Digest)
	must(t, err, "GetAccessToken")
	equal(t, "an unrelated access token", gotAT, bystanderAT)
	gotRT, err = s.GetRefreshToken(ctx, bystanderRT.Digest)
	must(t, err, "GetRefreshToken")
	equal(t, "an unrelated refresh token", gotRT, bystanderRT)

	wantErr(t, s.RevokeGrant(ctx, uuid.NewString(), now), store.ErrNotFound, "RevokeGrant of an unknown grant")
}

// Opaque access tokens are stored as given and returned even when revoked
// or expired; revocation keeps its first time.
func testAccessTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	g, _ := grant(t, s, c, u)
	at := createAccessToken(t, s, newAccessToken(g))
	cc := createAccessToken(t, s, clientCredentialsToken(c))

	got, err := s.GetAccessToken(ctx, at.Digest)
	must(t, err, "GetAccessToken")
	equal(t, "GetAccessToken", got, at)
	got, err = s.GetAccessToken(ctx, cc.Digest)
	must(t, err, "GetAccessToken")
	equal(t, "GetAccessToken of a client_credentials token", got, cc)
	if got.GrantID != "" || got.UserID != "" || got.AuthTime != nil {
		t.Fatalf("client_credentials token came back with a grant, user or auth time: %s", show(got))
	}

	dup := newAccessToken(g)
	dup.Digest = at.Digest
	dup.Scopes = []string{"mcp:admin"}
	wantErr(t, s.CreateAccessToken(ctx, dup), store.ErrConflict, "CreateAccessToken with a duplicate digest")
	got, err = s.GetAccessToken(ctx, at.Digest)
	must(t, err, "GetAccessToken")
	equal(t, "access token after the conflicting create", got, at)

	now := t0.Add(time.Minute)
	must(t, s.RevokeAccessToken(ctx, at.Digest, now), "RevokeAccessToken")
	got, err = s.GetAccessToken(ctx, at.Digest)
	must(t, err, "GetAccessToken of a revoked token")
	want := at
	want.RevokedAt = ptr(now)
	equal(t, "revoked access token", got, want)
	must(t, s.RevokeAccessToken(ctx, at.Digest, now.Add(time.Hour)), "RevokeAccessToken twice")
	got, err = s.GetAccessToken(ctx, at.Digest)
	must(t, err, "GetAccessToken")
	equal(t, "access token revoked twice (first RevokedAt kept)", got, want)
	got, err = s.GetAccessToken(ctx, cc.Digest)
	must(t, err, "GetAccessToken")
	equal(t, "the other access token after a revocation", got, cc)

	wantErr(t, s.RevokeAccessToken(ctx, digest(), now), store.ErrNotFound, "RevokeAccessToken of an unknown token")
	_, err = s.GetAccessToken(ctx, digest())
	wantErr(t, err, store.ErrNotFound, "GetAccessToken of an unknown token")
}

// A revoked jti is remembered while now < exp, and a second revocation can
// only extend that.
func testRevokedJTIs(t *testing.T, s store.Store) {
	ctx := t.Context()
	jti, other := uuid.NewString(), uuid.NewString()
	exp := t0.Add(time.Hour)

	isRevoked := func(jti string, now time.Time) bool {
		t.Helper()
		r, err := s.IsJTIRevoked(ctx, jti, now)
		must(t, err, "IsJTIRevoked")
		return r
	}
	if isRevoked(jti, t0) {
		t.Fatal("IsJTIRevoked of a jti never revoked = true")
	}
	must(t, s.RevokeJTI(ctx, jti, exp), "RevokeJTI")
	if !isRevoked(jti, t0) || !isRevoked(jti, exp.Add(-us)) {
		t.Fatal("IsJTIRevoked before exp = false")
	}
	if isRevoked(jti, exp) {
		t.Fatal("IsJTIRevoked at exp = true (the token has expired by then)")
	}
	if isRevoked(other, t0) {
		t.Fatal("revoking one jti revoked another")
	}

	must(t, s.RevokeJTI(ctx, jti, t0.Add(time.Minute)), "RevokeJTI with an earlier exp")
	if !isRevoked(jti, exp.Add(-us)) {
		t.Fatal("a second RevokeJTI with an earlier exp shortened the revocation")
	}
	must(t, s.RevokeJTI(ctx, jti, exp.Add(time.Hour)), "RevokeJTI with a later exp")
	if !isRevoked(jti, exp.Add(time.Hour-us)) || isRevoked(jti, exp.Add(time.Hour)) {
		t.Fatal("a second RevokeJTI with a later exp did not extend the revocation to exactly that exp")
	}
}

// Deleting a client removes everything issued to it, and nothing of other
// clients.
func testDeleteClientCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	type issued struct {
		c     store.Client
		req   store.AuthRequest
		code  store.AuthCode
		used  store.AuthCode // a redeemed code: replay evidence
		g     store.Grant
		rt    store.RefreshToken
		at    store.AccessToken
		cc    store.AccessToken // client_credentials
		grant store.Grant       // the grant the used code produced
	}
	issue := func() issued {
		var x issued
		x.c = client(t, s)
		x.req = newAuthRequest(x.c)
		x.req.UserID = u.ID
		x.req.UpstreamStateDigest = digest()
		must(t, s.CreateAuthRequest(ctx, x.req), "CreateAuthRequest")
		must(t, s.AddConsent(ctx, store.Consent{UserID: u.ID, ClientID: x.c.ID, Scopes: []string{"mcp:read"}, CreatedAt: t0, UpdatedAt: t0}), "AddConsent")
		x.code = createCode(t, s, x.c, u)
		x.used = createCode(t, s, x.c, u)
		x.grant = newGrant(x.used)
		_, err := s.RedeemAuthCode(ctx, x.used.Digest, t0, x.grant, nil)
		must(t, err, "RedeemAuthCode")
		x.g, x.rt = grant(t, s, x.c, u)
		x.at = createAccessToken(t, s, newAccessToken(x.g))
		x.cc = createAccessToken(t, s, clientCredentialsToken(x.c))
		return x
	}
	doomed, kept := issue(), issue()

	must(t, s.DeleteClient(ctx, doomed.c.ID), "DeleteClient")

	check := func(x issued, gone bool) {
		t.Helper()
		errs := map[string]error{}
		_, errs["GetClient"] = s.GetClient(ctx, x.c.ID, t0)
		_, errs["GetAuthRequest"] = s.GetAuthRequest(ctx, x.req.IDDigest, t0)
		_, errs["GetAuthRequestByUpstreamState"] = s.GetAuthRequestByUpstreamState(ctx, x.req.UpstreamStateDigest, t0)
		_, errs["GetConsent"] = s.GetConsent(ctx, u.ID, x.c.ID)
		_, errs["GetAuthCode (unused)"] = s.GetAuthCode(ctx, x.code.Digest, t0)
		_, errs["GetAuthCode (used)"] = s.GetAuthCode(ctx, x.used.Digest, t0)
		_, errs["GetGrant"] = s.GetGrant(ctx, x.g.ID)
		_, errs["GetGrant (from the used code)"] = s.GetGrant(ctx, x.grant.ID)
		_, errs["GetRefreshToken"] = s.GetRefreshToken(ctx, x.rt.Digest)
		_, errs["GetAccessToken"] = s.GetAccessToken(ctx, x.at.Digest)
		_, errs["GetAccessToken (client_credentials)"] = s.GetAccessToken(ctx, x.cc.Digest)
		for name, err := range errs {
			switch {
			case gone && err == nil:
				t.Errorf("%s of a deleted client's row: still there", name)
			case gone:
				wantErr(t, err, store.ErrNotFound, name+" of a deleted client's row")
			case err != nil:
				t.Errorf("%s of another client's row: %v", name, err)
			}
		}
	}
	check(doomed, true)
	check(kept, false)

	// The deleted client's tokens are unusable, the other's still work.
	now := t0.Add(time.Hour)
	_, err := s.RotateRefreshToken(ctx, doomed.rt.Digest, now, nextRefreshToken(doomed.rt, now), 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken of a deleted client's token")
	_, err = s.RedeemAuthCode(ctx, doomed.code.Digest, t0, newGrant(doomed.code), nil)
	wantErr(t, err, store.ErrNotFound, "RedeemAuthCode of a deleted client's code")
	_, err = s.ConsumeAuthRequest(ctx, doomed.req.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "ConsumeAuthRequest of a deleted client's request")
	if _, err := s.RotateRefreshToken(ctx, kept.rt.Digest, now, nextRefreshToken(kept.rt, now), 0); err != nil {
		t.Fatalf("RotateRefreshToken of another client's token: %v", err)
	}

	grants, err := s.ListGrants(ctx, u.ID)
	must(t, err, "ListGrants")
	for _, g := range grants {
		if g.ClientID == doomed.c.ID {
			t.Fatalf("ListGrants still lists a deleted client's grant: %s", show(g))
		}
	}
	if len(grants) != 2 {
		t.Fatalf("ListGrants after DeleteClient: got %d grants, want the other client's 2", len(grants))
	}
	consents, err := s.ListConsents(ctx, u.ID)
	must(t, err, "ListConsents")
	if len(consents) != 1 || consents[0].ClientID != kept.c.ID {
		t.Fatalf("ListConsents after DeleteClient: %s, want only the other client's", show(consents))
	}
	if _, err := s.GetUser(ctx, u.ID); err != nil {
		t.Fatalf("DeleteClient removed the user: %v", err)
	}
}

// The joined reads of the hot paths (GetGrantUser, GetRefreshTokenGrant,
// CheckJWTGrant) return exactly what the single-table reads do, in any
// state of the grant and user, and ErrNotFound for what is unknown.
func testJoinedReads(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	g, rt := grant(t, s, c, u)

	check := func(when string) {
		t.Helper()
		wantG, err := s.GetGrant(ctx, g.ID)
		must(t, err, "GetGrant")
		wantU, err := s.GetUser(ctx, u.ID)
		must(t, err, "GetUser")
		wantRT, err := s.GetRefreshToken(ctx, rt.Digest)
		must(t, err, "GetRefreshToken")

		gotG, gotU, err := s.GetGrantUser(ctx, g.ID)
		must(t, err, "GetGrantUser "+when)
		equal(t, "GetGrantUser grant "+when, gotG, wantG)
		equal(t, "GetGrantUser user "+when, gotU, wantU)

		gotRT, gotG, gotU, err := s.GetRefreshTokenGrant(ctx, rt.Digest)
		must(t, err, "GetRefreshTokenGrant "+when)
		equal(t, "GetRefreshTokenGrant token "+when, gotRT, wantRT)
		equal(t, "GetRefreshTokenGrant grant "+when, gotG, wantG)
		equal(t, "GetRefreshTokenGrant user "+when, gotU, wantU)
	}
	check("(live)")

	jti := uuid.NewString()
	revoked, gotG, gotU, err := s.CheckJWTGrant(ctx, jti, g.ID, t0)
	must(t, err, "CheckJWTGrant")
	if revoked {
		t.Fatal("CheckJWTGrant: a jti never revoked reads as revoked")
	}
	equal(t, "CheckJWTGrant grant", gotG, g)
	equal(t, "CheckJWTGrant user", gotU.ID, u.ID)
	must(t, s.RevokeJTI(ctx, jti, t0.Add(time.Hour)), "RevokeJTI")
	if revoked, _, _, err = s.CheckJWTGrant(ctx, jti, g.ID, t0); err != nil || !revoked {
		t.Fatalf("CheckJWTGrant after RevokeJTI = %v, %v; want revoked", revoked, err)
	}
	if revoked, _, _, err = s.CheckJWTGrant(ctx, jti, g.ID, t0.Add(time.Hour)); err != nil || revoked {
		t.Fatalf("CheckJWTGrant at the jti's exp = %v, %v; want not revoked", revoked, err)
	}

	// Disabled users and revoked grants are returned as they are: the
	// callers decide.
	must(t, s.SetUserDisabled(ctx, u.ID, true), "SetUserDisabled")
	must(t, s.RevokeGrant(ctx, g.ID, t0.Add(time.Minute)), "RevokeGrant")
	check("(user disabled, grant revoked)")
	if _, gotG, gotU, err = s.CheckJWTGrant(ctx, jti, g.ID, t0); err != nil || gotG.RevokedAt == nil || !gotU.Disabled {
		t.Fatalf("CheckJWTGrant of a revoked grant of a disabled user = %+v, %+v, %v", gotG, gotU, err)
	}

	_, _, err = s.GetGrantUser(ctx, uuid.NewString())
	wantErr(t, err, store.ErrNotFound, "GetGrantUser of an unknown grant")
	_, _, _, err = s.GetRefreshTokenGrant(ctx, digest())
	wantErr(t, err, store.ErrNotFound, "GetRefreshTokenGrant of an unknown token")
	_, _, _, err = s.CheckJWTGrant(ctx, jti, uuid.NewString(), t0)
	wantErr(t, err, store.ErrNotFound, "CheckJWTGrant of an unknown grant (whatever the jti)")
}
