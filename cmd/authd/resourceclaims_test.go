package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

const (
	claimsResource = "https://mcp.example.com/mcp"    // every identity claim, route scopes
	groupsResource = "https://groups.example.com/mcp" // groups only
	plainResource  = "https://plain.example.com/mcp"  // none
)

// TestResourceIdentityClaimsAndRouteScopes: each resource gets the
// identity claims it is configured for — in the JWT, in introspection
// answers and in /verify's headers — and nothing by default; a token for
// several resources carries only what all of them get; /verify requires
// the scopes of the route rules a request matches and answers with the
// step-up challenge naming them.
func TestResourceIdentityClaimsAndRouteScopes(t *testing.T) {
	t.Parallel()
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(upstreamtest.GitHubUser{
		ID: 1001, Login: "alice", Name: "Alice",
		Emails: []upstreamtest.GitHubEmail{{Email: "alice@example.com", Primary: true, Verified: true}},
		Orgs:   []string{"acme"}, Teams: map[string][]string{"acme": {"writers"}},
	})
	cfg := filepath.Join(t.TempDir(), "authd.yaml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
keys: {encryption_secret: test-encryption-secret-0123456789abcdef}
scopes:
  - {name: mcp:tools, description: Use the tools}
  - {name: mcp:admin, description: Administer}
resources:
  - uri: %s
    required_scopes: [mcp:tools]
    claims: [email, name, login, groups, upstream]
    route_scopes:
      - {method: POST, path: /mcp/admin*, scopes: [mcp:admin]}
      - {method: DELETE, scopes: [mcp:admin]}
  - {uri: %s, claims: [groups]}
  - {uri: %s}
trusted_proxies: ["127.0.0.1/32"]
introspection: {bearer_tokens: [%s]}
upstreams:
  - {id: github, type: github, client_id: %s, client_secret: %s, github: {base_url: %s, api_url: %s, load_teams: true}}
allowlist: {github_orgs: [acme]}
`, claimsResource, groupsResource, plainResource, introspectionToken, gh.ClientID, gh.ClientSecret, gh.BaseURL(), gh.APIURL())), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	inst := startAuthdWith(t, freeAddr(t), map[string]string{"AUTHD_DATABASE_URL": pgtest.DSN(t)}, gh.Client(), "--config", cfg)

	reg := registerClient(t, inst.URL, map[string]any{
		"client_name": "claims test", "redirect_uris": []string{"http://127.0.0.1/callback"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	b := newBrowser(t, gh.Client().Transport, "http://127.0.0.1:45126/callback")
	token := func(scopes []string, resources ...string) string {
		t.Helper()
		conf := &oauth2.Config{ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:45126/callback", Scopes: scopes,
			Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token", AuthStyle: oauth2.AuthStyleInParams}}
		verifier := oauth2.GenerateVerifier()
		opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
		for _, r := range resources {
			opts = append(opts, oauth2.SetAuthURLParam("resource", r))
		}
		u := conf.AuthCodeURL("s", opts...)
		for _, r := range resources[1:] { // SetAuthURLParam keeps one value
			u += "&resource=" + r
		}
		q := b.authorize(t, inst.URL, u)
		tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}

	full := map[string]any{
		"email": "alice@example.com", "name": "Alice", "preferred_username": "alice",
		"groups": []any{"acme", "acme/writers"}, "upstream_provider": "github", "upstream_id": "1001", "upstream_login": "alice",
	}
	identity := func(m map[string]any) map[string]any {
		out := map[string]any{}
		for k := range full {
			if v, ok := m[k]; ok {
				if g, ok := v.([]any); ok {
					slices.SortFunc(g, func(a, b any) int { return strings.Compare(a.(string), b.(string)) })
				}
				out[k] = v
			}
		}
		return out
	}
	for _, c := range []struct {
		name      string
		resources []string
		want      map[string]any
	}{
		{"all claims", []string{claimsResource}, full},
		{"groups only", []string{groupsResource}, map[string]any{"groups": []any{"acme", "acme/writers"}}},
		{"none by default", []string{plainResource}, map[string]any{}},
		{"several resources: what all get", []string{claimsResource, groupsResource}, map[string]any{"groups": []any{"acme", "acme/writers"}}},
		{"several resources, one with none", []string{claimsResource, plainResource}, map[string]any{}},
	} {
		tok := token([]string{"mcp:tools"}, c.resources...)
		if got := identity(verifyWithJWKS(t, inst.URL, tok)); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: JWT identity claims %v, want %v", c.name, got, c.want)
		}
		if got := identity(introspectAt(t, inst.URL, tok)); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: introspection identity claims %v, want %v", c.name, got, c.want)
		}
	}

	// /verify: identity headers for the resource's claims, and route
	// scopes.
	verifyAt := func(host, method, uri, tok string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, inst.URL+"/verify", nil)
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-Host", host)
		req.Header.Set("X-Forwarded-Uri", uri)
		req.Header.Set("X-Forwarded-Method", method)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	tools := token([]string{"mcp:tools"}, claimsResource)
	resp := verifyAt("mcp.example.com", "POST", "/mcp", tools)
	for h, want := range map[string]string{
		"X-Auth-User": "alice", "X-Auth-Email": "alice@example.com", "X-Auth-Name": "Alice",
		"X-Auth-Groups": "acme,acme/writers", "X-Auth-Upstream-Provider": "github", "X-Auth-Upstream-Id": "1001",
		"X-Auth-Upstream-Login": "alice", "X-Auth-Scope": "mcp:tools",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("/verify %s = %q, want %q (status %d)", h, got, want, resp.StatusCode)
		}
	}
	plain := token([]string{"mcp:tools"}, plainResource)
	resp = verifyAt("plain.example.com", "POST", "/mcp", plain)
	for _, h := range []string{"X-Auth-Name", "X-Auth-Groups", "X-Auth-Upstream-Provider", "X-Auth-Upstream-Id", "X-Auth-Upstream-Login"} {
		if vs, ok := resp.Header[h]; resp.StatusCode != 200 || !ok || len(vs) != 1 || vs[0] != "" {
			t.Errorf("/verify for a resource without claims: %d %s = %q, want present and empty", resp.StatusCode, h, vs)
		}
	}

	metadata := `resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`
	admin := token([]string{"mcp:tools", "mcp:admin"}, claimsResource)
	for _, c := range []struct {
		method, uri, tok string
		status           int
		challenge        string
	}{
		{"POST", "/mcp", tools, 200, ""},
		{"GET", "/mcp/admin/x", tools, 200, ""},
		{"POST", "/mcp/admin/x", tools, 403, `Bearer error="insufficient_scope", scope="mcp:tools mcp:admin", ` + metadata},
		{"POST", "/mcp/../mcp/admin", tools, 403, `Bearer error="insufficient_scope", scope="mcp:tools mcp:admin", ` + metadata},
		{"DELETE", "/mcp", tools, 403, `Bearer error="insufficient_scope", scope="mcp:tools mcp:admin", ` + metadata},
		{"POST", "/mcp/admin/x", "", 401, `Bearer scope="mcp:tools mcp:admin", ` + metadata},
		{"POST", "/mcp/admin/x", "garbage", 401, `Bearer error="invalid_token", scope="mcp:tools mcp:admin", ` + metadata},
		{"POST", "/mcp/admin/x", admin, 200, ""},
		{"DELETE", "/mcp", admin, 200, ""},
	} {
		resp := verifyAt("mcp.example.com", c.method, c.uri, c.tok)
		if resp.StatusCode != c.status || resp.Header.Get("WWW-Authenticate") != c.challenge {
			t.Errorf("/verify %s %s: %d %s\nwant %d %s", c.method, c.uri, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), c.status, c.challenge)
		}
	}
	// Named by a resource parameter, without X-Forwarded-Uri, the path is
	// unknown: rules with a path apply (more scopes, never fewer). nginx's
	// auth_request keeps the request's method.
	req, _ := http.NewRequest(http.MethodPost, inst.URL+"/verify?resource="+claimsResource, nil)
	req.Header.Set("Authorization", "Bearer "+tools)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != 403 {
		t.Errorf("/verify?resource= without the path: %d, want 403", resp.StatusCode)
	}
}

// TestResourceClaimsAndRouteScopesConfig: the new keys are checked at
// load, each problem naming its setting.
func TestResourceClaimsAndRouteScopesConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, resources string
		want            []string
	}{
		{"unknown claim", `[{uri: "https://mcp.example.com", claims: [email, phone]}]`, []string{"resources[0].claims", `"phone"`}},
		{"bad method", `[{uri: "https://mcp.example.com", route_scopes: [{method: post, scopes: [a]}]}]`, []string{"resources[0].route_scopes[0].method"}},
		{"relative path", `[{uri: "https://mcp.example.com", route_scopes: [{path: admin, scopes: [a]}]}]`, []string{"resources[0].route_scopes[0].path"}},
		{"no scopes", `[{uri: "https://mcp.example.com", route_scopes: [{path: /admin}]}]`, []string{"resources[0].route_scopes[0].scopes"}},
		{"protocol scope", `[{uri: "https://mcp.example.com", route_scopes: [{path: /admin, scopes: [offline_access]}]}]`, []string{"resources[0].route_scopes[0].scopes", "offline_access"}},
		{"unknown key", `[{uri: "https://mcp.example.com", route_scopes: [{paths: /admin, scopes: [a]}]}]`, []string{"paths"}},
	} {
		path := writeFile(t, validYAML+"resources: "+tc.resources+"\n")
		_, err := loadConfig(flagsFor(t, "--config", path), envOf(nil))
		if err == nil {
			t.Errorf("%s: loaded", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error does not mention %q:\n%v", tc.name, w, err)
			}
		}
	}
	path := writeFile(t, validYAML+`resources: [{uri: "https://mcp.example.com", claims: [email, name, login, groups, upstream], route_scopes: [{method: POST, path: "/admin*", scopes: [a]}]}]`+"\n")
	if _, err := loadConfig(flagsFor(t, "--config", path), envOf(nil)); err != nil {
		t.Errorf("valid claims and route_scopes: %v", err)
	}
}
