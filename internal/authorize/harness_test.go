package authorize

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

// testStore is what the tests need from a store: the handler's methods
// plus setup and inspection.
type testStore interface {
	Store
	CreateClient(ctx context.Context, c store.Client) error
	UpdateClient(ctx context.Context, c store.Client) error
	DeleteClient(ctx context.Context, id string) error
	SetUserDisabled(ctx context.Context, id string, disabled bool) error
	GetAuthCode(ctx context.Context, digest string, now time.Time) (store.AuthCode, error)
	RedeemAuthCode(ctx context.Context, digest string, now time.Time, g store.Grant, rt *store.RefreshToken) (store.AuthCode, error)
	GetGrant(ctx context.Context, id string) (store.Grant, error)
	GetUser(ctx context.Context, id string) (store.User, error)
	GetSession(ctx context.Context, idDigest string, now time.Time) (store.Session, error)
}

// newTestStore returns the store the tests run against: a fresh Postgres
// database of its own.
func newTestStore(t *testing.T) testStore { return pgtest.New(t) }

// recStore counts the handler's writes, so that every rejection can assert
// that nothing was created.
type recStore struct {
	testStore
	mu     sync.Mutex
	writes map[string]int
	// failEnd names requests (by id digest) whose end (a settle without
	// a sign-in) fails as a database outage would, writing nothing.
	failEnd map[string]bool
}

// FailEnd makes the end of the request idDigest fail from now on.
func (s *recStore) FailEnd(idDigest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failEnd == nil {
		s.failEnd = map[string]bool{}
	}
	s.failEnd[idDigest] = true
}

func (s *recStore) count(m string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes[m]++
}

// Writes returns the write counts and resets them.
func (s *recStore) Writes() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.writes
	s.writes = map[string]int{}
	return w
}

func (s *recStore) CreateAuthRequest(ctx context.Context, r store.AuthRequest) error {
	s.count("CreateAuthRequest")
	return s.testStore.CreateAuthRequest(ctx, r)
}
func (s *recStore) UpdateAuthRequest(ctx context.Context, r store.AuthRequest) error {
	s.count("UpdateAuthRequest")
	return s.testStore.UpdateAuthRequest(ctx, r)
}

