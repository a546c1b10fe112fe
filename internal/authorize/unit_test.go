package authorize

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream"
)

// stubConnector is the smallest upstream: it only builds URLs.
type stubConnector struct {
	state string
	got   upstream.LoginOptions
}

func (c *stubConnector) ID() string          { return "stub" }
func (c *stubConnector) Type() string        { return "oidc" }
func (c *stubConnector) DisplayName() string { return "Stub" }
func (c *stubConnector) AuthCodeURL(state string, o upstream.LoginOptions) string {
	c.state, c.got = state, o
	return "https://idp.example/auth?" + url.Values{"state": {state}, "code_challenge": {oauth.S256Challenge(o.Verifier)}}.Encode()
}
func (c *stubConnector) HandleCallback(context.Context, *http.Request, upstream.LoginOptions) (upstream.Identity, error) {
	return upstream.Identity{}, &upstream.Error{Code: upstream.CodeUpstreamError, Message: "stub"}
}

// TestHTTPSCookiesAndUpstreamSecrets checks, for an https issuer, the
// request cookie's attributes and that what the upstream and the database
// see is not enough to rebuild the PKCE verifier or the nonce.
func TestHTTPSCookiesAndUpstreamSecrets(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	now := time.Now()
	conn := &stubConnector{}
	h := &Handler{
		Store: st, Issuer: "https://auth.example.com", Connectors: []upstream.Connector{conn},
		Allowlist: allowFunc(func(string, store.User) error { return nil }),
		Policy:    &policy.Policy{Resources: []policy.Resource{{URI: resMCP, Name: "MCP"}}},
		Now:       func() time.Time { return now },
	}
	r := chi.NewRouter()
	h.Routes(r)
	if err := st.CreateClient(context.Background(), store.Client{ID: "c1", Source: store.SourceDynamic,
		Metadata: store.ClientMetadata{RedirectURIs: []string{appURI}}, CreatedAt: now, UpdatedAt: now, LastUsedAt: now}); err != nil {
		t.Fatal(err)
	}
	q := validQuery("c1", appURI)
	q.Set("login_hint", "alice@example.com")
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://auth.example.com/authorize?"+q.Encode(), nil))
	if rec.Code != http.StatusFound || !strings.HasPrefix(rec.Header().Get("Location"), "https://idp.example/auth?") {
		t.Fatalf("%d %s", rec.Code, rec.Header().Get("Location"))
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	c := cookies[0]
	if !strings.HasPrefix(c.Name, "__Host-authd_rq_") || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode ||
		c.Path != "/" || c.Domain != "" || c.MaxAge != 600 {
		t.Fatalf("request cookie %+v", c)
	}
	rid := c.Value
	if !strings.HasPrefix(rid, oauth.PrefixRequest) {
		t.Fatal("cookie does not hold the request id")
	}
	req, err := st.GetAuthRequest(context.Background(), oauth.Digest(rid), now)
	if err != nil {
		t.Fatal(err)
	}
	state, verifier, nonce, hint := conn.state, conn.got.Verifier, conn.got.Nonce, conn.got.LoginHint
	if hint != "alice@example.com" || !oauth.ValidVerifier(verifier) || nonce == "" || nonce == verifier {
		t.Fatalf("upstream got verifier %q nonce %q hint %q", verifier, nonce, hint)
	}
	if req.UpstreamStateDigest != oauth.Digest(state) || req.Upstream != "stub" {
		t.Fatalf("stored upstream state %+v", req)
	}
	// Derived from the request id and the state: neither alone suffices,
	// and the database has neither in clear.
	if verifier != upstreamVerifier(rid, state) || nonce != upstreamNonce(rid, state) {
		t.Fatal("verifier or nonce not derived as documented")
	}
	if upstreamVerifier(rid, oauth.NewToken(oauth.PrefixState)) == verifier || upstreamVerifier(oauth.NewToken(oauth.PrefixRequest), state) == verifier {
		t.Fatal("verifier does not depend on both inputs")
	}
	for _, secret := range []string{rid, state, verifier, nonce} {
		for _, field := range []string{req.IDDigest, req.UpstreamStateDigest, req.State, req.Nonce, req.LoginHint, req.CodeChallenge} {
			if field == secret {
				t.Fatal("a secret is stored in clear")
			}
		}
	}
	if strings.Contains(rec.Header().Get("Location"), rid) {
		t.Fatal("request id sent upstream")
	}

	// The session cookie gets the same protection.
	rec = httptest.NewRecorder()
	h.setCookie(rec, h.cookieName(sessionCookie), "x", time.Hour)
	sc := rec.Result().Cookies()[0]
	if sc.Name != "__Host-authd_session" || !sc.Secure || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Path != "/" {
		t.Fatalf("session cookie %+v", sc)
	}
}

func TestAppendQuery(t *testing.T) {
	t.Parallel()
	v := url.Values{"code": {"c d"}, "state": {"s&t"}}
	for in, want := range map[string]string{
		"https://a.example/cb":                 "https://a.example/cb?code=c+d&state=s%26t",
		"https://a.example/cb?x=1":             "https://a.example/cb?x=1&code=c+d&state=s%26t",
		"https://a.example/cb?b=2&a=1":         "https://a.example/cb?b=2&a=1&code=c+d&state=s%26t",
		"cursor://anysphere.cursor/oauth?x=%2": "cursor://anysphere.cursor/oauth?x=%2&code=c+d&state=s%26t",
	} {
		if got := appendQuery(in, v); got != want {
			t.Errorf("appendQuery(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedirectHost(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]struct {
		host     string
		loopback bool
	}{
		"https://app.example.com/cb":      {"app.example.com", false},
		"https://app.example.com:8443/cb": {"app.example.com:8443", false},
		"http://127.0.0.1:5000/cb":        {"127.0.0.1:5000", true},
		"http://[::1]:5000/cb":            {"[::1]:5000", true},
		"http://localhost/cb":             {"localhost", true},
		"cursor://anysphere.cursor/oauth": {"cursor://anysphere.cursor", false},
		"com.example.app:/oauth2redirect": {"com.example.app:", false},
	} {
		host, lb := redirectHost(in)
		if host != want.host || lb != want.loopback {
			t.Errorf("redirectHost(%q) = %q %v, want %q %v", in, host, lb, want.host, want.loopback)
		}
	}
}
