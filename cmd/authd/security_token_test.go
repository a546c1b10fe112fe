package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

const cbX = "http://127.0.0.1:7101/cb"

// TestSecurityTokenCodeReplayRevokes: an attacker who obtained a code the
// client already redeemed presents it again, with everything right
// (SECURITY.md item 6; OAuth 2.1 §4.1.3, RFC 9700 §4.5). The replay gets
// invalid_grant and issues nothing, and everything the first redemption
// issued is revoked: its access token turns inactive and its refresh token
// stops working.
func TestSecurityTokenCodeReplayRevokes(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
	code, verifier := s.code(t, conf)
	tok, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if !s.active(t, tok.AccessToken) {
		t.Fatal("fresh token inactive")
	}
	before := s.count(t, "SELECT count(*) FROM grants")

	replay := s.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {cbX}, "client_id": {conf.ClientID}})
	wantOAuthError(t, "replay", replay, http.StatusBadRequest, "invalid_grant")

	if s.active(t, tok.AccessToken) {
		t.Error("access token from the replayed code still active")
	}
	r := s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {conf.ClientID}})
	wantOAuthError(t, "refresh after replay", r, http.StatusBadRequest, "invalid_grant")
	if n := s.count(t, "SELECT count(*) FROM grants WHERE revoked_at IS NULL"); n != 0 {
		t.Errorf("%d grants still live after the replay", n)
	}
	if n := s.count(t, "SELECT count(*) FROM grants"); n != before {
		t.Errorf("the replay created a grant")
	}
}

// TestSecurityTokenCodeBoundToClientVerifierAndRedirect: an attacker holds
// a stolen, unredeemed code and tries to redeem it as another client, with
// the wrong or no verifier (PKCE downgrade), with a verifier equal to the
// challenge ("plain"), with another redirect_uri, or after it expired
// (SECURITY.md items 4, 5, 7). Each is refused with the RFC code, issues
// nothing, and does not consume the code: the legitimate client redeems it
// afterwards. Then invalid presentations of the *used* code (wrong client,
// wrong verifier) must not revoke the victim's tokens (OAuth 2.1 §4.1.3:
// only a valid second use revokes, or anyone could revoke anyone's grant).
func TestSecurityTokenCodeBoundToClientVerifierAndRedirect(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
	other := s.publicClient(t, "http://127.0.0.1/cb")
	conf2 := s.confidentialClient(t, "https://app.example.com/cb")
	code, verifier := s.code(t, conf)
	challenge := oauth2.S256ChallengeFromVerifier(verifier)
	form := func(kv ...string) url.Values {
		f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {cbX}, "client_id": {conf.ClientID}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				f.Del(kv[i])
			} else {
				f.Set(kv[i], kv[i+1])
			}
		}
		return f
	}
	before := s.rowCounts(t)
	attacks := []struct {
		name   string
		form   url.Values
		user   string
		pass   string
		status int
		code   string
	}{
		{"other public client", form("client_id", other), "", "", 400, "invalid_grant"},
		{"other confidential client", form("client_id", ""), conf2["client_id"].(string), conf2["client_secret"].(string), 400, "invalid_grant"},
		{"no client", form("client_id", ""), "", "", 401, "invalid_client"},
		{"no verifier", form("code_verifier", ""), "", "", 400, "invalid_request"},
		{"wrong verifier", form("code_verifier", oauth2.GenerateVerifier()), "", "", 400, "invalid_grant"},
		{"plain downgrade", form("code_verifier", challenge), "", "", 400, "invalid_grant"},
		{"short verifier", form("code_verifier", verifier[:42]), "", "", 400, "invalid_grant"},
		// Not text: refused while parsing, before the code is looked up.
		{"verifier with NUL", form("code_verifier", verifier[:42]+"\x00"), "", "", 400, "invalid_request"},
		{"repeated verifier", func() url.Values { f := form(); f.Add("code_verifier", verifier); return f }(), "", "", 400, "invalid_request"},
		{"repeated code", func() url.Values { f := form(); f.Add("code", "x"); return f }(), "", "", 400, "invalid_request"},
		{"other redirect_uri", form("redirect_uri", "http://127.0.0.1:7102/cb"), "", "", 400, "invalid_grant"},
		{"no redirect_uri", form("redirect_uri", ""), "", "", 400, "invalid_request"},
		{"other resource", form("resource", "https://other.example.com/mcp"), "", "", 400, "invalid_target"},
		{"code in query only", form("code", ""), "", "", 400, "invalid_request"},
	}
	for _, a := range attacks {
		path := "/token"
		if a.name == "code in query only" {
			path = "/token?code=" + url.QueryEscape(code)
		}
		r := s.post(t, path, a.form, a.user, a.pass)
		wantOAuthError(t, a.name, r, a.status, a.code)
	}
	s.assertUnchanged(t, before, "rejected redemptions")
	if n := s.count(t, "SELECT count(*) FROM auth_codes WHERE used_at IS NOT NULL"); n != 0 {
		t.Fatalf("a rejected redemption consumed the code")
	}

	// The legitimate redemption still works.
	tok, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("legitimate redemption after the attacks: %v", err)
	}
	// Invalid presentations of the used code do not revoke it.
	for _, a := range attacks[:6] {
		r := s.post(t, "/token", a.form, a.user, a.pass)
		wantOAuthError(t, "used code, "+a.name, r, a.status, a.code)
	}
	if !s.active(t, tok.AccessToken) {
		t.Fatal("an invalid replay revoked the victim's token")
	}

	// An expired code is refused and consumes nothing.
	code2, verifier2 := s.code(t, conf)
	s.exec(t, "UPDATE auth_codes SET expires_at = now() - interval '1 second' WHERE used_at IS NULL")
	before = s.rowCounts(t)
	r := s.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code2}, "code_verifier": {verifier2}, "redirect_uri": {cbX}, "client_id": {conf.ClientID}})
	wantOAuthError(t, "expired code", r, http.StatusBadRequest, "invalid_grant")
	s.assertUnchanged(t, before, "expired code")
}

