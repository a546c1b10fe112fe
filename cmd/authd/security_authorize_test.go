package main

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// validChallenge is a well-formed S256 challenge (of an unknown verifier).
var validChallenge = oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())

// TestSecurityAuthorizeRedirectURIExactMatch: an attacker crafts an
// authorization link for a real client with a redirect_uri it controls, in
// every shape real servers have been fooled by (SECURITY.md "most often
// failed" 1–3 and 8: unchecked, case-insensitive, prefix, userinfo, "..;/",
// added query, fragment, scheme downgrade, localhost for a loopback IP,
// script schemes). Each must get authd's own 400 page: no Location header
// at all (not even to the registered URI, which would be an open
// redirector for error codes), no pending request stored, and no login
// started. Loopback URIs may differ only in port (RFC 8252 §7.3).
func TestSecurityAuthorizeRedirectURIExactMatch(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	client := s.publicClient(t, "https://app.example.com/cb", "http://127.0.0.1/callback")

	attacks := []string{
		"https://attacker.example/cb",
		"https://APP.example.com/cb",
		"https://app.example.com/CB",
		"HTTPS://app.example.com/cb",
		"https://app.example.com/cb/",
		"https://app.example.com/cbx",
		"https://app.example.com/cb/../evil",
		"https://app.example.com/cb/..;/evil",
		"https://app.example.com/cb%2F..%2Fevil",
		"https://app.example.com/c%62",
		"https://app.example.com/cb?next=https://attacker.example",
		"https://app.example.com/cb#",
		"https://app.example.com/cb#x",
		"https://attacker.example@app.example.com/cb",
		"https://app.example.com@attacker.example/cb",
		"https://app.example.com.attacker.example/cb",
		"https://app.example.com:443/cb",
		"https://app.example.com:8443/cb",
		"http://app.example.com/cb",
		" https://app.example.com/cb",
		"https://app.example.com/cb ",
		"https://app.example.com/cb\x00",
		"https://app.example.com/cb\r\nLocation: https://attacker.example",
		"//attacker.example/cb",
		"javascript:alert(1)//https://app.example.com/cb",
		"JavaScript://app.example.com/cb%0aalert(1)",
		"data:text/html,<script>alert(1)</script>",
		"http://localhost/callback",
		"http://localhost:5555/callback",
		"http://[::1]:5555/callback",
		"http://127.0.0.2:5555/callback",
		"http://127.0.0.1.attacker.example/callback",
		"http://127.0.0.1:5555/callback?x=1",
		"http://127.0.0.1:5555/Callback",
		"http://127.0.0.1:5555/callback/",
		"http://127.0.0.1:5555/callback#f",
		"http://attacker@127.0.0.1:5555/callback",
		"https://127.0.0.1:5555/callback",
	}
	before := s.rowCounts(t)
	for _, uri := range attacks {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			q := url.Values{
				"response_type": {"code"}, "client_id": {client}, "redirect_uri": {uri}, "state": {"s"},
				"code_challenge": {validChallenge}, "code_challenge_method": {"S256"}, "resource": {mcpResource},
			}
			var req *http.Request
			if method == http.MethodGet {
				req, _ = http.NewRequest(method, s.inst.URL+"/authorize?"+q.Encode(), nil)
			} else {
				req, _ = http.NewRequest(method, s.inst.URL+"/authorize", strings.NewReader(q.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			resp, err := noRedirectClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Errorf("%s redirect_uri %q: %d Location=%q, want a 400 page and no redirect", method, uri, resp.StatusCode, resp.Header.Get("Location"))
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || strings.Contains(string(body), "attacker.example") {
				t.Errorf("%s redirect_uri %q: page %q echoes the attacker's URI or is not HTML", method, uri, resp.Header.Get("Content-Type"))
			}
		}
	}
	s.assertUnchanged(t, before, "rejected redirect URIs")
	if n := len(s.github.AuthorizeRequests()); n != 0 {
		t.Errorf("%d upstream logins started for rejected requests", n)
	}

	// The one allowed variation: a loopback redirect URI's port (the login
	// starts; the code will go to that port).
	ok := url.Values{
		"response_type": {"code"}, "client_id": {client}, "redirect_uri": {"http://127.0.0.1:5555/callback"},
		"code_challenge": {validChallenge}, "code_challenge_method": {"S256"}, "resource": {mcpResource},
	}
	resp, _ := get(t, s.inst.URL+"/authorize?"+ok.Encode(), nil)
	if resp.StatusCode != http.StatusFound || strings.HasPrefix(resp.Header.Get("Location"), "http://127.0.0.1:5555") {
		t.Fatalf("loopback with a port: %d %q, want a redirect to the login", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestSecurityAuthorizeUnknownClient: a link with an unknown (or missing,
// or repeated) client_id and an attacker's redirect_uri must not redirect
// anywhere (RFC 6749 §4.1.2.1, RFC 9700 §4.11.2).
func TestSecurityAuthorizeUnknownClient(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	client := s.publicClient(t, "https://app.example.com/cb")
	before := s.rowCounts(t)
	for name, q := range map[string]string{
		"unknown":           "client_id=00000000-0000-0000-0000-000000000000&redirect_uri=https://attacker.example/cb",
		"missing":           "redirect_uri=https://attacker.example/cb",
		"sql":               "client_id=" + url.QueryEscape("' OR '1'='1") + "&redirect_uri=https://attacker.example/cb",
		"repeated":          "client_id=" + client + "&client_id=other&redirect_uri=https://app.example.com/cb",
		"repeated redirect": "client_id=" + client + "&redirect_uri=https://app.example.com/cb&redirect_uri=https://attacker.example/cb",
	} {
		resp, _ := get(t, s.inst.URL+"/authorize?response_type=code&"+q, nil)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%s client_id: %d Location=%q", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	s.assertUnchanged(t, before, "unknown clients")
}

// TestSecurityAuthorizePKCERequired: a client (or an attacker driving the
// user's browser) tries to get a code without PKCE, with "plain", or with
// a malformed challenge (SECURITY.md item 4). Once the client and redirect
// URI are confirmed the error goes back to the client with state and iss
// (RFC 9207), and no request is stored and no login begins.
func TestSecurityAuthorizePKCERequired(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	const redirect = "https://app.example.com/cb"
	client := s.publicClient(t, redirect)
	base := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect}, "state": {"xyz"}, "resource": {mcpResource}}
	cases := map[string]struct {
		set  url.Values
		code string
	}{
		"no challenge":          {url.Values{}, "invalid_request"},
		"no method (plain)":     {url.Values{"code_challenge": {validChallenge}}, "invalid_request"},
		"plain":                 {url.Values{"code_challenge": {validChallenge}, "code_challenge_method": {"plain"}}, "invalid_request"},
		"s256 lowercase":        {url.Values{"code_challenge": {validChallenge}, "code_challenge_method": {"s256"}}, "invalid_request"},
		"short challenge":       {url.Values{"code_challenge": {"abc"}, "code_challenge_method": {"S256"}}, "invalid_request"},
		"challenge w/ padding":  {url.Values{"code_challenge": {validChallenge[:42] + "="}, "code_challenge_method": {"S256"}}, "invalid_request"},
		"verifier as challenge": {url.Values{"code_challenge": {strings.Repeat("a", 128)}, "code_challenge_method": {"S256"}}, "invalid_request"},
		"repeated challenge":    {url.Values{"code_challenge": {validChallenge, validChallenge}, "code_challenge_method": {"S256"}}, "invalid_request"},
		"implicit":              {url.Values{"response_type": {"token"}, "code_challenge": {validChallenge}, "code_challenge_method": {"S256"}}, "unsupported_response_type"},
	}
	before := s.rowCounts(t)
	for name, c := range cases {
		q := url.Values{}
		for k, v := range base {
			q[k] = v
		}
		for k, v := range c.set {
			q[k] = v
		}
		resp, _ := get(t, s.inst.URL+"/authorize?"+q.Encode(), nil)
		loc, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil {
			t.Fatalf("%s: %d %q", name, resp.StatusCode, resp.Header.Get("Location"))
		}
		got := loc.Query()
		if !strings.HasPrefix(loc.String(), redirect+"?") || got.Get("error") != c.code || got.Get("state") != "xyz" ||
			got.Get("iss") != s.inst.URL || got.Get("code") != "" {
			t.Errorf("%s: redirected to %s, want %s with error=%s, state and iss", name, loc, redirect, c.code)
		}
	}
	s.assertUnchanged(t, before, "PKCE rejections")
	if n := len(s.github.AuthorizeRequests()); n != 0 {
		t.Errorf("%d upstream logins started without PKCE", n)
	}
}

// consentForm drives b to the consent page of authURL and returns its form.
func consentForm(t *testing.T, b *browser, authURL string) url.Values {
	t.Helper()
	resp, err := b.c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `action="/consent"`) {
		t.Fatalf("expected a consent page, got %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	form := url.Values{"decision": {"approve"}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	if form.Get("req") == "" || form.Get("csrf") == "" {
		t.Fatalf("consent form lacks req/csrf: %v", form)
	}
	return form
}

// TestSecurityConsentBoundToBrowserAndClient: consent cannot be forged or
// carried over (SECURITY.md item 9, MCP-BP confused deputy):
//   - an attacker who starts a flow and makes the victim's browser submit
//     the attacker's consent form gets nothing (the pending request is bound
//     to the browser that started it and to the signed-in user);
//   - a submission without the right CSRF token, or from another site,
//     is refused with 403;
//   - approving client X does not silently approve client Y for the same
//     user (a static upstream client_id must not turn into silent consent).
//
// In no case is a code issued or a consent stored. The approval itself is
// answered with 303 (RFC 9700 §4.12), never 307.
func TestSecurityConsentBoundToBrowserAndClient(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	const redirectX, redirectY = "http://127.0.0.1:7001/cb", "http://127.0.0.1:7002/cb"
	clientX := s.publicClient(t, "http://127.0.0.1/cb")
	clientY := registerClient(t, s.inst.URL, map[string]any{
		"client_name": "other app", "redirect_uris": []string{"http://127.0.0.1/cb", "http://127.0.0.1/other"},
		"token_endpoint_auth_method": "none",
	})["client_id"].(string)
	authURL := func(client, redirect string) string {
		return s.oauthConfig(client, "", redirect).AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", mcpResource))
	}

	// The victim (alice) signs in and approves X in their own browser.
	s.github.AddUser(upstreamtestUser("mallory", 1002))
	s.github.SetNextUser("alice")
	victim := newBrowser(t, s.github.Client().Transport, redirectX)
	form := consentForm(t, victim, authURL(clientX, redirectX))
	resp, err := victim.c.PostForm(s.inst.URL+"/consent", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), redirectX+"?code=") {
		t.Fatalf("approval: %d %q, want 303 to the client", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The attacker (their own GitHub session and browser) gets to a
	// consent page for X, then makes the victim's browser submit it.
	s.github.SetNextUser("mallory")
	attacker := newBrowser(t, s.github.Client().Transport, redirectX)
	stolen := consentForm(t, attacker, authURL(clientX, redirectX))
	s.github.SetNextUser("alice")
	// A pending request of the victim's own for Y, to test the CSRF token.
	victim.redirect = redirectY
	own := consentForm(t, victim, authURL(clientY, redirectY))

	before := s.rowCounts(t)
	consents := s.count(t, "SELECT count(*) FROM consents")
	for name, c := range map[string]struct {
		form   url.Values
		header http.Header
	}{
		"attacker's form in the victim's browser": {stolen, nil},
		"missing csrf":    {url.Values{"req": own["req"], "decision": {"approve"}}, nil},
		"attacker's csrf": {url.Values{"req": own["req"], "csrf": stolen["csrf"], "decision": {"approve"}}, nil},
		"cross-site":      {own, http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://attacker.example"}}},
		"sql in handle":   {url.Values{"req": {"' OR 1=1 --"}, "csrf": own["csrf"], "decision": {"approve"}}, nil},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.inst.URL+"/consent", strings.NewReader(c.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range c.header {
			req.Header[k] = v
		}
		resp, err := victim.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d Location=%q, want a 4xx page", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	s.assertUnchanged(t, before, "forged consent")
	if got := s.count(t, "SELECT count(*) FROM consents"); got != consents {
		t.Errorf("forged consent stored: %d consents, want %d", got, consents)
	}

	// Having approved X does not approve Y: Y gets a consent page.
	consentForm(t, victim, authURL(clientY, redirectY))
}
