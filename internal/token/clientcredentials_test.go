package token_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/token"
)

func testClientCredentials(t *testing.T, e *env) {
	cc := &clientcredentials.Config{
		ClientID: machine, ClientSecret: secret, TokenURL: e.srv.URL + "/token",
		AuthStyle: oauth2.AuthStyleInHeader,
	}
	ctx := context.WithValue(e.ctx, oauth2.HTTPClient, e.srv.Client())
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" {
		t.Error("client_credentials issued a refresh token")
	}
	if tok.Extra("scope") != "read" || tok.Extra("expires_in") != float64(3600) {
		t.Errorf("scope %v expires_in %v", tok.Extra("scope"), tok.Extra("expires_in"))
	}
	_, claims := e.verify(tok.AccessToken, resA)
	if claims["sub"] != machine || claims["client_id"] != machine || claims["scope"] != "read" {
		t.Errorf("claims %v", claims)
	}
	for _, k := range []string{"gid", "auth_time", "preferred_username", "email"} {
		if _, ok := claims[k]; ok {
			t.Errorf("client_credentials token has %s", k)
		}
	}

	// client_secret_post too, with explicit scope and resource.
	r := e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}, "resource": {resA}}, postAuth(machine, secret))
	if r.status != http.StatusOK || r.str("scope") != "read" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// A client without restrictions gets the server's default scopes for
	// the default resource, or what it asks within the resource's scopes.
	r = e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basicAuth(confClient, secret))
	if r.status != http.StatusOK || r.str("scope") != "read" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// An empty scope parameter is an absent one (RFC 6749 §3.3), not a
	// request for a token without scopes.
	r = e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {""}}, basicAuth(confClient, secret))
	if r.status != http.StatusOK || r.str("scope") != "read" {
		t.Fatalf("empty scope: %d %s", r.status, r.body)
	}
	e.verify(r.str("access_token"), resA)
	r = e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read write"}}, basicAuth(confClient, secret))
	if r.status != http.StatusOK || r.str("scope") != "read write" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// An opaque resource gets an opaque token (stored: the one write this
	// grant may do).
	r = e.post("/token", url.Values{"grant_type": {"client_credentials"}, "resource": {resB}}, basicAuth(confClient, secret))
	if r.status != http.StatusOK || !strings.HasPrefix(r.str("access_token"), oauth.PrefixAccessToken) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if at, err := e.st.GetAccessToken(e.ctx, oauth.Digest(r.str("access_token"))); err != nil || at.ClientID != confClient || at.GrantID != "" || at.UserID != "" {
		t.Fatalf("stored client_credentials token %+v %v", at, err)
	}
}

