package token_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/token"
	"github.com/authd/authd/internal/tokens"
)

const (
	issuer   = "http://localhost:8080"
	resA     = "https://mcp.example.com/a"
	resB     = "https://mcp.example.com/b" // opaque tokens
	resOther = "https://elsewhere.example.com"
	redirect = "http://127.0.0.1:33333/callback"
	secret   = "authd_cs_confidential+secret:with/odd=chars"
)

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is the injected time, advanced by tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer collects log output from concurrent requests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// env is one token endpoint over real HTTP on a fresh Postgres database.
type env struct {
	t     *testing.T
	ctx   context.Context
	st    *store.Postgres
	keys  *keys.Manager
	clock *clock
	h     *token.Handler
	srv   *httptest.Server
	logs  *syncBuffer
	alice store.User
	bob   store.User
	// denied is consulted by UserCheck: users listed there fail it.
	denied *denyList
}

type denyList struct {
	mu  sync.Mutex
	ids map[string]bool
	// down makes UserCheck fail as when the database behind it (the
	// membership re-check's) cannot be reached.
	down bool
}

// sub returns e for use by subtest t (so that failures are reported by,
// and stop, the right goroutine).
func (e *env) sub(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// Test clients.
const (
	publicClient  = "mcp-public"   // public, authorization_code + refresh_token
	confClient    = "mcp-conf"     // confidential, every grant
	codeOnly      = "code-only"    // public, authorization_code only
	machine       = "machine"      // confidential, client_credentials only, restricted
	otherClient   = "other-client" // confidential, every grant
	publicMachine = "public-cc"    // public, registered client_credentials (never allowed)
)

func newEnv(t *testing.T, configure ...func(*token.Handler)) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, ctx: ctx, st: pgtest.New(t), clock: &clock{t: start}, logs: &syncBuffer{}, denied: &denyList{ids: map[string]bool{}}}
	km, err := keys.New(ctx, e.st, keys.Options{Algorithm: "ES256", EncryptionKey: keys.DeriveKEK("test secret"), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.keys = km
	e.seed()
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.h = &token.Handler{
		Store:   e.st,
		Clients: &clientauth.Authenticator{Clients: e.st, Now: e.clock.Now},
		Keys:    km,
		Issuer:  issuer,
		Policy: &policy.Policy{
			Resources: []policy.Resource{
				{URI: resA, Scopes: []string{"read", "write"}},
				{URI: resB, Scopes: []string{"read"}, TokenFormat: token.FormatOpaque},
			},
			DefaultResource: resA,
			Scopes:          []policy.Scope{{Name: "read"}, {Name: "write"}, {Name: "admin"}},
			DefaultScopes:   []string{"read"},
		},
		IdentityClaims: true,
		UserCheck: func(_ context.Context, u store.User) error {
			e.denied.mu.Lock()
			defer e.denied.mu.Unlock()
			if e.denied.down {
				return errors.New("claim membership check: connection reset by peer")
			}
			if e.denied.ids[u.ID] {
				return fmt.Errorf("%w: not on the allowlist", tokens.ErrUserNotAllowed)
			}
			return nil
		},
		Now: e.clock.Now,
		Log: log,
	}
	for _, f := range configure {
		f(e.h)
	}
	r := chi.NewRouter()
	e.h.Routes(r)
	e.srv = httptest.NewServer(r)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) seed() {
	t := e.t
	all := []string{token.GrantAuthorizationCode, token.GrantRefreshToken, token.GrantClientCredentials}
	for _, c := range []store.Client{
		{ID: publicClient, Metadata: store.ClientMetadata{GrantTypes: all[:2], TokenEndpointAuthMethod: "none"}},
		{ID: confClient, SecretHash: oauth.HashSecret(secret), Metadata: store.ClientMetadata{GrantTypes: all}},
		{ID: codeOnly, Metadata: store.ClientMetadata{GrantTypes: all[:1], TokenEndpointAuthMethod: "none"}},
		{ID: machine, SecretHash: oauth.HashSecret(secret), Metadata: store.ClientMetadata{GrantTypes: all[2:]},
			AllowedScopes: []string{"read"}, AllowedResources: []string{resA}},
		{ID: otherClient, SecretHash: oauth.HashSecret(secret), Metadata: store.ClientMetadata{GrantTypes: all}},
		{ID: publicMachine, Metadata: store.ClientMetadata{GrantTypes: all[2:], TokenEndpointAuthMethod: "none"}},
	} {
		c.Source = store.SourceConfig
		c.Metadata.RedirectURIs = []string{redirect}
		c.CreatedAt, c.UpdatedAt, c.LastUsedAt = start, start, start
		if err := e.st.CreateClient(e.ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	e.alice, err = e.st.UpsertUser(e.ctx, store.User{Provider: "dev", Subject: "alice", Login: "alice", Email: "alice@example.com", EmailVerified: true})
	if err != nil {
		t.Fatal(err)
	}
	e.bob, err = e.st.UpsertUser(e.ctx, store.User{Provider: "dev", Subject: "bob", Login: "bob"})
	if err != nil {
		t.Fatal(err)
	}
}

// code stores an authorization code as /authorize would and returns it
// with its PKCE verifier.
func (e *env) code(clientID string, mod ...func(*store.AuthCode)) (code, verifier string) {
	e.t.Helper()
	code, verifier = oauth.NewToken(oauth.PrefixCode), oauth2.GenerateVerifier()
	now := e.clock.Now()
	ac := store.AuthCode{
		Digest: oauth.Digest(code), ClientID: clientID, UserID: e.alice.ID,
		RedirectURI: redirect, RedirectURIProvided: true,
		Scopes: []string{"read", "write"}, Resources: []string{resA},
		CodeChallenge: oauth.S256Challenge(verifier), CodeChallengeMethod: oauth.MethodS256,
		AuthTime: now.Add(-time.Minute), CreatedAt: now, ExpiresAt: now.Add(time.Minute),
	}
	for _, f := range mod {
		f(&ac)
	}
	if err := e.st.CreateAuthCode(e.ctx, ac); err != nil {
		e.t.Fatal(err)
	}
	return code, verifier
}

// config is an x/oauth2 client for clientID; confidential clients use
// client_secret_basic unless style says otherwise.
func (e *env) config(clientID string, style ...oauth2.AuthStyle) *oauth2.Config {
	c := &oauth2.Config{
		ClientID:    clientID,
		RedirectURL: redirect,
		Endpoint:    oauth2.Endpoint{TokenURL: e.srv.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	if clientID != publicClient && clientID != codeOnly && clientID != publicMachine {
		c.ClientSecret = secret
		c.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	if len(style) > 0 {
		c.Endpoint.AuthStyle = style[0]
	}
	return c
}

// exchange redeems code with x/oauth2.
func (e *env) exchange(clientID, code, verifier string, opts ...oauth2.AuthCodeOption) (*oauth2.Token, error) {
	ctx := context.WithValue(e.ctx, oauth2.HTTPClient, e.srv.Client())
	return e.config(clientID).Exchange(ctx, code, append(opts, oauth2.VerifierOption(verifier))...)
}

// refresh uses x/oauth2's TokenSource to redeem a refresh token.
func (e *env) refresh(clientID, refreshToken string) (*oauth2.Token, error) {
	ctx := context.WithValue(e.ctx, oauth2.HTTPClient, e.srv.Client())
	return e.config(clientID).TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// reply is a raw HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (r reply) str(k string) string { s, _ := r.json[k].(string); return s }

// post sends form to path, with client credentials applied by auth.
func (e *env) post(path string, form url.Values, auth func(*http.Request, url.Values)) reply {
	e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != nil {
		auth(req, form)
	}
	req.Body = io.NopCloser(strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(req)
}

func (e *env) do(req *http.Request) reply {
	e.t.Helper()
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, body: b}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &r.json); err != nil {
			e.t.Fatalf("response is not JSON: %q", b)
		}
	}
	return r
}

// Client authentication styles for post.
func basicAuth(id, sec string) func(*http.Request, url.Values) {
	return func(r *http.Request, _ url.Values) {
		r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
	}
}

func postAuth(id, sec string) func(*http.Request, url.Values) {
	return func(_ *http.Request, f url.Values) {
		f.Set("client_id", id)
		f.Set("client_secret", sec)
	}
}

func publicAuth(id string) func(*http.Request, url.Values) {
	return func(_ *http.Request, f url.Values) { f.Set("client_id", id) }
}

// wantError asserts an RFC 6749 §5.2 error response.
func wantError(t *testing.T, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got %d %s, want %d %s", r.status, r.body, status, code)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Errorf("error response cacheable: %v", r.header)
	}
	if _, ok := r.json["access_token"]; ok {
		t.Error("error response carries an access token")
	}
}

// wantRetrieveError asserts an x/oauth2 error.
func wantRetrieveError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want an OAuth error %s", err, code)
	}
	if re.Response.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("got %d %q (%s), want %d %s", re.Response.StatusCode, re.ErrorCode, re.ErrorDescription, status, code)
	}
}

// verify checks a JWT access token the way a resource server would: with a
// standard JWT library and the public keys of the served JWKS, pinned
// algorithm, issuer, audience and expiry.
func (e *env) verify(raw, aud string) (*jwt.Token, jwt.MapClaims) {
	e.t.Helper()
	set := e.jwks()
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(raw, claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		k := set.Key(kid)
		if len(k) != 1 {
			return nil, errors.New("kid not in JWKS")
		}
		return k[0].Key, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(issuer), jwt.WithAudience(aud),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(e.clock.Now))
	if err != nil {
		e.t.Fatalf("access token does not verify: %v", err)
	}
	if tok.Header["typ"] != "at+jwt" {
		e.t.Errorf("typ = %v, want at+jwt", tok.Header["typ"])
	}
	return tok, claims
}

// rawClaims decodes a JWT's payload without verifying it, to look at the
// JSON exactly as sent.
func rawClaims(t *testing.T, raw string) map[string]json.RawMessage {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func (e *env) grantOf(refreshToken string) store.Grant {
	e.t.Helper()
	rt, err := e.st.GetRefreshToken(e.ctx, oauth.Digest(refreshToken))
	if err != nil {
		e.t.Fatalf("refresh token not stored: %v", err)
	}
	g, err := e.st.GetGrant(e.ctx, rt.GrantID)
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

func (e *env) codeUnused(code string) {
	e.t.Helper()
	ac, err := e.st.GetAuthCode(e.ctx, oauth.Digest(code), e.clock.Now())
	if err != nil {
		e.t.Fatalf("code gone: %v", err)
	}
	if ac.UsedAt != nil || ac.GrantID != "" {
		e.t.Fatal("a rejected request consumed the code")
	}
}

func (e *env) deny(u store.User) {
	e.denied.mu.Lock()
	defer e.denied.mu.Unlock()
	e.denied.ids[u.ID] = true
}

// jwks is the key set as /.well-known/jwks.json serves it, parsed with
// go-jose.
func (e *env) jwks() *jose.JSONWebKeySet {
	e.t.Helper()
	b, err := e.keys.JWKS(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		e.t.Fatal(err)
	}
	return &set
}
