package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
  - {uri: %s, name: Example MCP, scopes: [mcp:tools]}
upstreams:
  - id: github
    type: github
    client_id: %s
    client_secret: %s
    store_tokens: true
    membership_check_interval: 15m
    github: {base_url: %s, api_url: %s, load_teams: true}
allowlist:
  github_orgs: [acme]
`, mcpResource, gh.ClientID, gh.ClientSecret, gh.BaseURL(), gh.APIURL())), 0o600)
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
	ctx := context.Background()
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String()
	cfg, err := loadConfig(flagsFor(t, "--config", e.cfg), envOf(map[string]string{"AUTHD_DATABASE_URL": e.dsn, "AUTHD_ISSUER": issuer}))
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
	if a.upstreamTokens == nil {
		t.Fatal("store_tokens is set, yet the app has no upstream token broker")
	}
	ts.Config.Handler = a.handler
	ts.Start()
	t.Cleanup(ts.Close)
	return &brokerApp{URL: issuer, app: a, store: st, logs: logs}
}

// signIn runs an MCP client's authorization at r (x/oauth2, a public
// client) through the fake GitHub and returns its config and tokens.
func (e *brokerEnv) signIn(t *testing.T, r *brokerApp) (*oauth2.Config, *oauth2.Token) {
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
	b := newBrowser(t, e.github.Client().Transport, "http://127.0.0.1:45124/callback")
	q := b.authorize(t, r.URL, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	return conf, tok
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
