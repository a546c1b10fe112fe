package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// forgeries derives attacker-made tokens from a genuine JWT access token:
// alg "none", HS256 keyed with the public JWKS (algorithm confusion), a
// foreign key under the genuine kid, the genuine signature over edited
// claims, and a header naming another algorithm.
func forgeries(t *testing.T, s *secEnv, genuine string) map[string]string {
	t.Helper()
	parts := strings.Split(genuine, ".")
	var header, claims map[string]any
	dec := func(p string, v any) {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil || json.Unmarshal(b, v) != nil {
			t.Fatalf("decoding genuine token: %v", err)
		}
	}
	dec(parts[0], &header)
	dec(parts[1], &claims)
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	with := func(m map[string]any, k string, v any) map[string]any {
		out := map[string]any{}
		for kk, vv := range m {
			out[kk] = vv
		}
		out[k] = v
		return out
	}
	resp, jwks := get(t, s.inst.URL+"/.well-known/jwks.json", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatal("jwks")
	}
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims))
	hs.Header["kid"], hs.Header["typ"] = header["kid"], "at+jwt"
	hsToken, _ := hs.SignedString([]byte(jwks))
	foreignKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	es := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims(claims))
	es.Header["kid"], es.Header["typ"] = header["kid"], "at+jwt"
	foreign, _ := es.SignedString(foreignKey)
	return map[string]string{
		"alg none":              enc(with(header, "alg", "none")) + "." + parts[1] + ".",
		"alg none, signature":   enc(with(header, "alg", "none")) + "." + parts[1] + "." + parts[2],
		"HS256 keyed with JWKS": hsToken,
		"foreign key, same kid": foreign,
		"escalated scope":       parts[0] + "." + enc(with(claims, "scope", "mcp:tools mcp:resources admin")) + "." + parts[2],
		"other audience":        parts[0] + "." + enc(with(claims, "aud", "https://other.example.com/mcp")) + "." + parts[2],
		"other subject":         parts[0] + "." + enc(with(claims, "sub", "someone-else")) + "." + parts[2],
		"RS256 header":          enc(with(header, "alg", "RS256")) + "." + parts[1] + "." + parts[2],
		"unknown kid":           enc(with(header, "kid", "../../etc/passwd")) + "." + parts[1] + "." + parts[2],
		"jku header":            enc(with(header, "jku", "https://attacker.example/jwks.json")) + "." + parts[1] + "." + parts[2],
		"truncated signature":   parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])/2],
		"extra segment":         genuine + ".x",
		"sql":                   "' OR 1=1 --",
		"nul":                   genuine[:20] + "\x00" + genuine[20:],
		"refresh-token-shaped":  "authd_rt_" + strings.Repeat("A", 43),
		"opaque-shaped":         "authd_at_" + strings.Repeat("A", 43),
	}
}

