package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store/pgtest"
)

var devCredentialLine = regexp.MustCompile(`client_id (\S+), client_secret (\S+)`)

// devAuthorize runs the browser part of a code flow against a --dev
// server: the dev login form (as user), then consent, and returns the
// query of the redirect to the client.
func devAuthorize(t *testing.T, b *browser, issuer, authURL, user string) url.Values {
	t.Helper()
	resp, err := b.c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && resp.Request.URL.Path == "/dev/login" {
		q := resp.Request.URL.Query()
		resp, err = b.c.PostForm(issuer+"/dev/login", url.Values{
			"upstream": {q.Get("upstream")}, "state": {q.Get("state")}, "code_challenge": {q.Get("code_challenge")}, "name": {user},
		})
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `action="/consent"`) {
		form := url.Values{"decision": {"approve"}}
		for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
			form.Set(m[1], htmlUnescape(m[2]))
		}
		resp, err = b.c.PostForm(issuer+"/consent", form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(u.String(), b.redirect) {
		t.Fatalf("flow did not end at the client: %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	return u.Query()
}

// TestDevModeWorksForTheREADME is issue 16 part 5, tried as a new user
// would: with `authd serve --dev` a client pointed at authd itself (no
// resource parameter) gets tokens, as does one naming any resource; the
// banner's introspection credential works; /verify?resource= protects any
// URL; and the banner says which store is in use.
func TestDevModeWorksForTheREADME(t *testing.T) {
	t.Parallel()
	inst := startAuthd(t, freeAddr(t), nil, "--dev")
	banner := inst.Stdout.String()
	if !strings.Contains(banner, "in-memory store") {
		t.Errorf("banner does not say in-memory store:\n%s", banner)
	}
	m := devCredentialLine.FindStringSubmatch(banner)
	if m == nil {
		t.Errorf("banner prints no introspection credential:\n%s", banner)
		m = []string{"", "none", "none"}
	}
	rsID, rsSecret := m[1], m[2]
	if strings.Contains(inst.Logs.String(), rsSecret) {
		t.Error("the introspection secret was logged")
	}

	ctx := context.Background()
	redirect := "http://127.0.0.1:41003/cb"
	reg := registerClient(t, inst.URL, map[string]any{
		"client_name": "dev client", "redirect_uris": []string{"http://127.0.0.1/cb"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{ClientID: reg["client_id"].(string), RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token", AuthStyle: oauth2.AuthStyleInParams}}
	b := newBrowser(t, nil, redirect)

	// No resource: a token for the issuer's URL (the server the client
	// was pointed at), not invalid_target.
	verifier := oauth2.GenerateVerifier()
	q := devAuthorize(t, b, inst.URL, conf.AuthCodeURL("s1", oauth2.S256ChallengeOption(verifier)), "dave")
	if q.Get("code") == "" {
		t.Fatalf("authorization without resource: %v", q)
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if claims := verifyWithJWKS(t, inst.URL, tok.AccessToken); claims["aud"] != inst.URL {
		t.Fatalf("aud %v, want the issuer %s", claims["aud"], inst.URL)
	}

	// Any resource.
	const mcp = "http://localhost:9000/mcp"
	verifier = oauth2.GenerateVerifier()
	q = devAuthorize(t, b, inst.URL, conf.AuthCodeURL("s2", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcp)), "dave")
	tok2, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("resource %s: %v (%v)", mcp, err, q)
	}

	// The banner's credential introspects.
	r, err := tryPostTo(inst.URL, "/introspect", url.Values{"token": {tok2.AccessToken}}, rsID, rsSecret)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusOK || r.body["active"] != true || r.body["aud"] != mcp || r.body["username"] != "dave" {
		t.Fatalf("introspection with the banner's credential: %d %s", r.status, r.raw)
	}

	// /verify protects the URL it is given.
	check := func(token string, want int) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, inst.URL+"/verify?resource="+url.QueryEscape(mcp), nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("/verify?resource=%s: %d, want %d", mcp, resp.StatusCode, want)
		}
		return resp
	}
	if resp := check(tok2.AccessToken, http.StatusOK); resp.Header.Get("X-Auth-User") != "dave" {
		t.Errorf("X-Auth-User %q", resp.Header.Get("X-Auth-User"))
	}
	resp := check("", http.StatusUnauthorized)
	const prmURL = "http://localhost:9000/.well-known/oauth-protected-resource/mcp"
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `resource_metadata="`+prmURL+`"`) {
		t.Errorf("challenge %q", ch)
	}
	check(tok.AccessToken, http.StatusUnauthorized) // a token for another audience

	// The challenge's metadata is served for that resource (a proxy routes
	// the MCP server's /.well-known/oauth-protected-resource... to authd),
	// and for authd's own URL, the default resource.
	for host, want := range map[string]string{"localhost:9000": mcp, strings.TrimPrefix(inst.URL, "http://"): inst.URL} {
		req, _ := http.NewRequest(http.MethodGet, inst.URL+"/.well-known/oauth-protected-resource"+strings.TrimPrefix(want, "http://"+host), nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var prm struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&prm)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || prm.Resource != want || len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != inst.URL {
			t.Errorf("protected resource metadata on %s: %d %+v %v", host, resp.StatusCode, prm, err)
		}
	}
}

// TestDevModeSaysItUsesPostgres: --dev with AUTHD_DATABASE_URL uses
// PostgreSQL and says so (it said "in-memory store"), without printing the
// database password.
func TestDevModeSaysItUsesPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	inst := startAuthd(t, freeAddr(t), map[string]string{"AUTHD_DATABASE_URL": dsn}, "--dev")
	out := inst.Stdout.String() + inst.Logs.String()
	if strings.Contains(out, "in-memory") || !strings.Contains(inst.Stdout.String(), "PostgreSQL store") || !strings.Contains(inst.Logs.String(), "PostgreSQL store") {
		t.Fatalf("--dev on PostgreSQL describes its store wrongly:\n%s", out)
	}
	if u, _ := url.Parse(dsn); u != nil {
		if pw, ok := u.User.Password(); ok && pw != "" && strings.Contains(out, pw) {
			t.Fatal("the database password was printed")
		}
	}
	// And it works: the dev resource-server client is in the database.
	m := devCredentialLine.FindStringSubmatch(inst.Stdout.String())
	if m == nil {
		t.Fatalf("no introspection credential:\n%s", out)
	}
	r, err := tryPostTo(inst.URL, "/introspect", url.Values{"token": {"nothing"}}, m[1], m[2])
	if err != nil || r.status != http.StatusOK || r.body["active"] != false {
		t.Fatalf("introspection on PostgreSQL: %v %d %s", err, r.status, r.raw)
	}
}