// TestSecurityRefreshTokenBinding: a stolen refresh token is used by
// another client, for more scope, or for another resource (SECURITY.md
// items 7 and 12; RFC 9700 §4.14.2). Each is refused without rotating the
// token. Then the thief races the client: the first refresh rotates, the
// client uses the new token, the next presentation of the spent token is
// reuse, and the whole family dies, the newest refresh token included.
func TestSecurityRefreshTokenBinding(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
	other := s.publicClient(t, "http://127.0.0.1/cb")
	tok := s.tokens(t, conf)
	form := func(kv ...string) url.Values {
		f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {conf.ClientID}}
		for i := 0; i < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	before := s.rowCounts(t)
	for _, a := range []struct {
		name, code string
		form       url.Values
	}{
		{"other client", "invalid_grant", form("client_id", other)},
		{"scope escalation", "invalid_scope", form("scope", "mcp:tools mcp:resources")},
		// Unknown scopes are dropped (unknown_scopes: ignore), never granted;
		// what is left must still be within the grant.
		{"unknown scope beside an escalation", "invalid_scope", form("scope", "admin mcp:resources")},
		{"other resource", "invalid_target", form("resource", "https://other.example.com/mcp")},
		{"access token as refresh token", "invalid_grant", form("refresh_token", tok.AccessToken)},
		{"sql", "invalid_grant", form("refresh_token", "' OR used_at IS NULL --")},
	} {
		wantOAuthError(t, a.name, s.token(t, a.form), http.StatusBadRequest, a.code)
	}
	s.assertUnchanged(t, before, "rejected refreshes")
	if n := s.count(t, "SELECT count(*) FROM refresh_tokens WHERE used_at IS NOT NULL"); n != 0 {
		t.Fatal("a rejected refresh spent the token")
	}

	first := s.token(t, form())
	if first.status != http.StatusOK || first.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("refresh: %d %s", first.status, first.raw)
	}
	// The client carries on with its new token; the thief then presents
	// the spent one (not a retry: the chain moved on).
	second := s.token(t, form("refresh_token", first.body["refresh_token"].(string)))
	if second.status != http.StatusOK {
		t.Fatalf("refresh with the new token: %d %s", second.status, second.raw)
	}
	wantOAuthError(t, "reuse", s.token(t, form()), http.StatusBadRequest, "invalid_grant")
	newest := second.body["refresh_token"].(string)
	wantOAuthError(t, "newest after reuse", s.token(t, form("refresh_token", newest)), http.StatusBadRequest, "invalid_grant")
	if s.active(t, second.body["access_token"].(string)) || s.active(t, first.body["access_token"].(string)) || s.active(t, tok.AccessToken) {
		t.Error("access tokens of a family with a reused refresh token still active")
	}
	if n := s.count(t, `SELECT count(*) FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id
		WHERE r.used_at IS NULL AND g.revoked_at IS NULL AND r.expires_at > now()`); n != 0 {
		t.Errorf("%d live refresh tokens after reuse detection", n)
	}
}

