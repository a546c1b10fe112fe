package storetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/store"
)

// Purge deletes exactly the rows whose time is up (ExpiresAt <= now), counts
// them per table, and keeps everything live, including used refresh tokens
// that reuse detection still needs. Expired rows are given no children, so
// that every count is independent of cascades.
func testPurge(t *testing.T, s store.Store) {
	ctx := t.Context()
	P := t0.Add(2 * day) // the purge time
	u := user(t, s)
	c := client(t, s) // live until t0+30d: parent of everything below

	// clients: an expired dynamic client (at the boundary), and a config
	// client whose ExpiresAt passed, which purge must leave to the operator.
	cExp := newClient()
	cExp.ExpiresAt = ptr(P)
	createClient(t, s, cExp)
	cConfig := newClient()
	cConfig.Source = store.SourceConfig
	cConfig.ExpiresAt = ptr(P.Add(-time.Hour))
	createClient(t, s, cConfig)

	// grants: one expired without tokens, one live. Creating each used a
	// code that expires at t0+10m: the expired grant's code is purged, the
	// live grant's is kept (replay evidence).
	code := createCode(t, s, c, u)
	gExp := newGrant(code)
	gExp.ExpiresAt = P.Add(-time.Hour)
	_, err := s.RedeemAuthCode(ctx, code.Digest, t0, gExp, nil)
	must(t, err, "RedeemAuthCode")
	gLive, rt1 := grant(t, s, c, u, func(_ *store.Grant, rt *store.RefreshToken) { rt.ExpiresAt = P.Add(-time.Hour) })

	// auth_codes: one more expired (unused), one live.
	codeExp := createCode(t, s, c, u)
	codeLive := newCode(c, u)
	codeLive.ExpiresAt = P.Add(time.Minute)
	must(t, s.CreateAuthCode(ctx, codeLive), "CreateAuthCode")

	// refresh_tokens: rt1 used and expired (purged); rt2 used but live
	// (kept for reuse detection); rt3 live; rt4 unused, expired at P.
	rt2 := nextRefreshToken(rt1, t0.Add(time.Hour))
	rt2.ExpiresAt = P.Add(time.Hour)
	_, err = s.RotateRefreshToken(ctx, rt1.Digest, t0.Add(time.Hour), rt2, 0)
	must(t, err, "RotateRefreshToken")
	rt3 := nextRefreshToken(rt2, t0.Add(2*time.Hour))
	_, err = s.RotateRefreshToken(ctx, rt2.Digest, t0.Add(2*time.Hour), rt3, 0)
	must(t, err, "RotateRefreshToken")
	rt4 := newRefreshToken(gLive)
	rt4.ExpiresAt = P
	must(t, s.CreateRefreshToken(ctx, rt4), "CreateRefreshToken")

	// access_tokens: two expired (one client_credentials), one live.
	atExp := newAccessToken(gLive)
	atExp.ExpiresAt = P.Add(-time.Second)
	createAccessToken(t, s, atExp)
	ccExp := clientCredentialsToken(c)
	ccExp.ExpiresAt = P
	createAccessToken(t, s, ccExp)
	atLive := newAccessToken(gLive)
	atLive.ExpiresAt = P.Add(time.Hour)
	createAccessToken(t, s, atLive)

	// auth_requests, sessions, revoked_jtis, metadata_documents: one
	// expired at P, one live.
	arExp, arLive := newAuthRequest(c), newAuthRequest(c)
	arExp.ExpiresAt, arLive.ExpiresAt = P, P.Add(time.Minute)
	must(t, s.CreateAuthRequest(ctx, arExp), "CreateAuthRequest")
	must(t, s.CreateAuthRequest(ctx, arLive), "CreateAuthRequest")
	sExp, sLive := newSession(u), newSession(u)
	sExp.ExpiresAt, sLive.ExpiresAt = P, P.Add(time.Minute)
	must(t, s.CreateSession(ctx, sExp), "CreateSession")
	must(t, s.CreateSession(ctx, sLive), "CreateSession")
	jExp, jLive := uuid.NewString(), uuid.NewString()
	must(t, s.RevokeJTI(ctx, jExp, P), "RevokeJTI")
	must(t, s.RevokeJTI(ctx, jLive, P.Add(time.Minute)), "RevokeJTI")
	dExp := store.MetadataDocument{URL: "https://a.example/client.json", Document: []byte(`{}`), FetchedAt: t0, ExpiresAt: P}
	dLive := store.MetadataDocument{URL: "https://b.example/client.json", Document: []byte(`{}`), FetchedAt: t0, ExpiresAt: P.Add(time.Minute)}
	must(t, s.PutMetadataDocument(ctx, dExp), "PutMetadataDocument")
	must(t, s.PutMetadataDocument(ctx, dLive), "PutMetadataDocument")
	lExp, lLive := uuid.NewString(), uuid.NewString()
	must(t, s.UseLogoutToken(ctx, "sso", lExp, P), "UseLogoutToken")
	must(t, s.UseLogoutToken(ctx, "sso", lLive, P.Add(time.Minute)), "UseLogoutToken")

	// signing_keys: k1 retired until P (purged), k2 retired until after P,
	// k3 active, k4 next (no ExpiresAt: kept).
	k1 := newSigningKey(store.KeyActive, t0)
	k2 := newSigningKey(store.KeyNext, t0.Add(time.Minute))
	k3 := newSigningKey(store.KeyNext, t0.Add(2*time.Minute))
	k4 := newSigningKey(store.KeyNext, t0.Add(3*time.Minute))
	for _, k := range []store.SigningKey{k1, k2, k3, k4} {
		must(t, s.CreateSigningKey(ctx, k), "CreateSigningKey")
	}
	must(t, s.ActivateSigningKey(ctx, k2.ID, t0.Add(time.Hour), P), "ActivateSigningKey")
	must(t, s.ActivateSigningKey(ctx, k3.ID, t0.Add(2*time.Hour), P.Add(time.Hour)), "ActivateSigningKey")

	res, err := s.Purge(ctx, P)
	must(t, err, "Purge")
	want := store.PurgeResult{
		"clients":                1,
		"grants":                 1,
		"auth_codes":             2,
		"refresh_tokens":         2,
		"access_tokens":          2,
		"auth_requests":          1,
		"sessions":               1,
		"revoked_jtis":           1,
		"signing_keys":           1,
		"metadata_documents":     1,
		"upstream_logout_tokens": 1,
	}
	for _, table := range slices.Sorted(maps.Keys(want)) {
		if res[table] != want[table] {
			t.Errorf("Purge removed %d rows from %s, want %d", res[table], table, want[table])
		}
	}
	for table, n := range res {
		if _, ok := want[table]; !ok && n != 0 {
			t.Errorf("Purge reports %d rows from unexpected table %q", n, table)
		}
	}

	// What expired is gone, even when asked at a time it was live.
	gone := map[string]error{}
	_, gone["GetGrant (expired)"] = s.GetGrant(ctx, gExp.ID)
	_, gone["GetAuthCode (expired, unused)"] = s.GetAuthCode(ctx, codeExp.Digest, t0)
	_, gone["GetAuthCode (redeemed)"] = s.GetAuthCode(ctx, code.Digest, t0)
	_, gone["GetRefreshToken (used, expired)"] = s.GetRefreshToken(ctx, rt1.Digest)
	_, gone["GetRefreshToken (unused, expired)"] = s.GetRefreshToken(ctx, rt4.Digest)
	_, gone["GetAccessToken (expired)"] = s.GetAccessToken(ctx, atExp.Digest)
	_, gone["GetAccessToken (client_credentials, expired)"] = s.GetAccessToken(ctx, ccExp.Digest)
	_, gone["GetAuthRequest (expired)"] = s.GetAuthRequest(ctx, arExp.IDDigest, t0)
	_, gone["GetSession (expired)"] = s.GetSession(ctx, sExp.IDDigest, t0)
	_, gone["GetMetadataDocument (expired)"] = s.GetMetadataDocument(ctx, dExp.URL)
	_, gone["GetClient (expired dynamic)"] = s.GetClient(ctx, cExp.ID, t0)
	for name, err := range gone {
		if err == nil {
			t.Errorf("%s: still there after Purge", name)
		} else {
			wantErr(t, err, store.ErrNotFound, name+" after Purge")
		}
	}
	if r, err := s.IsJTIRevoked(ctx, jExp, t0); err != nil || r {
		t.Errorf("IsJTIRevoked of a purged jti at a time it was live = %v, %v; want false (deleted)", r, err)
	}

	// A purged logout jti may be recorded again (its token has expired,
	// so it is refused anyway); a live one is still a replay.
	must(t, s.UseLogoutToken(ctx, "sso", lExp, P.Add(time.Hour)), "UseLogoutToken of a purged jti")
	wantErr(t, s.UseLogoutToken(ctx, "sso", lLive, P.Add(time.Hour)), store.ErrConflict, "UseLogoutToken of a kept jti")

	// What is live stays.
	kept := map[string]error{}
	_, kept["GetClient (live)"] = s.GetClient(ctx, c.ID, P)
	_, kept["GetGrant (live)"] = s.GetGrant(ctx, gLive.ID)
	_, kept["GetAuthCode (live)"] = s.GetAuthCode(ctx, codeLive.Digest, P)
	_, kept["GetRefreshToken (used, live)"] = s.GetRefreshToken(ctx, rt2.Digest)
	_, kept["GetRefreshToken (live)"] = s.GetRefreshToken(ctx, rt3.Digest)
	_, kept["GetAccessToken (live)"] = s.GetAccessToken(ctx, atLive.Digest)
	_, kept["GetAuthRequest (live)"] = s.GetAuthRequest(ctx, arLive.IDDigest, P)
	_, kept["GetSession (live)"] = s.GetSession(ctx, sLive.IDDigest, P)
	_, kept["GetMetadataDocument (live)"] = s.GetMetadataDocument(ctx, dLive.URL)
	_, kept["GetUser"] = s.GetUser(ctx, u.ID)
	for name, err := range kept {
		if err != nil {
			t.Errorf("%s after Purge: %v", name, err)
		}
	}
	if r, err := s.IsJTIRevoked(ctx, jLive, P); err != nil || !r {
		t.Errorf("IsJTIRevoked of a live jti after Purge = %v, %v; want true", r, err)
	}
	clients, err := s.ListClients(ctx, store.ClientFilter{})
	must(t, err, "ListClients")
	var ids []string
	for _, x := range clients {
		ids = append(ids, x.ID)
	}
	sameSet(t, "clients after Purge", ids, []string{c.ID, cConfig.ID})
	keys, err := s.ListSigningKeys(ctx)
	must(t, err, "ListSigningKeys")
	ids = nil
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	sameSet(t, "signing keys after Purge", ids, []string{k2.ID, k3.ID, k4.ID})
	if t.Failed() {
		t.FailNow()
	}

	// The used token kept by Purge still triggers reuse detection.
	_, err = s.RotateRefreshToken(ctx, rt2.Digest, P, nextRefreshToken(rt2, P), 0)
	wantErr(t, err, store.ErrAlreadyUsed, "RotateRefreshToken of a used token after Purge")

	// Nothing left to purge but the live grant's used code, which the
	// reuse detection above made useless as evidence by revoking the grant.
	res, err = s.Purge(ctx, P)
	must(t, err, "Purge again")
	for table, n := range res {
		if want := map[string]int64{"auth_codes": 1}[table]; n != want {
			t.Errorf("second Purge removed %d rows from %s, want %d", n, table, want)
		}
	}
}

