package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

// RFC 8693 token exchange at /token, end to end through the binary.

const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"

	otherResource  = "https://other.example.com/mcp"
	thirdResource  = "https://third.example.com/mcp"
	opaqueResource = "https://opaque.example.com/mcp"

	ghMCPSecret    = "gh-mcp-secret-0123456789"
	otherMCPSecret = "other-mcp-secret-0123456789"
	plainRSSecret  = "plain-rs-secret-0123456789"
)

// exchangeYAML configures three resources and the resource servers that
// may exchange tokens for them: gh-mcp (the server at mcpResource) may get
// the user's GitHub token and delegate to otherResource; other-mcp may
// delegate on to thirdResource and get no upstream token; plain-rs may
// introspect but not exchange. Their secrets are given as SHA-256
// hashes: bcrypt at every start would cost seconds on a loaded machine.
var exchangeYAML = fmt.Sprintf(`
clients:
  - id: gh-mcp
    secret_hash: %s
    token_exchange:
      resource_server: %s
      upstreams: [github]
      resources: [%s, %s]
  - id: other-mcp
    secret_hash: %s
    token_exchange:
      resource_server: %s
      resources: [%s]
  - id: plain-rs
    secret_hash: %s
    introspect: true
`, oauth.HashSecret(ghMCPSecret), mcpResource, otherResource, opaqueResource, oauth.HashSecret(otherMCPSecret), otherResource, thirdResource, oauth.HashSecret(plainRSSecret))

// exchangeResources is inserted into the flow configuration's resources.
var exchangeResources = fmt.Sprintf(`resources:
  - uri: %s
    name: Other MCP
    scopes: [mcp:tools]
  - uri: %s
    name: Third MCP
    scopes: [mcp:tools, mcp:resources]
  - uri: %s
    name: Opaque MCP
    token_format: opaque
`, otherResource, thirdResource, opaqueResource)

// exchangeEnv is secEnv with exchangeYAML, exchangeResources and a clock.
type exchangeEnv struct {
	*secEnv
	clock *testClock
}

func newExchangeEnv(t *testing.T, extra map[string]string) *exchangeEnv {
	t.Helper()
	return newExchangeEnvWith(t, extra, nil)
}

// newExchangeEnvWith is newExchangeEnv with setup applied to the fake
// GitHub and the clock before authd starts.
func newExchangeEnvWith(t *testing.T, extra map[string]string, setup func(*flowEnv, *testClock)) *exchangeEnv {
	t.Helper()
	dsn := pgtest.DSN(t)
	f := newFlowEnv(t, dsn)
	clk := &testClock{}
	if setup != nil {
		setup(f, clk)
	}
	b, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "resources:\n", exchangeResources, 1) + exchangeYAML
	// GitHub keeps the users' tokens; /verify hands them to the MCP
	// server at mcpResource.
	cfg = strings.Replace(cfg, "      load_teams: true\n", "      load_teams: true\n    store_tokens: true\n", 1)
	cfg = strings.Replace(cfg, "    required_scopes: [mcp:tools]\n", "    required_scopes: [mcp:tools]\n    forward_upstream_token: github\n    upstream_scopes: {github: [read:user]}\n", 1)
	cfg = strings.Replace(cfg, "introspection:\n", "introspection:\n  forward_auth_secret: "+forwardAuthSecret+"\n", 1)
	if err := os.WriteFile(f.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	metricsAddr := freeAddr(t)
	f.env["AUTHD_METRICS_LISTEN"] = metricsAddr
	f.env["AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_IP_PER_MINUTE"] = "0"
	f.env["AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_CLIENT_PER_MINUTE"] = "0"
	for k, v := range extra {
		f.env[k] = v
	}
	tap := &tokenTap{next: f.github.Client().Transport}
	inst := startAuthdEnv(t, freeAddr(t), f.env, func(e *env) {
		e.upstreamClient = &http.Client{Transport: tap, Timeout: 15 * time.Second}
		e.now = clk.Now
	}, "--config", f.cfg)
	s := &secEnv{flowEnv: f, inst: inst, metricsURL: "http://" + metricsAddr + "/metrics", upstreamTokens: tap}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s.db = pool
	return &exchangeEnv{secEnv: s, clock: clk}
}

// forwardAuthSecret is the exchange tests' introspection.forward_auth_secret.
const forwardAuthSecret = "nginx-auth-request-secret-0123456789abcdef"

