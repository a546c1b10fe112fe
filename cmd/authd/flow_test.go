package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

const (
	mcpResource        = "https://mcp.example.com/mcp"
	introspectionToken = "static-introspection-token-0123456789abcdef"
)

// flowEnv is authd on Postgres with a fake GitHub upstream.
type flowEnv struct {
	github *upstreamtest.GitHub
	cfg    string
	env    map[string]string
}

func newFlowEnv(t *testing.T, dsn string) *flowEnv {
	t.Helper()
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(upstreamtest.GitHubUser{
		ID: 1001, Login: "alice", Name: "Alice",
		Emails: []upstreamtest.GitHubEmail{{Email: "alice@example.com", Primary: true, Verified: true}},
		Orgs:   []string{"acme"},
	})
	p := filepath.Join(t.TempDir(), "authd.yaml")
	err := os.WriteFile(p, []byte(fmt.Sprintf(`
keys:
  encryption_secret: test-encryption-secret-0123456789abcdef
scopes:
  - {name: mcp:tools, description: Use the tools}
  - {name: mcp:resources, description: Read resources}
default_scopes: [mcp:tools]
resources:
  - uri: %s
    name: Example MCP
    scopes: [mcp:tools, mcp:resources]
    required_scopes: [mcp:tools]
trusted_proxies: ["127.0.0.1/32"]
introspection:
  bearer_tokens: [%s]
upstreams:
  - id: github
    type: github
    client_id: %s
    client_secret: %s
    github:
      base_url: %s
      api_url: %s
      load_teams: true
allowlist:
  github_orgs: [acme]
`, mcpResource, introspectionToken, gh.ClientID, gh.ClientSecret, gh.BaseURL(), gh.APIURL())), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return &flowEnv{github: gh, cfg: p, env: map[string]string{"AUTHD_DATABASE_URL": dsn}}
}

func (f *flowEnv) start(t *testing.T) *instance {
	t.Helper()
	return startAuthdWith(t, freeAddr(t), f.env, f.github.Client(), "--config", f.cfg)
}

// browser is a cookie-carrying user agent that follows redirects until it
// reaches the client's redirect URI, and answers consent pages.
type browser struct {
	c        *http.Client
	redirect string
}

func newBrowser(t *testing.T, transport http.RoundTripper, redirectPrefix string) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{redirect: redirectPrefix}
	b.c = &http.Client{
		Jar: jar, Transport: transport, Timeout: 20 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), b.redirect) || len(via) > 10 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	return b
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// authorize runs the browser part of the flow from authURL (via base, the
// server's URL, for consent) and returns the query of the final redirect
// to the client.
func (b *browser) authorize(t *testing.T, base, authURL string) url.Values {
	t.Helper()
	resp, err := b.c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `action="/consent"`) {
		form := url.Values{"decision": {"approve"}}
		for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
			form.Set(m[1], htmlUnescape(m[2]))
		}
		resp, err = b.c.PostForm(base+"/consent", form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, b.redirect) {
		t.Fatalf("flow did not end at the client: %d %s\n%s", resp.StatusCode, loc, body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

// TestMCPClientFlowWithOAuth2Library is issue 5's end-to-end test: a public
// MCP client registers, runs the code flow with PKCE through a GitHub login
// and consent, exchanges the code, refreshes, and has its refresh-token
// reuse detected — all with golang.org/x/oauth2 against Postgres.
func TestMCPClientFlowWithOAuth2Library(t *testing.T) {
	t.Parallel()
	f := newFlowEnv(t, pgtest.DSN(t))
	inst := f.start(t)
	ctx := context.Background()

	redirect := "http://127.0.0.1:45123/callback"
	reg := registerClient(t, inst.URL, map[string]any{
		"client_name":                "Example MCP client",
		"redirect_uris":              []string{"http://127.0.0.1/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{
		ClientID:    reg["client_id"].(string),
		RedirectURL: redirect,
		Scopes:      []string{"mcp:tools"},
		Endpoint: oauth2.Endpoint{
			AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token", AuthStyle: oauth2.AuthStyleInParams,
		},
	}
	verifier := oauth2.GenerateVerifier()
	state := "state-" + oauth2.GenerateVerifier()[:16]
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))

	b := newBrowser(t, f.github.Client().Transport, "http://127.0.0.1:45123/callback")
	q := b.authorize(t, inst.URL, authURL)
	if q.Get("state") != state || q.Get("iss") != inst.URL || q.Get("code") == "" {
		t.Fatalf("authorization response %v", q)
	}

	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.TokenType != "Bearer" {
		t.Fatalf("token response %+v", tok)
	}
	claims := verifyWithJWKS(t, inst.URL, tok.AccessToken)
	if claims["aud"] != mcpResource || claims["client_id"] != conf.ClientID || claims["scope"] != "mcp:tools" {
		t.Fatalf("access token claims %v", claims)
	}

	// The code is single-use: a replay fails (and revokes what it produced,
	// tested at the token package level).
	if _, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("code replay: %v", err)
	}
	// That replay revoked the grant, so run a fresh authorization; the
	// browser session and the remembered consent make it silent.
	verifier = oauth2.GenerateVerifier()
	q = b.authorize(t, inst.URL, conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
	tok, err = conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))
	if err != nil {
		t.Fatal(err)
	}

	// Refresh through the library's TokenSource: rotation gives a new pair.
	old := *tok
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	refreshed, err := conf.TokenSource(ctx, &expired).Token()
	if err != nil {
		t.Fatal(err)
	}
	if refreshed.RefreshToken == "" || refreshed.RefreshToken == old.RefreshToken || refreshed.AccessToken == old.AccessToken {
		t.Fatal("refresh did not rotate")
	}
	verifyWithJWKS(t, inst.URL, refreshed.AccessToken)

	// Once the chain has moved on (the new refresh token was used),
	// presenting the rotated-out refresh token is reuse: refused, and the
	// whole family is revoked, so the newest refresh token dies too.
	moved := *refreshed
	moved.Expiry = time.Now().Add(-time.Minute)
	newest, err := conf.TokenSource(ctx, &moved).Token()
	if err != nil {
		t.Fatal(err)
	}
	stale := old
	stale.Expiry = time.Now().Add(-time.Minute)
	if _, err := conf.TokenSource(ctx, &stale).Token(); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("refresh token reuse: %v", err)
	}
	latest := *newest
	latest.Expiry = time.Now().Add(-time.Minute)
	if _, err := conf.TokenSource(ctx, &latest).Token(); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("refresh after reuse detection: %v", err)
	}
	if !strings.Contains(inst.Logs.String(), "refresh_token_reuse") {
		t.Error("reuse detection was not logged as an audit event")
	}
}

func isOAuthError(err error, code string) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == code
}
