package token_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/token"
	"github.com/authd/authd/internal/tokens"
)

func (e *env) revoke(tok string, auth func(*http.Request, url.Values), kv ...string) reply {
	e.t.Helper()
	f := url.Values{"token": {tok}}
	for i := 0; i < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return e.post("/revoke", f, auth)
}

// wantRevokeOK asserts RFC 7009 §2.2's answer: 200 and no body.
func wantRevokeOK(t *testing.T, r reply) {
	t.Helper()
	if r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("revoke: %d %q, want 200 and an empty body", r.status, r.body)
	}
	if r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("no CORS header on /revoke")
	}
}

func (e *env) jti(raw string) (string, time.Time) {
	e.t.Helper()
	_, claims := e.verify(raw, resA)
	exp, _ := claims.GetExpirationTime()
	return claims["jti"].(string), exp.Time
}

func (e *env) jtiRevoked(jti string) bool {
	e.t.Helper()
	ok, err := e.st.IsJTIRevoked(e.ctx, jti, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return ok
}

func testRevokeRefreshToken(t *testing.T, e *env) {
	tok := e.login(publicClient, func(ac *store.AuthCode) { ac.Resources = []string{resA, resB} })
	opaque := e.post("/token", e.refreshForm(tok.RefreshToken, "resource", resB), publicAuth(publicClient))
	if opaque.status != http.StatusOK {
		t.Fatal(string(opaque.body))
	}
	rt := opaque.str("refresh_token")

	// The hint is only a hint: a wrong one changes nothing.
	wantRevokeOK(t, e.revoke(rt, publicAuth(publicClient), "token_type_hint", "access_token"))
	if g := e.grantOf(rt); g.RevokedAt == nil {
		t.Fatal("grant not revoked")
	}
	_, err := e.refresh(publicClient, rt)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
	if at, _ := e.st.GetAccessToken(e.ctx, oauth.Digest(opaque.str("access_token"))); at.RevokedAt == nil {
		t.Error("opaque access token of the revoked grant still active")
	}
	// Revoking again is fine.
	wantRevokeOK(t, e.revoke(rt, publicAuth(publicClient)))
	if !strings.Contains(e.logs.String(), `"event":"token_revoked"`) {
		t.Error("no token_revoked audit event")
	}
}

func testRevokeAccessTokens(t *testing.T, e *env) {
	code, verifier := e.code(confClient, func(ac *store.AuthCode) { ac.Resources = []string{resA, resB} })
	tok, err := e.exchange(confClient, code, verifier, oauth2.SetAuthURLParam("resource", resA))
	if err != nil {
		t.Fatal(err)
	}

	// JWT: the jti is recorded until the token's exp.
	jti, _ := e.jti(tok.AccessToken)
	wantRevokeOK(t, e.revoke(tok.AccessToken, basicAuth(confClient, secret), "token_type_hint", "refresh_token"))
	if !e.jtiRevoked(jti) {
		t.Fatal("JWT access token not recorded as revoked")
	}
	// Only that token: the grant and its refresh token live on.
	if g := e.grantOf(tok.RefreshToken); g.RevokedAt != nil {
		t.Fatal("revoking an access token revoked the grant")
	}

	// Opaque.
	r := e.post("/token", e.refreshForm(tok.RefreshToken, "resource", resB), postAuth(confClient, secret))
	if r.status != http.StatusOK {
		t.Fatal(string(r.body))
	}
	at := r.str("access_token")
	wantRevokeOK(t, e.revoke(at, postAuth(confClient, secret)))
	if got, err := e.st.GetAccessToken(e.ctx, oauth.Digest(at)); err != nil || got.RevokedAt == nil {
		t.Fatalf("opaque token not revoked: %+v %v", got, err)
	}
}

// Tokens the caller may not revoke get the same 200 as success, and
// nothing happens to them.
func TestRevokeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.login(confClient, func(ac *store.AuthCode) { ac.Resources = []string{resA, resB} })
	opaque := e.post("/token", e.refreshForm(tok.RefreshToken, "resource", resB), basicAuth(confClient, secret))
	if opaque.status != http.StatusOK {
		t.Fatal(string(opaque.body))
	}
	rt, at := opaque.str("refresh_token"), opaque.str("access_token")
	jwtAT := e.post("/token", e.refreshForm(rt, "resource", resA), basicAuth(confClient, secret))
	rt = jwtAT.str("refresh_token")
	jti, exp := e.jti(jwtAT.str("access_token"))

	// A JWT signed with authd's keys that is not an access token.
	other, err := e.keys.Sign(e.ctx, "JWT", &tokens.Claims{
		Issuer: issuer, Subject: e.alice.ID, Audience: tokens.Audience{resA}, ClientID: confClient, ID: "not-an-at",
		IssuedAt: jwt.NewNumericDate(e.clock.Now()), ExpiresAt: jwt.NewNumericDate(exp),
	})
	if err != nil {
		t.Fatal(err)
	}
	tampered := jwtAT.str("access_token")
	tampered = tampered[:len(tampered)-4] + "AAAA"

	other2 := basicAuth(otherClient, secret)
	for name, r := range map[string]reply{
		"another client's refresh token":  e.revoke(rt, other2),
		"another client's opaque token":   e.revoke(at, other2),
		"another client's JWT":            e.revoke(jwtAT.str("access_token"), other2),
		"unknown refresh token":           e.revoke(oauth.NewToken(oauth.PrefixRefreshToken), basicAuth(confClient, secret)),
		"unknown opaque token":            e.revoke(oauth.NewToken(oauth.PrefixAccessToken), basicAuth(confClient, secret)),
		"garbage":                         e.revoke("garbage", basicAuth(confClient, secret)),
		"tampered JWT":                    e.revoke(tampered, basicAuth(confClient, secret)),
		"JWT that is not an access token": e.revoke(other, basicAuth(confClient, secret)),
		"unknown hint":                    e.revoke("garbage", basicAuth(confClient, secret), "token_type_hint", "id_token"),
	} {
		if r.status != http.StatusOK || len(r.body) != 0 {
			t.Errorf("%s: %d %q, want 200 and no body", name, r.status, r.body)
		}
	}
	if g := e.grantOf(rt); g.RevokedAt != nil {
		t.Error("another client revoked the grant")
	}
	if got, _ := e.st.GetAccessToken(e.ctx, oauth.Digest(at)); got.RevokedAt != nil {
		t.Error("another client revoked the opaque token")
	}
	if e.jtiRevoked(jti) || e.jtiRevoked("not-an-at") {
		t.Error("a jti was recorded for a token the caller could not revoke")
	}

	// An expired JWT needs nothing.
	e.clock.Add(2 * time.Hour)
	wantRevokeOK(t, e.revoke(jwtAT.str("access_token"), basicAuth(confClient, secret)))
	e.clock.Add(-2 * time.Hour)
	if e.jtiRevoked(jti) {
		t.Error("expired JWT recorded")
	}
}