// TestSecurityClientAuthentication: guessing or mixing client credentials
// at /token (RFC 6749 §2.3.1, §5.2). A wrong secret, an unknown client, a
// public client with a secret and a confidential one without are the same
// 401 invalid_client (same description: ids cannot be enumerated), with a
// Basic challenge whatever the client sent; two methods at once, or a
// credential in the URL query, is invalid_request. Nothing is issued.
func TestSecurityClientAuthentication(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	conf := s.confidentialClient(t, "https://app.example.com/cb")
	id, secret := conf["client_id"].(string), conf["client_secret"].(string)
	public := s.publicClient(t, "http://127.0.0.1/cb")
	cc := url.Values{"grant_type": {"client_credentials"}, "resource": {mcpResource}}
	with := func(kv ...string) url.Values {
		f := url.Values{}
		for k, v := range cc {
			f[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	before := s.rowCounts(t)
	var descriptions []string
	for _, a := range []struct {
		name       string
		form       url.Values
		user, pass string
		status     int
		code       string
		challenge  bool
	}{
		{"wrong secret (basic)", with(), id, secret + "x", 401, "invalid_client", true},
		{"near-miss secret (basic)", with(), id, nearMiss(secret), 401, "invalid_client", true},
		{"empty-ish secret (basic)", with(), id, " ", 401, "invalid_client", true},
		{"unknown client (basic)", with(), "00000000-0000-0000-0000-000000000000", secret, 401, "invalid_client", true},
		{"wrong secret (post)", with("client_id", id, "client_secret", "nope"), "", "", 401, "invalid_client", true},
		{"public client with a secret", with("client_id", public, "client_secret", "guess"), "", "", 401, "invalid_client", true},
		{"confidential client without secret", with("client_id", id), "", "", 401, "invalid_client", true},
		{"sql client_id", with("client_id", "' OR 1=1 --", "client_secret", "x"), "", "", 401, "invalid_client", true},
		{"two methods", with("client_secret", secret), id, secret, 400, "invalid_request", false},
		{"mismatched ids", with("client_id", public), id, secret, 400, "invalid_request", false},
		{"repeated secret", func() url.Values {
			f := with("client_id", id, "client_secret", secret)
			f.Add("client_secret", secret)
			return f
		}(), "", "", 400, "invalid_request", false},
		{"public client, client_credentials", with("client_id", public), "", "", 400, "unauthorized_client", false},
	} {
		r := s.post(t, "/token", a.form, a.user, a.pass)
		wantOAuthError(t, a.name, r, a.status, a.code)
		if got := strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic"); got != a.challenge {
			t.Errorf("%s: WWW-Authenticate %q", a.name, r.header.Get("WWW-Authenticate"))
		}
		if a.code == "invalid_client" {
			descriptions = append(descriptions, r.body["error_description"].(string))
		}
	}
	for _, d := range descriptions {
		if d != descriptions[0] {
			t.Errorf("invalid_client descriptions differ (%q vs %q): they reveal why", d, descriptions[0])
		}
	}
	// Credentials in the URL query are not read (RFC 6749 §2.3.1).
	r := s.post(t, "/token?client_id="+id+"&client_secret="+url.QueryEscape(secret), cc, "", "")
	wantOAuthError(t, "credentials in the query", r, 401, "invalid_client")
	s.assertUnchanged(t, before, "failed client authentication")

	ok := s.post(t, "/token", cc, id, secret)
	if ok.status != http.StatusOK || ok.header.Get("Cache-Control") != "no-store" || ok.header.Get("Pragma") != "no-cache" {
		t.Fatalf("client_credentials: %d %v %s", ok.status, ok.header, ok.raw)
	}
}

// nearMiss is secret with its last character changed (to one it is not:
// a fixed replacement would equal the secret one time in sixteen).
func nearMiss(secret string) string {
	last := "A"
	if strings.HasSuffix(secret, last) {
		last = "B"
	}
	return secret[:len(secret)-1] + last
}
