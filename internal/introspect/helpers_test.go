package introspect_test

import (
	"bytes"
	"context"
	"encoding/json"
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
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/ratelimit"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/token"
)

const (
	issuer = "http://localhost:8080"
	// resRoot is an MCP server at the root of its host; resAdmin a second
	// resource below it, which /verify must tell apart by longest prefix.
	resRoot   = "https://mcp.example.com"
	resAdmin  = "https://mcp.example.com/admin"
	resOpaque = "https://files.example.com" // opaque access tokens
	// resMCP is the resource of the proxy examples in deploy/.
	resMCP   = "https://mcp.example.com/mcp"
	redirect = "http://127.0.0.1:33333/callback"
	secret   = "authd_cs_resource+server:secret/with=odd&chars"
	// staticToken is a configured introspection bearer token.
	staticToken = "static-introspection-token-0123456789abcdef"
	cacheTTL    = 5 * time.Second
)

// Clients.
const (
	mcpClient  = "mcp-client"   // public: authorization_code + refresh_token
	mcpClient2 = "mcp-client-2" // the same, for a client deleted in a test
	machine    = "machine"      // confidential: client_credentials
	rs         = "rs"           // resource server allowed to introspect everything
	rsAdmin    = "rs-admin"     // resource server restricted to resAdmin
	notRS      = "not-rs"       // confidential, not allowed to introspect
	publicRS   = "public-rs"    // public client flagged CanIntrospect (never honoured)
)

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

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

// env is authd's /token, /revoke, /introspect and /verify over real HTTP,
// on a fresh Postgres database, with one clock for everything.
type env struct {
	t     testing.TB
	ctx   context.Context
	st    store.Store
	clock *clock
	keys  *keys.Manager
	h     *introspect.Handler
	srv   *httptest.Server
	logs  *syncBuffer
	alice store.User // verified email
	bob   store.User // no email
}

type option func(*introspect.Handler)

// with is e for subtest t, so that helpers fail the right test.
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

func newEnv(t testing.TB, opts ...option) *env {
	t.Helper()
	return newEnvWith(t, pgtest.New(t), opts...)
}

