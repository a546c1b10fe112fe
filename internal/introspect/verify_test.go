package introspect_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/server"
	"github.com/authd/authd/internal/tokens"
)

// forwarded is what a proxy tells /verify about the original request.
type forwarded struct{ proto, host, uri string }

// fwd describes a request to path on the host of resource.
func fwd(resource, path string) forwarded {
	u, err := url.Parse(resource)
	if err != nil {
		panic(err)
	}
	return forwarded{proto: u.Scheme, host: u.Host, uri: path}
}

// verify calls /verify the way a ForwardAuth proxy does.
func (e *env) verify(method, tok string, f forwarded, query ...string) reply {
	e.t.Helper()
	target := e.srv.URL + "/verify"
	if len(query) > 0 {
		target += "?" + query[0]
	}
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	setForwarded(req, f)
	return e.do(req)
}

func setForwarded(req *http.Request, f forwarded) {
	for k, v := range map[string]string{"X-Forwarded-Proto": f.proto, "X-Forwarded-Host": f.host, "X-Forwarded-Uri": f.uri} {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
}

const (
	rootMetadata  = "https://mcp.example.com/.well-known/oauth-protected-resource"
	adminMetadata = "https://mcp.example.com/.well-known/oauth-protected-resource/admin"
)

// wantChallenge asserts a 401/403 with exactly the given WWW-Authenticate.
func wantChallenge(t *testing.T, r reply, status int, challenge string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("got %d %s, want %d", r.status, r.body, status)
	}
	if got := r.header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != challenge {
		t.Fatalf("WWW-Authenticate = %q, want %q", got, challenge)
	}
	if r.header.Get("X-Auth-User") != "" || r.header.Get("X-Auth-Subject") != "" {
		t.Errorf("rejection carries identity headers: %v", r.header)
	}
	wantNoStore(t, r)
}

// wantIdentity asserts a 200 with the identity headers.
func wantIdentity(t *testing.T, r reply, user, subject, email, clientID, scope string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("got %d %s (WWW-Authenticate %q), want 200", r.status, r.body, r.header.Get("WWW-Authenticate"))
	}
	for k, want := range map[string]string{
		introspect.HeaderUser: user, introspect.HeaderSubject: subject, introspect.HeaderEmail: email,
		introspect.HeaderClientID: clientID, introspect.HeaderScope: scope,
	} {
		// Present even when empty, so a proxy overwrites what a client sent.
		if got, ok := r.header[http.CanonicalHeaderKey(k)]; !ok || len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	wantNoStore(t, r)
}

// TestVerify runs the /verify cases that can share one database.
func TestVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		test func(*testing.T, *env)
	}{
		{"no token", testVerifyWithoutToken},
		{"valid tokens", testVerifyValidTokens},
		{"rejected tokens", testVerifyRejectsTokens},
		{"unknown resource", testVerifyUnknownResource},
		{"no resource information", testVerifyWithoutResourceInformation},
		{"only trusted proxies", testVerifyTrustsOnlyTrustedProxies},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, e.with(t)) })
	}
}

