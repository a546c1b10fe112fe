package authorize

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// TestAuthorizeRequest validates /authorize requests.
func TestAuthorizeRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github"})
	runSubtests(t, e,
		subtest{"unknown or disabled client", testUnknownOrDisabledClientGetsPageNotRedirect},
		subtest{"redirect URI exact match", testRedirectURIMustMatchExactly},
		subtest{"omitted redirect URI", testOmittedRedirectURI},
		subtest{"redirected errors", testRedirectedErrors},
		subtest{"scopes and resources accepted", testScopesAndResourcesAccepted},
		subtest{"POST", testAuthorizeByPOST},
	)
}

// validQuery is a complete, valid authorization request.
func validQuery(clientID, redirectURI string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"state":                 {"xyz"},
		"code_challenge":        {oauth.S256Challenge("a-verifier-that-is-long-enough-for-rfc-7636-ok")},
		"code_challenge_method": {"S256"},
		"scope":                 {"read"},
		"resource":              {resMCP},
	}
}

func testUnknownOrDisabledClientGetsPageNotRedirect(t *testing.T, e *env) {
	disabled := e.addClient(store.Client{Disabled: true})
	for _, tc := range []struct {
		name, clientID, says string
	}{
		{"unknown", "no-such-client", "not registered"},
		{"missing", "", "missing its client_id"},
		{"disabled", disabled.ID, "disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser(t)
			q := validQuery(tc.clientID, appURI)
			if tc.clientID == "" {
				q.Del("client_id")
			}
			e.expectPage(t, b.get("/authorize?"+q.Encode()), http.StatusBadRequest, tc.says)
			e.expectNoWrites(t)
		})
	}
	t.Run("repeated client_id", func(t *testing.T) {
		b := e.browser(t)
		q := validQuery(disabled.ID, appURI)
		q.Add("client_id", "other")
		e.expectPage(t, b.get("/authorize?"+q.Encode()), http.StatusBadRequest, "more than one client_id")
		e.expectNoWrites(t)
	})
}

