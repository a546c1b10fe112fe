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

// verify calls /verify as a reverse proxy would for a request to the MCP
// server (https://mcp.example.com/mcp), with the given Authorization.
func verify(t *testing.T, issuer, authorization string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, issuer+"/verify", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "mcp.example.com")
	req.Header.Set("X-Forwarded-Uri", "/mcp")
	req.Header.Set("X-Forwarded-Method", "POST")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

var resourceMetadataParam = regexp.MustCompile(`resource_metadata="([^"]+)"`)

// TestMCPScenarioThroughForwardAuth is issue 6's end-to-end scenario: an
// unmodified MCP server behind a proxy using /verify. The client is sent
// from a 401 to the protected-resource document, to authd's metadata,
// registers, signs in, gets a token for that resource, and is let through;
// after revocation it is turned away again.
func TestMCPScenarioThroughForwardAuth(t *testing.T) {
	t.Parallel()
	f := newFlowEnv(t, pgtest.DSN(t))
	metricsAddr := freeAddr(t)
	f.env["AUTHD_METRICS_LISTEN"] = metricsAddr
	inst := f.start(t)
	ctx := context.Background()

	// 1. Unauthenticated request: 401 pointing at the RFC 9728 document.
	resp := verify(t, inst.URL, "")
	m := resourceMetadataParam.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
	if resp.StatusCode != http.StatusUnauthorized || m == nil {
		t.Fatalf("unauthenticated: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	prmURL, err := url.Parse(m[1])
	if err != nil || prmURL.Host != "mcp.example.com" || prmURL.Path != "/.well-known/oauth-protected-resource/mcp" {
		t.Fatalf("resource_metadata %q", m[1])
	}

	// 2. The proxy routes that path of the MCP host to authd.
	req, _ := http.NewRequest(http.MethodGet, inst.URL+prmURL.Path, nil)
	req.Header.Set("X-Forwarded-Host", "mcp.example.com")
	req.Header.Set("X-Forwarded-Proto", "https")
	prmResp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
		BearerMethods        []string `json:"bearer_methods_supported"`
	}
	json.NewDecoder(prmResp.Body).Decode(&prm)
	prmResp.Body.Close()
	if prmResp.StatusCode != http.StatusOK || prm.Resource != mcpResource || len(prm.AuthorizationServers) != 1 ||
		strings.Join(prm.BearerMethods, ",") != "header" {
		t.Fatalf("protected resource metadata: %d %+v", prmResp.StatusCode, prm)
	}

	// 3. The authorization server's metadata.
	var md struct {
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
		RegistrationEndpoint  string `json:"registration_endpoint"`
		RevocationEndpoint    string `json:"revocation_endpoint"`
		IntrospectionEndpoint string `json:"introspection_endpoint"`
	}
	getJSON(t, prm.AuthorizationServers[0]+"/.well-known/oauth-authorization-server", http.StatusOK, &md)
	if md.RegistrationEndpoint == "" || md.RevocationEndpoint == "" || md.IntrospectionEndpoint == "" {
		t.Fatalf("metadata %+v", md)
	}

	// 4. Register, sign in, get a token for the resource.
	reg := registerClient(t, inst.URL, map[string]any{
		"client_name":                "MCP client",
		"redirect_uris":              []string{"http://127.0.0.1/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{
		ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:45125/callback", Scopes: prm.ScopesSupported[:1],
		Endpoint: oauth2.Endpoint{AuthURL: md.AuthorizationEndpoint, TokenURL: md.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, f.github.Client().Transport, "http://127.0.0.1:45125/callback")
	q := b.authorize(t, inst.URL, conf.AuthCodeURL("s1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", prm.Resource)))
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}

	// 5. Let through, with identity headers for the MCP server.
	resp = verify(t, inst.URL, "Bearer "+tok.AccessToken)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Auth-User") != "alice" || resp.Header.Get("X-Auth-Email") != "alice@example.com" ||
		resp.Header.Get("X-Auth-Client-Id") != conf.ClientID || resp.Header.Get("X-Auth-Scope") != "mcp:tools" || resp.Header.Get("X-Auth-Subject") == "" {
		t.Fatalf("with a token: %d %v", resp.StatusCode, resp.Header)
	}
	// Introspection agrees.
	if !introspectActive(t, inst.URL, tok.AccessToken) {
		t.Fatal("introspection: token not active")
	}

	// 6. Revoke (RFC 7009, public client by client_id): turned away again.
	r, body := postForm(t, http.DefaultClient, md.RevocationEndpoint, url.Values{"token": {tok.AccessToken}, "client_id": {conf.ClientID}}, "", "")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.StatusCode, body)
	}
	if resp = verify(t, inst.URL, "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("after revocation: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if introspectActive(t, inst.URL, tok.AccessToken) {
		t.Fatal("introspection: revoked token still active")
	}

	// 7. What happened is counted on the private metrics listener.
	mresp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{
		`authd_authorize_events_total{event="login",upstream="github"} 1`,
		`authd_authorize_events_total{event="code_issued",upstream=""} 1`,
		`authd_token_requests_total{grant_type="authorization_code",outcome="issued"} 1`,
		`authd_client_registrations_total{outcome="created"} 1`,
		`authd_introspections_total{result="active"} 1`,
		`authd_introspections_total{result="inactive"} 1`,
		`authd_http_request_duration_seconds_count{method="POST",route="/token",status="200"} 1`,
		`authd_http_requests_total{method="GET",route="/verify",status="401"} 2`,
		`authd_db_pool_total_connections`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// 8. One JSON access-log line per request, naming the client and the
	// user where known.
	seen := map[string]bool{}
	for _, line := range strings.Split(inst.Logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "request" {
			continue
		}
		// Type assertions: a missing key is nil, which no comparison
		// with a string or number catches.
		requestID, _ := rec["request_id"].(string)
		status, _ := rec["status"].(float64)
		duration, hasDuration := rec["duration_ms"].(float64)
		if requestID == "" || status < 100 || status > 599 || !hasDuration || duration < 0 {
			t.Errorf("access log line without request id, status or latency: %s", line)
		}
		route, _ := rec["route"].(string)
		method, _ := rec["method"].(string)
		if route == "" || method == "" {
			t.Errorf("access log line without route or method: %s", line)
		}
		switch {
		case route == "/token" || route == "/revoke" || route == "/authorize":
			if id, _ := rec["client_id"].(string); id != conf.ClientID {
				t.Errorf("%s access log line lacks client_id: %s", route, line)
			}
			seen[route] = true
		case route == "/consent" && method == http.MethodPost:
			if id, _ := rec["user_id"].(string); id == "" {
				t.Errorf("consent access log line lacks user_id: %s", line)
			}
			seen[route] = true
		}
	}
	if len(seen) != 4 {
		t.Errorf("access log lines seen for %v, want /authorize, /consent, /token, /revoke", seen)
	}
}

func introspectActive(t *testing.T, issuer, token string) bool {
	t.Helper()
	out := introspectAt(t, issuer, token)
	active, _ := out["active"].(bool)
	if !active && len(out) != 1 {
		t.Fatalf("inactive response carries more than active: %v", out)
	}
	return active
}

// introspectAt asks issuer's /introspect about token with the static
// bearer token and returns the answer.
func introspectAt(t *testing.T, issuer, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, issuer+"/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+introspectionToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect: %d %v", resp.StatusCode, err)
	}
	return out
}