// TestSecurityIntrospectAndVerifyRejectForgedTokens: a client forges or
// edits a JWT access token to get past a protected MCP server (algorithm
// confusion, alg=none, foreign key, edited claims; SECURITY.md "JWT parse
// never accepts an unpinned alg"). /introspect answers exactly
// {"active":false} and /verify answers 401 invalid_token for each, while
// the genuine token passes both.
func TestSecurityIntrospectAndVerifyRejectForgedTokens(t *testing.T) {
	s := newSecEnv(t, nil)
	tok := s.tokens(t, s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX))
	if !s.active(t, tok.AccessToken) || verify(t, s.inst.URL, "Bearer "+tok.AccessToken).StatusCode != http.StatusOK {
		t.Fatal("genuine token refused")
	}
	for name, forged := range forgeries(t, s, tok.AccessToken) {
		if strings.ContainsAny(forged, "\x00") {
			// No text at all: refused as a malformed request (issue 16
			// part 6), not looked up. Not a valid header value either;
			// net/http refuses to send it to /verify.
			req, _ := http.NewRequest(http.MethodPost, s.inst.URL+"/introspect", strings.NewReader(url.Values{"token": {forged}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Bearer "+introspectionToken)
			r, err := sendOAuth(req)
			if err != nil {
				t.Fatal(err)
			}
			wantOAuthError(t, "introspect "+name, r, http.StatusBadRequest, "invalid_request")
			continue
		}
		if out := s.introspect(t, forged); len(out) != 1 || out["active"] != false {
			t.Errorf("introspect %s: %v", name, out)
		}
		resp := verify(t, s.inst.URL, "Bearer "+forged)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("verify %s: %d %q", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
}

// TestSecurityIntrospectionRequiresAuthorizedCaller: RFC 7662 §2.1 and
// §4 — introspection reveals token metadata, so only authorized callers
// may ask; a public client, a confidential client not allowed to
// introspect, a wrong bearer token or no credentials get 401 and learn
// nothing about the token.
func TestSecurityIntrospectionRequiresAuthorizedCaller(t *testing.T) {
	s := newSecEnv(t, nil)
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
	tok := s.tokens(t, conf)
	cc := s.confidentialClient(t, "https://app.example.com/cb")
	form := url.Values{"token": {tok.AccessToken}}
	bearer := func(v string) oauthResp {
		req, _ := http.NewRequest(http.MethodPost, s.inst.URL+"/introspect", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", v)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out := oauthResp{status: resp.StatusCode, header: resp.Header}
		_ = json.NewDecoder(resp.Body).Decode(&out.body)
		return out
	}
	for name, r := range map[string]oauthResp{
		"no credentials":             s.post(t, "/introspect", form, "", ""),
		"public client":              s.post(t, "/introspect", url.Values{"token": {tok.AccessToken}, "client_id": {conf.ClientID}}, "", ""),
		"client not allowed":         s.post(t, "/introspect", form, cc["client_id"].(string), cc["client_secret"].(string)),
		"wrong bearer":               bearer("Bearer " + introspectionToken + "x"),
		"access token as bearer":     bearer("Bearer " + tok.AccessToken),
		"bearer prefix":              bearer("Bearer " + introspectionToken[:10]),
		"sql bearer":                 bearer("Bearer ' OR 1=1 --"),
		"client id as bearer scheme": bearer("Bearer " + conf.ClientID),
	} {
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %v", name, r.status, r.body)
		}
		if _, ok := r.body["active"]; ok {
			t.Errorf("%s: answer reveals token state: %v", name, r.body)
		}
		if r.body["error"] != "invalid_client" && r.body["error"] != "invalid_token" {
			t.Errorf("%s: error %v", name, r.body["error"])
		}
	}
}

// TestSecurityRevocationIsBoundToTheClient: RFC 7009 §2.1 — a client may
// revoke only its own tokens. Another client "revoking" the victim's
// tokens gets the uniform 200 but changes nothing; an unauthenticated
// revocation is 401. The owner's revocation of the refresh token ends the
// whole grant, access token included.
func TestSecurityRevocationIsBoundToTheClient(t *testing.T) {
	s := newSecEnv(t, nil)
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
	tok := s.tokens(t, conf)
	attacker := s.confidentialClient(t, "https://app.example.com/cb")
	other := s.publicClient(t, "http://127.0.0.1/cb")

	before := s.count(t, "SELECT count(*) FROM grants WHERE revoked_at IS NULL")
	liveBefore := s.liveRefreshTokens(t, conf.ClientID)
	if liveBefore != 1 {
		t.Fatalf("before the attack: %d live refresh tokens", liveBefore)
	}
	for _, v := range []string{tok.AccessToken, tok.RefreshToken} {
		if r := s.post(t, "/revoke", url.Values{"token": {v}}, attacker["client_id"].(string), attacker["client_secret"].(string)); r.status != http.StatusOK {
			t.Fatalf("foreign revoke: %d %s", r.status, r.raw)
		}
		if r := s.post(t, "/revoke", url.Values{"token": {v}, "client_id": {other}}, "", ""); r.status != http.StatusOK {
			t.Fatalf("foreign public revoke: %d %s", r.status, r.raw)
		}
		wantOAuthError(t, "unauthenticated revoke", s.post(t, "/revoke", url.Values{"token": {v}}, "", ""), 401, "invalid_client")
	}
	if !s.active(t, tok.AccessToken) || s.count(t, "SELECT count(*) FROM grants WHERE revoked_at IS NULL") != before {
		t.Fatal("another client revoked the victim's tokens")
	}
	// The refresh token too: a revocation that marked it spent (without
	// touching the grant) would leave the grant count alone.
	// (Introspection shows a refresh token only to its own client.)
	if n := s.liveRefreshTokens(t, conf.ClientID); n != liveBefore {
		t.Fatalf("another client's revocation spent the victim's refresh token: %d live refresh tokens, was %d", n, liveBefore)
	}
	// And it still works for its owner.
	refreshed := s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {conf.ClientID}})
	next, _ := refreshed.body["refresh_token"].(string)
	if refreshed.status != http.StatusOK || next == "" {
		t.Fatalf("the victim's refresh after the attack: %d %s", refreshed.status, refreshed.raw)
	}

	if r := s.post(t, "/revoke", url.Values{"token": {next}, "client_id": {conf.ClientID}}, "", ""); r.status != http.StatusOK {
		t.Fatalf("own revoke: %d %s", r.status, r.raw)
	}
	if s.active(t, tok.AccessToken) || s.active(t, refreshed.body["access_token"].(string)) {
		t.Error("revoking the refresh token left the grant's access tokens active")
	}
	if n := s.liveRefreshTokens(t, conf.ClientID); n != 0 {
		t.Errorf("%d live refresh tokens after the owner's revocation", n)
	}
	wantOAuthError(t, "refresh after revoke", s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next}, "client_id": {conf.ClientID}}), 400, "invalid_grant")
}