func testRedirectURIMustMatchExactly(t *testing.T, e *env) {
	client := e.addClient(store.Client{Metadata: store.ClientMetadata{RedirectURIs: []string{
		"https://app.example.com/callback",
		"https://app.example.com:8443/cb?tenant=1",
		"http://127.0.0.1/loopback",
		"http://localhost:3000/native",
	}}})
	for _, ru := range []string{
		"https://APP.example.com/callback",                    // different case (host)
		"https://app.example.com/Callback",                    // different case (path)
		"HTTPS://app.example.com/callback",                    // different case (scheme)
		"https://app.example.com/callback/",                   // trailing slash
		"https://app.example.com/callback/extra",              // extra path
		"https://app.example.com/callback?x=1",                // query added
		"https://app.example.com:8443/cb?tenant=2",            // query changed
		"https://app.example.com:8443/cb",                     // query removed
		"https://evil@app.example.com/callback",               // userinfo
		"https://app.example.com@evil.example/callback",       // userinfo, other host
		"http://app.example.com/callback",                     // http vs https
		"https://app.example.com:444/callback",                // port change, not loopback
		"https://app.example.com:8444/cb?tenant=1",            // port change, not loopback
		"https://app.example.com/callback#frag",               // fragment
		"https://app.example.com/callback#",                   // empty fragment
		"https://app.example.com./callback",                   // trailing dot
		"https://app.example.com/callback/../callback",        // dot segments
		"https://app.example.com/%63allback",                  // percent-encoded
		"https://app.example.com.evil.example/callback",       // suffix
		"https://evil.example/callback",                       // other host
		"http://127.0.0.1:8080/loopback/x",                    // loopback, other path
		"http://127.0.0.1:8080/loopback?x=1",                  // loopback, query added
		"https://127.0.0.1:8080/loopback",                     // loopback, other scheme
		"http://127.0.0.2:8080/loopback",                      // not the registered loopback
		"http://localhost.evil.example:3000/native",           // not loopback
		"http://[::1]:3000/native",                            // other loopback host than registered
		"http://127.0.0.1:8080@evil.example/loopback",         // userinfo trick
		"javascript://app.example.com/callback",               // script scheme
		" https://app.example.com/callback",                   // leading space
		"https://app.example.com/callback\n",                  // trailing newline
		"//app.example.com/callback",                          // scheme-relative
		"https://app.example.com\\@evil.example/callback",     // backslash
		"https://app.example.com/callback?",                   // empty query
		"https://app.example.com:443/callback",                // explicit default port
		"http://127.0.0.1:8080/loopback#x",                    // loopback with fragment
		"http://127.0.0.1:abc/loopback",                       // non-numeric port
		"http://localhost:3000/native/",                       // trailing slash on loopback
		"http://localhost:3000/NATIVE",                        // case on loopback path
		"https://app.example.com/callback%00",                 // NUL
		"https://app.example.com/callback?tenant=1",           // query from the other URI
		"https://app.example.com:8443/cb?tenant=1&tenant=1",   // repeated query
		"https://app.example.com:8443/cb?TENANT=1",            // query case
		"https://app.example.com/callback;jsessionid=x",       // matrix parameter
		"https://app.example.com/callback..;/evil",            // ..; path trick
		"https://app.example.com/callback%2F..%2Fevil",        // encoded traversal
		"https://app.example.com/callback%23frag",             // encoded fragment
		"https://app.example.com/callback?#",                  // query+fragment
		"https://app.example.com/ callback",                   // space in path
		"https://app.example.com/callback\t",                  // tab
		"https://app.example.com/callback\u00a0",              // non-ASCII
		"https://xn--pp-zla.example.com/callback",             // punycode lookalike
		"https://app.example.com/callback/.",                  // dot segment
		"https://app.example.com/./callback",                  // dot segment
		"https://app.example.com//callback",                   // double slash
		"https://app.example.com/callback?redirect=https://x", // query injection
	} {
		t.Run(ru, func(t *testing.T) {
			b := e.browser(t)
			q := validQuery(client.ID, ru)
			e.expectPage(t, b.get("/authorize?"+q.Encode()), http.StatusBadRequest, "not redirected")
			e.expectNoWrites(t)
		})
	}

	// Loopback redirect URIs accept any port (RFC 8252 §7.3), and the
	// browser goes to the port the client asked for.
	for _, ru := range []string{
		"http://127.0.0.1:54321/loopback",
		"http://127.0.0.1/loopback",
		"http://localhost:3001/native",
		"http://localhost/native",
	} {
		t.Run("loopback "+ru, func(t *testing.T) {
			b := e.browser(t)
			a := newAuthz(client.ID, ru)
			r := b.get(a.url(e))
			if isConsentPage(r) {
				r = b.decide(r, "approve")
			}
			_, c := e.expectCode(t, r, a)
			if c.RedirectURI != ru {
				t.Fatalf("code bound to %q, want %q", c.RedirectURI, ru)
			}
			if r.location().Host != mustURL(ru).Host {
				t.Fatalf("redirected to %s, want the requested port", r.location())
			}
		})
	}
	t.Run("registered query is kept", func(t *testing.T) {
		b := e.browser(t)
		ru := "https://app.example.com:8443/cb?tenant=1"
		a := newAuthz(client.ID, ru)
		r := b.get(a.url(e))
		if isConsentPage(r) {
			r = b.decide(r, "approve")
		}
		e.expectCode(t, r, a)
		if !strings.HasPrefix(r.header.Get("Location"), ru+"&") {
			t.Fatalf("Location %s does not keep the registered query", r.header.Get("Location"))
		}
		if r.location().Query().Get("tenant") != "1" {
			t.Fatal("tenant lost")
		}
	})
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func testOmittedRedirectURI(t *testing.T, e *env) {
	one := e.addClient(store.Client{SkipConsent: true})
	two := e.addClient(store.Client{Metadata: store.ClientMetadata{RedirectURIs: []string{appURI, "https://app.example.com/other"}}})
	none := e.addClient(store.Client{Metadata: store.ClientMetadata{RedirectURIs: []string{}}})

	t.Run("several registered", func(t *testing.T) {
		b := e.browser(t)
		q := validQuery(two.ID, "")
		q.Del("redirect_uri")
		e.expectPage(t, b.get("/authorize?"+q.Encode()), http.StatusBadRequest, "more than one address")
		e.expectNoWrites(t)
	})
	t.Run("none registered", func(t *testing.T) {
		b := e.browser(t)
		q := validQuery(none.ID, "")
		q.Del("redirect_uri")
		e.expectPage(t, b.get("/authorize?"+q.Encode()), http.StatusBadRequest, "not redirected")
		e.expectNoWrites(t)
	})
	t.Run("repeated", func(t *testing.T) {
		b := e.browser(t)
		q := validQuery(one.ID, appURI)
		q.Add("redirect_uri", appURI)
		e.expectPage(t, b.get("/authorize?"+q.Encode()), http.StatusBadRequest, "more than one redirect_uri")
		e.expectNoWrites(t)
	})
	t.Run("one registered", func(t *testing.T) {
		b := e.browser(t)
		a := newAuthz(one.ID, "")
		r := b.get(a.url(e))
		a.redirectURI = appURI
		_, c := e.expectCode(t, r, a)
		if c.RedirectURI != appURI || c.RedirectURIProvided {
			t.Fatalf("code: redirect %q provided %v", c.RedirectURI, c.RedirectURIProvided)
		}
	})
}

// testRedirectedErrors covers the errors sent to the client once its
// redirect URI is confirmed (RFC 6749 §4.1.2.1): each carries state and
// iss, and creates nothing.
func testRedirectedErrors(t *testing.T, e *env) {
	client := e.addClient(store.Client{})
	ccOnly := e.addClient(store.Client{Metadata: store.ClientMetadata{GrantTypes: []string{"client_credentials"}}})
	limited := e.addClient(store.Client{AllowedScopes: []string{"read"}, AllowedResources: []string{resMCP}})

	for _, tc := range []struct {
		name   string
		client string
		edit   func(q url.Values)
		code   string
		state  string // expected echoed state; default xyz
	}{
		{"response_type token", "", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type", ""},
		{"response_type code id_token", "", func(q url.Values) { q.Set("response_type", "code id_token") }, "unsupported_response_type", ""},
		{"response_type missing", "", func(q url.Values) { q.Del("response_type") }, "invalid_request", ""},
		{"client without authorization_code", ccOnly.ID, func(q url.Values) {}, "unauthorized_client", ""},
		{"challenge missing", "", func(q url.Values) { q.Del("code_challenge") }, "invalid_request", ""},
		{"challenge and method missing", "", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request", ""},
		{"method plain", "", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request", ""},
		{"method missing (defaults to plain)", "", func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request", ""},
		{"method lower case", "", func(q url.Values) { q.Set("code_challenge_method", "s256") }, "invalid_request", ""},
		{"challenge too short", "", func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request", ""},
		{"challenge not base64url", "", func(q url.Values) { q.Set("code_challenge", strings.Repeat("+", 43)) }, "invalid_request", ""},
		{"scope with bad character", "", func(q url.Values) { q.Set("scope", `read "x"`) }, "invalid_scope", ""},
		{"scope not allowed for the resource", "", func(q url.Values) { q.Set("scope", "admin") }, "invalid_scope", ""},
		{"scope of another resource", "", func(q url.Values) { q.Set("scope", "other-only") }, "invalid_scope", ""},
		{"scope one resource lacks", "", func(q url.Values) { q["resource"] = []string{resMCP, resOther}; q.Set("scope", "write") }, "invalid_scope", ""},
		{"scope the client may not have", limited.ID, func(q url.Values) { q.Set("scope", "write") }, "invalid_scope", ""},
		{"unknown resource", "", func(q url.Values) { q.Set("resource", "https://unknown.example.com") }, "invalid_target", ""},
		{"resource with fragment", "", func(q url.Values) { q.Set("resource", resMCP+"#x") }, "invalid_target", ""},
		{"relative resource", "", func(q url.Values) { q.Set("resource", "/mcp") }, "invalid_target", ""},
		{"resource the client may not have", limited.ID, func(q url.Values) { q.Set("resource", resOther) }, "invalid_target", ""},
		{"unknown prompt", "", func(q url.Values) { q.Set("prompt", "select_account") }, "invalid_request", ""},
		{"prompt none with login", "", func(q url.Values) { q.Set("prompt", "none login") }, "invalid_request", ""},
		{"negative max_age", "", func(q url.Values) { q.Set("max_age", "-1") }, "invalid_request", ""},
		{"max_age not a number", "", func(q url.Values) { q.Set("max_age", "1h") }, "invalid_request", ""},
		{"repeated scope", "", func(q url.Values) { q.Add("scope", "write") }, "invalid_request", ""},
		{"repeated code_challenge", "", func(q url.Values) { q.Add("code_challenge", q.Get("code_challenge")) }, "invalid_request", ""},
		{"repeated prompt", "", func(q url.Values) { q.Set("prompt", "login"); q.Add("prompt", "consent") }, "invalid_request", ""},
		{"repeated state", "", func(q url.Values) { q.Add("state", "abc") }, "invalid_request", "-"},
		{"state too long", "", func(q url.Values) { q.Set("state", strings.Repeat("s", 1025)) }, "invalid_request", "-"},
		{"request object", "", func(q url.Values) { q.Set("request", "eyJ...") }, "request_not_supported", ""},
		{"response_mode fragment", "", func(q url.Values) { q.Set("response_mode", "fragment") }, "invalid_request", ""},
		{"prompt none, not signed in", "", func(q url.Values) { q.Set("prompt", "none") }, "login_required", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser(t)
			id := client.ID
			if tc.client != "" {
				id = tc.client
			}
			q := validQuery(id, appURI)
			tc.edit(q)
			state := "xyz"
			if tc.state == "-" {
				state = ""
			}
			e.expectRedirectError(t, b.get("/authorize?"+q.Encode()), appURI, tc.code, state)
			e.expectNoWrites(t)
		})
	}
}

// TestOmittedResource: a request naming no resource is bound to the default
// resource (as /token would bind it), or refused when there is no single
// default, so no code carries an unbound audience.
func TestOmittedResource(t *testing.T) {
	e := newEnv(t, []string{"github"})
	client := e.addClient(store.Client{SkipConsent: true})
	a := newAuthz(client.ID, appURI)
	a.resources = nil
	e.expectRedirectError(t, e.browser(t).get(a.url(e)), appURI, "invalid_target", a.state)
	e.expectNoWrites(t)

	// A client allowed one resource is bound to it (policy.DefaultAudienceFor,
	// as at client_credentials); one allowed two is refused as above.
	one := e.addClient(store.Client{SkipConsent: true, AllowedResources: []string{resOther}})
	a = newAuthz(one.ID, appURI)
	a.resources = nil
	_, c := e.expectCode(t, e.browser(t).get(a.url(e)), a)
	if !equalStrings(c.Resources, []string{resOther}) {
		t.Fatalf("code of a client allowed only %s bound to %v", resOther, c.Resources)
	}
	two := e.addClient(store.Client{SkipConsent: true, AllowedResources: []string{resMCP, resOther}})
	a = newAuthz(two.ID, appURI)
	a.resources = nil
	e.expectRedirectError(t, e.browser(t).get(a.url(e)), appURI, "invalid_target", a.state)

	e = newEnv(t, []string{"github"}, func(h *Handler) { h.Policy.DefaultResource = resOther })
	client = e.addClient(store.Client{SkipConsent: true})
	a = newAuthz(client.ID, appURI)
	a.resources = nil
	_, c = e.expectCode(t, e.browser(t).get(a.url(e)), a)
	if !equalStrings(c.Resources, []string{resOther}) || !equalStrings(c.Scopes, []string{"read"}) {
		t.Fatalf("code bound to %v %v, want the default resource", c.Resources, c.Scopes)
	}
}

func testScopesAndResourcesAccepted(t *testing.T, e *env) {
	client := e.addClient(store.Client{SkipConsent: true})
	for _, tc := range []struct {
		name       string
		scope      []string
		resources  []string
		wantScopes []string
		wantRes    []string
	}{
		{"default scopes, filtered", nil, []string{resMCP}, []string{"read"}, []string{resMCP}},
		{"two resources", []string{"read"}, []string{resMCP, resOther}, []string{"read"}, []string{resMCP, resOther}},
		{"canonical resource", []string{"read"}, []string{"https://MCP.example.com:443/"}, []string{"read"}, []string{resMCP}},
		// policy.Requested: offline_access, openid and unknown scopes are
		// dropped before consent; nothing grantable left means the default.
		{"unknown and protocol scopes dropped", []string{"read", "delete", "offline_access", "openid", "claudeai"}, []string{resMCP}, []string{"read"}, []string{resMCP}},
		{"only dropped scopes: the default", []string{"offline_access", "claudeai"}, []string{resMCP}, []string{"read"}, []string{resMCP}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser(t)
			a := newAuthz(client.ID, appURI)
			a.scopes, a.resources = tc.scope, tc.resources
			_, c := e.expectCode(t, b.get(a.url(e)), a)
			if !equalStrings(c.Scopes, tc.wantScopes) || !equalStrings(c.Resources, tc.wantRes) {
				t.Fatalf("code scopes %v resources %v, want %v %v", c.Scopes, c.Resources, tc.wantScopes, tc.wantRes)
			}
		})
	}
	t.Run("repeated unknown parameter ignored", func(t *testing.T) {
		b := e.browser(t)
		a := newAuthz(client.ID, appURI)
		e.expectCode(t, b.get(a.url(e)+"&utm_source=x&utm_source=y"), a)
	})
	t.Run("any resource when allowed", func(t *testing.T) {
		e2 := newEnv(t, []string{"github"}, func(h *Handler) { h.Policy.AllowAnyResource = true })
		c2 := e2.addClient(store.Client{SkipConsent: true})
		a := newAuthz(c2.ID, appURI)
		a.resources = []string{"https://anything.example.net/mcp"}
		_, c := e2.expectCode(t, e2.browser(t).get(a.url(e2)), a)
		if !equalStrings(c.Resources, a.resources) {
			t.Fatalf("resources %v", c.Resources)
		}
	})
}

func equalStrings(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testAuthorizeByPOST(t *testing.T, e *env) {
	client := e.addClient(store.Client{SkipConsent: true})
	b := e.browser(t)
	q := validQuery(client.ID, appURI)
	// POST /authorize comes from the client's page, cross-origin by design.
	r := b.post("/authorize", q, "Sec-Fetch-Site", "cross-site", "Origin", "https://app.example.com")
	a := &authz{redirectURI: appURI, state: "xyz"}
	_, c := e.expectCode(t, r, a)
	if c.CodeChallenge != q.Get("code_challenge") {
		t.Fatal("challenge not bound")
	}
	if r.status != http.StatusFound {
		// The last hop is the callback (a GET), which answers 302.
		t.Fatalf("status %d", r.status)
	}

	t.Run("errors after POST use 303", func(t *testing.T) {
		b := e.browser(t)
		bad := validQuery(client.ID, appURI)
		bad.Set("response_type", "token")
		r := b.post("/authorize", bad)
		if r.status != http.StatusSeeOther {
			t.Fatalf("status %d, want 303", r.status)
		}
		e.expectRedirectError(t, r, appURI, "unsupported_response_type", "xyz")
	})
	t.Run("query parameters of a POST are ignored", func(t *testing.T) {
		b := e.browser(t)
		e.st.Writes()
		r := b.post("/authorize?"+validQuery(client.ID, appURI).Encode(), url.Values{})
		e.expectPage(t, r, http.StatusBadRequest, "missing its client_id")
		e.expectNoWrites(t)
	})
}

// staleClients serves client lookups from what it saw first, as another
// replica's client cache does for up to its TTL.
type staleClients struct {
	testStore
	seen map[string]store.Client
}

func (s staleClients) GetClient(ctx context.Context, id string, now time.Time) (store.Client, error) {
	if c, ok := s.seen[id]; ok {
		return c, nil
	}
	return s.testStore.GetClient(ctx, id, now)
}

// A client deleted after this replica read it (its cached row is stale)
// gets the "unknown application" page when the request is stored: no
// redirect to its URI, no 500.
func TestClientDeletedSinceItWasRead(t *testing.T) {
	t.Parallel()
	st := newTestStore(t)
	stale := staleClients{testStore: st, seen: map[string]store.Client{}}
	e := newEnvStore(t, stale, []string{"github"})
	c := e.addClient(store.Client{})
	stale.seen[c.ID] = c
	if err := st.DeleteClient(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	b := e.browser(t)
	// (The insert of the pending request was attempted and refused by its
	// foreign key: nothing is stored.)
	e.expectPage(t, b.get("/authorize?"+validQuery(c.ID, appURI).Encode()), http.StatusBadRequest, "no longer registered")
}

// TestRejectUnknownScopes: with RejectUnknownScopes (unknown_scopes:
// reject) an undeclared scope is redirected as invalid_scope, while
// offline_access and openid are still accepted and dropped.
func TestRejectUnknownScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github"}, func(h *Handler) { h.Policy.RejectUnknownScopes = true })
	client := e.addClient(store.Client{SkipConsent: true})
	q := validQuery(client.ID, appURI)
	q.Set("scope", "read delete")
	e.expectRedirectError(t, e.browser(t).get("/authorize?"+q.Encode()), appURI, "invalid_scope", "xyz")
	e.expectNoWrites(t)

	a := newAuthz(client.ID, appURI)
	a.scopes = []string{"read", "offline_access", "openid"}
	_, c := e.expectCode(t, e.browser(t).get(a.url(e)), a)
	if !equalStrings(c.Scopes, []string{"read"}) {
		t.Fatalf("code scopes %v, want [read]", c.Scopes)
	}
}