// The claim is not counted: it only makes the request wait for no answer,
// creating nothing, and a settle or the request's end follows it.
func (s *recStore) SettleAuthRequest(ctx context.Context, idDigest, stateDigest string, now time.Time, signIn *store.SignIn) (store.AuthRequest, error) {
	s.mu.Lock()
	fail := signIn == nil && s.failEnd[idDigest]
	s.mu.Unlock()
	if fail {
		return store.AuthRequest{}, store.Unavailable(errors.New("test: the database is down"))
	}
	r, err := s.testStore.SettleAuthRequest(ctx, idDigest, stateDigest, now, signIn)
	// Counted when it wrote a sign-in: a refused settle writes nothing, and
	// one without a sign-in deletes, as ConsumeAuthRequest does.
	if err == nil && signIn != nil {
		s.count("SettleAuthRequest")
	}
	return r, err
}
func (s *recStore) UpsertUser(ctx context.Context, u store.User) (store.User, error) {
	s.count("UpsertUser")
	return s.testStore.UpsertUser(ctx, u)
}
func (s *recStore) CreateSession(ctx context.Context, x store.Session) error {
	s.count("CreateSession")
	return s.testStore.CreateSession(ctx, x)
}
func (s *recStore) AddConsent(ctx context.Context, c store.Consent) error {
	s.count("AddConsent")
	return s.testStore.AddConsent(ctx, c)
}
func (s *recStore) DeleteConsent(ctx context.Context, u, c string, now time.Time) error {
	s.count("DeleteConsent")
	return s.testStore.DeleteConsent(ctx, u, c, now)
}
func (s *recStore) CreateAuthCode(ctx context.Context, c store.AuthCode) error {
	s.count("CreateAuthCode")
	return s.testStore.CreateAuthCode(ctx, c)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// allowFunc is a test allowlist.
type allowFunc func(providerType string, u store.User) error

func (f allowFunc) Check(providerType string, u store.User) error { return f(providerType, u) }

// env is one authd (this package's routes) on httptest, with fake
// upstreams and real connectors.
type env struct {
	t     *testing.T
	st    *recStore
	clock *clock
	h     *Handler
	srv   *httptest.Server
	// base is the issuer's path ("" at the host root): the routes are
	// mounted under it.
	base   string
	gh     *upstreamtest.GitHub
	google *upstreamtest.OIDC
	oidc   *upstreamtest.OIDC
	// allow is consulted by the default allowlist (nil: allow everyone).
	allowMu sync.Mutex
	allow   func(providerType string, u store.User) error
	tr      http.RoundTripper
}

const (
	resMCP   = "https://mcp.example.com"
	resOther = "https://other.example.com/mcp"
	appURI   = "https://app.example.com/callback"
)

// newEnv starts authd with the named connectors ("github", "google",
// "oidc"), in chooser order. configure may adjust the handler.
func newEnv(t *testing.T, connectors []string, configure ...func(*Handler)) *env {
	t.Helper()
	return newEnvStore(t, newTestStore(t), connectors, configure...)
}

// newEnvStore is newEnv on the given store.
func newEnvStore(t *testing.T, st testStore, connectors []string, configure ...func(*Handler)) *env {
	t.Helper()
	return newEnvAt(t, st, "", connectors, configure...)
}

// newEnvAt is newEnvStore with an issuer whose path is base ("/tenant"),
// the routes mounted under it as cmd/authd mounts them.
func newEnvAt(t *testing.T, st testStore, base string, connectors []string, configure ...func(*Handler)) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{t: time.Now().Truncate(time.Second)}, base: base}
	e.st = &recStore{testStore: st, writes: map[string]int{}}

	var mux http.Handler
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { mux.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)

	var conns []upstream.Connector
	for _, id := range connectors {
		var cfg upstream.Config
		var hc *http.Client
		switch id {
		case "github":
			e.gh = upstreamtest.NewGitHub(t)
			cfg, hc = e.gh.Config(id), e.gh.Client()
			cfg.Name = "GitHub"
		case "google":
			e.google = upstreamtest.NewOIDC(t)
			e.google.Now = e.clock.Now
			cfg, hc = e.google.Config(id, upstream.TypeGoogle), e.google.Client()
			cfg.Name = "Google"
			cfg.OIDC.HostedDomain = "example.com"
		case "oidc":
			e.oidc = upstreamtest.NewOIDC(t)
			e.oidc.Now = e.clock.Now
			cfg, hc = e.oidc.Config(id, upstream.TypeOIDC), e.oidc.Client()
			cfg.Name = "Company SSO"
		case "dev":
			cfg = upstream.Config{ID: id, Type: upstream.TypeDev, Name: "Development login"}
			hc = http.DefaultClient
		default:
			t.Fatalf("unknown connector %q", id)
		}
		cfg.RedirectURL = e.srv.URL + base + "/callback/" + id
		// authd, the connectors and the fake providers share one clock.
		cfg.Now = e.clock.Now
		// Every httptest TLS server has the same certificate, so the
		// browser can use any fake's transport.
		if hc.Transport != nil {
			e.tr = hc.Transport
		}
		c, err := upstream.New(context.Background(), cfg, hc, nil)
		if err != nil {
			t.Fatalf("connector %s: %v", id, err)
		}
		conns = append(conns, c)
	}

	e.h = &Handler{
		Store:      e.st,
		Issuer:     e.srv.URL + base,
		Connectors: conns,
		Allowlist: allowFunc(func(pt string, u store.User) error {
			e.allowMu.Lock()
			f := e.allow
			e.allowMu.Unlock()
			if f == nil {
				return nil
			}
			return f(pt, u)
		}),
		Policy: &policy.Policy{
			Resources: []policy.Resource{
				{URI: resMCP, Name: "Example MCP", Scopes: []string{"read", "write"}},
				{URI: resOther, Name: "Other MCP", Scopes: []string{"read", "other-only"}},
			},
			Scopes: []policy.Scope{
				{Name: "read", Description: "Read your notes"},
				{Name: "write", Description: "Change your notes"},
				{Name: "admin", Description: "Administer the server"},
				{Name: "other-only"},
			},
			// admin is allowed for neither resource: dropped when a resource
			// is requested.
			DefaultScopes: []string{"read", "admin"},
		},
		Now: e.clock.Now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range configure {
		f(e.h)
	}
	r := chi.NewRouter()
	if base != "" {
		r.Route(base, e.h.Routes)
	} else {
		e.h.Routes(r)
	}
	mux = r

	if e.gh != nil {
		e.gh.AddUser(upstreamtest.GitHubUser{
			ID: 1001, Login: "alice", Name: "Alice",
			Emails: []upstreamtest.GitHubEmail{{Email: "alice@example.com", Primary: true, Verified: true}},
		})
	}
	if e.google != nil {
		e.google.AddUser(upstreamtest.OIDCUser{Subject: "g-123", Email: "bob@example.com", EmailVerified: true, Name: "Bob", HostedDomain: "example.com"})
	}
	if e.oidc != nil {
		e.oidc.AddUser(upstreamtest.OIDCUser{Subject: "o-456", Email: "carol@corp.example", EmailVerified: true, Name: "Carol",
			PreferredUsername: "carol", Groups: []string{"engineering", "mcp-users"}})
	}
	return e
}

// subtest is one case of a group sharing an env (one database and one set
// of fakes); cases run one after the other.
type subtest struct {
	name string
	f    func(t *testing.T, e *env)
}