// TestConfiguredResourceServerClient: a resource-server client configured
// by the operator (AUTHD_CLIENTS, JSON, with an operator-chosen secret)
// is synced into the database at start-up and may introspect; a wrong
// secret is refused with invalid_client; a restart with the same
// configuration keeps the client working (the sync is idempotent).
func TestConfiguredResourceServerClient(t *testing.T) {
	const rsSecret = "operator-chosen resource server secret"
	clients := fmt.Sprintf(`[{"id":"mcp-rs","name":"MCP resource server","secret":%q,"introspect":true,"resources":[%q]}]`, rsSecret, mcpResource)
	s := newSecEnv(t, map[string]string{"AUTHD_CLIENTS": clients})
	id := s.publicClient(t, "http://127.0.0.1/cb")
	tok := s.tokens(t, s.oauthConfig(id, "", "http://127.0.0.1:47002/cb"))

	introspect := func(issuer, secret string) oauthResp {
		t.Helper()
		r, err := tryPostTo(issuer, "/introspect", url.Values{"token": {tok.AccessToken}}, "mcp-rs", secret)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := introspect(s.inst.URL, rsSecret)
	if r.status != http.StatusOK || r.body["active"] != true || r.body["aud"] != mcpResource || r.body["client_id"] != id {
		t.Fatalf("introspection by the configured client: %d %s", r.status, r.raw)
	}
	wantOAuthError(t, "introspection with a wrong secret", introspect(s.inst.URL, rsSecret+"x"), http.StatusUnauthorized, "invalid_client")
	if n := s.count(t, "SELECT count(*) FROM clients WHERE id = 'mcp-rs' AND source = 'config' AND secret_hash NOT LIKE '%"+rsSecret+"%'"); n != 1 {
		t.Fatalf("configured client rows: %d, want 1, stored hashed", n)
	}

	// A second server on the same database and configuration (a restart,
	// or another replica) syncs the same client again without a conflict.
	env := maps.Clone(s.env)
	env["AUTHD_METRICS_LISTEN"] = freeAddr(t)
	env["AUTHD_ISSUER"] = s.inst.URL // one issuer, two replicas
	again := startAuthdWith(t, freeAddr(t), env, s.github.Client(), "--config", s.cfg)
	if r := introspect(again.URL, rsSecret); r.status != http.StatusOK || r.body["active"] != true {
		t.Fatalf("introspection through the second server: %d %s", r.status, r.raw)
	}
}