func testRevokeRejections(t *testing.T, e *env) {
	tok := e.login(confClient)
	for _, tc := range []struct {
		name   string
		form   url.Values
		auth   func(*http.Request, url.Values)
		status int
		code   string
	}{
		{"no client authentication", url.Values{"token": {tok.RefreshToken}}, nil, http.StatusUnauthorized, oauth.CodeInvalidClient},
		{"wrong secret", url.Values{"token": {tok.RefreshToken}}, basicAuth(confClient, "x"), http.StatusUnauthorized, oauth.CodeInvalidClient},
		{"confidential client without secret", url.Values{"token": {tok.RefreshToken}}, publicAuth(confClient), http.StatusUnauthorized, oauth.CodeInvalidClient},
		{"missing token", url.Values{}, basicAuth(confClient, secret), http.StatusBadRequest, oauth.CodeInvalidRequest},
		{"duplicated token", url.Values{"token": {tok.RefreshToken, tok.RefreshToken}}, basicAuth(confClient, secret), http.StatusBadRequest, oauth.CodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			wantError(t, e.post("/revoke", tc.form, tc.auth), tc.status, tc.code)
		})
	}
	if g := e.grantOf(tok.RefreshToken); g.RevokedAt != nil {
		t.Fatal("a rejected revocation revoked the grant")
	}
}

// No code, verifier, token or secret ever reaches the log, whatever
// happens to it.
func testNoSecretsInLogs(t *testing.T, e *env) {
	code, verifier := e.code(confClient)
	tok, err := e.exchange(confClient, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = e.exchange(confClient, code, verifier) // replay
	code2, verifier2 := e.code(confClient)
	tok2, err := e.exchange(confClient, code2, verifier2)
	if err != nil {
		t.Fatal(err)
	}
	next, err := e.refresh(confClient, tok2.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = e.refresh(confClient, tok2.RefreshToken) // reuse
	e.post("/token", e.refreshForm(next.RefreshToken), basicAuth(confClient, "wrong-"+secret))
	e.revoke(next.AccessToken, basicAuth(confClient, secret))
	e.revoke(tok.RefreshToken, postAuth(confClient, secret))

	logs := e.logs.String()
	for _, events := range []string{"token_issued", "authorization_code_replay", "refresh_token_reuse", "token_revoked"} {
		if !strings.Contains(logs, `"event":"`+events+`"`) {
			t.Errorf("log lacks event %s", events)
		}
	}
	for name, s := range map[string]string{
		"code": code, "verifier": verifier, "code 2": code2, "verifier 2": verifier2,
		"access token": tok.AccessToken, "refresh token": tok.RefreshToken,
		"refreshed access token": next.AccessToken, "refreshed refresh token": next.RefreshToken,
		"client secret": secret, "wrong secret": "wrong-" + secret,
	} {
		if strings.Contains(logs, s) {
			t.Errorf("the log contains the %s", name)
		}
	}
}

// parseCountingKeys counts full JWT verifications: jwt.ParseWithClaims
// asks for the valid algorithms, a hit in the token core's verified-token
// cache does not.
type parseCountingKeys struct {
	token.Keys
	parses atomic.Int64
}

func (k *parseCountingKeys) Algorithms() []string {
	k.parses.Add(1)
	return k.Keys.Algorithms()
}

// TestRevokeKeepsTokenCore: /revoke runs on one token core for the
// handler's life, so a JWT it verified once is not parsed again: the
// second revocation of the same token hits the cache.
func TestRevokeKeepsTokenCore(t *testing.T) {
	t.Parallel()
	var keys *parseCountingKeys
	e := newEnv(t, func(h *token.Handler) {
		keys = &parseCountingKeys{Keys: h.Keys}
		h.Keys = keys
	})
	tok := e.login(confClient)
	before := keys.parses.Load()
	for range 2 {
		wantRevokeOK(t, e.revoke(tok.AccessToken, basicAuth(confClient, secret)))
	}
	jti, _ := e.jti(tok.AccessToken)
	if !e.jtiRevoked(jti) {
		t.Fatal("JWT access token not recorded as revoked")
	}
	if n := keys.parses.Load() - before; n != 1 {
		t.Fatalf("two revocations of one JWT parsed it %d times, want 1 (the token core's cache did not outlive the request)", n)
	}
}
