package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

type usersCLI struct {
	t   *testing.T
	st  store.Store
	now time.Time
	log bytes.Buffer // the audit log, JSON lines
}

// run executes `authd users args...` and returns stdout and stderr.
func (c *usersCLI) run(args ...string) (string, string, error) {
	c.t.Helper()
	return runCommand(newUsersCmd(func(context.Context) (store.Store, error) { return sharedStore{c.st}, nil },
		func() time.Time { return c.now }, slog.New(slog.NewJSONHandler(&c.log, nil))), args...)
}

func (c *usersCLI) mustRun(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("authd users %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func (c *usersCLI) mustFail(wantInErr string, args ...string) {
	c.t.Helper()
	_, _, err := c.run(args...)
	if err == nil || !strings.Contains(err.Error(), wantInErr) {
		c.t.Fatalf("authd users %s: err = %v, want one mentioning %q", strings.Join(args, " "), err, wantInErr)
	}
}

// user stores a user who last signed in at lastLogin.
func (c *usersCLI) user(provider, subject, login string, lastLogin time.Time) store.User {
	c.t.Helper()
	u, err := c.st.UpsertUser(context.Background(), store.User{
		Provider: provider, Subject: subject, Login: login, Email: login + "@example.com", EmailVerified: true,
		Name: strings.ToUpper(login), CreatedAt: lastLogin, UpdatedAt: lastLogin, LastLoginAt: lastLogin,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return u
}

func (c *usersCLI) row(id string) store.User {
	c.t.Helper()
	u, err := c.st.GetUser(context.Background(), id)
	if err != nil {
		c.t.Fatalf("GetUser(%s): %v", id, err)
	}
	return u
}

// issued is what a sign-in left in the store: a grant with a refresh token
// and an opaque access token, whose clear values a client would hold.
type issued struct {
	grant   store.Grant
	refresh string
	access  string
}

// signIn redeems a code for u at client, as /token does.
func (c *usersCLI) signIn(u store.User, clientID string) issued {
	c.t.Helper()
	ctx := context.Background()
	code := store.AuthCode{
		Digest: oauth.Digest(oauth.NewToken(oauth.PrefixCode)), ClientID: clientID, UserID: u.ID,
		RedirectURI: "https://app.example.com/cb", Scopes: []string{"mcp:read"},
		CodeChallenge: "challenge", CodeChallengeMethod: "S256",
		AuthTime: c.now, CreatedAt: c.now, ExpiresAt: c.now.Add(10 * time.Minute),
	}
	if err := c.st.CreateAuthCode(ctx, code); err != nil {
		c.t.Fatal(err)
	}
	g := store.Grant{
		ID: uuid.NewString(), ClientID: clientID, UserID: u.ID, Scopes: code.Scopes,
		AuthTime: c.now, CreatedAt: c.now, LastUsedAt: c.now, ExpiresAt: c.now.Add(90 * 24 * time.Hour),
	}
	refresh, access := oauth.NewToken(oauth.PrefixRefreshToken), oauth.NewToken(oauth.PrefixAccessToken)
	rt := store.RefreshToken{Digest: oauth.Digest(refresh), GrantID: g.ID, ClientID: clientID,
		CreatedAt: c.now, ExpiresAt: c.now.Add(30 * 24 * time.Hour)}
	if _, err := c.st.RedeemAuthCode(ctx, code.Digest, c.now, g, &rt); err != nil {
		c.t.Fatal(err)
	}
	if err := c.st.CreateAccessToken(ctx, store.AccessToken{
		Digest: oauth.Digest(access), GrantID: g.ID, ClientID: clientID, UserID: u.ID, Scopes: g.Scopes,
		CreatedAt: c.now, ExpiresAt: c.now.Add(time.Hour),
	}); err != nil {
		c.t.Fatal(err)
	}
	return issued{grant: g, refresh: refresh, access: access}
}

// refreshes reports whether i's refresh token still rotates, as the token
// endpoint would rotate it (the store refuses a revoked grant whatever the
// user's flag says).
func (c *usersCLI) refreshes(i *issued) bool {
	c.t.Helper()
	next := oauth.NewToken(oauth.PrefixRefreshToken)
	_, err := c.st.RotateRefreshToken(context.Background(), oauth.Digest(i.refresh), c.now, store.RefreshToken{
		Digest: oauth.Digest(next), GrantID: i.grant.ID, ClientID: i.grant.ClientID, Parent: oauth.Digest(i.refresh),
		CreatedAt: c.now, ExpiresAt: c.now.Add(30 * 24 * time.Hour),
	}, 0)

	switch {
	case err == nil:
		i.refresh = next
		return true
	case errors.Is(err, store.ErrNotFound):
		return false
	}
	c.t.Fatalf("RotateRefreshToken: %v", err)
	return false
}

// state returns the grant's and the access token's revocation times.
func (c *usersCLI) state(i issued) (grantRevoked, accessRevoked *time.Time) {
	c.t.Helper()
	g, err := c.st.GetGrant(context.Background(), i.grant.ID)
	if err != nil {
		c.t.Fatal(err)
	}
	at, err := c.st.GetAccessToken(context.Background(), oauth.Digest(i.access))
	if err != nil {
		c.t.Fatal(err)
	}
	return g.RevokedAt, at.RevokedAt
}

// auditEvents returns the audit records logged so far.
func (c *usersCLI) auditEvents() []map[string]any {
	c.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(c.log.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			c.t.Fatalf("audit log line is not JSON: %q", line)
		}
		out = append(out, rec)
	}
	return out
}

func userIDsOf(views []userView) []string {
	out := []string{}
	for _, v := range views {
		out = append(out, v.ID)
	}
	return out
}

func TestUsersCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cli := &usersCLI{t: t, st: pgtest.New(t), now: t0.Add(24 * time.Hour)}
	alice := cli.user("github", "1001", "alice", t0.Add(3*time.Hour))
	bob := cli.user("github", "1002", "bob", t0.Add(time.Hour))
	carol := cli.user("google", "auth0|x:7", "carol", t0.Add(2*time.Hour)) // a subject with a colon
	for _, id := range []string{"app", "other-app"} {
		if err := cli.st.CreateClient(ctx, store.Client{ID: id, Source: store.SourceConfig,
			Metadata:  store.ClientMetadata{RedirectURIs: []string{"https://app.example.com/cb"}, TokenEndpointAuthMethod: "none"},
			CreatedAt: t0, UpdatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}

	// list: newest sign-in first, filters, limit, table and JSON.
	listed := decodeJSON[[]userView](t, cli.mustRun("list", "-o", "json"))
	if got := strings.Join(userIDsOf(listed), " "); got != strings.Join([]string{alice.ID, carol.ID, bob.ID}, " ") {
		t.Fatalf("list order %s, want alice, carol, bob", got)
	}
	if v := listed[0]; v.Provider != "github" || v.Subject != "1001" || v.Login != "alice" || v.Email != "alice@example.com" ||
		v.Disabled || !v.LastLoginAt.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("list json: %+v", v)
	}
	if got := userIDsOf(decodeJSON[[]userView](t, cli.mustRun("list", "--provider", "github", "--limit", "1", "-o", "json"))); len(got) != 1 || got[0] != alice.ID {
		t.Errorf("list --provider github --limit 1: %v", got)
	}
	if got := userIDsOf(decodeJSON[[]userView](t, cli.mustRun("list", "--provider", "google", "-o", "json"))); len(got) != 1 || got[0] != carol.ID {
		t.Errorf("list --provider google: %v", got)
	}
	if got := decodeJSON[[]userView](t, cli.mustRun("list", "--disabled", "-o", "json")); len(got) != 0 {
		t.Errorf("list --disabled before any disable: %v", got)
	}
	out := cli.mustRun("list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "LAST SIGN-IN") || !strings.Contains(lines[1], alice.ID) ||
		!strings.Contains(lines[1], "alice@example.com") || !strings.Contains(lines[1], "2026-03-01T15:00:00Z") ||
		!strings.Contains(lines[3], bob.ID) {
		t.Errorf("list table:\n%s", out)
	}
	cli.mustFail("--limit", "list", "--limit", "-1")
	cli.mustFail("--output", "list", "-o", "yaml")

	// show, by id and by provider:subject (the subject may hold colons).
	for _, ref := range []string{alice.ID, "github:1001"} {
		if v := decodeJSON[userView](t, cli.mustRun("show", ref, "-o", "json")); v.ID != alice.ID || v.Name != "ALICE" {
			t.Errorf("show %s: %+v", ref, v)
		}
	}
	if v := decodeJSON[userView](t, cli.mustRun("show", "google:auth0|x:7", "-o", "json")); v.ID != carol.ID {
		t.Errorf("show google:auth0|x:7: %+v", v)
	}
	out = cli.mustRun("show", "github:1002")
	if !strings.Contains(out, bob.ID) || !strings.Contains(out, "bob@example.com") || !strings.Contains(out, "disabled:") {
		t.Errorf("show table:\n%s", out)
	}
	cli.mustFail("no user", "show", "github:9999")
	cli.mustFail("no user", "show", "google:1001")
	cli.mustFail("no user", "show", uuid.NewString())

	// What alice and bob hold before alice is disabled.
	a1, a2 := cli.signIn(alice, "app"), cli.signIn(alice, "other-app")
	b1 := cli.signIn(bob, "app")
	if !cli.refreshes(&a1) {
		t.Fatal("alice's refresh token does not work before the disable")
	}

	// disable: the flag, every grant and token of alice, the report, the audit record.
	cli.now = cli.now.Add(time.Hour)
	out = cli.mustRun("disable", "github:1001")
	if !strings.Contains(out, "disabled user "+alice.ID) || !strings.Contains(out, "revoked 2 grants, 2 refresh tokens and 2 opaque access tokens") ||
		!strings.Contains(out, a1.grant.ID) || !strings.Contains(out, a2.grant.ID) || !strings.Contains(out, "other-app") {
		t.Errorf("disable output:\n%s", out)
	}
	if !cli.row(alice.ID).Disabled {
		t.Fatal("alice is not disabled")
	}
	for _, i := range []issued{a1, a2} {
		g, at := cli.state(i)
		if g == nil || !g.Equal(cli.now) || at == nil || !at.Equal(cli.now) {
			t.Errorf("alice's grant %s after disable: grant revoked %v, access token revoked %v", i.grant.ID, g, at)
		}
		if cli.refreshes(&i) {
			t.Errorf("alice's refresh token of grant %s still works after disable", i.grant.ID)
		}
	}
	if g, at := cli.state(b1); g != nil || at != nil || cli.row(bob.ID).Disabled {
		t.Errorf("disabling alice touched bob: grant revoked %v, access token revoked %v", g, at)
	}
	events := cli.auditEvents()
	if len(events) != 1 || events[0]["msg"] != "audit" || events[0]["event"] != "user_disabled" || events[0]["via"] != "cli" ||
		events[0]["user_id"] != alice.ID || events[0]["grants_revoked"] != float64(2) {
		t.Errorf("audit log after disable: %v", events)
	}
	if got := userIDsOf(decodeJSON[[]userView](t, cli.mustRun("list", "--disabled", "-o", "json"))); len(got) != 1 || got[0] != alice.ID {
		t.Errorf("list --disabled: %v", got)
	}
	out = cli.mustRun("list", "--provider", "github")
	if !strings.Contains(out, "true") {
		t.Errorf("list table does not show alice disabled:\n%s", out)
	}

	// Disabling again ends what appeared meanwhile (a grant redeemed in a race).
	a3 := cli.signIn(alice, "app")
	v := decodeJSON[disabledView](t, cli.mustRun("disable", alice.ID, "-o", "json"))
	if !v.WasDisabled || !v.User.Disabled || len(v.RevokedGrants) != 1 || v.RevokedGrants[0].ID != a3.grant.ID ||
		v.RevokedGrants[0].ClientID != "app" || v.RevokedRefreshTokens != 1 || v.RevokedAccessTokens != 1 {
		t.Errorf("disable again: %+v", v)
	}
	if g, _ := cli.state(a3); g == nil {
		t.Error("second disable left the new grant live")
	}
	if v := decodeJSON[disabledView](t, cli.mustRun("disable", alice.ID, "-o", "json")); len(v.RevokedGrants) != 0 || v.RevokedGrants == nil {
		t.Errorf("disable with nothing live: %+v", v)
	}

	// enable: alice may sign in again, but nothing revoked comes back.
	cli.log.Reset()
	cli.now = cli.now.Add(time.Hour)
	out = cli.mustRun("enable", "github:1001")
	if !strings.Contains(out, "enabled user "+alice.ID) {
		t.Errorf("enable output: %q", out)
	}
	if cli.row(alice.ID).Disabled {
		t.Fatal("alice is still disabled after enable")
	}
	for _, i := range []issued{a1, a2, a3} {
		if g, at := cli.state(i); g == nil || at == nil {
			t.Errorf("enable un-revoked grant %s: grant revoked %v, access token revoked %v", i.grant.ID, g, at)
		}
		if cli.refreshes(&i) {
			t.Errorf("alice's old refresh token of grant %s works again after enable", i.grant.ID)
		}
	}
	if a4 := cli.signIn(alice, "app"); !cli.refreshes(&a4) {
		t.Error("alice's refresh token from a new sign-in after enable does not work")
	}
	events = cli.auditEvents()
	if len(events) != 1 || events[0]["event"] != "user_enabled" || events[0]["via"] != "cli" || events[0]["user_id"] != alice.ID {
		t.Errorf("audit log after enable: %v", events)
	}
	cli.log.Reset()
	if out := cli.mustRun("enable", bob.ID); !strings.Contains(out, "was not disabled") || len(cli.auditEvents()) != 0 {
		t.Errorf("enable of an enabled user: %q, audit %v", out, cli.auditEvents())
	}

	cli.mustFail("no user", "disable", "github:9999")
	cli.mustFail("no user", "enable", "nobody")
	cli.mustFail("accepts 1 arg", "disable")
}

// TestUsersDisableEndToEnd runs `authd users disable` as an operator would,
// against the database of a running authd: alice's refresh token stops
// working at /token and her access token at /introspect, and enabling her
// again brings neither back (they were revoked, not just refused).
func TestUsersDisableEndToEnd(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	f := newFlowEnv(t, dsn)
	inst := f.start(t)
	ctx := context.Background()

	reg := registerClient(t, inst.URL, map[string]any{
		"client_name":                "Example MCP client",
		"redirect_uris":              []string{"http://127.0.0.1/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "none",
	})
	redirect := "http://127.0.0.1:45124/callback"
	conf := &oauth2.Config{
		ClientID: reg["client_id"].(string), RedirectURL: redirect, Scopes: []string{"mcp:tools"},
		Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	b := newBrowser(t, f.github.Client().Transport, redirect)
	signIn := func() *oauth2.Token {
		t.Helper()
		verifier := oauth2.GenerateVerifier()
		q := b.authorize(t, inst.URL, conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier),
			oauth2.SetAuthURLParam("resource", mcpResource)))
		tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	refresh := func(tok *oauth2.Token) (*oauth2.Token, error) {
		stale := *tok
		stale.Expiry = time.Now().Add(-time.Minute)
		return conf.TokenSource(ctx, &stale).Token()
	}
	authd := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		e := &env{getenv: envOf(f.env), stdout: &stdout, stderr: &stderr, now: time.Now}
		if err := newRootCmd(e).ExecuteContextC(ctx, append(args, "--config", f.cfg)); err != nil {
			t.Fatalf("authd %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		if args[1] == "disable" && (!strings.Contains(stderr.String(), `"event":"user_disabled"`) || !strings.Contains(stderr.String(), `"via":"cli"`)) {
			t.Errorf("authd %s logged no audit record: %q", strings.Join(args, " "), stderr.String())
		}
		return stdout.String()
	}

	// Two grants: a is refreshed while alice is disabled (the token endpoint
	// refuses a disabled user anyway); b is not touched until she is enabled
	// again, so only the revocation by the command can have ended it.
	a, err := refresh(signIn())
	if err != nil {
		t.Fatalf("refresh before disable: %v", err)
	}
	bTok := signIn()
	// Access tokens only: introspection shows a refresh token to its own
	// client alone (this one is public); refresh() below judges those.
	for _, s := range []string{a.AccessToken, bTok.AccessToken} {
		if !introspectActive(t, inst.URL, s) {
			t.Fatal("alice's tokens are not active before the disable")
		}
	}

	if out := authd("users", "disable", "github:1001"); !strings.Contains(out, "revoked 2 grants, 2 refresh tokens") {
		t.Errorf("disable output:\n%s", out)
	}
	if _, err := refresh(a); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("refresh after disable: %v, want invalid_grant", err)
	}
	for _, s := range []string{a.AccessToken, bTok.AccessToken} {
		if introspectActive(t, inst.URL, s) {
			t.Fatal("alice's tokens are still active after the disable")
		}
	}
	// While disabled, alice cannot sign in.
	verifier := oauth2.GenerateVerifier()
	resp, err := b.c.Get(conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("sign-in of a disabled user answered %d, want 403", resp.StatusCode)
	}

	if out := authd("users", "enable", "github:1001"); !strings.Contains(out, "enabled user") {
		t.Errorf("enable output: %q", out)
	}
	if introspectActive(t, inst.URL, bTok.AccessToken) {
		t.Fatal("alice's tokens from before the disable are active again after enable")
	}
	if _, err := refresh(bTok); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("refresh of a revoked token after enable: %v, want invalid_grant", err)
	}
	if _, err := refresh(signIn()); err != nil {
		t.Fatalf("a new sign-in after enable does not refresh: %v", err)
	}
}