func runSubtests(t *testing.T, e *env, cases ...subtest) {
	t.Helper()
	for _, c := range cases {
		e.st.Writes() // start counting afresh
		t.Run(c.name, func(t *testing.T) { c.f(t, e) })
	}
}

func (e *env) setAllow(f func(providerType string, u store.User) error) {
	e.allowMu.Lock()
	defer e.allowMu.Unlock()
	e.allow = f
}

// addClient registers a client; zero fields get test defaults.
func (e *env) addClient(c store.Client) store.Client {
	e.t.Helper()
	if c.ID == "" {
		c.ID = "client-" + oauth.RandomString(6)
	}
	if c.Source == "" {
		c.Source = store.SourceDynamic
	}
	if c.Metadata.RedirectURIs == nil {
		c.Metadata.RedirectURIs = []string{appURI}
	}
	if c.Metadata.ClientName == "" {
		c.Metadata.ClientName = "Test App"
	}
	if c.Metadata.TokenEndpointAuthMethod == "" {
		c.Metadata.TokenEndpointAuthMethod = "none"
	}
	now := e.clock.Now()
	c.CreatedAt, c.UpdatedAt, c.LastUsedAt = now, now, now
	if err := e.st.CreateClient(context.Background(), c); err != nil {
		e.t.Fatalf("CreateClient: %v", err)
	}
	return c
}

// browser is a cookie-carrying client that follows redirects within authd
// and the fake upstreams and stops at anything else (the client's
// redirect URI).
type browser struct {
	t   testing.TB
	e   *env
	c   *http.Client
	jar http.CookieJar
	// stopAtCallback stops before authd's /callback, to capture its URL.
	stopAtCallback bool
}

func (e *env) browser(t testing.TB) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, e: e, jar: jar}
	hosts := []string{e.srv.URL}
	if e.gh != nil {
		hosts = append(hosts, e.gh.BaseURL())
	}
	for _, o := range []*upstreamtest.OIDC{e.google, e.oidc} {
		if o != nil {
			hosts = append(hosts, o.Issuer())
		}
	}
	internal := func(u *url.URL) bool {
		for _, s := range hosts {
			if su, _ := url.Parse(s); su.Host == u.Host {
				return true
			}
		}
		return false
	}
	b.c = &http.Client{
		Transport: e.tr,
		Jar:       jar,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 20 {
				return errors.New("too many redirects")
			}
			if !internal(req.URL) || (b.stopAtCallback && strings.HasPrefix(req.URL.Path, e.base+"/callback/")) {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	return b
}

// resp is a finished response with its body read.
type resp struct {
	status int
	header http.Header
	body   string
	url    *url.URL // the URL of the last request
}

func (r resp) location() *url.URL {
	l := r.header.Get("Location")
	if l == "" {
		return nil
	}
	u, err := url.Parse(l)
	if err != nil {
		return nil
	}
	return u
}

func (b *browser) do(req *http.Request) resp {
	b.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: string(body), url: res.Request.URL}
}

