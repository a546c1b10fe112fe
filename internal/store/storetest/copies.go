package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/store"
)

// No value a caller passes in or gets back shares memory with what the
// store keeps: scribbling over slices, byte slices and pointed-to values
// afterwards changes nothing stored. (Trivial for Postgres; it guards
// in-process stores and caches.) Lists and signing keys, which need a store
// of their own, are checked in testListAndCountClients and testSigningKeys.
func testValuesAreCopies(t *testing.T, s store.Store) {
	ctx := t.Context()

	c := newClient()
	in := deepCopy(t, c)
	createClient(t, s, in)
	readClient := func() store.Client {
		got, err := s.GetClient(ctx, c.ID, t0)
		must(t, err, "GetClient")
		return got
	}
	checkCopies(t, "client", &in, readClient)
	checkCopies(t, "client from FindClientByFingerprint", nil, func() store.Client {
		got, err := s.FindClientByFingerprint(ctx, c.Fingerprint, t0)
		must(t, err, "FindClientByFingerprint")
		return got
	})
	upd := newClient()
	upd.ID = c.ID
	must(t, s.UpdateClient(ctx, upd), "UpdateClient")
	checkCopies(t, "client after UpdateClient", &upd, readClient)
	ups := newClient()
	ups.ID = c.ID
	must(t, s.UpsertClient(ctx, ups), "UpsertClient")
	checkCopies(t, "client after UpsertClient", &ups, readClient)

	uin := newUser()
	u, err := s.UpsertUser(ctx, uin)
	must(t, err, "UpsertUser")
	uid := u.ID
	readUser := func() store.User {
		got, err := s.GetUser(ctx, uid)
		must(t, err, "GetUser")
		return got
	}
	checkCopies(t, "user (argument)", &uin, readUser)
	checkCopies(t, "user (result)", &u, readUser)

	r := newAuthRequest(c)
	r.UpstreamStateDigest = digest()
	must(t, s.CreateAuthRequest(ctx, r), "CreateAuthRequest")
	rid := r.IDDigest
	readRequest := func() store.AuthRequest {
		got, err := s.GetAuthRequest(ctx, rid, t0)
		must(t, err, "GetAuthRequest")
		return got
	}
	state := r.UpstreamStateDigest
	checkCopies(t, "auth request", &r, readRequest)
	checkCopies(t, "auth request by upstream state", nil, func() store.AuthRequest {
		got, err := s.GetAuthRequestByUpstreamState(ctx, state, t0)
		must(t, err, "GetAuthRequestByUpstreamState")
		return got
	})
	ru := readRequest()
	ru.UserID = uid
	ru.AuthTime = ptr(t0)
	must(t, s.UpdateAuthRequest(ctx, ru), "UpdateAuthRequest")
	checkCopies(t, "auth request after UpdateAuthRequest", &ru, readRequest)

	consent := store.Consent{UserID: uid, ClientID: c.ID, Scopes: []string{"a", "b"}, Resources: []string{"https://r.example/"},
		Approvals: map[string][]string{"https://r.example/": {"a", "b"}}, CreatedAt: t0, UpdatedAt: t0}
	must(t, s.AddConsent(ctx, consent), "AddConsent")
	checkCopies(t, "consent", &consent, func() store.Consent {
		got, err := s.GetConsent(ctx, uid, c.ID)
		must(t, err, "GetConsent")
		return got
	})
	checkCopies(t, "consents from ListConsents", nil, func() []store.Consent {
		got, err := s.ListConsents(ctx, uid)
		must(t, err, "ListConsents")
		return got
	})

	code := newCode(c, readUser())
	must(t, s.CreateAuthCode(ctx, code), "CreateAuthCode")
	cid := code.Digest
	readCode := func() store.AuthCode {
		got, err := s.GetAuthCode(ctx, cid, t0)
		must(t, err, "GetAuthCode")
		return got
	}
	checkCopies(t, "code", &code, readCode)
	g := newGrant(readCode())
	rt := newRefreshToken(g)
	redeemed, err := s.RedeemAuthCode(ctx, cid, t0, g, &rt)
	must(t, err, "RedeemAuthCode")
	checkCopies(t, "code returned by RedeemAuthCode", &redeemed, readCode)
	gid, rtd := g.ID, rt.Digest
	readGrant := func() store.Grant {
		got, err := s.GetGrant(ctx, gid)
		must(t, err, "GetGrant")
		return got
	}
	checkCopies(t, "grant", &g, readGrant)
	checkCopies(t, "grants from ListGrants", nil, func() []store.Grant {
		got, err := s.ListGrants(ctx, uid)
		must(t, err, "ListGrants")
		return got
	})
	readToken := func(d string) func() store.RefreshToken {
		return func() store.RefreshToken {
			got, err := s.GetRefreshToken(ctx, d)
			must(t, err, "GetRefreshToken")
			return got
		}
	}
	checkCopies(t, "refresh token passed to RedeemAuthCode", &rt, readToken(rtd))
	next := nextRefreshToken(readToken(rtd)(), t0.Add(time.Minute))
	nextd := next.Digest
	rotated, err := s.RotateRefreshToken(ctx, rtd, t0.Add(time.Minute), next, 0)
	must(t, err, "RotateRefreshToken")
	checkCopies(t, "grant returned by RotateRefreshToken", &rotated, readGrant)
	checkCopies(t, "refresh token passed to RotateRefreshToken", &next, readToken(nextd))
	used := readToken(rtd)()
	checkCopies(t, "used refresh token", &used, readToken(rtd))

	at := newAccessToken(readGrant())
	must(t, s.CreateAccessToken(ctx, at), "CreateAccessToken")
	must(t, s.RevokeAccessToken(ctx, at.Digest, t0), "RevokeAccessToken")
	atd := at.Digest
	checkCopies(t, "access token", &at, func() store.AccessToken {
		got, err := s.GetAccessToken(ctx, atd)
		must(t, err, "GetAccessToken")
		return got
	})

	d := store.MetadataDocument{URL: "https://app.example/" + uuid.NewString() + ".json", Document: []byte(`{"client_id":"x"}`), ETag: "e", FetchedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	must(t, s.PutMetadataDocument(ctx, d), "PutMetadataDocument")
	url := d.URL
	checkCopies(t, "metadata document", &d, func() store.MetadataDocument {
		got, err := s.GetMetadataDocument(ctx, url)
		must(t, err, "GetMetadataDocument")
		return got
	})
}

// checkCopies reads the stored value, scribbles over passed (the value the
// caller handed the store, if any) and then over a value read, and checks
// that the stored value never changed.
func checkCopies[T any](t *testing.T, what string, passed *T, read func() T) {
	t.Helper()
	want := deepCopy(t, read())
	if passed != nil {
		scribble(reflect.ValueOf(passed).Elem())
		equal(t, what+" after the caller changed its argument", read(), want)
	}
	got := read()
	scribble(reflect.ValueOf(&got).Elem())
	equal(t, what+" after the caller changed a returned value", read(), want)
}

// scribble overwrites everything reachable from v (which must be settable).
func scribble(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(time.Unix(1, 0)))
			return
		}
		for i := range v.NumField() {
			scribble(v.Field(i))
		}
	case reflect.Pointer:
		if !v.IsNil() {
			scribble(v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			scribble(v.Index(i))
		}
	case reflect.Map:
		// Map elements are not settable: scribble a copy and store it back.
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			scribble(e)
			v.SetMapIndex(k, e)
		}
	case reflect.String:
		v.SetString("scribbled")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(-1)
	case reflect.Uint8:
		v.SetUint(0xEE)
	}
}
