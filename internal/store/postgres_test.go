package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/store/storetest"
)

// The Postgres store passes the conformance suite every store passes.
func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return pgtest.New(t) })
}

// The tests below cover what is specific to the Postgres store: exact round
// trips through SQL types, constraints, cascades, locking under concurrency,
// batching. The shared semantics are the conformance suite's.

var pgT0 = time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)

func pgPtr[T any](v T) *T { return &v }

func pgFixtures(t *testing.T, s *store.Postgres) (store.Client, store.User) {
	t.Helper()
	ctx := context.Background()
	c := store.Client{
		ID: "client-1", Source: store.SourceDynamic, SecretHash: "hash", RegistrationTokenHash: "rat",
		Metadata:         store.ClientMetadata{RedirectURIs: []string{"http://127.0.0.1/cb"}, ClientName: "Test", GrantTypes: []string{"authorization_code"}},
		Fingerprint:      "fp",
		AllowedScopes:    []string{"a", "b"},
		AllowedResources: []string{}, // empty, not nil: nothing allowed
		CreatedAt:        pgT0, UpdatedAt: pgT0, LastUsedAt: pgT0, ExpiresAt: pgPtr(pgT0.Add(24 * time.Hour)),
	}
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	u, err := s.UpsertUser(ctx, store.User{Provider: "github", Subject: "42", Login: "octo", Groups: []string{"org"},
		CreatedAt: pgT0, UpdatedAt: pgT0, LastLoginAt: pgT0})
	if err != nil {
		t.Fatalf("UpsertUser: %v", err)
	}
	return c, u
}

func TestPostgresClientRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.New(t)
	c, _ := pgFixtures(t, s)

	got, err := s.GetClient(ctx, c.ID, pgT0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("GetClient =\n%+v\nwant\n%+v", got, c)
	}
	if got.AllowedResources == nil {
		t.Error("an empty AllowedResources came back nil (no restriction)")
	}
	if err := s.CreateClient(ctx, c); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateClient twice = %v, want ErrConflict", err)
	}
	if _, err := s.GetClient(ctx, c.ID, c.ExpiresAt.Add(time.Microsecond)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetClient after expiry = %v, want ErrNotFound", err)
	}
	if got, err := s.FindClientByFingerprint(ctx, "fp", pgT0); err != nil || got.ID != c.ID {
		t.Errorf("FindClientByFingerprint = %v, %v", got.ID, err)
	}

	// TouchClient writes only when LastUsedAt is stale, and slides the
	// idle expiry.
	if err := s.TouchClient(ctx, c.ID, pgT0.Add(30*time.Second), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetClient(ctx, c.ID, pgT0); !got.LastUsedAt.Equal(pgT0) {
		t.Errorf("TouchClient within a minute wrote LastUsedAt = %v", got.LastUsedAt)
	}
	later := pgT0.Add(2 * time.Hour)
	if err := s.TouchClient(ctx, c.ID, later, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetClient(ctx, c.ID, later)
	if !got.LastUsedAt.Equal(later) || got.ExpiresAt == nil || !got.ExpiresAt.Equal(later.Add(48*time.Hour)) {
		t.Errorf("after TouchClient: LastUsedAt %v, ExpiresAt %v", got.LastUsedAt, got.ExpiresAt)
	}
}

func TestPostgresUpsertUserKeepsIdentity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.New(t)
	_, u := pgFixtures(t, s)
	if err := s.SetUserDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	again, err := s.UpsertUser(ctx, store.User{ID: "ignored", Provider: "github", Subject: "42", Login: "renamed",
		CreatedAt: pgT0.Add(time.Hour), UpdatedAt: pgT0.Add(time.Hour), LastLoginAt: pgT0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != u.ID || again.Login != "renamed" || !again.Disabled || !again.CreatedAt.Equal(pgT0) || again.Groups != nil {
		t.Errorf("upsert of a known user = %+v", again)
	}
	if err := s.SetUserDisabled(ctx, "nobody", true); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetUserDisabled(unknown) = %v", err)
	}
}

func TestPostgresAuthRequestUpstreamStateUnique(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.New(t)
	c, u := pgFixtures(t, s)
	for _, id := range []string{"r1", "r2"} {
		r := store.AuthRequest{IDDigest: id, ClientID: c.ID, Scopes: []string{"a"}, MaxAge: pgPtr(0), CreatedAt: pgT0, ExpiresAt: pgT0.Add(time.Minute)}
		if err := s.CreateAuthRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	r1, err := s.GetAuthRequest(ctx, "r1", pgT0)
	if err != nil {
		t.Fatal(err)
	}
	if r1.MaxAge == nil || *r1.MaxAge != 0 || r1.UserID != "" || r1.AuthTime != nil {
		t.Errorf("round trip: %+v", r1)
	}
	r1.UpstreamStateDigest, r1.UserID, r1.AuthTime = "st", u.ID, pgPtr(pgT0)
	if err := s.UpdateAuthRequest(ctx, r1); err != nil {
		t.Fatal(err)
	}
	r2, _ := s.GetAuthRequest(ctx, "r2", pgT0)
	r2.UpstreamStateDigest = "st"
	if err := s.UpdateAuthRequest(ctx, r2); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second request with the same upstream state: %v, want ErrConflict", err)
	}
	got, err := s.GetAuthRequestByUpstreamState(ctx, "st", pgT0)
	if err != nil || got.IDDigest != "r1" || got.UserID != u.ID {
		t.Errorf("GetAuthRequestByUpstreamState = %+v, %v", got, err)
	}
	if _, err := s.GetAuthRequestByUpstreamState(ctx, "", pgT0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("lookup by empty state = %v, want ErrNotFound", err)
	}
}

func TestPostgresConsentUnion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.New(t)
	c, u := pgFixtures(t, s)
	add := func(scopes, resources []string, at time.Time) {
		t.Helper()
		if err := s.AddConsent(ctx, store.Consent{UserID: u.ID, ClientID: c.ID, Scopes: scopes, Resources: resources, CreatedAt: at, UpdatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	add([]string{"b", "a"}, nil, pgT0)
	add([]string{"c", "a", "d", "c"}, []string{"https://r"}, pgT0.Add(time.Hour))
	add(nil, nil, pgT0.Add(2*time.Hour))
	got, err := s.GetConsent(ctx, u.ID, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Consent{UserID: u.ID, ClientID: c.ID, Scopes: []string{"b", "a", "c", "d"}, Resources: []string{"https://r"},
		CreatedAt: pgT0, UpdatedAt: pgT0.Add(2 * time.Hour)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged consent = %+v, want %+v", got, want)
	}
}

// DeleteClient must take everything issued to the client with it.
func TestPostgresDeleteClientCascades(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.New(t)
	c, u := pgFixtures(t, s)
	exp := pgT0.Add(time.Hour)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateAuthRequest(ctx, store.AuthRequest{IDDigest: "r", ClientID: c.ID, CreatedAt: pgT0, ExpiresAt: exp}))
	must(s.AddConsent(ctx, store.Consent{UserID: u.ID, ClientID: c.ID, Scopes: []string{"a"}, CreatedAt: pgT0, UpdatedAt: pgT0}))
	must(s.CreateAuthCode(ctx, store.AuthCode{Digest: "code", ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, ExpiresAt: exp}))
	g := store.Grant{ID: "g", ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, LastUsedAt: pgT0, ExpiresAt: exp}
	if _, err := s.RedeemAuthCode(ctx, "code", pgT0, g, &store.RefreshToken{Digest: "rt", GrantID: "g", ClientID: c.ID, CreatedAt: pgT0, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	must(s.CreateAccessToken(ctx, store.AccessToken{Digest: "at", GrantID: "g", ClientID: c.ID, UserID: u.ID, CreatedAt: pgT0, ExpiresAt: exp}))
	must(s.CreateAccessToken(ctx, store.AccessToken{Digest: "cc", ClientID: c.ID, CreatedAt: pgT0, ExpiresAt: exp}))

	must(s.DeleteClient(ctx, c.ID))
	if err := s.DeleteClient(ctx, c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteClient twice = %v, want ErrNotFound", err)
	}
	for name, err := range map[string]error{
		"auth request": errOf(s.GetAuthRequest(ctx, "r", pgT0)),
		"consent":      errOf(s.GetConsent(ctx, u.ID, c.ID)),
		"code":         errOf(s.GetAuthCode(ctx, "code", pgT0)),
		"grant":        errOf(s.GetGrant(ctx, "g")),
		"refresh":      errOf(s.GetRefreshToken(ctx, "rt")),
		"access":       errOf(s.GetAccessToken(ctx, "at")),
		"cc access":    errOf(s.GetAccessToken(ctx, "cc")),
	} {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after DeleteClient: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := s.GetUser(ctx, u.ID); err != nil {
		t.Errorf("the user went with the client: %v", err)
	}
}

func errOf[T any](_ T, err error) error { return err }

// Concurrent redemptions of one code: exactly one wins; the losers learn
// the winner's grant and write nothing.
func TestPostgresRedeemAuthCodeRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.New(t)
	c, u := pgFixtures(t, s)
	exp := pgT0.Add(time.Hour)
	if err := s.CreateAuthCode(ctx, store.AuthCode{Digest: "code", ClientID: c.ID, UserID: u.ID, Scopes: []string{"a"}, AuthTime: pgT0, CreatedAt: pgT0, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	codes := make([]store.AuthCode, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			g := store.Grant{ID: fmt.Sprint("g", i), ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, LastUsedAt: pgT0, ExpiresAt: exp}
			rt := &store.RefreshToken{Digest: fmt.Sprint("rt", i), GrantID: g.ID, ClientID: c.ID, CreatedAt: pgT0, ExpiresAt: exp}
			codes[i], errs[i] = s.RedeemAuthCode(ctx, "code", pgT0.Add(time.Second), g, rt)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("codes redeemed twice: by %d and %d", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrAlreadyUsed):
			t.Errorf("redemption %d: %v, want ErrAlreadyUsed", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no redemption won")
	}
	wantGrant := fmt.Sprint("g", winner)
	for i, code := range codes {
		if code.GrantID != wantGrant || code.UsedAt == nil {
			t.Errorf("redemption %d returned code with grant %q, used %v; want grant %q", i, code.GrantID, code.UsedAt, wantGrant)
		}
	}
	for i := range n {
		_, gerr := s.GetGrant(ctx, fmt.Sprint("g", i))
		_, rerr := s.GetRefreshToken(ctx, fmt.Sprint("rt", i))
		if i == winner && (gerr != nil || rerr != nil) {
			t.Errorf("winner's grant/token missing: %v, %v", gerr, rerr)
		}
		if i != winner && (!errors.Is(gerr, store.ErrNotFound) || !errors.Is(rerr, store.ErrNotFound)) {
			t.Errorf("loser %d wrote something: grant %v, token %v", i, gerr, rerr)
		}
	}
}

// A failure after the code is claimed must leave the code unused.
func TestPostgresRedeemAuthCodeAllOrNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.New(t)
	c, u := pgFixtures(t, s)
	exp := pgT0.Add(time.Hour)
	for _, d := range []string{"code1", "code2"} {
		if err := s.CreateAuthCode(ctx, store.AuthCode{Digest: d, ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	g := store.Grant{ID: "g", ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, LastUsedAt: pgT0, ExpiresAt: exp}
	if _, err := s.RedeemAuthCode(ctx, "code1", pgT0, g, nil); err != nil {
		t.Fatal(err)
	}
	// Same grant id again: the grant insert fails after the code is claimed.
	if _, err := s.RedeemAuthCode(ctx, "code2", pgT0, g, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("redeem with a duplicate grant = %v, want ErrConflict", err)
	}
	code, err := s.GetAuthCode(ctx, "code2", pgT0)
	if err != nil || code.UsedAt != nil || code.GrantID != "" {
		t.Errorf("code after a failed redemption: used %v, grant %q, %v", code.UsedAt, code.GrantID, err)
	}
	if _, err := s.RedeemAuthCode(ctx, "code1", exp, g, nil); !errors.Is(err, store.ErrAlreadyUsed) {
		t.Errorf("redeem an expired used code = %v, want ErrAlreadyUsed (a replay)", err)
	}
}

// Concurrent rotations of one refresh token: exactly one wins; the others
// are reuse, which revokes the grant.
func TestPostgresRotateRefreshTokenRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.New(t)
	c, u := pgFixtures(t, s)
	exp := pgT0.Add(time.Hour)
	if err := s.CreateAuthCode(ctx, store.AuthCode{Digest: "code", ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	g := store.Grant{ID: "g", ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, LastUsedAt: pgT0, ExpiresAt: exp}
	if _, err := s.RedeemAuthCode(ctx, "code", pgT0, g, &store.RefreshToken{Digest: "rt0", GrantID: "g", ClientID: c.ID, CreatedAt: pgT0, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessToken(ctx, store.AccessToken{Digest: "at", GrantID: "g", ClientID: c.ID, UserID: u.ID, CreatedAt: pgT0, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	grants := make([]store.Grant, n)
	now := pgT0.Add(time.Minute)
	for i := range n {
		wg.Go(func() {
			<-start
			next := store.RefreshToken{Digest: fmt.Sprint("rt1-", i), GrantID: "g", ClientID: c.ID, Parent: "rt0", CreatedAt: now, ExpiresAt: exp}
			grants[i], errs[i] = s.RotateRefreshToken(ctx, "rt0", now, next, 0)
		})
	}
	close(start)
	wg.Wait()
	wins, reuses := 0, 0
	for i, err := range errs {
		switch {
		case errors.Is(err, store.ErrAlreadyUsed):
			// The first loser detects the reuse and revokes the grant; the
			// later ones find it revoked.
			reuses++
		case errors.Is(err, store.ErrNotFound):
		case err == nil:
			wins++
			if grants[i].ID != "g" || !grants[i].LastUsedAt.Equal(now) {
				t.Errorf("winner got grant %+v", grants[i])
			}
			next, err := s.GetRefreshToken(ctx, fmt.Sprint("rt1-", i))
			if err != nil || next.GrantID != "g" || next.Parent != "rt0" || next.ClientID != c.ID {
				t.Errorf("winner's next token: %+v, %v", next, err)
			}
		default:
			t.Errorf("rotation %d: %v, want ErrAlreadyUsed or ErrNotFound", i, err)
		}
	}
	if wins != 1 || reuses < 1 {
		t.Fatalf("%d rotations won, %d detected reuse; want 1 and at least 1", wins, reuses)
	}
	// The losers were reuse: grant and its tokens are revoked.
	if g, err := s.GetGrant(ctx, "g"); err != nil || g.RevokedAt == nil || !g.RevokedAt.Equal(now) {
		t.Errorf("grant after reuse: %+v, %v", g, err)
	}
	if at, err := s.GetAccessToken(ctx, "at"); err != nil || at.RevokedAt == nil {
		t.Errorf("access token after reuse: %+v, %v", at, err)
	}
	for i, err := range errs {
		if err == nil {
			if next, err := s.GetRefreshToken(ctx, fmt.Sprint("rt1-", i)); err != nil || next.UsedAt == nil {
				t.Errorf("the winner's new token survives the reuse: %+v, %v", next, err)
			}
		}
	}
	for i := range n {
		if _, err := s.RotateRefreshToken(ctx, fmt.Sprint("rt1-", i), now, store.RefreshToken{Digest: "x", GrantID: "g", ClientID: c.ID, CreatedAt: now, ExpiresAt: exp}, 0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("rotating a token of the revoked grant: %v, want ErrNotFound", err)
		}
	}
}

// A rotation racing a revocation never leaves a usable token behind.
func TestPostgresRotateVersusRevoke(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.New(t)
	c, u := pgFixtures(t, s)
	exp := pgT0.Add(time.Hour)
	for i := range 10 {
		gid := fmt.Sprint("g", i)
		code := fmt.Sprint("code", i)
		if err := s.CreateAuthCode(ctx, store.AuthCode{Digest: code, ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
		g := store.Grant{ID: gid, ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, LastUsedAt: pgT0, ExpiresAt: exp}
		if _, err := s.RedeemAuthCode(ctx, code, pgT0, g, &store.RefreshToken{Digest: gid + "rt0", GrantID: gid, ClientID: c.ID, CreatedAt: pgT0, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var rotErr error
		wg.Go(func() {
			_, rotErr = s.RotateRefreshToken(ctx, gid+"rt0", pgT0, store.RefreshToken{Digest: gid + "rt1", GrantID: gid, ClientID: c.ID, CreatedAt: pgT0, ExpiresAt: exp}, 0)
		})
		wg.Go(func() {
			if err := s.RevokeGrant(ctx, gid, pgT0); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		if rotErr != nil && !errors.Is(rotErr, store.ErrNotFound) {
			t.Errorf("rotation racing revocation: %v", rotErr)
		}
		if _, err := s.RotateRefreshToken(ctx, gid+"rt1", pgT0, store.RefreshToken{Digest: gid + "rt2", GrantID: gid, ClientID: c.ID, CreatedAt: pgT0, ExpiresAt: exp}, 0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the token issued next to a revocation is usable: %v", err)
		}
	}
	if err := s.RevokeGrant(ctx, "g0", pgT0.Add(time.Hour)); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	if g, _ := s.GetGrant(ctx, "g0"); g.RevokedAt == nil || !g.RevokedAt.Equal(pgT0) {
		t.Errorf("revoking twice moved RevokedAt to %v", g.RevokedAt)
	}
	if err := s.RevokeGrant(ctx, "unknown", pgT0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeGrant(unknown) = %v, want ErrNotFound", err)
	}
}

func TestPostgresSigningKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.New(t)
	key := func(id string, st store.KeyState) store.SigningKey {
		return store.SigningKey{ID: id, Algorithm: "ES256", State: st, PublicJWK: []byte(`{"kty": "EC"}`), EncryptedPrivateKey: []byte{0, 1, 2}, CreatedAt: pgT0}
	}
	k1 := key("k1", store.KeyActive)
	k1.ActivatedAt = pgPtr(pgT0)
	if err := s.CreateSigningKey(ctx, k1); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSigningKey(ctx, key("k2", store.KeyActive)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second active key: %v, want ErrConflict", err)
	}
	if err := s.CreateSigningKey(ctx, key("k2", store.KeyNext)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSigningKey(ctx, key("k3", store.KeyNext)); err != nil {
		t.Fatal(err)
	}
	now, retire := pgT0.Add(time.Hour), pgT0.Add(3*time.Hour)
	// Two activations at once: both succeed in turn, one key ends up active.
	var wg sync.WaitGroup
	for _, kid := range []string{"k2", "k3"} {
		wg.Go(func() {
			if err := s.ActivateSigningKey(ctx, kid, now, retire); err != nil {
				t.Errorf("ActivateSigningKey(%s): %v", kid, err)
			}
		})
	}
	wg.Wait()
	keys, err := s.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	active := 0
	for _, k := range keys {
		switch k.State {
		case store.KeyActive:
			active++
		case store.KeyRetired:
			if k.RetiredAt == nil || !k.RetiredAt.Equal(now) || k.ExpiresAt == nil || !k.ExpiresAt.Equal(retire) {
				t.Errorf("retired key %s: %+v", k.ID, k)
			}
		}
		if string(k.PublicJWK) != `{"kty": "EC"}` {
			t.Errorf("public JWK not kept byte for byte: %s", k.PublicJWK)
		}
	}
	if active != 1 || keys[0].State != store.KeyRetired {
		t.Errorf("after activations: %+v", keys)
	}
	if err := s.ActivateSigningKey(ctx, "nope", now, retire); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("activating an unknown key: %v", err)
	}
}

// Purge deletes in batches until nothing expired is left, and only what
// is expired.
func TestPostgresPurge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, u := pgFixtures(t, s)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// More than one batch of expired jtis, and one still live.
	const many = 12001
	if _, err := conn.Exec(ctx, `INSERT INTO revoked_jtis (jti, expires_at) SELECT 'j' || i, $1 FROM generate_series(1, $2) i`, pgT0, many); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeJTI(ctx, "live", pgT0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, store.Session{IDDigest: "old", UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, ExpiresAt: pgT0}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, store.Session{IDDigest: "new", UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, ExpiresAt: pgT0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateClient(ctx, store.Client{ID: "cfg", Source: store.SourceConfig, CreatedAt: pgT0, UpdatedAt: pgT0, LastUsedAt: pgT0}); err != nil {
		t.Fatal(err)
	}

	now := pgT0.Add(time.Minute)
	res, err := s.Purge(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if res["revoked_jtis"] != many || res["sessions"] != 1 || res["clients"] != 0 {
		t.Errorf("Purge = %v", res)
	}
	if revoked, err := s.IsJTIRevoked(ctx, "live", now); err != nil || !revoked {
		t.Errorf("live jti purged: %v, %v", revoked, err)
	}
	if _, err := s.GetSession(ctx, "new", now); err != nil {
		t.Errorf("live session purged: %v", err)
	}
	// The dynamic client expires a day after pgT0; the config client never.
	res, err = s.Purge(ctx, c.ExpiresAt.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if res["clients"] != 1 || res["revoked_jtis"] != 1 {
		t.Errorf("second Purge = %v", res)
	}
	if n, err := s.CountClients(ctx, ""); err != nil || n != 1 {
		t.Errorf("clients left: %d, %v", n, err)
	}
}

// authd must start while the database is still down: opening the store
// does not connect, and Ping reports the database unavailable.
func TestOpenPostgresIsLazy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := store.OpenPostgres(ctx, "postgres://authd:hunter2@127.0.0.1:1/authd?connect_timeout=2")
	if err != nil {
		t.Fatalf("OpenPostgres with the database down: %v", err)
	}
	defer s.Close()
	err = s.Ping(ctx)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping = %v, want ErrUnavailable", err)
	}
	var u interface{ Unavailable() bool }
	if !errors.As(err, &u) || !u.Unavailable() {
		t.Errorf("Ping error %v has no Unavailable() method for the HTTP layer", err)
	}
	if _, err := s.GetUser(ctx, "x"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("GetUser = %v, want ErrUnavailable", err)
	}
	if st := s.PoolStats(); st.Max <= 0 || st.Acquired != 0 {
		t.Errorf("PoolStats = %+v", st)
	}
}

func TestOpenPostgresInvalidURLHidesPassword(t *testing.T) {
	t.Parallel()
	_, err := store.OpenPostgres(context.Background(), "postgres://authd:hunter2@host:notaport/authd")
	if err == nil {
		t.Fatal("OpenPostgres accepted an invalid URL")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestPostgresPoolStats(t *testing.T) {
	t.Parallel()
	s := pgtest.New(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := s.PoolStats()
	if st.Total < 1 || st.Idle < 1 || st.AcquireCount < 1 || st.NewConns < 1 {
		t.Errorf("PoolStats after a ping = %+v", st)
	}
}
