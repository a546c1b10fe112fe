package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

// authorizeStep sends the browser b to /authorize for conf (one request,
// no redirect followed) and returns where authd sends it and the PKCE
// verifier of the request.
func authorizeStep(t *testing.T, b *browser, conf *oauth2.Config) (*url.URL, string) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	c := *b.c
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("/authorize answered %d, Location %q; want a redirect", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc, verifier
}

// toGitHub reports whether loc is the fake GitHub's sign-in.
func (e *brokerEnv) toGitHub(loc *url.URL) bool {
	return strings.HasPrefix(loc.String(), e.github.BaseURL()+"/")
}

// TestRemovedFromOrgMustSignInAgain: once the membership check finds the
// user removed from the org (membership_revoked), authd's session no
// longer signs them in: the old session cookie at /authorize leads to
// GitHub's sign-in (where the allowlist is applied), not to a code.
func TestRemovedFromOrgMustSignInAgain(t *testing.T) {
	t.Parallel()
	e := newBrokerEnv(t)
	r := e.start(t)
	conf, tok, b := e.signInWith(t, r, nil)
	if loc, _ := authorizeStep(t, b, conf); loc.Query().Get("code") == "" {
		t.Fatalf("before the removal, authd's session should give a code; went to %s", loc.Redacted())
	}

	e.github.SetMemberships("bob", nil, nil)
	e.clock.Advance(16 * time.Minute)
	if _, err := refresh(conf, tok); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("refresh after removal from the org: %v, want invalid_grant", err)
	}
	if !strings.Contains(r.logs.String(), `"event":"membership_revoked"`) {
		t.Fatal("no membership_revoked audit record")
	}
	if loc, _ := authorizeStep(t, b, conf); !e.toGitHub(loc) {
		t.Fatalf("after membership_revoked, the old session led to %s, want GitHub's sign-in", loc.Redacted())
	}
}

// TestRemovedFromOrgRevocationFails: the database fails during the
// deprovisioning (here: deleting the kept GitHub grant, after the authd
// grants were revoked). Whatever authd's session then gets at /authorize,
// no token comes out of it: the membership check is made again at the
// next use and ends the grants and the session.
func TestRemovedFromOrgRevocationFails(t *testing.T) {
	t.Parallel()
	e := newBrokerEnv(t)
	r := e.start(t)
	conf, tok, b := e.signInWith(t, r, nil)
	fired := pgtest.FailOnce(t, e.dsn, "upstream_tokens", "DELETE", "true")

	e.github.SetMemberships("bob", nil, nil)
	e.clock.Advance(16 * time.Minute)
	if _, err := refresh(conf, tok); !isOAuthError(err, "invalid_grant") || !fired() {
		t.Fatalf("refresh after removal from the org, the database failing: %v (failure injected: %v), want invalid_grant", err, fired())
	}

	e.clock.Advance(time.Minute) // well within membership_check_interval
	loc, verifier := authorizeStep(t, b, conf)
	if code := loc.Query().Get("code"); code != "" {
		_, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))
		if !isOAuthError(err, "invalid_grant") {
			t.Fatalf("a user removed from the org got a new grant through authd's session after a failed revocation: %v", err)
		}
	} else if !e.toGitHub(loc) {
		t.Fatalf("/authorize led to %s, want a code or GitHub's sign-in", loc.Redacted())
	}
	if loc, _ := authorizeStep(t, b, conf); !e.toGitHub(loc) {
		t.Fatalf("after the second check, the old session led to %s, want GitHub's sign-in", loc.Redacted())
	}
}

// TestRemovedUpstreamRefusedGrantKept: a user signed in through upstream
// "github"; a replica runs without it (another upstream only: a rename,
// a typo, a rolling deploy), with an allowlist that does not depend on
// the upstream's type. There the user can no longer sign in, so their
// tokens are refused too: refresh is invalid_grant and introspection
// says inactive (before, active). But the grant is not ended for a
// configuration that may be put right: the same refresh token works on
// a replica that has the upstream.
func TestRemovedUpstreamRefusedGrantKept(t *testing.T) {
	t.Parallel()
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(upstreamtest.GitHubUser{ID: 3003, Login: "cleo", Name: "Cleo",
		Emails: []upstreamtest.GitHubEmail{{Email: "cleo@example.com", Primary: true, Verified: true}}})
	config := func(upstreamID string) string {
		p := filepath.Join(t.TempDir(), "authd.yaml")
		err := os.WriteFile(p, []byte(fmt.Sprintf(`
keys:
  encryption_secret: test-encryption-secret-0123456789abcdef
scopes:
  - {name: mcp:tools, description: Use the tools}
default_scopes: [mcp:tools]
resources:
  - {uri: %s, name: Example MCP, scopes: [mcp:tools]}
introspection:
  bearer_tokens: [%s]
upstreams:
  - id: %s
    type: github
    client_id: %s
    client_secret: %s
    github: {base_url: %s, api_url: %s}
allowlist:
  emails: [cleo@example.com]
`, mcpResource, introspectionToken, upstreamID, gh.ClientID, gh.ClientSecret, gh.BaseURL(), gh.APIURL())), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	dsn := pgtest.DSN(t)
	before := startReplica(t, config("github"), dsn, "", gh.Client())
	b := newBrowser(t, gh.Client().Transport, "http://127.0.0.1:45124/callback")
	reg := registerClient(t, before.URL, map[string]any{
		"client_name": "Removed upstream test", "redirect_uris": []string{"http://127.0.0.1/callback"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{
		ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:45124/callback", Scopes: []string{"mcp:tools"},
		Endpoint: oauth2.Endpoint{AuthURL: before.URL + "/authorize", TokenURL: before.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	q := b.authorize(t, before.URL, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	if !introspectActive(t, before.URL, tok.AccessToken) {
		t.Fatal("before the restart, the access token is not active")
	}

	// The same database and issuer, the upstream now called
	// "github-enterprise" (a replica with the new configuration).
	after := startReplica(t, config("github-enterprise"), dsn, before.URL, gh.Client())
	if introspectActive(t, after.URL, tok.AccessToken) {
		t.Fatal("introspection: the access token of a user whose upstream is no longer configured is active")
	}
	conf.Endpoint.TokenURL = after.URL + "/token"
	if _, err := refresh(conf, tok); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("refresh by a user whose upstream is no longer configured: %v, want invalid_grant", err)
	}

	// Back on a replica that has the upstream: the grant is still there.
	conf.Endpoint.TokenURL = before.URL + "/token"
	next, err := refresh(conf, tok)
	if err != nil {
		t.Fatalf("the same refresh token on a replica with the upstream: %v, want new tokens", err)
	}
	if !introspectActive(t, before.URL, next.AccessToken) {
		t.Fatal("the access token refreshed on a replica with the upstream is not active")
	}
}

// replica is an authd built by buildApp and served by httptest at URL.
type replica struct{ URL string }

// startReplica serves authd with the configuration file cfg on the
// database dsn, with issuer (""; its own URL).
func startReplica(t *testing.T, cfgPath, dsn, issuer string, upstreamClient *http.Client) replica {
	t.Helper()
	ctx := context.Background()
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String()
	if issuer == "" {
		issuer = base
	}
	cfg, err := loadConfig(flagsFor(t, "--config", cfgPath), envOf(map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_ISSUER": issuer}))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	a, err := buildApp(ctx, deps{cfg: cfg, store: st, log: slog.New(slog.DiscardHandler), now: time.Now, started: time.Now(), upstreamClient: upstreamClient})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	ts.Config.Handler = a.handler
	ts.Start()
	t.Cleanup(ts.Close)
	return replica{URL: base}
}
