package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream/upstreamtest"
	"github.com/authd/authd/internal/upstreamtokens"
)

// brokerEnv is authd with store_tokens on a fake GitHub App (expiring
// tokens, single-use refresh tokens), on one Postgres database that
// replicas share, all on one test clock.
type brokerEnv struct {
	github *upstreamtest.GitHub
	cfg    string
	dsn    string
	clock  *testClock
}

func newBrokerEnv(t *testing.T) *brokerEnv {
	t.Helper()
	return newBrokerEnvWith(t, fmt.Sprintf("  - {uri: %s, name: Example MCP, scopes: [mcp:tools]}\n", mcpResource))
}

// newBrokerEnvWith configures resources (the YAML list's items).
func newBrokerEnvWith(t *testing.T, resources string) *brokerEnv {
	t.Helper()
	clock := &testClock{}
	gh := upstreamtest.NewGitHub(t)
	gh.SetClock(clock.Now)
	gh.SetTokenLifetime(8 * time.Hour)
	gh.AddUser(upstreamtest.GitHubUser{
		ID: 2002, Login: "bob", Name: "Bob",
		Emails: []upstreamtest.GitHubEmail{{Email: "bob@example.com", Primary: true, Verified: true}},
		Orgs:   []string{"acme"},
	})
	p := filepath.Join(t.TempDir(), "authd.yaml")
	err := os.WriteFile(p, []byte(fmt.Sprintf(`
keys:
  encryption_secret: test-encryption-secret-0123456789abcdef
scopes:
  - {name: mcp:tools, description: Use the tools}
default_scopes: [mcp:tools]
resources:
%supstreams:
  - id: github
    type: github
    client_id: %s
    client_secret: %s
    store_tokens: true
    membership_check_interval: 15m
    github: {base_url: %s, api_url: %s, load_teams: true}
allowlist:
  github_orgs: [acme]
`, resources, gh.ClientID, gh.ClientSecret, gh.BaseURL(), gh.APIURL())), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return &brokerEnv{github: gh, cfg: p, dsn: pgtest.DSN(t), clock: clock}
}

// brokerApp is one replica built by buildApp, served by httptest.
type brokerApp struct {
	URL   string
	app   *app
	store store.Store
	logs  *syncBuffer
}

func (e *brokerEnv) start(t *testing.T) *brokerApp {
	t.Helper()
	return e.startWith(t, nil)
}

// startWith is start with more environment variables.
func (e *brokerEnv) startWith(t *testing.T, environ map[string]string) *brokerApp {
	t.Helper()
	ctx := context.Background()
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String()
	vars := map[string]string{"AUTHD_DATABASE_URL": e.dsn, "AUTHD_ISSUER": issuer}
	for k, v := range environ {
		vars[k] = v
	}
	cfg, err := loadConfig(flagsFor(t, "--config", e.cfg), envOf(vars))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenPostgres(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := buildApp(ctx, deps{cfg: cfg, store: st, log: log, now: e.clock.Now, started: time.Now(), upstreamClient: e.github.Client()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	ts.Config.Handler = a.handler
	ts.Start()
	t.Cleanup(ts.Close)
	return &brokerApp{URL: issuer, app: a, store: st, logs: logs}
}

// signIn runs an MCP client's authorization at r (x/oauth2, a public
// client) through the fake GitHub and returns its config and tokens.
func (e *brokerEnv) signIn(t *testing.T, r *brokerApp) (*oauth2.Config, *oauth2.Token) {
	conf, tok, _ := e.signInWith(t, r, nil)
	return conf, tok
}

// signInWith is signIn in browser b (nil: a new one), which it returns.
func (e *brokerEnv) signInWith(t *testing.T, r *brokerApp, b *browser) (*oauth2.Config, *oauth2.Token, *browser) {
	return e.signInFor(t, r, b, mcpResource)
}

// signInFor is signInWith for resource.
func (e *brokerEnv) signInFor(t *testing.T, r *brokerApp, b *browser, resource string) (*oauth2.Config, *oauth2.Token, *browser) {
	t.Helper()
	reg := registerClient(t, r.URL, map[string]any{
		"client_name": "Broker test client", "redirect_uris": []string{"http://127.0.0.1/callback"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{
		ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:45124/callback", Scopes: []string{"mcp:tools"},
		Endpoint: oauth2.Endpoint{AuthURL: r.URL + "/authorize", TokenURL: r.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	if b == nil {
		b = newBrowser(t, e.github.Client().Transport, "http://127.0.0.1:45124/callback")
	}
	q := b.authorize(t, r.URL, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", resource)))
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resource))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	return conf, tok, b
}

// refresh refreshes tok at authd as the client library does when the
// access token has expired.
func refresh(conf *oauth2.Config, tok *oauth2.Token) (*oauth2.Token, error) {
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	return conf.TokenSource(context.Background(), &expired).Token()
}

func (e *brokerEnv) githubLogin(t *testing.T, at string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.github.APIURL()+"/user", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := e.github.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var u struct{ Login string }
	_ = json.NewDecoder(resp.Body).Decode(&u)
	return u.Login
}

// End to end on Postgres with two replicas: the sign-in keeps the GitHub
// grant (encrypted); when both replicas need the expired GitHub token at
// the same moment, GitHub sees one refresh and both hand out the same new
// token; a user removed from the org loses their authd grant at the next
// membership check (not before membership_check_interval), with an audit
// record.
func TestBrokerEndToEnd(t *testing.T) {
	t.Parallel()
	e := newBrokerEnv(t)
	r1, r2 := e.start(t), e.start(t)
	conf, tok := e.signIn(t, r1)
	ctx := context.Background()

	u, err := r1.store.FindUser(ctx, "github", "2002")
	if err != nil {
		t.Fatal(err)
	}
	row, err := r1.store.GetUpstreamToken(ctx, u.ID, "github")
	if err != nil {
		t.Fatalf("the sign-in kept no upstream grant: %v", err)
	}
	first, err := r2.app.upstreamTokens.Token(ctx, u.ID, "github")
	if err != nil {
		t.Fatalf("Token on the other replica: %v", err)
	}
	if e.githubLogin(t, first.AccessToken) != "bob" {
		t.Fatal("the kept token does not work at GitHub")
	}
	if strings.Contains(string(row.Sealed), first.AccessToken) {
		t.Fatal("the GitHub token is stored in clear")
	}

	// Both replicas need the expired token at once.
	e.clock.Advance(9 * time.Hour)
	e.github.SetRefreshDelay(100 * time.Millisecond)
	toks := make([]upstreamtokens.Token, 4)
	errs := make([]error, len(toks))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range toks {
		r := []*brokerApp{r1, r2}[i%2]
		wg.Go(func() {
			<-start
			toks[i], errs[i] = r.app.upstreamTokens.Token(ctx, u.ID, "github")
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		if toks[i].AccessToken != toks[0].AccessToken || toks[i].AccessToken == first.AccessToken {
			ok, refused := e.github.Refreshes()
			t.Fatalf("caller %d got another (%v) or the expired token (%v); refreshes %d/%d", i, toks[i].AccessToken != toks[0].AccessToken, toks[i].AccessToken == first.AccessToken, ok, refused)
		}
	}
	if ok, refused := e.github.Refreshes(); ok != 1 || refused != 0 {
		t.Fatalf("GitHub saw %d refreshes, %d refused; want exactly 1", ok, refused)
	}
	if e.githubLogin(t, toks[0].AccessToken) != "bob" {
		t.Fatal("the refreshed token does not work at GitHub")
	}

	// Still a member: the refresh (9h after sign-in: the check is due)
	// succeeds.
	tok, err = refresh(conf, tok)
	if err != nil {
		t.Fatalf("refresh of a member: %v", err)
	}
	// Removed from the org: within the interval the refresh still works...
	e.github.SetMemberships("bob", nil, nil)
	e.clock.Advance(5 * time.Minute)
	if tok, err = refresh(conf, tok); err != nil {
		t.Fatalf("refresh within membership_check_interval: %v", err)
	}
	// ... and at the next check the grant ends.
	e.clock.Advance(11 * time.Minute)
	if _, err := refresh(conf, tok); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("refresh after removal from the org: got %v, want invalid_grant", err)
	}
	grants, err := r1.store.ListGrants(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range grants {
		if g.RevokedAt == nil {
			t.Fatalf("grant %s survived the user's removal from the org", g.ID)
		}
	}
	logs := r1.logs.String()
	if !strings.Contains(logs, `"event":"membership_revoked"`) {
		t.Fatalf("no audit record of the deprovisioning:\n%s", logs)
	}
	for _, secret := range []string{first.AccessToken, toks[0].AccessToken} {
		if strings.Contains(logs, secret) || strings.Contains(r2.logs.String(), secret) {
			t.Fatal("a GitHub token reached the log")
		}
	}
}

// The user disconnects GitHub on /apps: the kept tokens are deleted and no
// MCP server can get them. Disabling the user deletes them too. The page
// never shows a token.
func TestBrokerDisconnectAndDisable(t *testing.T) {
	t.Parallel()
	e := newBrokerEnv(t)
	r := e.start(t)
	_, _, b := e.signInWith(t, r, nil)
	ctx := context.Background()
	u, err := r.store.FindUser(ctx, "github", "2002")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := r.app.upstreamTokens.Token(ctx, u.ID, "github")
	if err != nil {
		t.Fatalf("Token: %v", err)
	}

	resp, page := b.get(t, r.URL+"/apps")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `action="/apps/disconnect"`) || !strings.Contains(page, "GitHub") {
		t.Fatalf("/apps does not offer to disconnect GitHub: %d\n%s", resp.StatusCode, page)
	}
	if strings.Contains(page, tok.AccessToken) {
		t.Fatal("/apps shows the GitHub token")
	}
	form := url.Values{"upstream": {"github"}}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		if m[1] == "csrf" {
			form.Set("csrf", htmlUnescape(m[2]))
		}
	}
	// Without the session's CSRF token nothing happens.
	bad, err := b.c.PostForm(r.URL+"/apps/disconnect", url.Values{"upstream": {"github"}, "csrf": {"forged"}})
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if _, err := r.store.GetUpstreamToken(ctx, u.ID, "github"); err != nil {
		t.Fatalf("a forged disconnect deleted the kept grant (status %d): %v", bad.StatusCode, err)
	}
	resp, err = b.c.PostForm(r.URL+"/apps/disconnect", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/apps" {
		t.Fatalf("disconnect: ended at %d %s, want back at /apps", resp.StatusCode, resp.Request.URL)
	}
	if _, err := r.store.GetUpstreamToken(ctx, u.ID, "github"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the kept grant survived the disconnect: %v", err)
	}
	if _, err := r.app.upstreamTokens.Token(ctx, u.ID, "github"); !errors.Is(err, upstreamtokens.ErrNotStored) {
		t.Fatalf("Token after disconnect: got %v, want ErrNotStored", err)
	}
	if !strings.Contains(r.logs.String(), `"event":"upstream_disconnected"`) {
		t.Fatal("no audit record of the disconnect")
	}

	// A new sign-in keeps it again; disabling the user deletes it.
	e.signInWith(t, r, b)
	if _, err := r.store.GetUpstreamToken(ctx, u.ID, "github"); err != nil {
		t.Fatalf("the new sign-in kept no grant: %v", err)
	}
	if _, err := r.store.DisableUser(ctx, u.ID, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.GetUpstreamToken(ctx, u.ID, "github"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a disabled user's upstream grant survived: %v", err)
	}
}

// Upstream scopes per resource: sign-in for a resource asks GitHub for
// the scopes it needs (and the consent page says so); single sign-on for
// a resource needing nothing more stays silent; a later sign-in for a
// resource needing more goes to GitHub again and asks for it (incremental
// authorization), and the kept grant then carries it.
func TestUpstreamScopesPerResource(t *testing.T) {
	t.Parallel()
	const repoRes, gistRes, plainRes = "https://repo.example.com/mcp", "https://gist.example.com/mcp", "https://plain.example.com/mcp"
	e := newBrokerEnvWith(t, fmt.Sprintf(`  - {uri: %s, name: Repo MCP, upstream_scopes: {github: [repo]}}
  - {uri: %s, name: Gist MCP, upstream_scopes: {github: [gist]}}
  - {uri: %s, name: Plain MCP}
`, repoRes, gistRes, plainRes))
	r := e.start(t)
	ctx := context.Background()
	scopesAsked := func() []string {
		reqs := e.github.AuthorizeRequests()
		return strings.Fields(reqs[len(reqs)-1].Get("scope"))
	}

	// The consent page names the upstream access.
	b := newBrowser(t, e.github.Client().Transport, "http://127.0.0.1:45124/callback")
	reg := registerClient(t, r.URL, map[string]any{
		"client_name": "Scopes client", "redirect_uris": []string{"http://127.0.0.1/callback"},
		"grant_types": []string{"authorization_code"}, "token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:45124/callback",
		Endpoint: oauth2.Endpoint{AuthURL: r.URL + "/authorize", TokenURL: r.URL + "/token"}}
	_, page := b.get(t, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", repoRes)))
	if !strings.Contains(page, "It may act as you at") || !strings.Contains(page, "<strong>GitHub</strong>, through Repo MCP") || !strings.Contains(page, "repo") {
		t.Fatalf("the consent page does not say what GitHub access the server gets:\n%s", page)
	}
	if got := scopesAsked(); !slices.Contains(got, "repo") || !slices.Contains(got, "read:org") {
		t.Fatalf("sign-in for the repo resource asked GitHub for %q, want repo on top of the configured scopes", got)
	}
	// Finish that authorization in a fresh browser through the helper.
	_, _, b = e.signInFor(t, r, nil, repoRes)
	u, err := r.store.FindUser(ctx, "github", "2002")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := r.app.upstreamTokens.Token(ctx, u.ID, "github")
	if err != nil || !slices.Contains(tok.Scopes, "repo") {
		t.Fatalf("kept grant after sign-in for the repo resource: scopes %q, err %v", tok.Scopes, err)
	}
	before := len(e.github.AuthorizeRequests())

	// A resource needing nothing more: single sign-on, GitHub not asked.
	e.signInFor(t, r, b, plainRes)
	if n := len(e.github.AuthorizeRequests()); n != before {
		t.Fatalf("single sign-on for a resource needing no more upstream scopes went to GitHub (%d requests, was %d)", n, before)
	}

	// A resource needing more: to GitHub again, asking for gist.
	e.signInFor(t, r, b, gistRes)
	if n := len(e.github.AuthorizeRequests()); n != before+1 {
		t.Fatalf("sign-in for a resource needing another upstream scope did not go to GitHub (%d requests, was %d)", n, before)
	}
	if got := scopesAsked(); !slices.Contains(got, "gist") {
		t.Fatalf("incremental sign-in asked GitHub for %q, want gist among them", got)
	}
	tok, err = r.app.upstreamTokens.Token(ctx, u.ID, "github")
	if err != nil || !slices.Contains(tok.Scopes, "gist") {
		t.Fatalf("kept grant after the incremental sign-in: scopes %q, err %v", tok.Scopes, err)
	}
}

// When an upstream stops keeping tokens (store_tokens turned off, or the
// upstream removed), the background purge deletes what was kept for it,
// once it has not been written for keptTokensGrace: not while a replica
// that still keeps it (a rolling deploy) may be writing it.
func TestPurgeDropsTokensOfUpstreamsNoLongerKeeping(t *testing.T) {
	t.Parallel()
	e := newBrokerEnv(t)
	r := e.start(t)
	e.signIn(t, r)
	ctx := context.Background()
	u, err := r.store.FindUser(ctx, "github", "2002")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.GetUpstreamToken(ctx, u.ID, "github"); err != nil {
		t.Fatalf("nothing kept: %v", err)
	}
	raw, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	off := strings.NewReplacer("    store_tokens: true\n", "", "    membership_check_interval: 15m\n", "").Replace(string(raw))
	if err := os.WriteFile(e.cfg, []byte(off), 0o600); err != nil {
		t.Fatal(err)
	}
	r2 := e.startWith(t, map[string]string{"AUTHD_PURGE_INTERVAL": "50ms"})
	if r2.app.upstreamTokens != nil {
		t.Fatal("store_tokens is off, yet the app has a broker")
	}
	r2.app.purgeOnce(ctx)
	if _, err := r.store.GetUpstreamToken(ctx, u.ID, "github"); err != nil {
		t.Fatalf("the purge deleted the tokens just kept by a replica with store_tokens: %v", err)
	}
	e.clock.Advance(keptTokensGrace + time.Minute)
	r2.app.startBackground(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := r.store.GetUpstreamToken(ctx, u.ID, "github")
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the purge left the tokens of an upstream without store_tokens: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A rolling deploy (or a typo) leaves a replica without an upstream the
// others keep tokens for: its purge leaves the rows they just wrote, and
// their kept grant keeps working. Rows of the upstream still go once no
// replica has written them for keptTokensGrace.
func TestPurgeKeepsFreshTokensOfAnotherReplicasUpstream(t *testing.T) {
	t.Parallel()
	e := newBrokerEnv(t)
	with := e.start(t)
	e.signIn(t, with)
	ctx := context.Background()
	u, err := with.store.FindUser(ctx, "github", "2002")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := with.store.GetUpstreamToken(ctx, u.ID, "github"); err != nil {
		t.Fatalf("nothing kept: %v", err)
	}

	// The other replica calls the upstream "github-enterprise".
	raw, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	renamed := strings.Replace(string(raw), "  - id: github\n", "  - id: github-enterprise\n", 1)
	if renamed == string(raw) {
		t.Fatal("the test configuration has no upstream github to rename")
	}
	if err := os.WriteFile(e.cfg, []byte(renamed), 0o600); err != nil {
		t.Fatal(err)
	}
	without := e.start(t)
	if got := keptUpstreams(without.app.cfg); !slices.Equal(got, []string{"github-enterprise"}) {
		t.Fatalf("the replica without the upstream keeps %q", got)
	}
	without.app.purgeOnce(ctx)

	kept, err := with.app.upstreamTokens.Token(ctx, u.ID, "github")
	if err != nil {
		t.Fatalf("the kept grant after the other replica's purge: %v", err)
	}
	if e.githubLogin(t, kept.AccessToken) != "bob" {
		t.Fatal("the kept token does not work at GitHub after the other replica's purge")
	}

	// The upstream gone from every replica: nothing writes the row, and a
	// purge past the grace period deletes it.
	e.clock.Advance(keptTokensGrace + time.Minute)
	without.app.purgeOnce(ctx)
	if _, err := with.store.GetUpstreamToken(ctx, u.ID, "github"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the kept tokens of an upstream no replica wrote for %s: %v, want deleted", keptTokensGrace, err)
	}
}