// verifyAsProxy calls /verify with the forwarded headers of a request to
// mcpResource and, unless empty, the forward-auth secret header (what the
// proxy's auth subrequest sends; the test runs on the trusted 127.0.0.1).
func verifyAsProxy(t *testing.T, issuer, tok, secret string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, issuer+"/verify", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "mcp.example.com")
	req.Header.Set("X-Forwarded-Uri", "/mcp")
	req.Header.Set("Authorization", "Bearer "+tok)
	if secret != "" {
		req.Header.Set("X-Authd-Forward-Secret", secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// userToken runs a code flow for a new public client, for resource, and
// returns the access token.
func (x *exchangeEnv) userToken(t *testing.T, resource string, scopes ...string) *oauth2.Token {
	t.Helper()
	const redirect = "http://127.0.0.1:9/cb"
	conf := x.oauthConfig(x.publicClient(t, redirect), "", redirect)
	if len(scopes) > 0 {
		conf.Scopes = scopes
	}
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, x.github.Client().Transport, redirect)
	q := b.authorize(t, x.inst.URL, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", resource)))
	if q.Get("code") == "" {
		t.Fatalf("no code: %v", q)
	}
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resource))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// exchange posts a token exchange request as client (Basic auth when
// secret is set, else client_id in the body).
func (x *exchangeEnv) exchange(t *testing.T, client, secret, subject string, extra url.Values) oauthResp {
	t.Helper()
	form := url.Values{
		"grant_type":         {grantTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {tokenTypeAccess},
	}
	for k, v := range extra {
		form[k] = v
	}
	if secret == "" {
		form.Set("client_id", client)
		client = ""
	}
	return x.post(t, "/token", form, client, secret)
}

// rowCounts is secEnv's row counts plus a digest of the content of the
// tables a refused exchange must leave alone: a refusal that updated a
// grant, a token or the kept upstream token (say, refreshed or revoked
// it) adds no row, and would pass a count alone.
func (x *exchangeEnv) rowCounts(t *testing.T) map[string]int {
	t.Helper()
	out := x.secEnv.rowCounts(t)
	for _, tbl := range []string{"grants", "refresh_tokens", "access_tokens", "revoked_jtis", "upstream_tokens"} {
		out[tbl+" (content digest)"] = x.count(t, "SELECT coalesce(hashtext(string_agg(r::text, ',' ORDER BY r::text)), 0) FROM "+tbl+" r")
	}
	return out
}

// assertUnchanged fails when a table's row count, or the content of one
// rowCounts digests, differs from before.
func (x *exchangeEnv) assertUnchanged(t *testing.T, before map[string]int, what string) {
	t.Helper()
	after := x.rowCounts(t)
	for k, n := range before {
		if after[k] != n {
			t.Errorf("%s: %s went from %d to %d", what, k, n, after[k])
		}
	}
}

// wantRefused checks an RFC 8693 §2.2.2 error answer that issued nothing:
// no token in the body (wantOAuthError), no row added, none changed.
func (x *exchangeEnv) wantRefused(t *testing.T, what string, before map[string]int, r oauthResp, status int, code string) {
	t.Helper()
	wantOAuthError(t, what, r, status, code)
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", what, cc)
	}
	x.assertUnchanged(t, before, what)
}

// TestTokenExchangeRefusals: each request a resource server must not get a
// token for is refused with RFC 8693 §2.2.2's error and issues nothing.
func TestTokenExchangeRefusals(t *testing.T) {
	t.Parallel()
	x := newExchangeEnv(t, nil)
	subjectTok := x.userToken(t, mcpResource)
	subject := subjectTok.AccessToken
	if subjectTok.RefreshToken == "" {
		t.Fatal("the code flow issued no refresh token")
	}
	forOther := x.userToken(t, otherResource).AccessToken
	upstream := url.Values{"audience": {"github"}}
	delegate := url.Values{"resource": {otherResource}}

	t.Run("public client", func(t *testing.T) {
		// A dynamic public client cannot register for the grant, so /token
		// stops it at the first layer ("not registered for the grant");
		// the grant registry's and exchange.go's own refusals of public
		// and dynamic clients: TestTokenExchangeClientLayers.
		pub := x.publicClient(t, "http://127.0.0.1:9/pub")
		before := x.rowCounts(t)
		r := x.exchange(t, pub, "", subject, upstream)
		x.wantRefused(t, "public client", before, r, http.StatusBadRequest, "unauthorized_client")
		if d, _ := r.body["error_description"].(string); !strings.Contains(d, "not registered for") {
			t.Errorf("public client refused by %q, want the grant-types check", d)
		}
	})
	t.Run("client not allowed to exchange", func(t *testing.T) {
		before := x.rowCounts(t)
		x.wantRefused(t, "plain-rs", before, x.exchange(t, "plain-rs", plainRSSecret, subject, upstream), http.StatusBadRequest, "unauthorized_client")
		reg := x.confidentialClient(t, "http://127.0.0.1:9/conf")
		before = x.rowCounts(t)
		x.wantRefused(t, "dynamic confidential client", before,
			x.exchange(t, reg["client_id"].(string), reg["client_secret"].(string), subject, delegate), http.StatusBadRequest, "unauthorized_client")
	})
	t.Run("dynamic registration cannot ask for it", func(t *testing.T) {
		before := x.rowCounts(t)
		body, _ := json.Marshal(map[string]any{
			"client_name": "wants to exchange", "redirect_uris": []string{"http://127.0.0.1:9/x"},
			"grant_types":                []string{"authorization_code", grantTokenExchange},
			"token_endpoint_auth_method": "client_secret_basic",
		})
		resp, err := http.Post(x.inst.URL+"/register", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), `"invalid_client_metadata"`) {
			t.Fatalf("registration asking for token exchange: %d %s", resp.StatusCode, raw)
		}
		x.assertUnchanged(t, before, "registration refused")
	})
	t.Run("subject token for another resource", func(t *testing.T) {
		before := x.rowCounts(t)
		x.wantRefused(t, "token for other", before, x.exchange(t, "gh-mcp", ghMCPSecret, forOther, upstream), http.StatusBadRequest, "invalid_request")
		x.wantRefused(t, "token for other, delegation", before, x.exchange(t, "gh-mcp", ghMCPSecret, forOther, delegate), http.StatusBadRequest, "invalid_request")
	})
	t.Run("upstream the resource is not allowed", func(t *testing.T) {
		// other-mcp may delegate, but no upstream token is its to have.
		tok := x.userToken(t, otherResource).AccessToken
		before := x.rowCounts(t)
		x.wantRefused(t, "other-mcp asks for github", before, x.exchange(t, "other-mcp", otherMCPSecret, tok, upstream), http.StatusBadRequest, "invalid_target")
		x.wantRefused(t, "gh-mcp asks for an unknown upstream", before,
			x.exchange(t, "gh-mcp", ghMCPSecret, subject, url.Values{"audience": {"gitlab"}}), http.StatusBadRequest, "invalid_target")
		x.wantRefused(t, "gh-mcp delegates to a resource it may not", before,
			x.exchange(t, "gh-mcp", ghMCPSecret, subject, url.Values{"resource": {thirdResource}}), http.StatusBadRequest, "invalid_target")
		// An opaque token has no place for act: delegation to a resource
		// taking opaque tokens is refused rather than losing the actor.
		x.wantRefused(t, "gh-mcp delegates to an opaque-token resource", before,
			x.exchange(t, "gh-mcp", ghMCPSecret, subject, url.Values{"resource": {opaqueResource}}), http.StatusBadRequest, "invalid_target")
	})
	t.Run("malformed requests", func(t *testing.T) {
		before := x.rowCounts(t)
		x.wantRefused(t, "no subject token", before, x.exchange(t, "gh-mcp", ghMCPSecret, "", upstream), http.StatusBadRequest, "invalid_request")
		// authd issues no ID tokens: this is the user's access token sent
		// with the wrong subject_token_type, which alone is refused.
		x.wantRefused(t, "access token labelled as an id_token", before,
			x.exchange(t, "gh-mcp", ghMCPSecret, subject, url.Values{"audience": {"github"}, "subject_token_type": {"urn:ietf:params:oauth:token-type:id_token"}}), http.StatusBadRequest, "invalid_request")
		x.wantRefused(t, "refresh token requested", before,
			x.exchange(t, "gh-mcp", ghMCPSecret, subject, url.Values{"audience": {"github"}, "requested_token_type": {"urn:ietf:params:oauth:token-type:refresh_token"}}), http.StatusBadRequest, "invalid_request")
		x.wantRefused(t, "no target", before, x.exchange(t, "gh-mcp", ghMCPSecret, subject, nil), http.StatusBadRequest, "invalid_target")
		x.wantRefused(t, "two targets", before,
			x.exchange(t, "gh-mcp", ghMCPSecret, subject, url.Values{"audience": {"github"}, "resource": {otherResource}}), http.StatusBadRequest, "invalid_target")
		x.wantRefused(t, "actor token", before,
			x.exchange(t, "gh-mcp", ghMCPSecret, subject, url.Values{"audience": {"github"}, "actor_token": {subject}, "actor_token_type": {tokenTypeAccess}}), http.StatusBadRequest, "invalid_request")
		x.wantRefused(t, "garbage subject", before, x.exchange(t, "gh-mcp", ghMCPSecret, "not-a-token", delegate), http.StatusBadRequest, "invalid_request")
		x.wantRefused(t, "refresh token as subject", before, x.exchange(t, "gh-mcp", ghMCPSecret, subjectTok.RefreshToken, delegate), http.StatusBadRequest, "invalid_request")
	})
	t.Run("revoked subject token", func(t *testing.T) {
		tok := x.userToken(t, mcpResource)
		// The user's client revokes its token (RFC 7009); the grant stays.
		if r := x.post(t, "/revoke", url.Values{"token": {tok.AccessToken}, "client_id": {x.clientOf(t, tok.AccessToken)}}, "", ""); r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", r.status, r.raw)
		}
		before := x.rowCounts(t)
		x.wantRefused(t, "revoked token", before, x.exchange(t, "gh-mcp", ghMCPSecret, tok.AccessToken, delegate), http.StatusBadRequest, "invalid_request")
		x.wantRefused(t, "revoked token, upstream", before, x.exchange(t, "gh-mcp", ghMCPSecret, tok.AccessToken, upstream), http.StatusBadRequest, "invalid_request")
	})
	t.Run("expired subject token", func(t *testing.T) {
		// Last: it moves the server's clock past the tokens' hour.
		before := x.rowCounts(t)
		x.clock.Advance(time.Hour + time.Minute)
		x.wantRefused(t, "expired token", before, x.exchange(t, "gh-mcp", ghMCPSecret, subject, delegate), http.StatusBadRequest, "invalid_request")
		x.wantRefused(t, "expired token, upstream", before, x.exchange(t, "gh-mcp", ghMCPSecret, subject, upstream), http.StatusBadRequest, "invalid_request")
	})
}

