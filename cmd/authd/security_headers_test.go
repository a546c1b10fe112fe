package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestSecurityHTMLPagesFramingAndCSP: clickjacking of the consent or
// login pages (RFC 9700 §4.16). Every HTML page authd serves — error
// pages, the upstream chooser, consent, connected apps — forbids framing
// with both CSP frame-ancestors and X-Frame-Options, has a CSP that loads
// nothing from elsewhere, and is not sniffable or cacheable.
func TestSecurityHTMLPagesFramingAndCSP(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	client := s.publicClient(t, "http://127.0.0.1/cb")
	conf := s.oauthConfig(client, "", "http://127.0.0.1:7301/cb")
	b := newBrowser(t, s.github.Client().Transport, conf.RedirectURL)

	var pages []*http.Response
	fetch := func(c *http.Client, method, target string, body url.Values) {
		var resp *http.Response
		var err error
		if method == http.MethodPost {
			resp, err = c.PostForm(target, body)
		} else {
			resp, err = c.Get(target)
		}
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		pages = append(pages, resp)
	}
	fetch(noRedirectClient, http.MethodGet, s.inst.URL+"/authorize?client_id=unknown", nil)
	fetch(noRedirectClient, http.MethodGet, s.inst.URL+"/authorize?client_id="+client+"&redirect_uri=https://attacker.example/", nil)
	fetch(noRedirectClient, http.MethodPost, s.inst.URL+"/authorize", url.Values{"client_id": {"x"}})
	fetch(noRedirectClient, http.MethodGet, s.inst.URL+"/consent?req=nope", nil)
	fetch(noRedirectClient, http.MethodPost, s.inst.URL+"/consent", url.Values{"req": {"nope"}})
	fetch(noRedirectClient, http.MethodGet, s.inst.URL+"/callback/github?state=nope&code=nope", nil)
	fetch(noRedirectClient, http.MethodGet, s.inst.URL+"/login?req=nope", nil)
	fetch(noRedirectClient, http.MethodGet, s.inst.URL+"/apps", nil)
	// Signed in: the consent page and connected apps.
	fetch(b.c, http.MethodGet, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", mcpResource)), nil)
	fetch(b.c, http.MethodGet, s.inst.URL+"/apps", nil)

	html := 0
	for _, resp := range pages {
		what := resp.Request.Method + " " + resp.Request.URL.Path
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			if resp.StatusCode < 300 || resp.StatusCode >= 400 {
				t.Errorf("%s: %d %q is neither a page nor a redirect", what, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			continue
		}
		html++
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") ||
			resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
			!strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
			t.Errorf("%s (%d): CSP=%q XFO=%q XCTO=%q CC=%q", what, resp.StatusCode, csp, resp.Header.Get("X-Frame-Options"),
				resp.Header.Get("X-Content-Type-Options"), resp.Header.Get("Cache-Control"))
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: an HTML page allows cross-origin reads", what)
		}
	}
	if html < 8 {
		t.Fatalf("only %d HTML pages seen", html)
	}
}

// TestSecurityNoCredentialedCORS: a malicious web page reads authd's
// answers with the user's cookies (RFC 9700 §2.6: no CORS on the
// authorization endpoint). No endpoint ever sends
// Access-Control-Allow-Credentials or reflects the Origin; the browser
// endpoints (/authorize, /consent, /apps, /login) send no CORS headers at
// all, neither on requests nor on preflights.
func TestSecurityNoCredentialedCORS(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	const evil = "https://attacker.example"
	paths := []string{"/authorize", "/consent", "/apps", "/login", "/callback/github", "/token", "/revoke", "/introspect",
		"/register", "/register/x", "/verify", "/.well-known/oauth-authorization-server", "/.well-known/jwks.json",
		"/.well-known/openid-configuration", "/.well-known/oauth-protected-resource/mcp", "/health", "/ready"}
	browserOnly := map[string]bool{"/authorize": true, "/consent": true, "/apps": true, "/login": true, "/callback/github": true}
	for _, p := range paths {
		for _, method := range []string{http.MethodOptions, http.MethodGet, http.MethodPost} {
			req, _ := http.NewRequest(method, s.inst.URL+p, strings.NewReader("a=b"))
			req.Header.Set("Origin", evil)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if method == http.MethodOptions {
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			}
			resp, err := noRedirectClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				t.Errorf("%s %s: %d", method, p, resp.StatusCode)
			}
			acao := resp.Header.Get("Access-Control-Allow-Origin")
			if resp.Header.Get("Access-Control-Allow-Credentials") != "" || acao == evil {
				t.Errorf("%s %s: credentialed or reflected CORS: ACAO=%q ACAC=%q", method, p, acao, resp.Header.Get("Access-Control-Allow-Credentials"))
			}
			if browserOnly[p] && acao != "" {
				t.Errorf("%s %s: CORS on a browser endpoint: ACAO=%q", method, p, acao)
			}
		}
	}
}