// Stats counts live clients, users, active grants and stored refresh tokens.
func testStats(t *testing.T, s store.Store) {
	ctx := t.Context()
	zero, err := s.Stats(ctx, t0)
	must(t, err, "Stats of an empty store")
	equal(t, "Stats of an empty store", zero, store.Stats{})

	u1 := user(t, s)
	user(t, s)
	c := client(t, s) // expires t0+30d
	forever := newClient()
	forever.Source = store.SourceConfig
	forever.ExpiresAt = nil
	createClient(t, s, forever)
	short := newClient()
	short.ExpiresAt = ptr(t0.Add(time.Hour))
	createClient(t, s, short)

	_, rt := grant(t, s, c, u1) // active
	now := t0.Add(2 * time.Hour)
	_, err = s.RotateRefreshToken(ctx, rt.Digest, now, nextRefreshToken(rt, now), 0) // 2 tokens
	must(t, err, "RotateRefreshToken")
	revoked, _ := grant(t, s, c, u1)
	must(t, s.RevokeGrant(ctx, revoked.ID, now), "RevokeGrant")
	grant(t, s, c, u1, func(g *store.Grant, _ *store.RefreshToken) { g.ExpiresAt = now }) // expired at now

	got, err := s.Stats(ctx, now)
	must(t, err, "Stats")
	equal(t, "Stats", got, store.Stats{Clients: 2, Users: 2, ActiveGrants: 1, RefreshTokens: 4})
}