func testVerifyWithoutToken(t *testing.T, e *env) {
	for _, tc := range []struct {
		name      string
		f         forwarded
		challenge string
	}{
		{"root resource", fwd(resRoot, "/mcp"), `Bearer scope="read", resource_metadata="` + rootMetadata + `"`},
		{"path resource", fwd(resRoot, "/admin/tools"), `Bearer scope="admin", resource_metadata="` + adminMetadata + `"`},
		{"no required scopes", fwd(resOpaque, "/"), `Bearer resource_metadata="https://files.example.com/.well-known/oauth-protected-resource"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.verify(http.MethodGet, "", tc.f)
			// RFC 6750 §3.1: no error code when no credentials were sent.
			wantChallenge(t, r, http.StatusUnauthorized, tc.challenge)
			if len(r.body) != 0 {
				t.Errorf("body = %q", r.body)
			}
		})
	}

	// Another scheme is not a bearer token.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/verify", nil)
	req.SetBasicAuth("alice", "password")
	setForwarded(req, fwd(resRoot, "/"))
	wantChallenge(t, e.do(req), http.StatusUnauthorized, `Bearer scope="read", resource_metadata="`+rootMetadata+`"`)

	// A token in the query string is never read (RFC 9700 §4.3.2 / MCP).
	valid := e.aliceToken().AccessToken
	for _, q := range []string{"access_token=" + url.QueryEscape(valid), "token=" + url.QueryEscape(valid)} {
		r := e.verify(http.MethodGet, "", fwd(resRoot, "/?"+q), q)
		wantChallenge(t, r, http.StatusUnauthorized, `Bearer scope="read", resource_metadata="`+rootMetadata+`"`)
	}
}

func testVerifyValidTokens(t *testing.T, e *env) {
	alice := e.aliceToken().AccessToken
	admin := e.login(grantSpec{user: e.alice, scopes: []string{"read", "admin"}, resources: []string{resAdmin}}).AccessToken
	bob := e.login(grantSpec{user: e.bob, scopes: []string{"read"}, resources: []string{resRoot}}).AccessToken
	opaque := e.login(grantSpec{user: e.alice, scopes: []string{"read"}, resources: []string{resOpaque}}).AccessToken
	machineTok := e.machineToken(resRoot, "read")

	// Proxies forward the original method: nginx's auth_request keeps it.
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete} {
		wantIdentity(t, e.verify(m, alice, fwd(resRoot, "/mcp")), "alice", e.alice.ID, "alice@example.com", mcpClient, "read write")
	}
	wantIdentity(t, e.verify(http.MethodGet, admin, fwd(resRoot, "/admin")), "alice", e.alice.ID, "alice@example.com", mcpClient, "read admin")
	wantIdentity(t, e.verify(http.MethodGet, admin, fwd(resRoot, "/admin/deep/path?x=1")), "alice", e.alice.ID, "alice@example.com", mcpClient, "read admin")
	// Bob's address is unverified: not vouched for.
	wantIdentity(t, e.verify(http.MethodGet, bob, fwd(resRoot, "/")), "bob", e.bob.ID, "", mcpClient, "read")
	wantIdentity(t, e.verify(http.MethodGet, opaque, fwd(resOpaque, "/files")), "alice", e.alice.ID, "alice@example.com", mcpClient, "read")
	wantIdentity(t, e.verify(http.MethodGet, machineTok, fwd(resRoot, "/")), "", machine, "", machine, "read")

	// The forwarded host is compared in canonical form.
	wantIdentity(t, e.verify(http.MethodGet, alice, forwarded{"HTTPS", "MCP.Example.COM:443", "/mcp"}), "alice", e.alice.ID, "alice@example.com", mcpClient, "read write")

	// A resource named in the proxy's configuration needs no forwarded
	// headers.
	wantIdentity(t, e.verify(http.MethodGet, admin, forwarded{}, "resource="+url.QueryEscape(resAdmin)), "alice", e.alice.ID, "alice@example.com", mcpClient, "read admin")
	wantIdentity(t, e.verify(http.MethodGet, alice, forwarded{}, "resource="+url.QueryEscape("https://MCP.example.com/")), "alice", e.alice.ID, "alice@example.com", mcpClient, "read write")
}

func testVerifyRejectsTokens(t *testing.T, e *env) {
	alice := e.aliceToken()
	writeOnly := e.login(grantSpec{user: e.alice, scopes: []string{"write"}, resources: []string{resRoot}}).AccessToken
	admin := e.login(grantSpec{user: e.alice, scopes: []string{"read", "admin"}, resources: []string{resAdmin}}).AccessToken
	adminNoScope := e.login(grantSpec{user: e.alice, scopes: []string{"read"}, resources: []string{resAdmin}}).AccessToken

	invalidRoot := `Bearer error="invalid_token", scope="read", resource_metadata="` + rootMetadata + `"`
	invalidAdmin := `Bearer error="invalid_token", scope="admin", resource_metadata="` + adminMetadata + `"`
	for _, tc := range []struct {
		name, token string
		f           forwarded
		status      int
		challenge   string
	}{
		{"garbage", "garbage", fwd(resRoot, "/"), 401, invalidRoot},
		{"malformed header value", "two words", fwd(resRoot, "/"), 401, invalidRoot},
		{"tampered", tamper(alice.AccessToken), fwd(resRoot, "/"), 401, invalidRoot},
		{"refresh token", alice.RefreshToken, fwd(resRoot, "/"), 401, invalidRoot},
		{"token for the root presented below /admin", alice.AccessToken, fwd(resRoot, "/admin/tools"), 401, invalidAdmin},
		{"token for /admin presented at the root", admin, fwd(resRoot, "/tools"), 401, invalidRoot},
		{"token for another host", alice.AccessToken, fwd(resOpaque, "/"), 401, `Bearer error="invalid_token", resource_metadata="https://files.example.com/.well-known/oauth-protected-resource"`},
		// nginx forwards $request_uri unnormalised: dot segments must be
		// resolved the way the proxy routes, not matched textually.
		{"dot segments into /admin", alice.AccessToken, fwd(resRoot, "/public/../admin/tools"), 401, invalidAdmin},
		{"encoded dot segments into /admin", alice.AccessToken, fwd(resRoot, "/public/%2e%2e/admin"), 401, invalidAdmin},
		{"missing required scope", writeOnly, fwd(resRoot, "/"), 403,
			`Bearer error="insufficient_scope", scope="read", resource_metadata="` + rootMetadata + `"`},
		{"missing required scope on a path resource", adminNoScope, fwd(resRoot, "/admin"), 403,
			`Bearer error="insufficient_scope", scope="admin", resource_metadata="` + adminMetadata + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.verify(http.MethodGet, tc.token, tc.f)
			wantChallenge(t, r, tc.status, tc.challenge)
			code := oauth.CodeInvalidToken
			if tc.status == http.StatusForbidden {
				code = oauth.CodeInsufficientScope
			}
			if r.str("error") != code {
				t.Errorf("error = %q, want %s", r.str("error"), code)
			}
		})
	}

	// Controls: the same tokens pass where they belong.
	wantIdentity(t, e.verify(http.MethodGet, alice.AccessToken, fwd(resRoot, "/admin/../public")), "alice", e.alice.ID, "alice@example.com", mcpClient, "read write")
	wantIdentity(t, e.verify(http.MethodGet, alice.AccessToken, fwd(resRoot, "/administrator")), "alice", e.alice.ID, "alice@example.com", mcpClient, "read write")

	// Several Authorization headers are malformed credentials.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/verify", nil)
	req.Header.Add("Authorization", "Bearer "+alice.AccessToken)
	req.Header.Add("Authorization", "Bearer "+admin)
	setForwarded(req, fwd(resRoot, "/"))
	wantChallenge(t, e.do(req), http.StatusUnauthorized, invalidRoot)
}

func TestVerifyAfterRevocationAndExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	one, two := e.aliceToken(), e.aliceToken()
	invalid := `Bearer error="invalid_token", scope="read", resource_metadata="` + rootMetadata + `"`
	for _, tok := range []string{one.AccessToken, two.AccessToken} {
		wantIdentity(t, e.verify(http.MethodGet, tok, fwd(resRoot, "/")), "alice", e.alice.ID, "alice@example.com", mcpClient, "read write")
	}
	e.revoke(one.AccessToken, post(mcpClient, secret))
	wantChallenge(t, e.verify(http.MethodGet, one.AccessToken, fwd(resRoot, "/")), http.StatusUnauthorized, invalid)
	// Revoking the refresh token ends the grant and every token from it.
	e.revoke(two.RefreshToken, post(mcpClient, secret))
	wantChallenge(t, e.verify(http.MethodGet, two.AccessToken, fwd(resRoot, "/")), http.StatusUnauthorized, invalid)

	three := e.aliceToken()
	if err := e.st.SetUserDisabled(e.ctx, e.alice.ID, true); err != nil {
		t.Fatal(err)
	}
	wantChallenge(t, e.verify(http.MethodGet, three.AccessToken, fwd(resRoot, "/")), http.StatusUnauthorized, invalid)
	if err := e.st.SetUserDisabled(e.ctx, e.alice.ID, false); err != nil {
		t.Fatal(err)
	}
	wantIdentity(t, e.verify(http.MethodGet, three.AccessToken, fwd(resRoot, "/")), "alice", e.alice.ID, "alice@example.com", mcpClient, "read write")
	e.clock.Add(time.Hour)
	wantChallenge(t, e.verify(http.MethodGet, three.AccessToken, fwd(resRoot, "/")), http.StatusUnauthorized, invalid)
}

// testVerifyUnknownResource: whatever authd does not protect is refused,
// with no challenge to follow (there is no metadata to point to).
func testVerifyUnknownResource(t *testing.T, e *env) {
	tok := e.aliceToken().AccessToken
	for _, tc := range []struct {
		name  string
		f     forwarded
		query string
	}{
		{"unknown host", forwarded{"https", "other.example.com", "/"}, ""},
		{"plain http for an https resource", forwarded{"http", "mcp.example.com", "/"}, ""},
		{"another port", forwarded{"https", "mcp.example.com:8443", "/"}, ""},
		{"unknown resource parameter", forwarded{}, "resource=" + url.QueryEscape("https://other.example.com")},
		{"resource parameter is a prefix match only", forwarded{}, "resource=" + url.QueryEscape(resAdmin+"/tools")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.verify(http.MethodGet, tok, tc.f, tc.query)
			wantError(t, r, http.StatusForbidden, oauth.CodeAccessDenied)
			if r.header.Get("WWW-Authenticate") != "" || r.header.Get("X-Auth-User") != "" {
				t.Errorf("headers: %v", r.header)
			}
		})
	}
}