// TestSecurityTokenBearingResponsesNotCached: a shared cache or the
// browser's history keeps credentials (RFC 6749 §5.1, RFC 7591 §3.2.1).
// Every answer that carries a token, secret or token metadata — and every
// OAuth error — has Cache-Control: no-store.
func TestSecurityTokenBearingResponsesNotCached(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
	code, verifier := s.code(t, conf)
	reg := s.registerRaw(t, map[string]any{"client_name": "nc", "redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "client_secret_basic",
		"grant_types": []string{"client_credentials"}})
	exchange := s.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {cbX}, "client_id": {conf.ClientID}})
	rt, _ := exchange.body["refresh_token"].(string)
	at, _ := exchange.body["access_token"].(string)
	introspection := func() oauthResp {
		req, _ := http.NewRequest(http.MethodPost, s.inst.URL+"/introspect", strings.NewReader(url.Values{"token": {at}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+introspectionToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return oauthResp{status: resp.StatusCode, header: resp.Header}
	}
	ratResp := s.jsonRequest(t, http.MethodGet, "/register/"+reg.body["client_id"].(string), reg.body["registration_access_token"].(string), nil)
	for name, r := range map[string]oauthResp{
		"code exchange":       exchange,
		"refresh":             s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {conf.ClientID}}),
		"client_credentials":  s.post(t, "/token", url.Values{"grant_type": {"client_credentials"}, "resource": {mcpResource}}, reg.body["client_id"].(string), reg.body["client_secret"].(string)),
		"token error":         s.token(t, url.Values{"grant_type": {"authorization_code"}}),
		"registration":        reg,
		"registration read":   ratResp,
		"registration error":  s.registerRaw(t, map[string]any{"redirect_uris": []string{"javascript:x"}}),
		"introspection":       introspection(),
		"introspection error": s.post(t, "/introspect", url.Values{"token": {at}}, "", ""),
		"revocation":          s.post(t, "/revoke", url.Values{"token": {"x"}, "client_id": {conf.ClientID}}, "", ""),
	} {
		if r.status >= 500 || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d Cache-Control=%q", name, r.status, r.header.Get("Cache-Control"))
		}
	}
	if exchange.status != 200 {
		t.Fatalf("exchange: %s", exchange.raw)
	}
}

