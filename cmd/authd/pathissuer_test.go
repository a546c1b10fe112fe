package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/ratelimit"
	"github.com/authd/authd/internal/store/pgtest"
)

// TestIssuerWithPathFlow runs authd with an issuer that has a path (RFC
// 8414 §3.1): the metadata is found at the path-inserted well-known URL,
// every advertised endpoint is under the issuer, and a public MCP client
// registers, signs a user in through GitHub and consent, and gets a token
// that verifies against the advertised jwks_uri, with every redirect of
// the browser staying under the issuer's path.
func TestIssuerWithPathFlow(t *testing.T) {
	t.Parallel()
	f := newFlowEnv(t, pgtest.DSN(t))
	addr := freeAddr(t)
	host := "http://" + addr
	issuer := host + "/tenant"
	f.env["AUTHD_ISSUER"] = issuer
	startAuthdWith(t, addr, f.env, f.github.Client(), "--config", f.cfg)
	ctx := context.Background()

	// Discovery: the RFC 8414 §3.1 form, the OpenID form, and the forms of
	// clients that append the suffix to the issuer all serve one document.
	var md map[string]any
	getJSON(t, host+"/.well-known/oauth-authorization-server/tenant", http.StatusOK, &md)
	if md["issuer"] != issuer {
		t.Fatalf("issuer %v, want %s", md["issuer"], issuer)
	}
	for _, p := range []string{"/.well-known/openid-configuration/tenant", "/tenant/.well-known/oauth-authorization-server", "/tenant/.well-known/openid-configuration"} {
		var other map[string]any
		getJSON(t, host+p, http.StatusOK, &other)
		if other["issuer"] != issuer || other["token_endpoint"] != md["token_endpoint"] {
			t.Errorf("%s: %v", p, other)
		}
	}
	endpoints := map[string]string{}
	for _, k := range []string{"authorization_endpoint", "token_endpoint", "registration_endpoint", "revocation_endpoint", "introspection_endpoint", "jwks_uri"} {
		s, _ := md[k].(string)
		if !strings.HasPrefix(s, issuer+"/") {
			t.Errorf("%s = %q, not under the issuer %s", k, s, issuer)
		}
		endpoints[k] = s
	}
	if t.Failed() {
		t.FailNow()
	}
	// /health and /ready stay at the root; the endpoints are not there.
	for p, want := range map[string]int{
		"/health": http.StatusOK, "/ready": http.StatusOK, "/tenant/health": http.StatusNotFound,
		"/.well-known/jwks.json": http.StatusNotFound, "/tenant/.well-known/jwks.json": http.StatusOK,
		"/authorize": http.StatusNotFound, "/apps": http.StatusNotFound,
	} {
		if got := statusOf(t, host+p); got != want {
			t.Errorf("GET %s: %d, want %d", p, got, want)
		}
	}
	if resp, _ := postForm(t, http.DefaultClient, host+"/token", url.Values{"grant_type": {"client_credentials"}}, "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /token at the root: %d, want 404", resp.StatusCode)
	}

	reg := registerClient(t, issuer, map[string]any{
		"client_name":                "Tenant MCP client",
		"redirect_uris":              []string{"http://127.0.0.1/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "none",
	})
	if uri, _ := reg["registration_client_uri"].(string); uri != "" && !strings.HasPrefix(uri, issuer+"/register/") {
		t.Errorf("registration_client_uri %q", uri)
	}
	const redirect = "http://127.0.0.1:45124/callback"
	conf := &oauth2.Config{
		ClientID:    reg["client_id"].(string),
		RedirectURL: redirect,
		Scopes:      []string{"mcp:tools"},
		Endpoint: oauth2.Endpoint{
			AuthURL: endpoints["authorization_endpoint"], TokenURL: endpoints["token_endpoint"], AuthStyle: oauth2.AuthStyleInParams,
		},
	}
	verifier := oauth2.GenerateVerifier()
	state := "state-" + oauth2.GenerateVerifier()[:16]
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))

	// The browser: every hop on authd's host must be under /tenant/.
	jar, _ := cookiejar.New(nil)
	var hops []string
	c := &http.Client{
		Jar: jar, Transport: f.github.Client().Transport, Timeout: 20 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			hops = append(hops, req.URL.String())
			if strings.HasPrefix(req.URL.String(), redirect) || len(via) > 10 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	underIssuer := func(u string) {
		t.Helper()
		if strings.HasPrefix(u, host+"/") && !strings.HasPrefix(u, issuer+"/") {
			t.Errorf("authd sent the browser to %s, outside %s", u, issuer)
		}
	}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `action="/tenant/consent"`) {
		t.Fatalf("want the consent page posting to /tenant/consent, got %d at %s:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	if !strings.Contains(string(body), `href="/tenant/apps"`) {
		t.Errorf("consent page does not link to /tenant/apps:\n%s", body)
	}
	if resp.Request.URL.Path != "/tenant/consent" {
		t.Errorf("consent page at %s", resp.Request.URL)
	}
	form := url.Values{"decision": {"approve"}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	resp, err = c.PostForm(issuer+"/consent", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, redirect) {
		t.Fatalf("flow did not end at the client: %d %s", resp.StatusCode, loc)
	}
	var sawCallback bool
	for _, h := range hops {
		underIssuer(h)
		sawCallback = sawCallback || strings.HasPrefix(h, issuer+"/callback/github?")
	}
	if !sawCallback {
		t.Errorf("the upstream did not return to %s/callback/github: %v", issuer, hops)
	}
	final, _ := url.Parse(loc)
	q := final.Query()
	if q.Get("state") != state || q.Get("iss") != issuer || q.Get("code") == "" {
		t.Fatalf("authorization response %v", q)
	}

	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))
	if err != nil {
		t.Fatal(err)
	}
	claims := verifyWithJWKS(t, issuer, tok.AccessToken) // jwks_uri is issuer + /.well-known/jwks.json
	if endpoints["jwks_uri"] != issuer+"/.well-known/jwks.json" {
		t.Errorf("jwks_uri %s", endpoints["jwks_uri"])
	}
	if claims["iss"] != issuer || claims["aud"] != mcpResource || claims["client_id"] != conf.ClientID {
		t.Fatalf("access token claims %v", claims)
	}
	if !introspectActive(t, issuer, tok.AccessToken) {
		t.Error("introspection under the issuer: token not active")
	}

	// The connected-apps page links and posts under the issuer; signing
	// out redirects back there.
	resp, err = c.Get(issuer + "/apps")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `action="/tenant/apps/revoke"`) || !strings.Contains(string(body), `action="/tenant/logout"`) {
		t.Fatalf("apps page %d:\n%s", resp.StatusCode, body)
	}
	var csrf string
	for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
		if m[1] == "csrf" {
			csrf = htmlUnescape(m[2])
		}
	}
	hops = nil
	req, _ := http.NewRequest(http.MethodPost, issuer+"/logout", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.String() != issuer+"/apps" {
		t.Errorf("logout ended at %s, want %s/apps (hops %v)", resp.Request.URL, issuer, hops)
	}
	for _, h := range hops {
		underIssuer(h)
	}
}

// TestIssuerPathRateLimits: the per-address limits apply to the endpoints
// under the issuer's path, first-segment entries ("/callback/") included,
// and to nothing outside it.
func TestIssuerPathRateLimits(t *testing.T) {
	t.Parallel()
	lim := func() *ratelimit.Limiter {
		return ratelimit.New(ratelimit.Config{PerKeyPerMinute: 1, PerKeyBurst: 1}, nil)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := limitPaths("/tenant", map[string]*ratelimit.Limiter{"/token": lim(), "/callback/": lim()})(ok)
	status := func(path string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, path, nil)
		req.RemoteAddr = "192.0.2.1:1234"
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, tc := range []struct {
		path    string
		limited bool
	}{
		{"/tenant/token", true},
		{"/tenant/callback/github", true},
		{"/token", false},
		{"/callback/github", false},
		{"/tenantx/token", false},
		{"/tenant/introspect", false},
	} {
		first, second := status(tc.path), status(tc.path)
		if first != http.StatusNoContent {
			t.Errorf("%s: first request %d", tc.path, first)
		}
		if limited := second == http.StatusTooManyRequests; limited != tc.limited {
			t.Errorf("%s: second request %d, limited %v, want %v", tc.path, second, limited, tc.limited)
		}
	}
}