// clientOf is the client_id introspection reports for tok.
func (x *exchangeEnv) clientOf(t *testing.T, tok string) string {
	t.Helper()
	id, _ := x.introspect(t, tok)["client_id"].(string)
	if id == "" {
		t.Fatalf("no client_id for the token")
	}
	return id
}

// TestTokenExchangeDelegation: a resource server trades the user's token
// for a token for another resource that names it as the actor (RFC 8693
// §4.1), limited to what the user granted and that resource allows, never
// outliving the subject token; a second hop nests the actors; revoking the
// user's grant ends them all.
func TestTokenExchangeDelegation(t *testing.T) {
	t.Parallel()
	x := newExchangeEnv(t, nil)
	userTok := x.userToken(t, mcpResource, "mcp:tools", "mcp:resources")
	subject := verifyWithJWKS(t, x.inst.URL, userTok.AccessToken)

	r := x.exchange(t, "gh-mcp", ghMCPSecret, userTok.AccessToken, url.Values{"resource": {otherResource}})
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", r.header.Get("Cache-Control"))
	}
	if r.body["issued_token_type"] != tokenTypeAccess || r.body["token_type"] != "Bearer" || r.body["scope"] != "mcp:tools" {
		t.Errorf("response %s: want issued_token_type access_token, token_type Bearer, scope mcp:tools (other allows only that)", r.raw)
	}
	if _, ok := r.body["refresh_token"]; ok {
		t.Errorf("a refresh token was issued: %s", r.raw)
	}
	delegated := r.body["access_token"].(string)
	claims := verifyWithJWKS(t, x.inst.URL, delegated)
	if claims["aud"] != otherResource || claims["sub"] != subject["sub"] || claims["gid"] != subject["gid"] || claims["client_id"] != subject["client_id"] {
		t.Errorf("delegated claims %v, subject %v", claims, subject)
	}
	if exp, sexp := claims["exp"].(float64), subject["exp"].(float64); exp > sexp {
		t.Errorf("delegated token expires at %v, after its subject token (%v)", exp, sexp)
	}
	if act, _ := claims["act"].(map[string]any); act["sub"] != "gh-mcp" || act["act"] != nil {
		t.Errorf("act %v, want {sub: gh-mcp}", claims["act"])
	}
	if in := x.introspect(t, delegated); in["active"] != true || fmt.Sprint(in["act"]) != "map[sub:gh-mcp]" {
		t.Errorf("introspection of the delegated token: %v", in)
	}

	// The user never granted more than the subject token holds.
	before := x.rowCounts(t)
	x.wantRefused(t, "scope the resource does not allow", before,
		x.exchange(t, "gh-mcp", ghMCPSecret, userTok.AccessToken, url.Values{"resource": {otherResource}, "scope": {"mcp:resources"}}), http.StatusBadRequest, "invalid_scope")

	// Second hop: other-mcp delegates on to third, which allows
	// mcp:resources too, but the token it holds carries mcp:tools only.
	r2 := x.exchange(t, "other-mcp", otherMCPSecret, delegated, url.Values{"resource": {thirdResource}})
	if r2.status != http.StatusOK || r2.body["scope"] != "mcp:tools" {
		t.Fatalf("second hop: %d %s", r2.status, r2.raw)
	}
	chained := r2.body["access_token"].(string)
	c2 := verifyWithJWKS(t, x.inst.URL, chained)
	if fmt.Sprint(c2["act"]) != "map[act:map[sub:gh-mcp] sub:other-mcp]" || c2["sub"] != subject["sub"] {
		t.Errorf("nested act %v, sub %v", c2["act"], c2["sub"])
	}
	if in := x.introspect(t, chained); fmt.Sprint(in["act"]) != "map[act:map[sub:gh-mcp] sub:other-mcp]" {
		t.Errorf("introspection of the chained token: %v", in)
	}
	// gh-mcp cannot use the delegated token as its own subject: it is for
	// another resource.
	x.wantRefused(t, "delegated token back at gh-mcp", x.rowCounts(t),
		x.exchange(t, "gh-mcp", ghMCPSecret, delegated, url.Values{"resource": {otherResource}}), http.StatusBadRequest, "invalid_request")

	// Discovery advertises the grant; audit and metrics saw each exchange.
	var md map[string]any
	getJSON(t, x.inst.URL+"/.well-known/oauth-authorization-server", http.StatusOK, &md)
	if !strings.Contains(fmt.Sprint(md["grant_types_supported"]), grantTokenExchange) {
		t.Errorf("grant_types_supported %v", md["grant_types_supported"])
	}
	_, metricsText := get(t, x.metricsURL, nil)
	for _, want := range []string{
		`authd_token_exchanges_total{kind="delegation",outcome="issued"} 2`,
		`authd_token_exchanges_total{kind="delegation",outcome="invalid_scope"} 1`,
		`authd_token_exchanges_total{kind="delegation",outcome="invalid_request"} 1`,
		`authd_token_requests_total{grant_type="` + grantTokenExchange + `",outcome="issued"} 2`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	logs := x.inst.Logs.String()
	if !strings.Contains(logs, `"msg":"audit","event":"token_exchange","outcome":"issued","client_id":"other-mcp","kind":"delegation","delegation":"`+thirdResource+`","user_id":"`+subject["sub"].(string)) {
		t.Errorf("no audit line for the second hop in the logs")
	}
	for _, tok := range []string{userTok.AccessToken, delegated, chained} {
		if strings.Contains(logs, tok) {
			t.Fatal("a token appears in the logs")
		}
	}

	// Revoking the user's grant (its refresh token, RFC 7009 §2.1) ends
	// every token delegated from it.
	if rr := x.post(t, "/revoke", url.Values{"token": {userTok.RefreshToken}, "client_id": {subject["client_id"].(string)}}, "", ""); rr.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", rr.status, rr.raw)
	}
	for name, tok := range map[string]string{"delegated": delegated, "chained": chained} {
		if x.active(t, tok) {
			t.Errorf("%s token still active after the grant was revoked", name)
		}
	}
}

