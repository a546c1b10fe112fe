package tokens_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/tokens"
)

const (
	issuer    = "https://auth.example.com"
	resJWT    = "https://mcp.example.com"
	resOpaque = "https://files.example.com"
	app       = "app"   // the client tokens are issued to
	other     = "other" // another client
)

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// policy: resOpaque gets opaque tokens, everything else JWTs; every
// resource receives the login and the verified email.
type policy struct{}

func (policy) Format(aud []string) string {
	for _, a := range aud {
		if a == resOpaque {
			return tokens.FormatOpaque
		}
	}
	return tokens.FormatJWT
}

func (policy) IdentityClaims([]string) idclaims.Set { return idclaims.Basic }

// fixture is a token core over the in-memory store, with a user who
// signed in to app (a grant and its refresh token).
type fixture struct {
	t       *testing.T
	ctx     context.Context
	st      *store.Memory
	keys    *keys.Manager
	svc     *tokens.Service
	user    store.User
	grant   store.Grant
	refresh string // the grant's refresh token
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st := store.NewMemory()
	for _, id := range []string{app, other} {
		if err := st.CreateClient(ctx, store.Client{ID: id, Source: store.SourceConfig, CreatedAt: start, UpdatedAt: start}); err != nil {
			t.Fatal(err)
		}
	}
	user, err := st.UpsertUser(ctx, store.User{
		Provider: "github", Subject: "1", Login: "alice", Email: "alice@example.com", EmailVerified: true,
		CreatedAt: start, UpdatedAt: start, LastLoginAt: start,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateAuthCode(ctx, store.AuthCode{
		Digest: "code", ClientID: app, UserID: user.ID, AuthTime: start, CreatedAt: start, ExpiresAt: start.Add(time.Minute),
	}); err != nil {
		t.Fatal(err)
	}
	g := store.Grant{
		ID: "5b0c6a43-6f2e-4c5e-9a57-0d3f2b1e7a10", ClientID: app, UserID: user.ID, Scopes: []string{"read", "write"},
		Resources: []string{resJWT, resOpaque}, AuthTime: start.Add(-time.Minute), CreatedAt: start, LastUsedAt: start,
		ExpiresAt: start.Add(24 * time.Hour),
	}
	refresh := oauth.NewToken(oauth.PrefixRefreshToken)
	rt := &store.RefreshToken{Digest: oauth.Digest(refresh), GrantID: g.ID, ClientID: app, CreatedAt: start, ExpiresAt: start.Add(24 * time.Hour)}
	if _, err := st.RedeemAuthCode(ctx, "code", start, g, rt); err != nil {
		t.Fatal(err)
	}
	km, err := keys.New(ctx, st, keys.Options{
		Algorithm: keys.ES256, EncryptionKey: keys.DeriveKEK("tokens-test-secret-0123456789abcdef"),
		Now: func() time.Time { return start },
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{
		t: t, ctx: ctx, st: st, keys: km, user: user, grant: g, refresh: refresh,
		svc: &tokens.Service{Store: st, Clients: st, Keys: km, Issuer: issuer, Policy: policy{}},
	}
}

// userToken issues a token of the fixture's grant for aud.
func (f *fixture) userToken(aud string) tokens.Issued {
	f.t.Helper()
	return f.issue(tokens.Request{ClientID: app, User: &f.user, Grant: &f.grant, Scopes: []string{"read"}, Audience: []string{aud}})
}

func (f *fixture) issue(req tokens.Request) tokens.Issued {
	f.t.Helper()
	it, err := f.svc.Issue(f.ctx, start, req)
	if err != nil {
		f.t.Fatalf("Issue: %v", err)
	}
	return it
}

// active inspects raw at when and fails unless it is active.
func (f *fixture) active(raw string, when time.Time) *tokens.Info {
	f.t.Helper()
	info, err := f.svc.Inspect(f.ctx, raw, when)
	if err != nil {
		f.t.Fatalf("Inspect: %v, want active", err)
	}
	return info
}

// inactive fails unless raw is judged inactive (not a store failure).
func (f *fixture) inactive(raw string, when time.Time) {
	f.t.Helper()
	info, err := f.svc.Inspect(f.ctx, raw, when)
	var why tokens.InactiveError
	if !errors.As(err, &why) {
		f.t.Fatalf("Inspect = %+v, %v; want inactive", info, err)
	}
}

// TestIssueInspectRoundTrip: Issue writes each format as the policy says,
// KindOf recognises it, and Inspect reads back what was issued.
func TestIssueInspectRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		aud    string
		format string
		kind   tokens.Kind
	}{{resJWT, tokens.FormatJWT, tokens.KindJWT}, {resOpaque, tokens.FormatOpaque, tokens.KindOpaque}} {
		it := f.userToken(tc.aud)
		if it.Format != tc.format || tokens.KindOf(it.Value) != tc.kind {
			t.Fatalf("%s: issued %s, recognised as %v; want %s, %v", tc.aud, it.Format, tokens.KindOf(it.Value), tc.format, tc.kind)
		}
		if it.ExpiresIn != 3600 || !it.ExpiresAt.Equal(start.Add(time.Hour)) {
			t.Fatalf("%s: expires in %d at %v, want the default hour", tc.aud, it.ExpiresIn, it.ExpiresAt)
		}
		info := f.active(it.Value, start.Add(time.Minute))
		if info.Kind != tc.kind || !info.AccessToken() || info.ClientID != app || info.Subject != f.user.ID ||
			info.User == nil || info.User.ID != f.user.ID || info.GrantID != f.grant.ID ||
			!reflect.DeepEqual(info.Audience, []string{tc.aud}) || !reflect.DeepEqual(info.Scopes, []string{"read"}) ||
			!info.ExpiresAt.Equal(it.ExpiresAt) || !info.IssuedAt.Equal(start) || !info.AuthTime.Equal(f.grant.AuthTime) {
			t.Fatalf("%s: inspected %+v", tc.aud, info)
		}

		// A client's own token (client_credentials): no user, no grant.
		own := f.issue(tokens.Request{ClientID: app, Scopes: []string{"read"}, Audience: []string{tc.aud}})
		info = f.active(own.Value, start)
		if info.Subject != app || info.User != nil || info.GrantID != "" || info.Kind != tc.kind {
			t.Fatalf("%s: client token inspected as %+v", tc.aud, info)
		}
	}

	// The refresh token is recognised and active too, but is no access token.
	info := f.active(f.refresh, start)
	if info.Kind != tokens.KindRefresh || info.AccessToken() || info.Subject != f.user.ID || info.GrantID != f.grant.ID || info.Audience != nil {
		t.Fatalf("refresh token inspected as %+v", info)
	}
}

// TestIssueNeverOutlivesGrant: a token of a grant ending sooner than the
// token lifetime ends with the grant.
func TestIssueNeverOutlivesGrant(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	g := f.grant
	g.ExpiresAt = start.Add(10*time.Minute + 500*time.Millisecond)
	it := f.issue(tokens.Request{ClientID: app, User: &f.user, Grant: &g, Audience: []string{resJWT}})
	if it.ExpiresIn != 600 || !it.ExpiresAt.Equal(start.Add(10*time.Minute)) {
		t.Fatalf("expires in %d at %v, want 600 s, with the grant", it.ExpiresIn, it.ExpiresAt)
	}
}

// TestActAndCnfRoundTrip: a delegated, key-bound JWT carries the act chain
// (nested, RFC 8693 §4.1) and cnf as issued, in its payload and back out
// of Inspect, also from the verification cache, whose copy a caller cannot
// alter.
func TestActAndCnfRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	act := &tokens.Actor{Subject: "agent-2", ClientID: other, Actor: &tokens.Actor{Subject: "agent-1", Issuer: "https://idp.example.com"}}
	cnf := &tokens.Confirmation{JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
	it := f.issue(tokens.Request{
		ClientID: app, User: &f.user, Grant: &f.grant, Scopes: []string{"read"}, Audience: []string{resJWT},
		Actor: act, Confirmation: cnf,
	})

	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(it.Value, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		t.Fatal(err)
	}
	wantJSON := map[string]any{
		"act": map[string]any{"sub": "agent-2", "client_id": other, "act": map[string]any{"sub": "agent-1", "iss": "https://idp.example.com"}},
		"cnf": map[string]any{"jkt": cnf.JKT},
	}
	for k, want := range wantJSON {
		if !reflect.DeepEqual(raw[k], want) {
			t.Fatalf("payload %s = %v, want %v", k, raw[k], want)
		}
	}

	for i := range 2 { // verified, then from the cache
		info := f.active(it.Value, start.Add(time.Duration(i)*time.Minute))
		if !reflect.DeepEqual(info.Actor, act) || !reflect.DeepEqual(info.Confirmation, cnf) {
			t.Fatalf("inspection %d: act %+v cnf %+v", i, info.Actor, info.Confirmation)
		}
		info.Actor.Actor.Subject, info.Confirmation.JKT = "changed", "changed"
	}

	// A token without them has neither.
	info := f.active(f.userToken(resJWT).Value, start)
	if info.Actor != nil || info.Confirmation != nil {
		t.Fatalf("plain token inspected with act %+v, cnf %+v", info.Actor, info.Confirmation)
	}
}

// TestOpaqueRefusesActAndCnf: an opaque token has nowhere to keep act or
// cnf; issuing one must fail rather than drop them.
func TestOpaqueRefusesActAndCnf(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, req := range []tokens.Request{
		{ClientID: app, User: &f.user, Grant: &f.grant, Audience: []string{resOpaque}, Actor: &tokens.Actor{Subject: "agent"}},
		{ClientID: app, Audience: []string{resOpaque}, Confirmation: &tokens.Confirmation{JKT: "x"}},
	} {
		if it, err := f.svc.Issue(f.ctx, start, req); !errors.Is(err, tokens.ErrNotRepresentable) {
			t.Fatalf("Issue = %+v, %v; want ErrNotRepresentable", it, err)
		}
	}
}

// TestOpaqueForRevokedGrant: no opaque token is issued for a grant revoked
// meanwhile.
func TestOpaqueForRevokedGrant(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := f.st.RevokeGrant(f.ctx, f.grant.ID, start); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.Issue(f.ctx, start, tokens.Request{ClientID: app, User: &f.user, Grant: &f.grant, Audience: []string{resOpaque}})
	if oe := oauth.AsError(err); oe.Code != oauth.CodeInvalidGrant {
		t.Fatalf("Issue for a revoked grant: %v, want invalid_grant", err)
	}
}

// TestInspectInactive: every way a token stops standing makes it inactive,
// for each kind it applies to.
func TestInspectInactive(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// token returns the token to judge, after changing what it must.
		token func(f *fixture) string
		when  time.Duration // after start
	}{
		{"tampered signature", func(f *fixture) string {
			v := []byte(f.userToken(resJWT).Value)
			i := len(v) - 20 // inside the signature; still base64url
			if v[i] == 'A' {
				v[i] = 'B'
			} else {
				v[i] = 'A'
			}
			return string(v)
		}, 0},
		{"tampered claims", func(f *fixture) string {
			parts := strings.Split(f.userToken(resJWT).Value, ".")
			b, _ := base64.RawURLEncoding.DecodeString(parts[1])
			b = []byte(strings.Replace(string(b), `"scope":"read"`, `"scope":"admin"`, 1))
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
		}, 0},
		{"wrong issuer", func(f *fixture) string {
			foreign := &tokens.Service{Store: f.st, Clients: f.st, Keys: f.keys, Issuer: "https://evil.example.com"}
			it, err := foreign.Issue(f.ctx, start, tokens.Request{ClientID: app, Audience: []string{resJWT}})
			if err != nil {
				f.t.Fatal(err)
			}
			return it.Value
		}, 0},
		{"not an access token (typ)", func(f *fixture) string {
			v, err := f.keys.Sign(f.ctx, "JWT", &tokens.Claims{
				Issuer: issuer, Subject: app, ClientID: app, Audience: tokens.Audience{resJWT}, ID: "jti-1",
				IssuedAt: jwt.NewNumericDate(start), ExpiresAt: jwt.NewNumericDate(start.Add(time.Hour)),
			})
			if err != nil {
				f.t.Fatal(err)
			}
			return v
		}, 0},
		{"JWT expired", func(f *fixture) string { return f.userToken(resJWT).Value }, time.Hour},
		{"opaque expired", func(f *fixture) string { return f.userToken(resOpaque).Value }, time.Hour},
		{"refresh expired", func(f *fixture) string { return f.refresh }, 24 * time.Hour},
		{"JWT revoked", func(f *fixture) string { return f.revoked(resJWT) }, 0},
		{"opaque revoked", func(f *fixture) string { return f.revoked(resOpaque) }, 0},
		{"client token revoked", func(f *fixture) string {
			v := f.issue(tokens.Request{ClientID: app, Audience: []string{resJWT}}).Value
			if _, err := f.svc.Revoke(f.ctx, v, app, start); err != nil {
				f.t.Fatal(err)
			}
			return v
		}, 0},
		{"JWT of a revoked grant", func(f *fixture) string { return f.deadGrant(f.userToken(resJWT).Value) }, 0},
		{"opaque of a revoked grant", func(f *fixture) string { return f.deadGrant(f.userToken(resOpaque).Value) }, 0},
		{"refresh of a revoked grant", func(f *fixture) string { return f.deadGrant(f.refresh) }, 0},
		{"JWT of a deleted client", func(f *fixture) string { return f.deadClient(f.userToken(resJWT).Value, true) }, 0},
		{"opaque of a disabled client", func(f *fixture) string { return f.deadClient(f.userToken(resOpaque).Value, false) }, 0},
		{"client token of a disabled client", func(f *fixture) string {
			return f.deadClient(f.issue(tokens.Request{ClientID: app, Audience: []string{resJWT}}).Value, false)
		}, 0},
		{"refresh of a deleted client", func(f *fixture) string { return f.deadClient(f.refresh, true) }, 0},
		{"JWT of a disabled user", func(f *fixture) string { return f.deadUser(f.userToken(resJWT).Value) }, 0},
		{"opaque of a disabled user", func(f *fixture) string { return f.deadUser(f.userToken(resOpaque).Value) }, 0},
		{"refresh of a disabled user", func(f *fixture) string { return f.deadUser(f.refresh) }, 0},
		{"JWT of a user no longer allowed", func(f *fixture) string { return f.denied(f.userToken(resJWT).Value) }, 0},
		{"opaque of a user no longer allowed", func(f *fixture) string { return f.denied(f.userToken(resOpaque).Value) }, 0},
		{"unknown opaque token", func(f *fixture) string { return oauth.NewToken(oauth.PrefixAccessToken) }, 0},
		{"not a token", func(f *fixture) string { return "hello" }, 0},
		{"too long", func(f *fixture) string { return f.userToken(resJWT).Value + strings.Repeat("A", 9000) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			raw := tc.token(f)
			f.inactive(raw, start.Add(tc.when))
		})
	}
}

// revoked issues a token for aud and revokes it as its client.
func (f *fixture) revoked(aud string) string {
	v := f.userToken(aud).Value
	f.active(v, start) // and so cached, for a JWT: the cache must not hide the revocation
	if kind, err := f.svc.Revoke(f.ctx, v, app, start); err != nil || kind != tokens.KindOf(v) {
		f.t.Fatalf("Revoke = %v, %v", kind, err)
	}
	return v
}

func (f *fixture) deadGrant(v string) string {
	f.active(v, start)
	if err := f.st.RevokeGrant(f.ctx, f.grant.ID, start); err != nil {
		f.t.Fatal(err)
	}
	return v
}

func (f *fixture) deadClient(v string, deleted bool) string {
	f.active(v, start)
	if deleted {
		if err := f.st.DeleteClient(f.ctx, app); err != nil {
			f.t.Fatal(err)
		}
		return v
	}
	c, err := f.st.GetClient(f.ctx, app, start)
	if err != nil {
		f.t.Fatal(err)
	}
	c.Disabled = true
	if err := f.st.UpdateClient(f.ctx, c); err != nil {
		f.t.Fatal(err)
	}
	return v
}

func (f *fixture) deadUser(v string) string {
	f.active(v, start)
	if err := f.st.SetUserDisabled(f.ctx, f.user.ID, true); err != nil {
		f.t.Fatal(err)
	}
	return v
}

func (f *fixture) denied(v string) string {
	f.active(v, start)
	f.svc.UserCheck = func(_ context.Context, u store.User) error {
		if u.ID == f.user.ID {
			return fmt.Errorf("%w: not on the allowlist", tokens.ErrUserNotAllowed)
		}
		return nil
	}
	return v
}

// TestRevoke: only the client a token was issued to revokes it; revoking
// a refresh token ends its grant and every token of it; what cannot be
// revoked is ErrNothingRevoked.
func TestRevoke(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	jwtAT, opaqueAT := f.userToken(resJWT).Value, f.userToken(resOpaque).Value
	for _, v := range []string{jwtAT, opaqueAT, f.refresh} {
		if _, err := f.svc.Revoke(f.ctx, v, other, start); !errors.Is(err, tokens.ErrNothingRevoked) {
			t.Fatalf("another client revoking %v: %v, want ErrNothingRevoked", tokens.KindOf(v), err)
		}
		f.active(v, start)
	}
	for _, v := range []string{"hello", "a.b.c", oauth.NewToken(oauth.PrefixAccessToken)} {
		if _, err := f.svc.Revoke(f.ctx, v, app, start); !errors.Is(err, tokens.ErrNothingRevoked) {
			t.Fatalf("Revoke(%q): %v, want ErrNothingRevoked", v, err)
		}
	}
	// An expired JWT needs nothing.
	if _, err := f.svc.Revoke(f.ctx, jwtAT, app, start.Add(time.Hour)); !errors.Is(err, tokens.ErrNothingRevoked) {
		t.Fatalf("revoking an expired JWT: %v, want ErrNothingRevoked", err)
	}

	if kind, err := f.svc.Revoke(f.ctx, f.refresh, app, start); err != nil || kind != tokens.KindRefresh {
		t.Fatalf("Revoke(refresh) = %v, %v", kind, err)
	}
	for _, v := range []string{jwtAT, opaqueAT, f.refresh} {
		f.inactive(v, start)
	}
}

// failingStore answers every read with an outage.
type failingStore struct{ *store.Memory }

var errOutage = errors.New("database unreachable")

func (failingStore) GetAccessToken(context.Context, string) (store.AccessToken, error) {
	return store.AccessToken{}, errOutage
}

func (failingStore) CheckJWTGrant(context.Context, string, string, time.Time) (bool, store.Grant, store.User, error) {
	return false, store.Grant{}, store.User{}, errOutage
}

// TestInspectOutageIsNotInactive: a store that cannot answer makes
// Inspect fail with the store's error, never "inactive" nor "active".
func TestInspectOutageIsNotInactive(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	jwtAT, opaqueAT := f.userToken(resJWT).Value, f.userToken(resOpaque).Value
	f.svc = &tokens.Service{Store: failingStore{f.st}, Clients: f.st, Keys: f.keys, Issuer: issuer}
	for _, v := range []string{jwtAT, opaqueAT} {
		info, err := f.svc.Inspect(f.ctx, v, start)
		var why tokens.InactiveError
		if !errors.Is(err, errOutage) || errors.As(err, &why) {
			t.Fatalf("Inspect during an outage = %+v, %v; want the outage", info, err)
		}
	}
}

// TestInspectUserCheckOutage: a UserCheck that could not be made (its
// error does not wrap ErrUserNotAllowed: the membership re-check's
// database is down) is an outage, 503, never "inactive": token exchange
// would otherwise answer invalid_request and /introspect "inactive" for a
// user still allowed.
func TestInspectUserCheckOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	jwtAT, opaqueAT := f.userToken(resJWT).Value, f.userToken(resOpaque).Value
	f.svc.UserCheck = func(context.Context, store.User) error { return errOutage }
	for _, v := range []string{jwtAT, opaqueAT} {
		info, err := f.svc.Inspect(f.ctx, v, start)
		var why tokens.InactiveError
		if !errors.Is(err, errOutage) || errors.As(err, &why) || oauth.AsError(err).Status != http.StatusServiceUnavailable {
			t.Fatalf("Inspect when the user check fails = %+v, %v; want a 503 outage", info, err)
		}
	}
}