// TestSecurityHostHeaderPoisoning: an attacker sends Host and
// X-Forwarded-* headers naming their own site, hoping authd builds its
// issuer, endpoint URLs or upstream callback from them (RFC 9700 §4.13
// and the password-reset-poisoning class). The metadata, the iss of
// authorization responses, registration_client_uri and the upstream
// redirect_uri stay the configured issuer's — even though the request
// comes from a trusted proxy address.
func TestSecurityHostHeaderPoisoning(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	client := s.publicClient(t, "https://app.example.com/cb")
	poison := http.Header{
		"X-Forwarded-Host": {"attacker.example"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Prefix": {"/evil"},
		"X-Original-Url": {"https://attacker.example/"}, "X-Rewrite-Url": {"https://attacker.example/"},
		"Forwarded": {"host=attacker.example;proto=https"}, "X-Forwarded-Server": {"attacker.example"}, "X-Host": {"attacker.example"},
	}
	send := func(method, path string, body io.Reader, hostHeader string, extra http.Header) (*http.Response, string) {
		req, _ := http.NewRequest(method, s.inst.URL+path, body)
		for k, v := range poison {
			req.Header[k] = v
		}
		for k, v := range extra {
			req.Header[k] = v
		}
		if hostHeader != "" {
			req.Host = hostHeader
		}
		resp, err := noRedirectClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	// What the configured issuer alone determines. Every URL in the
	// metadata must be one of these, exactly.
	iss := s.inst.URL
	wantMetadata := map[string]string{
		"issuer":                 iss,
		"authorization_endpoint": iss + "/authorize",
		"token_endpoint":         iss + "/token",
		"jwks_uri":               iss + "/.well-known/jwks.json",
		"registration_endpoint":  iss + "/register",
		"revocation_endpoint":    iss + "/revoke",
		"introspection_endpoint": iss + "/introspect",
	}
	wantCallback := iss + "/callback/github"
	upstream, err := url.Parse(s.github.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	checkResource := func(what, body string) {
		t.Helper()
		var prm struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		if err := json.Unmarshal([]byte(body), &prm); err != nil || prm.Resource != mcpResource ||
			len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != iss {
			t.Errorf("%s: resource %q, authorization servers %q, want %q and [%q] (%v): %s", what, prm.Resource, prm.AuthorizationServers, mcpResource, iss, err, body)
		}
	}
	for _, host := range []string{"", "attacker.example", "attacker.example:443"} {
		for _, p := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
			resp, body := send(http.MethodGet, p, nil, host, nil)
			var md map[string]any
			if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &md) != nil {
				t.Errorf("%s with Host %q: %d %s", p, host, resp.StatusCode, body)
				continue
			}
			for k, want := range wantMetadata {
				if got, _ := md[k].(string); got != want {
					t.Errorf("%s with Host %q: %s is %q, want %q", p, host, k, got, want)
				}
			}
			// Any other URL-valued member must be accounted for too.
			for k, v := range md {
				if str, ok := v.(string); ok && strings.Contains(str, "://") && wantMetadata[k] == "" {
					t.Errorf("%s with Host %q: unexpected URL member %s = %q", p, host, k, str)
				}
			}
		}
		// Protected-resource metadata asked for on the attacker's host
		// (the poisoned X-Forwarded-Host): absent, or the configured one.
		p := "/.well-known/oauth-protected-resource/mcp"
		resp, body := send(http.MethodGet, p, nil, host, nil)
		switch resp.StatusCode {
		case http.StatusOK:
			checkResource(fmt.Sprintf("%s with Host %q", p, host), body)
		case http.StatusNotFound:
		default:
			t.Errorf("%s with Host %q: %d %s", p, host, resp.StatusCode, body)
		}
		// On the resource's own host, with every other header poisoned:
		// served, and still naming only the configured values.
		resp, body = send(http.MethodGet, p, nil, host, http.Header{"X-Forwarded-Host": {"mcp.example.com"}})
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s on the resource host, Host %q: %d %s", p, host, resp.StatusCode, body)
		} else {
			checkResource(fmt.Sprintf("%s on the resource host, Host %q", p, host), body)
		}

		// iss in an authorization error response.
		q := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {"https://app.example.com/cb"}}
		resp, _ = send(http.MethodGet, "/authorize?"+q.Encode(), nil, host, nil)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc == nil || loc.Query().Get("iss") != iss {
			t.Errorf("authorize with Host %q: Location %q", host, resp.Header.Get("Location"))
		}
		// The upstream login: sent to the configured upstream, with the
		// callback URL derived from the configured issuer.
		q.Set("code_challenge", validChallenge)
		q.Set("code_challenge_method", "S256")
		resp, _ = send(http.MethodGet, "/authorize?"+q.Encode(), nil, host, nil)
		up, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil || up.Scheme != upstream.Scheme || up.Host != upstream.Host ||
			up.Query().Get("redirect_uri") != wantCallback {
			t.Errorf("login redirect with Host %q: %d %q, want the upstream %s with redirect_uri %q", host, resp.StatusCode, resp.Header.Get("Location"), upstream.Host, wantCallback)
		}
		// registration_client_uri.
		body2, _ := json.Marshal(map[string]any{"client_name": "h" + strings.Repeat("x", len(host)), "redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "client_secret_basic"})
		resp, out := send(http.MethodPost, "/register", bytes.NewReader(body2), host, http.Header{"Content-Type": {"application/json"}})
		var reg map[string]any
		_ = json.Unmarshal([]byte(out), &reg)
		id, _ := reg["client_id"].(string)
		if resp.StatusCode != http.StatusCreated || id == "" || reg["registration_client_uri"] != iss+"/register/"+id {
			t.Errorf("register with Host %q: %d, registration_client_uri %v, want %q: %s", host, resp.StatusCode, reg["registration_client_uri"], iss+"/register/"+id, out)
		}
	}
	// Tokens carry the configured issuer too.
	tok := s.tokens(t, s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX))
	if claims := verifyWithJWKS(t, s.inst.URL, tok.AccessToken); claims["iss"] != s.inst.URL {
		t.Errorf("iss %v", claims["iss"])
	}
	// /verify for a host authd does not protect fails closed.
	req, _ := http.NewRequest(http.MethodGet, s.inst.URL+"/verify", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "attacker.example")
	req.Header.Set("X-Forwarded-Uri", "/mcp")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/verify for an unknown host: %d", resp.StatusCode)
	}
}