func testClientCredentialsRejections(t *testing.T, e *env) {
	cc := func(kv ...string) url.Values {
		f := url.Values{"grant_type": {"client_credentials"}}
		for i := 0; i < len(kv); i += 2 {
			f.Add(kv[i], kv[i+1])
		}
		return f
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		auth   func(*http.Request, url.Values)
		status int
		code   string
	}{
		{"public client", cc(), publicAuth(publicMachine), http.StatusBadRequest, oauth.CodeUnauthorizedClient},
		{"client not registered for it", cc(), publicAuth(publicClient), http.StatusBadRequest, oauth.CodeUnauthorizedClient},
		{"scope beyond the client's", cc("scope", "read write"), basicAuth(machine, secret), http.StatusBadRequest, oauth.CodeInvalidScope},
		{"scope the resource does not accept", cc("scope", "write", "resource", resB), basicAuth(confClient, secret), http.StatusBadRequest, oauth.CodeInvalidScope},
		{"resource beyond the client's", cc("resource", resB), basicAuth(machine, secret), http.StatusBadRequest, oauth.CodeInvalidTarget},
		{"resource unknown to the server", cc("resource", resOther), basicAuth(confClient, secret), http.StatusBadRequest, oauth.CodeInvalidTarget},
		{"wrong secret", cc(), basicAuth(machine, "nope"), http.StatusUnauthorized, oauth.CodeInvalidClient},
		{"duplicated scope", cc("scope", "read", "scope", "read"), basicAuth(machine, secret), http.StatusBadRequest, oauth.CodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			r := e.post("/token", tc.form, tc.auth)
			wantError(t, r, tc.status, tc.code)
			if tc.status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") != `Basic realm="authd"` {
				t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestClientCredentialsAnyResource(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h *token.Handler) { h.Policy.AllowAnyResource = true })
	r := e.post("/token", url.Values{"grant_type": {"client_credentials"}, "resource": {resOther}, "scope": {"admin"}}, basicAuth(confClient, secret))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if _, claims := e.verify(r.str("access_token"), resOther); claims["scope"] != "admin" {
		t.Errorf("claims %v", claims)
	}
}

// countingStore counts every call the token endpoint, the client cache and
// the key manager can make: their interfaces reach nothing else.
type countingStore struct {
	store.Store
	calls atomic.Int64
}

func (c *countingStore) n() int64 { return c.calls.Load() }

func (c *countingStore) GetClient(ctx context.Context, id string, now time.Time) (store.Client, error) {
	c.calls.Add(1)
	return c.Store.GetClient(ctx, id, now)
}
func (c *countingStore) GetAuthCode(ctx context.Context, d string, now time.Time) (store.AuthCode, error) {
	c.calls.Add(1)
	return c.Store.GetAuthCode(ctx, d, now)
}
func (c *countingStore) GetAuthCodeUser(ctx context.Context, d string, now time.Time) (store.AuthCode, store.User, error) {
	c.calls.Add(1)
	return c.Store.GetAuthCodeUser(ctx, d, now)
}
func (c *countingStore) RedeemAuthCode(ctx context.Context, d string, now time.Time, g store.Grant, rt *store.RefreshToken) (store.AuthCode, error) {
	c.calls.Add(1)
	return c.Store.RedeemAuthCode(ctx, d, now, g, rt)
}
func (c *countingStore) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	c.calls.Add(1)
	return c.Store.GetGrant(ctx, id)
}
func (c *countingStore) RevokeGrant(ctx context.Context, id string, now time.Time) error {
	c.calls.Add(1)
	return c.Store.RevokeGrant(ctx, id, now)
}
func (c *countingStore) GetRefreshToken(ctx context.Context, d string) (store.RefreshToken, error) {
	c.calls.Add(1)
	return c.Store.GetRefreshToken(ctx, d)
}
func (c *countingStore) RotateRefreshToken(ctx context.Context, old string, now time.Time, next store.RefreshToken, window time.Duration) (store.Grant, error) {
	c.calls.Add(1)
	return c.Store.RotateRefreshToken(ctx, old, now, next, window)
}
func (c *countingStore) GetUser(ctx context.Context, id string) (store.User, error) {
	c.calls.Add(1)
	return c.Store.GetUser(ctx, id)
}
func (c *countingStore) TouchClient(ctx context.Context, id string, now time.Time, idle time.Duration) error {
	c.calls.Add(1)
	return c.Store.TouchClient(ctx, id, now, idle)
}
func (c *countingStore) CreateAccessToken(ctx context.Context, t store.AccessToken) error {
	c.calls.Add(1)
	return c.Store.CreateAccessToken(ctx, t)
}
func (c *countingStore) GetAccessToken(ctx context.Context, d string) (store.AccessToken, error) {
	c.calls.Add(1)
	return c.Store.GetAccessToken(ctx, d)
}
func (c *countingStore) RevokeAccessToken(ctx context.Context, d string, now time.Time) error {
	c.calls.Add(1)
	return c.Store.RevokeAccessToken(ctx, d, now)
}
func (c *countingStore) RevokeJTI(ctx context.Context, jti string, exp time.Time) error {
	c.calls.Add(1)
	return c.Store.RevokeJTI(ctx, jti, exp)
}
func (c *countingStore) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	c.calls.Add(1)
	return c.Store.ListSigningKeys(ctx)
}
func (c *countingStore) CreateSigningKey(ctx context.Context, k store.SigningKey) error {
	c.calls.Add(1)
	return c.Store.CreateSigningKey(ctx, k)
}
func (c *countingStore) ActivateSigningKey(ctx context.Context, kid string, now, retire time.Time) error {
	c.calls.Add(1)
	return c.Store.ActivateSigningKey(ctx, kid, now, retire)
}