func (b *browser) get(rawURL string) resp {
	b.t.Helper()
	if strings.HasPrefix(rawURL, "/") {
		rawURL = b.e.srv.URL + rawURL
	}
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(path string, form url.Values, header ...string) resp {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.do(req)
}

// authz is one authorization request as an MCP client builds it, with
// golang.org/x/oauth2.
type authz struct {
	clientID, redirectURI, state, verifier string
	scopes                                 []string
	resources                              []string
	extra                                  map[string]string
}

func newAuthz(clientID, redirectURI string) *authz {
	return &authz{clientID: clientID, redirectURI: redirectURI, state: "st-" + oauth.RandomString(8),
		verifier: oauth2.GenerateVerifier(), resources: []string{resMCP}, scopes: []string{"read"}}
}

func (a *authz) url(e *env) string {
	cfg := oauth2.Config{
		ClientID:    a.clientID,
		Endpoint:    oauth2.Endpoint{AuthURL: e.srv.URL + e.base + "/authorize"},
		RedirectURL: a.redirectURI,
		Scopes:      a.scopes,
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(a.verifier)}
	for k, v := range a.extra {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	u := cfg.AuthCodeURL(a.state, opts...)
	for _, r := range a.resources {
		u += "&resource=" + url.QueryEscape(r)
	}
	return u
}

// expectCode checks that r is the redirect to the client carrying a code,
// state and iss, and returns the stored code.
func (e *env) expectCode(t testing.TB, r resp, a *authz) (string, store.AuthCode) {
	t.Helper()
	loc := r.location()
	if r.status != http.StatusFound && r.status != http.StatusSeeOther || loc == nil {
		t.Fatalf("want a redirect to the client, got %d %s\n%s", r.status, r.header.Get("Location"), excerpt(r.body))
	}
	want, _ := url.Parse(a.redirectURI)
	if loc.Scheme != want.Scheme || loc.Host != want.Host || loc.Path != want.Path {
		t.Fatalf("redirected to %s, want %s", loc, a.redirectURI)
	}
	q := loc.Query()
	if q.Get("error") != "" {
		t.Fatalf("got error %s: %s", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != a.state || q.Get("iss") != e.h.Issuer {
		t.Fatalf("state=%q iss=%q, want %q %q", q.Get("state"), q.Get("iss"), a.state, e.h.Issuer)
	}
	code := q.Get("code")
	if !strings.HasPrefix(code, oauth.PrefixCode) || len(code) < len(oauth.PrefixCode)+43 {
		t.Fatalf("code %q is not an authd code of 256 bits", code)
	}
	c, err := e.st.GetAuthCode(context.Background(), oauth.Digest(code), e.clock.Now())
	if err != nil {
		t.Fatalf("issued code not stored by digest: %v", err)
	}
	return code, c
}

// expectRedirectError checks that r redirects to the client with the
// given error code, state and iss.
func (e *env) expectRedirectError(t testing.TB, r resp, redirectURI, code, state string) {
	t.Helper()
	loc := r.location()
	if loc == nil || (r.status != http.StatusFound && r.status != http.StatusSeeOther) {
		t.Fatalf("want a redirect with error %s, got %d\n%s", code, r.status, excerpt(r.body))
	}
	if !strings.HasPrefix(loc.String(), redirectURI) {
		t.Fatalf("error redirected to %s, want %s", loc, redirectURI)
	}
	q := loc.Query()
	if q.Get("error") != code {
		t.Fatalf("error = %q (%s), want %q", q.Get("error"), q.Get("error_description"), code)
	}
	if q.Get("state") != state {
		t.Fatalf("state = %q, want %q", q.Get("state"), state)
	}
	if q.Get("iss") != e.h.Issuer {
		t.Fatalf("iss = %q, want %q", q.Get("iss"), e.h.Issuer)
	}
	if q.Get("code") != "" {
		t.Fatal("an error redirect carries a code")
	}
}

// expectPage checks an HTML page answer that redirects nowhere.
func (e *env) expectPage(t testing.TB, r resp, status int, contains string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d\n%s", r.status, status, excerpt(r.body))
	}
	if l := r.header.Get("Location"); l != "" {
		t.Fatalf("page answer has Location %s", l)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	expectSecurityHeaders(t, r)
	if !strings.Contains(html.UnescapeString(r.body), contains) {
		t.Fatalf("page does not say %q:\n%s", contains, excerpt(r.body))
	}
}

// expectNoWrites checks that nothing was created or changed since the
// last call.
func (e *env) expectNoWrites(t testing.TB) {
	t.Helper()
	if w := e.st.Writes(); len(w) > 0 {
		t.Fatalf("store writes happened: %v", w)
	}
}

var styleRe = regexp.MustCompile(`(?s)<style>(.*?)</style>`)

func expectSecurityHeaders(t testing.TB, r resp) {
	t.Helper()
	h := r.header
	for k, want := range map[string]string{
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "no-referrer",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := h.Get(k); got != want {
			t.Fatalf("%s = %q, want %q", k, got, want)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, d) {
			t.Fatalf("CSP %q lacks %s", csp, d)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") {
		t.Fatalf("CSP %q allows inline code or scripts", csp)
	}
	m := styleRe.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatal("page has no style element")
	}
	sum := sha256.Sum256([]byte(m[1]))
	if !strings.Contains(csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") {
		t.Fatalf("CSP %q does not allow the page's style by hash", csp)
	}
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS header on an authorization page")
	}
}

var (
	csrfRe   = regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	handleRe = regexp.MustCompile(`name="req" value="([^"]*)"`)
)

// consentForm extracts the hidden fields of a consent page.
func consentForm(t testing.TB, r resp) url.Values {
	t.Helper()
	c, h := csrfRe.FindStringSubmatch(r.body), handleRe.FindStringSubmatch(r.body)
	if r.status != http.StatusOK || c == nil || h == nil {
		t.Fatalf("not a consent page: %d\n%s", r.status, excerpt(r.body))
	}
	return url.Values{"csrf": {html.UnescapeString(c[1])}, "req": {html.UnescapeString(h[1])}}
}

// approve submits a consent page.
func (b *browser) decide(page resp, decision string) resp {
	b.t.Helper()
	f := consentForm(b.t, page)
	f.Set("decision", decision)
	return b.post(b.e.base+"/consent", f)
}

func excerpt(s string) string {
	if len(s) > 1500 {
		return s[:1500] + "..."
	}
	return s
}

func isConsentPage(r resp) bool {
	return r.status == http.StatusOK && strings.Contains(r.body, `action="/consent"`)
}