// githubMCPServer is an MCP server (resource server gh-mcp) that calls the
// GitHub API as the user (see upstreamMCPServer).
func (x *exchangeEnv) githubMCPServer(t *testing.T, issued chan<- map[string]any) *httptest.Server {
	t.Helper()
	return upstreamMCPServer(t, x.inst.URL, "gh-mcp", ghMCPSecret, "github", x.github.APIURL()+"/user", x.github.Client(), "login", issued)
}

// upstreamMCPServer is an MCP server that calls an upstream API as the
// user: it exchanges the authd token it receives for the user's token at
// upstream (authd's /token, as client id/secret), GETs api with it through
// hc, and answers the member field of the JSON object the API returned.
// What authd issued goes to issued.
func upstreamMCPServer(t *testing.T, authd, id, secret, upstream, api string, hc *http.Client, field string, issued chan<- map[string]any) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subject, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		ex, err := tryPostTo(authd, "/token", url.Values{
			"grant_type":         {grantTokenExchange},
			"subject_token":      {subject},
			"subject_token_type": {tokenTypeAccess},
			"audience":           {upstream},
		}, id, secret)
		if err != nil || ex.status != http.StatusOK {
			http.Error(w, fmt.Sprintf("exchange: %v %d %s", err, ex.status, ex.raw), http.StatusBadGateway)
			return
		}
		issued <- ex.body
		req, _ := http.NewRequest(http.MethodGet, api, nil)
		req.Header.Set("Authorization", ex.body["token_type"].(string)+" "+ex.body["access_token"].(string))
		resp, err := hc.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var obj map[string]any
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&obj) != nil {
			http.Error(w, fmt.Sprintf("%s: %d", api, resp.StatusCode), http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, obj[field])
	}))
	t.Cleanup(srv.Close)
	return srv
}