// A client allowed one resource that names none gets a token for that
// resource, not for the server's default, resA (policy.DefaultAudienceFor).
func testClientCredentialsSingleAllowedResource(t *testing.T, e *env) {
	const onlyB = "only-b"
	if err := e.st.CreateClient(e.ctx, store.Client{
		ID: onlyB, SecretHash: oauth.HashSecret(secret), Source: store.SourceConfig,
		Metadata:         store.ClientMetadata{GrantTypes: []string{token.GrantClientCredentials}, RedirectURIs: []string{redirect}},
		AllowedResources: []string{resB},
		CreatedAt:        start, UpdatedAt: start, LastUsedAt: start,
	}); err != nil {
		t.Fatal(err)
	}
	r := e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basicAuth(onlyB, secret))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// resB has opaque tokens: the stored token names its audience.
	at, err := e.st.GetAccessToken(e.ctx, oauth.Digest(r.str("access_token")))
	if err != nil || len(at.Resources) != 1 || at.Resources[0] != resB {
		t.Fatalf("token for %+v (%v), want resource %s", at.Resources, err, resB)
	}
}

// Issuing a JWT to a machine client needs no database at all once its
// client record is cached: no write, and not even a read.
func TestClientCredentialsNoDatabase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := &countingStore{Store: e.st}
	km, err := keys.New(e.ctx, cs, keys.Options{Algorithm: "ES256", EncryptionKey: keys.DeriveKEK("test secret"), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := *e.h
	h.Store = cs
	h.Keys = km
	h.Clients = &clientauth.Authenticator{Clients: clientauth.NewCachedClients(cs, 10*time.Second, e.clock.Now), Now: e.clock.Now}
	r := chi.NewRouter()
	h.Routes(r)
	srv := httptest.NewServer(r)
	defer srv.Close()

	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	issue := func() string {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/token", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(machine, url.QueryEscape(secret))
		resp := e.do(req)
		if resp.status != http.StatusOK {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
		return resp.str("access_token")
	}
	issue() // warms the client cache
	before := cs.n()
	for range 20 {
		e.verify(issue(), resA)
	}
	if got := cs.n() - before; got != 0 {
		t.Fatalf("client_credentials made %d store calls, want none", got)
	}
	// Past the cache TTL the client is read again (a deleted client stops
	// working within the TTL): one read, still no write.
	e.clock.Add(11 * time.Second)
	before = cs.n()
	issue()
	if got := cs.n() - before; got != 1 {
		t.Fatalf("after the TTL: %d store calls, want the one client read", got)
	}
}

// Open registration must not be a way around signing in: a dynamically
// registered client gets no client_credentials token unless the operator
// allows it; when allowed, each use slides the client's idle expiry as
// code and refresh grants do.
func TestClientCredentialsDynamicClients(t *testing.T) {
	t.Parallel()
	for _, allowed := range []bool{false, true} {
		e := newEnv(t, func(h *token.Handler) {
			h.Grants = grants.Default().AllowDynamic(grants.ClientCredentials, allowed)
			h.ClientIdleLifetime = 30 * 24 * time.Hour
		})
		exp := start.Add(24 * time.Hour)
		c, err := e.st.GetClient(e.ctx, machine, start)
		if err != nil {
			t.Fatal(err)
		}
		c.Source, c.ExpiresAt = store.SourceDynamic, &exp
		if err := e.st.UpdateClient(e.ctx, c); err != nil {
			t.Fatal(err)
		}
		e.clock.Add(2 * time.Hour)
		r := e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basicAuth(machine, secret))
		if !allowed {
			if r.status != http.StatusBadRequest || r.str("error") != oauth.CodeUnauthorizedClient || r.str("access_token") != "" {
				t.Fatalf("dynamic client, not allowed: %d %s", r.status, r.body)
			}
			continue
		}
		if r.status != http.StatusOK || r.str("access_token") == "" {
			t.Fatalf("dynamic client, allowed: %d %s", r.status, r.body)
		}
		c, err = e.st.GetClient(e.ctx, machine, e.clock.Now())
		if err != nil || c.ExpiresAt == nil || !c.ExpiresAt.After(exp) {
			t.Fatalf("client_credentials use did not slide the idle expiry: %v %v", c.ExpiresAt, err)
		}
	}
}