// Purging an expired client deletes what was issued to it and is still
// live: its client_credentials tokens (which hang off no grant), its grants
// and their tokens; another client's stay.
func testPurgeClientTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	P := t0.Add(2 * day)
	u := user(t, s)
	cExp := newClient()
	cExp.ExpiresAt = ptr(P)
	createClient(t, s, cExp)
	cLive := client(t, s)

	type issued struct {
		cc []store.AccessToken
		g  store.Grant
		rt store.RefreshToken
		at store.AccessToken
	}
	issue := func(c store.Client) issued {
		var x issued
		// Created together, so that a store that writes concurrent
		// tokens in one statement does so here.
		x.cc = make([]store.AccessToken, racers)
		race(racers, func(i int) {
			x.cc[i] = clientCredentialsToken(c)
			x.cc[i].ExpiresAt = P.Add(time.Hour)
		})
		errs := make([]error, racers)
		race(racers, func(i int) { errs[i] = s.CreateAccessToken(ctx, x.cc[i]) })
		for _, err := range errs {
			must(t, err, "CreateAccessToken (client_credentials)")
		}
		x.g, x.rt = grant(t, s, c, u)
		x.at = newAccessToken(x.g)
		x.at.ExpiresAt = P.Add(time.Hour)
		createAccessToken(t, s, x.at)
		return x
	}
	doomed, kept := issue(cExp), issue(cLive)

	_, err := s.Purge(ctx, P)
	must(t, err, "Purge")
	check := func(x issued, gone bool, whose string) {
		t.Helper()
		errs := map[string]error{}
		for i, cc := range x.cc {
			_, errs[fmt.Sprintf("GetAccessToken (client_credentials %d)", i)] = s.GetAccessToken(ctx, cc.Digest)
		}
		_, errs["GetGrant"] = s.GetGrant(ctx, x.g.ID)
		_, errs["GetRefreshToken"] = s.GetRefreshToken(ctx, x.rt.Digest)
		_, errs["GetAccessToken (of the grant)"] = s.GetAccessToken(ctx, x.at.Digest)
		for _, name := range slices.Sorted(maps.Keys(errs)) {
			switch err := errs[name]; {
			case gone && err == nil:
				t.Errorf("%s of %s: still there after Purge", name, whose)
			case gone && !errors.Is(err, store.ErrNotFound):
				t.Errorf("%s of %s: %v, want ErrNotFound", name, whose, err)
			case !gone && err != nil:
				t.Errorf("%s of %s after Purge: %v", name, whose, err)
			}
		}
	}
	check(doomed, true, "the purged client")
	check(kept, false, "a live client")
}