// callMCP calls the MCP server with tok and returns its status and body.
func callMCP(t *testing.T, srv *httptest.Server, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestTokenExchangeUpstreamGitHub is issue 18's end to end: an MCP server
// receives the user's authd token, exchanges it at /token for the user's
// GitHub token and calls GitHub's /user with it, getting that user. The
// GitHub token expires: the next exchange refreshes it (once). /verify
// forwards it to a server configured so. When the user revokes the app at
// GitHub, the exchange answers invalid_grant and issues nothing.
func TestTokenExchangeUpstreamGitHub(t *testing.T) {
	t.Parallel()
	const life = 10 * time.Minute
	x := newExchangeEnvWith(t, nil, func(f *flowEnv, clk *testClock) {
		f.github.SetTokenLifetime(life) // GitHub App tokens: expiring, with refresh tokens
		f.github.SetClock(clk.Now)
	})
	issued := make(chan map[string]any, 4)
	mcp := x.githubMCPServer(t, issued)
	userTok := x.userToken(t, mcpResource).AccessToken
	signInToken := x.upstreamTokens.tokens()[0]

	status, body := callMCP(t, mcp, userTok)
	if status != http.StatusOK || body != "alice" {
		t.Fatalf("MCP server: %d %s", status, body)
	}
	first := <-issued
	if first["access_token"] != signInToken {
		t.Errorf("exchange handed out another token than the one GitHub issued at sign-in")
	}
	if first["issued_token_type"] != tokenTypeAccess || first["token_type"] != "Bearer" {
		t.Errorf("exchange response %v", first)
	}
	if in, _ := first["expires_in"].(float64); in <= 0 || in > life.Seconds() {
		t.Errorf("expires_in %v, want within GitHub's %s", first["expires_in"], life)
	}
	if _, ok := first["scope"].(string); !ok {
		t.Errorf("no scope in %v", first)
	}
	if _, ok := first["refresh_token"]; ok {
		t.Errorf("the upstream refresh token was handed out")
	}

	// /verify hands the same token to the unmodified server behind the
	// proxy: to the proxy's auth subrequest, which carries the secret.
	resp := verifyAsProxy(t, x.inst.URL, userTok, forwardAuthSecret)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Forwarded-Access-Token") != signInToken {
		t.Errorf("/verify: %d, X-Forwarded-Access-Token is not the user's GitHub token", resp.StatusCode)
	}
	// The client calls https://auth.example/verify through the same
	// trusted proxy that fronts authd, with X-Forwarded-Host/-Uri it
	// forged (a proxy passes them on unless told otherwise) and the
	// user's token: without the secret, or with a wrong one, it must not
	// get the GitHub token.
	for _, secret := range []string{"", forwardAuthSecret + "x", strings.ToUpper(forwardAuthSecret)} {
		resp := verifyAsProxy(t, x.inst.URL, userTok, secret)
		if got := resp.Header.Get("X-Forwarded-Access-Token"); resp.StatusCode != http.StatusOK || got != "" {
			t.Errorf("/verify through the proxy with forged forwarded headers, secret %q: %d, X-Forwarded-Access-Token is set (the GitHub token: %v)", secret, resp.StatusCode, got == signInToken)
		}
	}
	// The client holding the user's token calls /verify itself, naming
	// the resource with ?resource= and no forwarded headers (issue 18
	// review): it must not get the GitHub token.
	req, _ := http.NewRequest(http.MethodGet, x.inst.URL+"/verify?resource="+url.QueryEscape(mcpResource), nil)
	req.Header.Set("Authorization", "Bearer "+userTok)
	direct, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	direct.Body.Close()
	if got := direct.Header.Get("X-Forwarded-Access-Token"); got != "" {
		t.Errorf("/verify?resource= called by the client: %d, X-Forwarded-Access-Token is set (the GitHub token: %v)", direct.StatusCode, got == signInToken)
	}

	// The GitHub token expires (the authd token does not yet): the next
	// exchange refreshes it, and GitHub takes the new one.
	x.clock.Advance(life + time.Minute)
	status, body = callMCP(t, mcp, userTok)
	if status != http.StatusOK || body != "alice" {
		t.Fatalf("MCP server after the GitHub token expired: %d %s", status, body)
	}
	second := <-issued
	if second["access_token"] == first["access_token"] {
		t.Errorf("an expired GitHub token was handed out")
	}
	if ok, refused := x.github.Refreshes(); ok != 1 || refused != 0 {
		t.Errorf("GitHub refreshes: %d ok, %d refused; want 1, 0", ok, refused)
	}

	// The user revokes authd's app at GitHub; once the token expires the
	// refresh is refused. The membership re-check (due: more than
	// membership_check_interval since sign-in) that judging the subject
	// token runs then finds the kept grant dead, and the allowlist
	// (github_orgs) depends on memberships: alice's grant ends, so the
	// subject token is no longer active (RFC 8693 §2.2.2:
	// invalid_request), nothing issued.
	x.github.RevokeGrant("alice")
	x.clock.Advance(life + time.Minute)
	// Row counts only: ending the grants and deleting the kept token is
	// what this refusal must do, and ending alice's sessions, so that her
	// next authorization signs in at GitHub again.
	before := x.secEnv.rowCounts(t)
	delete(before, "sessions")
	x.wantRefused(t, "upstream grant revoked", before,
		x.exchange(t, "gh-mcp", ghMCPSecret, userTok, url.Values{"audience": {"github"}}), http.StatusBadRequest, "invalid_request")
	if n := x.count(t, "SELECT count(*) FROM sessions"); n != 0 {
		t.Errorf("upstream grant revoked: %d sessions left, want alice's ended", n)
	}
	if !strings.Contains(x.inst.Logs.String(), `"event":"upstream_grant_revoked"`) {
		t.Errorf("no upstream_grant_revoked audit line")
	}

	logs := x.inst.Logs.String()
	if !strings.Contains(logs, `"event":"token_exchange","outcome":"issued","client_id":"gh-mcp","kind":"upstream","upstream":"github"`) {
		t.Errorf("no audit line for the upstream exchange")
	}
	for _, tok := range []string{signInToken, first["access_token"].(string), second["access_token"].(string)} {
		if strings.Contains(logs, tok) {
			t.Fatal("a GitHub token appears in the logs")
		}
	}
	_, metricsText := get(t, x.metricsURL, nil)
	for _, want := range []string{
		`authd_token_exchanges_total{kind="upstream",outcome="issued"} 2`,
		`authd_token_exchanges_total{kind="upstream",outcome="invalid_request"} 1`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestTokenExchangeConfigValidation: token_exchange and
// forward_upstream_token are refused at start-up unless they name a
// confidential client, configured resources and upstreams that keep
// tokens; a valid one loads.
func TestTokenExchangeConfigValidation(t *testing.T) {
	t.Parallel()
	const resources = `resources:
  - uri: https://mcp.example.com/mcp
  - uri: https://other.example.com/mcp
`
	good := validYAML + resources + `clients:
  - id: rs
    secret: rs-secret-0123456789abcdef
    token_exchange:
      resource_server: https://mcp.example.com/mcp
      resources: [https://other.example.com/mcp]
`
	if _, err := loadConfig(flagsFor(t, "--config", writeFile(t, good)), envOf(nil)); err != nil {
		t.Fatalf("valid token_exchange refused: %v", err)
	}
	bad := validYAML + resources + `  - uri: https://files.example.com/
    forward_upstream_token: github
clients:
  - id: public
    redirect_uris: [https://app.example.com/cb]
    token_endpoint_auth_method: none
    token_exchange:
      resource_server: https://mcp.example.com/mcp
      resources: [https://other.example.com/mcp]
  - id: rs
    secret: rs-secret-0123456789abcdef
    token_exchange:
      resource_server: https://nowhere.example.com/mcp
      upstreams: [github, gitlab]
      resources: [https://unknown.example.com/]
  - id: empty
    secret: rs-secret-0123456789abcdef
    token_exchange:
      resource_server: https://mcp.example.com/mcp
  - id: listed
    secret: rs-secret-0123456789abcdef
    grant_types: [urn:ietf:params:oauth:grant-type:token-exchange]
`
	_, err := loadConfig(flagsFor(t, "--config", writeFile(t, bad)), envOf(nil))
	if err == nil {
		t.Fatal("invalid token_exchange settings accepted")
	}
	for _, want := range []string{
		`client "public": token_exchange needs a confidential client`,
		`clients[1].token_exchange.resource_server: "https://nowhere.example.com/mcp" is not in resources[].uri`,
		`clients[1].token_exchange.upstreams: upstream "github" needs store_tokens: true`,
		`clients[1].token_exchange.upstreams: "gitlab" is not in upstreams[].id`,
		`clients[1].token_exchange.resources: "https://unknown.example.com/" is not in resources[].uri`,
		`client "empty": token_exchange: list upstreams or resources`,
		`client "listed": grant type urn:ietf:params:oauth:grant-type:token-exchange needs token_exchange`,
		`resources[2].forward_upstream_token: upstream "github" needs store_tokens: true`,
		`resources[2].forward_upstream_token: introspection.forward_auth_secret is not set`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestTokenExchangeUpstreamOIDC: the same through an OpenID Connect
// upstream, configured from the environment: the MCP server exchanges the
// user's authd token for the user's access token at the provider and
// calls its UserInfo endpoint with it, getting that user.
func TestTokenExchangeUpstreamOIDC(t *testing.T) {
	t.Parallel()
	idp := upstreamtest.NewOIDC(t)
	idp.AddUser(upstreamtest.OIDCUser{Subject: "sub-carol-42", Email: "carol@corp.example", EmailVerified: true, Name: "Carol"})
	const secret = "sso-mcp-secret-0123456789"
	inst := startAuthdWith(t, freeAddr(t), map[string]string{
		"AUTHD_DATABASE_URL":           pgtest.DSN(t),
		"AUTHD_KEYS_ENCRYPTION_SECRET": "test-encryption-secret-0123456789abcdef",
		"AUTHD_ALLOWLIST_EMAILS":       "carol@corp.example",
		"AUTHD_RESOURCES":              fmt.Sprintf(`[{"uri":%q,"name":"MCP","upstream_scopes":{"sso":["openid"]}}]`, mcpResource),
		"AUTHD_UPSTREAMS": fmt.Sprintf(`[{"id":"sso","type":"oidc","store_tokens":true,"client_id":%q,"client_secret":%q,"oidc":{"issuer":%q}}]`,
			idp.ClientID, idp.ClientSecret, idp.Issuer()),
		"AUTHD_CLIENTS": fmt.Sprintf(`[{"id":"sso-mcp","secret_hash":%q,"token_exchange":{"resource_server":%q,"upstreams":["sso"]}}]`, oauth.HashSecret(secret), mcpResource),
	}, idp.Client())

	reg := registerClient(t, inst.URL, map[string]any{
		"client_name": "MCP client", "redirect_uris": []string{"http://127.0.0.1/cb"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{
		ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:47001/cb",
		Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, idp.Client().Transport, "http://127.0.0.1:47001/cb")
	q := b.authorize(t, inst.URL, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}

	issued := make(chan map[string]any, 1)
	mcp := upstreamMCPServer(t, inst.URL, "sso-mcp", secret, "sso", idp.Issuer()+"/userinfo", idp.Client(), "sub", issued)
	status, body := callMCP(t, mcp, tok.AccessToken)
	if status != http.StatusOK || body != "sub-carol-42" {
		t.Fatalf("MCP server: %d %s", status, body)
	}
	got := <-issued
	if got["issued_token_type"] != tokenTypeAccess || got["token_type"] != "Bearer" {
		t.Errorf("exchange response %v", got)
	}
	if in, _ := got["expires_in"].(float64); in <= 0 || in > 3600 {
		t.Errorf("expires_in %v, want within the provider's hour", got["expires_in"])
	}
	if strings.Contains(inst.Logs.String(), got["access_token"].(string)) {
		t.Fatal("the upstream token appears in the logs")
	}
}