// newEnvWith is newEnv over st (benchmarks use the memory store to
// measure the CPU path alone).
func newEnvWith(t testing.TB, st store.Store, opts ...option) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, ctx: ctx, st: st, clock: &clock{t: start}, logs: &syncBuffer{}}
	km, err := keys.New(ctx, e.st, keys.Options{Algorithm: "ES256", EncryptionKey: keys.DeriveKEK("introspect test"), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.keys = km
	e.seed()

	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// One client cache, as in production: /token and /introspect share it.
	clients := &clientauth.Authenticator{Clients: clientauth.NewCachedClients(e.st, cacheTTL, e.clock.Now), Now: e.clock.Now}
	// One policy, as in production: /token issues by the resources /verify
	// guards and /introspect describes (options may change it in place).
	// resRoot comes first (forward_test.go changes Resources[0]).
	pol := &policy.Policy{
		Resources: []policy.Resource{
			{URI: resRoot, Scopes: []string{"read", "write"}, RequiredScopes: []string{"read"}},
			{URI: resAdmin, Scopes: []string{"read", "admin"}, RequiredScopes: []string{"admin"}},
			{URI: resOpaque, Scopes: []string{"read"}, TokenFormat: token.FormatOpaque},
		},
		DefaultResource: resRoot,
		Scopes:          []policy.Scope{{Name: "read"}, {Name: "write"}, {Name: "admin"}, {Name: "mcp:tools"}, {Name: "mcp:resources"}},
		DefaultScopes:   []string{"read"},
	}
	tok := &token.Handler{
		Store:          e.st,
		Clients:        clients,
		Keys:           km,
		Issuer:         issuer,
		Policy:         pol,
		IdentityClaims: true,
		Now:            e.clock.Now,
		Log:            log,
	}
	e.h = &introspect.Handler{
		Store:          e.st,
		Clients:        clients,
		Keys:           km,
		Issuer:         issuer,
		BearerTokens:   []string{"another-configured-token-0123456789abcdef", staticToken},
		Policy:         pol,
		IdentityClaims: true,
		Now:            e.clock.Now,
		Log:            log,
	}
	for _, o := range opts {
		o(e.h)
	}
	r := chi.NewRouter()
	tok.Routes(r)
	e.h.Routes(r)
	e.srv = httptest.NewServer(r)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) seed() {
	t := e.t
	code := []string{token.GrantAuthorizationCode, token.GrantRefreshToken}
	cc := []string{token.GrantClientCredentials}
	for _, c := range []store.Client{
		// Confidential and allowed to introspect: a refresh token is
		// active only to the client holding it.
		{ID: mcpClient, SecretHash: oauth.HashSecret(secret), CanIntrospect: true, Metadata: store.ClientMetadata{GrantTypes: code, TokenEndpointAuthMethod: "client_secret_post"}},
		{ID: mcpClient2, SecretHash: oauth.HashSecret(secret), CanIntrospect: true, Metadata: store.ClientMetadata{GrantTypes: code, TokenEndpointAuthMethod: "client_secret_post"}},
		{ID: machine, SecretHash: oauth.HashSecret(secret), Metadata: store.ClientMetadata{GrantTypes: cc}},
		{ID: rs, SecretHash: oauth.HashSecret(secret), CanIntrospect: true, Metadata: store.ClientMetadata{GrantTypes: cc}},
		{ID: rsAdmin, SecretHash: oauth.HashSecret(secret), CanIntrospect: true, AllowedResources: []string{resAdmin},
			Metadata: store.ClientMetadata{GrantTypes: cc}},
		{ID: notRS, SecretHash: oauth.HashSecret(secret), Metadata: store.ClientMetadata{GrantTypes: cc}},
		{ID: publicRS, CanIntrospect: true, Metadata: store.ClientMetadata{GrantTypes: code, TokenEndpointAuthMethod: "none"}},
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
	e.bob, err = e.st.UpsertUser(e.ctx, store.User{Provider: "dev", Subject: "bob", Login: "bob", Email: "bob@unverified.example", EmailVerified: false})
	if err != nil {
		t.Fatal(err)
	}
}

// grantSpec describes the authorization a user gave, as /authorize would
// have recorded it in the code.
type grantSpec struct {
	client    string // default mcpClient
	user      store.User
	scopes    []string
	resources []string
}

// login runs the authorization code grant for mcpClient with x/oauth2 and
// returns the tokens: an access token (JWT, or opaque for resOpaque) and a
// refresh token. resource, if given, narrows the access token's audience.
func (e *env) login(g grantSpec, resource ...string) *oauth2.Token {
	e.t.Helper()
	if g.client == "" {
		g.client = mcpClient
	}
	code, verifier := oauth.NewToken(oauth.PrefixCode), oauth2.GenerateVerifier()
	now := e.clock.Now()
	if err := e.st.CreateAuthCode(e.ctx, store.AuthCode{
		Digest: oauth.Digest(code), ClientID: g.client, UserID: g.user.ID,
		RedirectURI: redirect, RedirectURIProvided: true,
		Scopes: g.scopes, Resources: g.resources,
		CodeChallenge: oauth.S256Challenge(verifier), CodeChallengeMethod: oauth.MethodS256,
		AuthTime: now.Add(-time.Minute), CreatedAt: now, ExpiresAt: now.Add(time.Minute),
	}); err != nil {
		e.t.Fatal(err)
	}
	cfg := &oauth2.Config{
		ClientID: g.client, ClientSecret: secret, RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{TokenURL: e.srv.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	for _, r := range resource {
		opts = append(opts, oauth2.SetAuthURLParam("resource", r))
	}
	tok, err := cfg.Exchange(e.clientCtx(), code, opts...)
	if err != nil {
		e.t.Fatalf("code exchange: %v", err)
	}
	return tok
}

// alice logs alice in for resRoot with read and write.
func (e *env) aliceToken() *oauth2.Token {
	return e.login(grantSpec{user: e.alice, scopes: []string{"read", "write"}, resources: []string{resRoot}})
}

// machineToken gets a client_credentials access token for the machine client.
func (e *env) machineToken(resource string, scopes ...string) string {
	e.t.Helper()
	cfg := &clientcredentials.Config{
		ClientID: machine, ClientSecret: secret, TokenURL: e.srv.URL + "/token", Scopes: scopes,
		EndpointParams: url.Values{"resource": {resource}}, AuthStyle: oauth2.AuthStyleInHeader,
	}
	tok, err := cfg.Token(e.clientCtx())
	if err != nil {
		e.t.Fatalf("client_credentials: %v", err)
	}
	return tok.AccessToken
}

func (e *env) clientCtx() context.Context {
	return context.WithValue(e.ctx, oauth2.HTTPClient, e.srv.Client())
}

// reply is a raw HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (r reply) str(k string) string { s, _ := r.json[k].(string); return s }

// auth applies the caller's credentials to an /introspect request.
type auth func(*http.Request, url.Values)

func basic(id, sec string) auth {
	return func(r *http.Request, _ url.Values) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec)) }
}

func post(id, sec string) auth {
	return func(_ *http.Request, f url.Values) {
		f.Set("client_id", id)
		if sec != "" {
			f.Set("client_secret", sec)
		}
	}
}

func bearer(tok string) auth {
	return func(r *http.Request, _ url.Values) { r.Header.Set("Authorization", "Bearer "+tok) }
}

// introspect asks /introspect about tok as the resource server rs, or,
// for a refresh token, as the client holding it: the only caller to which
// a refresh token can be active (TestIntrospectRefreshTokenOnlyToItsClient
// covers the others).
func (e *env) introspect(tok string, kv ...string) reply {
	e.t.Helper()
	caller := rs
	if strings.HasPrefix(tok, oauth.PrefixRefreshToken) {
		caller = mcpClient
		if rt, err := e.st.GetRefreshToken(e.ctx, oauth.Digest(tok)); err == nil {
			caller = rt.ClientID
		}
	}
	return e.introspectAs(basic(caller, secret), tok, kv...)
}

func (e *env) introspectAs(a auth, tok string, kv ...string) reply {
	e.t.Helper()
	f := url.Values{"token": {tok}}
	for i := 0; i < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return e.postForm("/introspect", f, a)
}

func (e *env) postForm(path string, form url.Values, a auth) reply {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if a != nil {
		a(req, form)
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

// revoke revokes tok at /revoke as the client it was issued to.
func (e *env) revoke(tok string, a auth) {
	e.t.Helper()
	r := e.postForm("/revoke", url.Values{"token": {tok}}, a)
	if r.status != http.StatusOK {
		e.t.Fatalf("revoke: %d %s", r.status, r.body)
	}
}

// wantActive asserts an active introspection answer and returns it.
func wantActive(t *testing.T, r reply) reply {
	t.Helper()
	if r.status != http.StatusOK || r.json["active"] != true {
		t.Fatalf("got %d %s, want an active token", r.status, r.body)
	}
	wantNoStore(t, r)
	return r
}

// wantInactive asserts RFC 7662's answer for an inactive token, byte for
// byte: nothing but "active": false.
func wantInactive(t *testing.T, r reply) {
	t.Helper()
	if r.status != http.StatusOK || string(r.body) != `{"active":false}` {
		t.Fatalf("got %d %s, want exactly {\"active\":false}", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	wantNoStore(t, r)
}

func wantNoStore(t *testing.T, r reply) {
	t.Helper()
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", r.header.Get("Cache-Control"))
	}
}

// wantError asserts an RFC 6749 §5.2 error answer that says nothing about
// any token.
func wantError(t *testing.T, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got %d %s, want %d %s", r.status, r.body, status, code)
	}
	if _, ok := r.json["active"]; ok {
		t.Errorf("error answer carries token information: %s", r.body)
	}
	wantNoStore(t, r)
}

// limiter returns an option installing a limiter of n requests per caller,
// and a throttle of n failed authentications per network.
func limiter(n int) option {
	return func(h *introspect.Handler) {
		h.Limiter = ratelimit.New(ratelimit.Config{PerKeyPerMinute: 1, PerKeyBurst: n}, h.Now)
		h.Clients.Throttle = clientauth.NewThrottle(clientauth.ThrottleConfig{PerIPPerMinute: 1, PerIPBurst: n}, h.Now)
	}
}