// TestSecurityOversizeInputs: resource exhaustion with huge bodies,
// headers and parameters. Bodies over the limit get 413, headers over the
// limit 431, oversized parameters 400 — each answered at once (the client
// gives up after 5 s; the server's read timeout is 15 s), and nothing is
// stored.
func TestSecurityOversizeInputs(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	client := s.publicClient(t, "https://app.example.com/cb")
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: noRedirectClient.CheckRedirect}
	before := s.rowCounts(t)
	big := strings.Repeat("a", 256<<10)
	for _, tc := range []struct {
		path, ctype, body string
	}{
		{"/token", "application/x-www-form-urlencoded", "grant_type=client_credentials&x=" + big},
		{"/revoke", "application/x-www-form-urlencoded", "token=" + big},
		{"/introspect", "application/x-www-form-urlencoded", "token=" + big},
		{"/authorize", "application/x-www-form-urlencoded", "client_id=" + client + "&x=" + big},
		{"/consent", "application/x-www-form-urlencoded", "req=" + big},
		{"/register", "application/json", `{"client_name":"` + big + `"}`},
	} {
		start := time.Now()
		resp, err := c.Post(s.inst.URL+tc.path, tc.ctype, strings.NewReader(tc.body))
		if err != nil {
			t.Errorf("POST %s with %d bytes: %v", tc.path, len(tc.body), err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("POST %s with %d bytes: %d, want 413 (%s)", tc.path, len(tc.body), resp.StatusCode, time.Since(start))
		}
		// Refused at the limit, not after reading or parsing it all: far
		// below the 15 s read timeout even on a loaded machine.
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("POST %s with %d bytes took %s to refuse", tc.path, len(tc.body), d)
		}
	}

	// Headers beyond max_header_bytes (16 KiB by default).
	req, _ := http.NewRequest(http.MethodGet, s.inst.URL+"/.well-known/oauth-authorization-server", nil)
	req.Header.Set("X-Padding", strings.Repeat("p", 64<<10))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header: %d, want 431", resp.StatusCode)
	}

	// Oversized parameters within the size limits.
	long := strings.Repeat("x", 4000)
	for name, target := range map[string]string{
		"client_id":              "/authorize?response_type=code&client_id=" + long,
		"registration client_id": "/register/" + long,
	} {
		resp, err := c.Get(s.inst.URL + target)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("long %s: %d", name, resp.StatusCode)
		}
	}
	q := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {"https://app.example.com/cb"},
		"code_challenge": {validChallenge}, "code_challenge_method": {"S256"}, "state": {long}}
	resp, _ = get(t, s.inst.URL+"/authorize?"+q.Encode(), nil)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != "" {
		t.Errorf("4000-byte state: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for name, form := range map[string]url.Values{
		"code":          {"grant_type": {"authorization_code"}, "client_id": {client}, "code": {long + long}, "code_verifier": {strings.Repeat("a", 43)}},
		"code_verifier": {"grant_type": {"authorization_code"}, "client_id": {client}, "code": {"x"}, "code_verifier": {long}},
		"refresh_token": {"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {long + long}},
		"client_id":     {"grant_type": {"client_credentials"}, "client_id": {long}},
		"scope":         {"grant_type": {"client_credentials"}, "client_id": {client}, "scope": {strings.Repeat("s ", 4000)}},
		"resource":      {"grant_type": {"client_credentials"}, "client_id": {client}, "resource": {"https://" + long}},
	} {
		r := s.token(t, form)
		if r.status != http.StatusBadRequest && r.status != http.StatusUnauthorized {
			t.Errorf("long %s at /token: %d %s", name, r.status, r.raw)
		}
		checkDescription(t, "long "+name, r.body)
		if d, _ := r.body["error_description"].(string); len(d) > 300 {
			t.Errorf("long %s: description of %d bytes", name, len(d))
		}
	}
	s.assertUnchanged(t, before, "oversize inputs")
}

// TestSecuritySlowHeadersDisconnected: a client that dribbles its request
// headers (slowloris) is disconnected once http.read_header_timeout has
// passed, so it cannot hold connections open; a prompt client on the same
// server is unaffected.
func TestSecuritySlowHeadersDisconnected(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	inst := startAuthd(t, addr, map[string]string{"AUTHD_HTTP_READ_HEADER_TIMEOUT": "300ms"}, "--dev")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := conn.Write([]byte("GET /health HTTP/1.1\r\nHost: " + addr + "\r\n")); err != nil {
		t.Fatal(err)
	}
	// Keep dribbling a header byte every 100 ms; the server must hang up.
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	closed := false
	for i := 0; i < 40 && !closed; i++ {
		time.Sleep(100 * time.Millisecond)
		if _, err := conn.Write([]byte("X")); err != nil {
			closed = true
		}
	}
	if !closed {
		// The write side may stay open a little longer; the read side
		// tells: EOF (or a 408) once the server gave up.
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		var ne net.Error
		timedOut := errors.As(err, &ne) && ne.Timeout() // our deadline, not the server
		closed = (err != nil && !timedOut) || strings.Contains(string(buf[:n]), "408")
	}
	if elapsed := time.Since(start); !closed || elapsed > 4*time.Second {
		t.Fatalf("slow header client still connected after %s (closed=%v)", elapsed, closed)
	}
	if got := statusOf(t, inst.URL+"/health"); got != http.StatusOK {
		t.Fatalf("a prompt request after the slow one: %d", got)
	}
}