// testVerifyWithoutResourceInformation: a proxy that says nothing usable
// about the request is a deployment error, answered 400 and logged.
func testVerifyWithoutResourceInformation(t *testing.T, e *env) {
	tok := e.aliceToken().AccessToken
	for _, tc := range []struct {
		name  string
		f     forwarded
		query string
	}{
		{"nothing", forwarded{}, ""},
		{"no X-Forwarded-Uri", forwarded{"https", "mcp.example.com", ""}, ""},
		{"no X-Forwarded-Host", forwarded{"https", "", "/"}, ""},
		{"no X-Forwarded-Proto", forwarded{"", "mcp.example.com", "/"}, ""},
		{"odd scheme", forwarded{"ftp", "mcp.example.com", "/"}, ""},
		{"list of hosts", forwarded{"https", "mcp.example.com, evil.example.com", "/"}, ""},
		{"host with a path", forwarded{"https", "evil.example.com/x", "/"}, ""},
		{"host with userinfo", forwarded{"https", "mcp.example.com@evil.example.com", "/"}, ""},
		{"absolute URI", forwarded{"https", "mcp.example.com", "https://evil.example.com/"}, ""},
		{"relative URI", forwarded{"https", "mcp.example.com", "mcp"}, ""},
		{"resource parameter twice", forwarded{}, "resource=" + url.QueryEscape(resRoot) + "&resource=" + url.QueryEscape(resAdmin)},
		{"malformed resource parameter", forwarded{}, "resource=not-a-uri"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.verify(http.MethodGet, tok, tc.f, tc.query)
			wantError(t, r, http.StatusBadRequest, oauth.CodeInvalidRequest)
			if r.header.Get("X-Auth-User") != "" {
				t.Errorf("identity on a rejected request: %v", r.header)
			}
		})
	}
	if !strings.Contains(e.logs.String(), "trusted_proxies") {
		t.Error("the operator is not told how to fix the deployment")
	}
}

// testVerifyTrustsOnlyTrustedProxies runs /verify behind authd's own
// middleware: X-Forwarded-* from a peer not in trusted_proxies are dropped,
// so a client calling /verify directly cannot choose the resource it is
// judged against.
func testVerifyTrustsOnlyTrustedProxies(t *testing.T, e *env) {
	tok := e.aliceToken().AccessToken
	serve := func(trusted []netip.Prefix) *httptest.Server {
		r := server.NewRouter(server.Options{Log: slog.New(slog.DiscardHandler), TrustedProxies: trusted, Now: e.clock.Now})
		e.h.Routes(r)
		s := httptest.NewServer(r)
		t.Cleanup(s.Close)
		return s
	}
	call := func(s *httptest.Server) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/verify", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		setForwarded(req, fwd(resRoot, "/mcp"))
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := call(serve([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})); resp.StatusCode != http.StatusOK || resp.Header.Get(introspect.HeaderUser) != "alice" {
		t.Fatalf("behind a trusted proxy: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := call(serve([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})); resp.StatusCode != http.StatusBadRequest || resp.Header.Get(introspect.HeaderUser) != "" {
		t.Fatalf("from an untrusted peer: %d %v, want 400", resp.StatusCode, resp.Header)
	}
}

// TestSenderConstrainedToken: a token bound to a key (cnf, RFC 9449) is
// no bearer token: /verify, which sees no proof of possession, refuses it,
// while /introspect reports the binding for the resource server to check
// (RFC 9449 §6.2). authd issues none yet; the token core can.
func TestSenderConstrainedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	core := &tokens.Service{Store: e.st, Clients: e.st, Keys: e.keys, Issuer: issuer}
	const jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	bound, err := core.Issue(e.ctx, e.clock.Now(), tokens.Request{
		ClientID: machine, Scopes: []string{"read"}, Audience: []string{resRoot}, Confirmation: &tokens.Confirmation{JKT: jkt},
	})
	if err != nil {
		t.Fatal(err)
	}
	invalid := `Bearer error="invalid_token", scope="read", resource_metadata="` + rootMetadata + `"`
	wantChallenge(t, e.verify(http.MethodGet, bound.Value, fwd(resRoot, "/")), http.StatusUnauthorized, invalid)

	r := e.introspect(bound.Value)
	if cnf, _ := r.json["cnf"].(map[string]any); r.json["active"] != true || cnf["jkt"] != jkt {
		t.Fatalf("introspection of a bound token: %s", r.body)
	}
	// The same token without the binding passes.
	plain, err := core.Issue(e.ctx, e.clock.Now(), tokens.Request{ClientID: machine, Scopes: []string{"read"}, Audience: []string{resRoot}})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.verify(http.MethodGet, plain.Value, fwd(resRoot, "/")); r.status != http.StatusOK {
		t.Fatalf("unbound token: %d %s", r.status, r.header)
	}
	if r := e.introspect(plain.Value); r.json["active"] != true || r.json["cnf"] != nil {
		t.Fatalf("introspection of an unbound token: %s", r.body)
	}
}
