package introspect_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/tokens"
)

// TestIntrospect runs the cases that can share one database: none of them
// changes what another one's tokens depend on.
func TestIntrospect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		test func(*testing.T, *env)
	}{
		{"caller authentication", testIntrospectCallerAuthentication},
		{"JWT access token", testIntrospectJWT},
		{"opaque access token", testIntrospectOpaqueAccessToken},
		{"refresh token", testIntrospectRefreshToken},
		{"client_credentials token", testIntrospectClientCredentials},
		{"inactive tokens", testIntrospectInactive},
		{"token_type_hint is not trusted", testTokenTypeHintIsNotTrusted},
		{"resource-restricted caller", testIntrospectRestrictedResourceServer},
		{"request errors", testIntrospectRequestErrors},
		{"no tokens in logs", testNoTokensInLogs},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, e.with(t)) })
	}
}

func testIntrospectCallerAuthentication(t *testing.T, e *env) {
	tok := e.aliceToken().AccessToken

	for _, tc := range []struct {
		name   string
		auth   auth
		status int
		code   string
	}{
		{"no authentication", nil, http.StatusUnauthorized, oauth.CodeInvalidClient},
		{"wrong secret (basic)", basic(rs, "wrong"), http.StatusUnauthorized, oauth.CodeInvalidClient},
		{"wrong secret (post)", post(rs, "wrong"), http.StatusUnauthorized, oauth.CodeInvalidClient},
		{"unknown client", basic("nobody", secret), http.StatusUnauthorized, oauth.CodeInvalidClient},
		{"client not allowed to introspect", basic(notRS, secret), http.StatusUnauthorized, oauth.CodeInvalidClient},
		{"public client", post(publicRS, ""), http.StatusUnauthorized, oauth.CodeInvalidClient},
		{"the token being introspected as bearer", bearer(tok), http.StatusUnauthorized, oauth.CodeInvalidToken},
		{"unknown static token", bearer(staticToken + "x"), http.StatusUnauthorized, oauth.CodeInvalidToken},
		{"empty bearer", bearer(""), http.StatusUnauthorized, oauth.CodeInvalidToken},
		{"static token and client credentials", func(r *http.Request, f url.Values) {
			bearer(staticToken)(r, f)
			post(rs, secret)(r, f)
		}, http.StatusBadRequest, oauth.CodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.introspectAs(tc.auth, tok)
			wantError(t, r, tc.status, tc.code)
			if tc.status != http.StatusUnauthorized {
				return
			}
			// HTTP requires a challenge with every 401 (RFC 9110 §15.5.2).
			challenges := strings.Join(r.header.Values("WWW-Authenticate"), "\n")
			if tc.code == oauth.CodeInvalidClient {
				if !strings.Contains(challenges, `Basic realm="authd"`) || !strings.Contains(challenges, `Bearer realm="authd"`) {
					t.Errorf("WWW-Authenticate = %q, want Basic and Bearer challenges", challenges)
				}
			} else if challenges != `Bearer realm="authd", error="invalid_token"` {
				t.Errorf("WWW-Authenticate = %q, want an RFC 6750 invalid_token challenge", challenges)
			}
		})
	}

	for name, a := range map[string]auth{
		"client_secret_basic": basic(rs, secret),
		"client_secret_post":  post(rs, secret),
		"static bearer token": bearer(staticToken),
	} {
		t.Run("accepted "+name, func(t *testing.T) {
			wantActive(t, e.introspectAs(a, tok))
		})
	}
}

func testIntrospectJWT(t *testing.T, e *env) {
	tok := e.aliceToken().AccessToken
	claims := payload(t, tok)

	r := wantActive(t, e.introspect(tok))
	want := map[string]any{
		"active":             true,
		"scope":              "read write",
		"client_id":          mcpClient,
		"username":           "alice",
		"sub":                e.alice.ID,
		"aud":                resRoot, // a string, like the JWT's
		"iss":                issuer,
		"exp":                float64(start.Add(time.Hour).Unix()),
		"iat":                float64(start.Unix()),
		"nbf":                float64(start.Unix()),
		"jti":                claims["jti"],
		"token_type":         "Bearer",
		"preferred_username": "alice",
		"email":              "alice@example.com",
	}
	wantJSON(t, r, want)
	if claims["jti"] == nil || claims["jti"] == "" {
		t.Fatal("the JWT has no jti")
	}

	// Several audiences come back as an array.
	multi := e.login(grantSpec{user: e.alice, scopes: []string{"read"}, resources: []string{resRoot, resAdmin}})
	r = wantActive(t, e.introspect(multi.AccessToken))
	if aud, _ := r.json["aud"].([]any); len(aud) != 2 || aud[0] != resRoot || aud[1] != resAdmin {
		t.Errorf("aud = %v, want [%s %s]", r.json["aud"], resRoot, resAdmin)
	}

	// An unverified email is not vouched for.
	bob := e.login(grantSpec{user: e.bob, scopes: []string{"read"}, resources: []string{resRoot}})
	r = wantActive(t, e.introspect(bob.AccessToken))
	if _, ok := r.json["email"]; ok || r.str("username") != "bob" || r.str("preferred_username") != "bob" {
		t.Errorf("bob: %s", r.body)
	}
}

func TestIntrospectWithoutIdentityClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h *introspect.Handler) { h.IdentityClaims = false })
	r := wantActive(t, e.introspect(e.aliceToken().AccessToken))
	if r.str("username") != "alice" {
		t.Errorf("username = %q, want alice (RFC 7662 member, always present)", r.str("username"))
	}
	for _, k := range []string{"email", "preferred_username"} {
		if _, ok := r.json[k]; ok {
			t.Errorf("%s present although identity claims are off: %s", k, r.body)
		}
	}
}

func testIntrospectOpaqueAccessToken(t *testing.T, e *env) {
	tok := e.login(grantSpec{user: e.alice, scopes: []string{"read"}, resources: []string{resOpaque}}).AccessToken
	if !strings.HasPrefix(tok, oauth.PrefixAccessToken) {
		t.Fatalf("expected an opaque token for %s, got %q", resOpaque, tok)
	}
	r := wantActive(t, e.introspect(tok))
	wantJSON(t, r, map[string]any{
		"active":             true,
		"scope":              "read",
		"client_id":          mcpClient,
		"username":           "alice",
		"sub":                e.alice.ID,
		"aud":                resOpaque,
		"iss":                issuer,
		"exp":                float64(start.Add(time.Hour).Unix()),
		"iat":                float64(start.Unix()),
		"token_type":         "Bearer",
		"preferred_username": "alice",
		"email":              "alice@example.com",
	})
}

func testIntrospectRefreshToken(t *testing.T, e *env) {
	tok := e.aliceToken()
	r := wantActive(t, e.introspect(tok.RefreshToken))
	rt, err := e.st.GetRefreshToken(e.ctx, oauth.Digest(tok.RefreshToken))
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, r, map[string]any{
		"active":             true,
		"scope":              "read write",
		"client_id":          mcpClient,
		"username":           "alice",
		"sub":                e.alice.ID,
		"iss":                issuer,
		"exp":                float64(rt.ExpiresAt.Unix()),
		"iat":                float64(start.Unix()),
		"token_type":         "refresh_token",
		"preferred_username": "alice",
		"email":              "alice@example.com",
	})
}

func testIntrospectClientCredentials(t *testing.T, e *env) {
	tok := e.machineToken(resRoot, "read")
	r := wantActive(t, e.introspect(tok))
	if r.str("sub") != machine || r.str("client_id") != machine || r.str("aud") != resRoot || r.str("scope") != "read" {
		t.Errorf("got %s", r.body)
	}
	for _, k := range []string{"username", "email", "preferred_username"} {
		if _, ok := r.json[k]; ok {
			t.Errorf("machine token has %s: %s", k, r.body)
		}
	}
}

// TestIntrospectInactive covers every way a token authd would refuse ends
// in exactly {"active":false}, never an error and never more members.
func testIntrospectInactive(t *testing.T, e *env) {
	valid := e.aliceToken()
	claims := payload(t, valid.AccessToken)
	kid := header(t, valid.AccessToken)["kid"].(string)

	resign := func(typ string, mod func(jwt.MapClaims)) string {
		c := jwt.MapClaims{}
		for k, v := range claims {
			c[k] = v
		}
		mod(c)
		s, err := e.keys.Sign(e.ctx, typ, c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	revokedJTI := e.aliceToken().AccessToken
	e.revoke(revokedJTI, post(mcpClient, secret))

	revokedGrant := e.aliceToken()
	e.revoke(revokedGrant.RefreshToken, post(mcpClient, secret))

	opaque := e.login(grantSpec{user: e.alice, scopes: []string{"read"}, resources: []string{resOpaque}})
	e.revoke(opaque.AccessToken, post(mcpClient, secret))
	opaqueOfRevokedGrant := e.login(grantSpec{user: e.alice, scopes: []string{"read"}, resources: []string{resOpaque}})
	e.revoke(opaqueOfRevokedGrant.RefreshToken, post(mcpClient, secret))

	rotated := e.aliceToken()
	refreshed := e.refresh(rotated.RefreshToken)

	for _, tc := range []struct{ name, token string }{
		{"empty-ish garbage", "x"},
		{"three dots", "a.b.c"},
		{"not base64url", "a!.b.c"},
		{"four segments", valid.AccessToken + ".x"},
		{"too long", strings.Repeat("a", 9000)},
		{"tampered payload", tamper(valid.AccessToken)},
		{"unknown opaque access token", oauth.NewToken(oauth.PrefixAccessToken)},
		{"unknown refresh token", oauth.NewToken(oauth.PrefixRefreshToken)},
		{"authorization code prefix", oauth.NewToken(oauth.PrefixCode)},
		{"signed by an unknown key", signUnknownKey(t, claims)},
		{"alg none", algNone(t, claims, kid)},
		{"HS256 keyed with the public key", hs256WithPublicKey(t, e, claims, kid)},
		{"typ JWT", resign("JWT", func(jwt.MapClaims) {})},
		{"no typ", resign("", func(jwt.MapClaims) {})},
		{"another issuer", resign("at+jwt", func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" })},
		{"no exp", resign("at+jwt", func(c jwt.MapClaims) { delete(c, "exp") })},
		{"not yet valid", resign("at+jwt", func(c jwt.MapClaims) { c["nbf"] = start.Add(time.Minute).Unix() })},
		{"issued in the future", resign("at+jwt", func(c jwt.MapClaims) { c["iat"] = start.Add(time.Minute).Unix() })},
		{"no jti", resign("at+jwt", func(c jwt.MapClaims) { delete(c, "jti") })},
		{"foreign grant id", resign("at+jwt", func(c jwt.MapClaims) { c["gid"] = "00000000-0000-0000-0000-000000000000" })},
		{"subject not the grant's user", resign("at+jwt", func(c jwt.MapClaims) { c["sub"] = e.bob.ID })},
		{"client not the grant's client", resign("at+jwt", func(c jwt.MapClaims) { c["client_id"] = machine })},
		{"no grant and a user subject", resign("at+jwt", func(c jwt.MapClaims) { delete(c, "gid") })},
		{"revoked jti", revokedJTI},
		{"access token of a revoked grant", revokedGrant.AccessToken},
		{"refresh token of a revoked grant", revokedGrant.RefreshToken},
		{"revoked opaque access token", opaque.AccessToken},
		{"opaque access token of a revoked grant", opaqueOfRevokedGrant.AccessToken},
		{"rotated refresh token", rotated.RefreshToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantInactive(t, e.introspect(tc.token))
		})
	}

	// Controls: the untouched tokens are active, so the cases above fail
	// for the reason they name.
	wantActive(t, e.introspect(valid.AccessToken))
	wantActive(t, e.introspect(resign("at+jwt", func(jwt.MapClaims) {})))
	wantActive(t, e.introspect(resign("application/at+jwt", func(jwt.MapClaims) {})))
	wantActive(t, e.introspect(refreshed.RefreshToken))
	wantActive(t, e.introspect(refreshed.AccessToken))
}

// TestIntrospectStateChanges: what happens after a token was issued ends
// it: the user disabled, the client disabled or deleted, expiry. Each
// step uses tokens of its own user or client; the last tokens standing
// show that every step ended only what it should.
func TestIntrospectStateChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.aliceToken()
	aliceOpaque := e.login(grantSpec{user: e.alice, scopes: []string{"read"}, resources: []string{resOpaque}})
	bob := e.login(grantSpec{user: e.bob, scopes: []string{"read"}, resources: []string{resRoot}})
	bobOpaque := e.login(grantSpec{user: e.bob, scopes: []string{"read"}, resources: []string{resOpaque}})
	doomed := e.login(grantSpec{client: mcpClient2, user: e.alice, scopes: []string{"read"}, resources: []string{resRoot}})
	machineTok := e.machineToken(resRoot)
	for _, s := range []string{alice.AccessToken, bob.AccessToken, bobOpaque.AccessToken, doomed.AccessToken, doomed.RefreshToken, machineTok} {
		wantActive(t, e.introspect(s)) // and the clients are cached now
	}

	t.Run("user disabled", func(t *testing.T) {
		if err := e.st.SetUserDisabled(e.ctx, e.bob.ID, true); err != nil {
			t.Fatal(err)
		}
		// Users are not cached: at once.
		for _, s := range []string{bob.AccessToken, bob.RefreshToken, bobOpaque.AccessToken} {
			wantInactive(t, e.introspect(s))
		}
	})
	t.Run("client deleted", func(t *testing.T) {
		if err := e.st.DeleteClient(e.ctx, mcpClient2); err != nil {
			t.Fatal(err)
		}
		e.clock.Add(cacheTTL) // the client cache forgets within its TTL
		wantInactive(t, e.introspect(doomed.AccessToken))
		wantInactive(t, e.introspect(doomed.RefreshToken))
	})
	t.Run("client disabled", func(t *testing.T) {
		c, err := e.st.GetClient(e.ctx, machine, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		c.Disabled = true
		if err := e.st.UpdateClient(e.ctx, c); err != nil {
			t.Fatal(err)
		}
		e.clock.Add(cacheTTL)
		wantInactive(t, e.introspect(machineTok))
	})
	t.Run("expiry", func(t *testing.T) {
		e.clock.Add(time.Hour - 2*cacheTTL - time.Second)
		wantActive(t, e.introspect(alice.AccessToken))
		wantActive(t, e.introspect(aliceOpaque.AccessToken))
		e.clock.Add(time.Second) // exp is exclusive
		wantInactive(t, e.introspect(alice.AccessToken))
		wantInactive(t, e.introspect(aliceOpaque.AccessToken))
		// The refresh token lives on.
		wantActive(t, e.introspect(alice.RefreshToken))
	})
}

// TestIntrospectUserCache: with a user cache, disabling a user takes
// effect within the TTL; revocation still takes effect at once.
func TestIntrospectUserCache(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	e := newEnv(t, func(h *introspect.Handler) { h.UserCacheTTL = ttl })
	// The cache serves opaque tokens; JWTs and refresh tokens read the
	// user together with their grant, so they see a change at once.
	opaque := grantSpec{user: e.alice, scopes: []string{"read"}, resources: []string{resOpaque}}
	one, two, jwt := e.login(opaque), e.login(opaque), e.aliceToken()
	wantActive(t, e.introspect(one.AccessToken)) // alice is cached now
	wantActive(t, e.introspect(jwt.AccessToken))
	if err := e.st.SetUserDisabled(e.ctx, e.alice.ID, true); err != nil {
		t.Fatal(err)
	}
	wantActive(t, e.introspect(one.AccessToken))
	wantInactive(t, e.introspect(jwt.AccessToken))
	wantInactive(t, e.introspect(jwt.RefreshToken))
	e.revoke(two.AccessToken, post(mcpClient, secret))
	wantInactive(t, e.introspect(two.AccessToken))
	e.clock.Add(ttl)
	wantInactive(t, e.introspect(one.AccessToken))
	wantInactive(t, e.introspect(one.RefreshToken))
}

func testTokenTypeHintIsNotTrusted(t *testing.T, e *env) {
	tok := e.aliceToken()
	for _, hint := range []string{"refresh_token", "access_token", "something_else"} {
		r := wantActive(t, e.introspect(tok.AccessToken, "token_type_hint", hint))
		if r.str("token_type") != "Bearer" {
			t.Errorf("hint %s: token_type = %q", hint, r.str("token_type"))
		}
		r = wantActive(t, e.introspect(tok.RefreshToken, "token_type_hint", hint))
		if r.str("token_type") != "refresh_token" {
			t.Errorf("hint %s: token_type = %q", hint, r.str("token_type"))
		}
	}
}

func testIntrospectRestrictedResourceServer(t *testing.T, e *env) {
	asAdminRS := basic(rsAdmin, secret)
	root := e.aliceToken()
	admin := e.login(grantSpec{user: e.alice, scopes: []string{"admin"}, resources: []string{resAdmin}})
	both := e.login(grantSpec{user: e.alice, scopes: []string{"read"}, resources: []string{resRoot, resAdmin}})

	wantInactive(t, e.introspectAs(asAdminRS, root.AccessToken))
	wantInactive(t, e.introspectAs(asAdminRS, e.machineToken(resRoot)))
	// A refresh token has no audience: a restricted resource server never
	// sees one as active.
	wantInactive(t, e.introspectAs(asAdminRS, admin.RefreshToken))
	r := wantActive(t, e.introspectAs(asAdminRS, admin.AccessToken))
	if r.str("aud") != resAdmin {
		t.Errorf("aud = %v", r.json["aud"])
	}
	wantActive(t, e.introspectAs(asAdminRS, both.AccessToken))
	// Unrestricted callers see them all.
	wantActive(t, e.introspect(root.AccessToken))
	wantActive(t, e.introspectAs(bearer(staticToken), root.AccessToken))
}

func TestIntrospectRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, limiter(2))
	tok := e.aliceToken().AccessToken
	wantActive(t, e.introspect(tok))
	wantActive(t, e.introspect(tok))
	r := e.introspect(tok)
	wantError(t, r, http.StatusTooManyRequests, oauth.CodeTooManyRequests)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Limits are per caller.
	wantActive(t, e.introspectAs(bearer(staticToken), tok))
	wantActive(t, e.introspectAs(post(rsAdmin, secret), e.login(grantSpec{user: e.alice, scopes: []string{"admin"}, resources: []string{resAdmin}}).AccessToken))
	// The bucket refills.
	e.clock.Add(time.Minute)
	wantActive(t, e.introspect(tok))

	// Failed authentications are limited by network, whoever they claim
	// to be.
	wantError(t, e.introspectAs(basic(rs, "wrong"), tok), http.StatusUnauthorized, oauth.CodeInvalidClient)
	wantError(t, e.introspectAs(basic("guess", "wrong"), tok), http.StatusUnauthorized, oauth.CodeInvalidClient)
	wantError(t, e.introspectAs(bearer("guess"), tok), http.StatusTooManyRequests, oauth.CodeTooManyRequests)
}

func testIntrospectRequestErrors(t *testing.T, e *env) {
	tok := e.aliceToken().AccessToken

	wantError(t, e.postForm("/introspect", url.Values{}, basic(rs, secret)), http.StatusBadRequest, oauth.CodeInvalidRequest)
	wantError(t, e.postForm("/introspect", url.Values{"token": {tok, tok}}, basic(rs, secret)), http.StatusBadRequest, oauth.CodeInvalidRequest)

	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/introspect", strings.NewReader(`{"token":"`+tok+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(rs, url.QueryEscape(secret))
	wantError(t, e.do(req), http.StatusBadRequest, oauth.CodeInvalidRequest)

	// RFC 7662 §2.1: POST only; a token in a URL would end up in logs.
	req, _ = http.NewRequest(http.MethodGet, e.srv.URL+"/introspect?token="+url.QueryEscape(tok), nil)
	req.SetBasicAuth(rs, url.QueryEscape(secret))
	if r := e.do(req); r.status != http.StatusMethodNotAllowed || r.json["active"] != nil {
		t.Errorf("GET: %d %s", r.status, r.body)
	}
}

// TestIntrospectDatabaseDown: when the store cannot answer, the answer is
// an error, never "active" and never a cached verdict.
func TestIntrospectDatabaseDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.aliceToken()
	wantActive(t, e.introspect(tok.AccessToken)) // the caller is cached now
	e.st.Close()
	for _, s := range []string{tok.AccessToken, tok.RefreshToken} {
		r := e.introspect(s)
		if r.status < 500 || r.json["active"] != nil {
			t.Fatalf("got %d %s, want a 5xx error", r.status, r.body)
		}
		if c := r.str("error"); c != oauth.CodeServerError && c != oauth.CodeTemporarilyUnavailable {
			t.Errorf("error = %q", c)
		}
	}
}

func testNoTokensInLogs(t *testing.T, e *env) {
	tok := e.aliceToken()
	e.introspect(tok.AccessToken)
	e.introspect(tok.RefreshToken)
	e.introspect(tamper(tok.AccessToken))
	e.introspectAs(bearer(staticToken), tok.AccessToken)
	e.introspectAs(bearer(staticToken+"x"), tok.AccessToken)
	e.introspectAs(basic(rs, "wrong-secret"), tok.AccessToken)
	e.verify(http.MethodGet, tok.AccessToken, fwd(resRoot, "/"))
	e.verify(http.MethodGet, "garbage-token", fwd(resRoot, "/"))
	logs := e.logs.String()
	if !strings.Contains(logs, "token not active") {
		t.Fatal("expected debug logs; the check below would prove nothing")
	}
	for _, s := range []string{tok.AccessToken, tok.RefreshToken, staticToken, "wrong-secret", "garbage-token", secret} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain a secret %q", s[:10])
		}
	}
}

// payload decodes a JWT's claims without verifying them.
func payload(t *testing.T, raw string) jwt.MapClaims {
	t.Helper()
	return segment(t, raw, 1)
}

func header(t *testing.T, raw string) map[string]any {
	t.Helper()
	return segment(t, raw, 0)
}

func segment(t *testing.T, raw string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// wantJSON compares an introspection answer member by member, and that it
// has no others.
func wantJSON(t *testing.T, r reply, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if got, ok := r.json[k]; !ok || got != v {
			t.Errorf("%s = %v, want %v", k, r.json[k], v)
		}
	}
	for k := range r.json {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected member %s = %v", k, r.json[k])
		}
	}
}

// tamper changes one claim without re-signing.
func tamper(raw string) string {
	parts := strings.Split(raw, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["scope"] = "read write admin"
	b, _ = json.Marshal(m)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func signUnknownKey(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = "not-a-published-key"
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func algNone(t *testing.T, c jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, c)
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = kid
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// hs256WithPublicKey is the classic algorithm-confusion forgery: an HMAC
// keyed with the server's public key, which anyone can fetch.
func hs256WithPublicKey(t *testing.T, e *env, c jwt.MapClaims, kid string) string {
	t.Helper()
	pub, err := e.keys.Keyfunc(&jwt.Token{Method: jwt.SigningMethodES256, Header: map[string]any{"kid": kid, "alg": "ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = kid
	s, err := tok.SignedString(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// refresh redeems a refresh token at /token.
func (e *env) refresh(rt string) *tokenPair {
	e.t.Helper()
	r := e.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, post(mcpClient, secret))
	if r.status != http.StatusOK {
		e.t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	return &tokenPair{AccessToken: r.str("access_token"), RefreshToken: r.str("refresh_token")}
}

type tokenPair struct{ AccessToken, RefreshToken string }

// TestIntrospectRefreshTokenOnlyToItsClient: a refresh token is active
// only to the client holding it; resource servers (clients allowed to
// introspect, restricted or not, and static bearer callers) and other
// clients see it inactive, so a resource server that checks only "active"
// cannot take it for an access token (issue 17).
func TestIntrospectRefreshTokenOnlyToItsClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.aliceToken()
	for name, a := range map[string]auth{
		"resource server":            basic(rs, secret),
		"restricted resource server": basic(rsAdmin, secret),
		"static bearer token":        bearer(staticToken),
		"another client":             basic(mcpClient2, secret),
	} {
		r := e.introspectAs(a, tok.RefreshToken)
		if r.status != http.StatusOK || string(r.body) != `{"active":false}` {
			t.Errorf("%s: %d %s, want exactly {\"active\":false}", name, r.status, r.body)
		}
	}
	r := wantActive(t, e.introspectAs(basic(mcpClient, secret), tok.RefreshToken))
	if r.str("token_type") != "refresh_token" || r.str("client_id") != mcpClient {
		t.Errorf("owner's view: %s", r.body)
	}
	// Access tokens are unaffected.
	wantActive(t, e.introspectAs(basic(rs, secret), tok.AccessToken))
	wantActive(t, e.introspectAs(bearer(staticToken), tok.AccessToken))
}

// TestIntrospectAndVerifyRecheckAllowlist: a user removed from the
// allowlist loses every token at once at /introspect and /verify (the
// check reads the configuration, no upstream), not only at the next
// refresh; other users and client_credentials tokens are unaffected
// (issue 17).
func TestIntrospectAndVerifyRecheckAllowlist(t *testing.T) {
	t.Parallel()
	var denied sync.Map // user id → true
	e := newEnv(t, func(h *introspect.Handler) {
		h.UserCheck = func(_ context.Context, u store.User) error {
			if _, ok := denied.Load(u.ID); ok {
				return fmt.Errorf("%w: not on the allowlist", tokens.ErrUserNotAllowed)
			}
			return nil
		}
	})
	alice := e.aliceToken()
	aliceOpaque := e.login(grantSpec{user: e.alice, scopes: []string{"read"}, resources: []string{resOpaque}})
	bob := e.login(grantSpec{user: e.bob, scopes: []string{"read"}, resources: []string{resRoot}})
	machineTok := e.machineToken(resRoot, "read")
	for _, tok := range []string{alice.AccessToken, alice.RefreshToken, aliceOpaque.AccessToken, bob.AccessToken, machineTok} {
		wantActive(t, e.introspect(tok))
	}
	if r := e.verify(http.MethodGet, alice.AccessToken, fwd(resRoot, "/")); r.status != http.StatusOK {
		t.Fatalf("verify before: %d %s", r.status, r.body)
	}

	denied.Store(e.alice.ID, true)
	for _, tok := range []string{alice.AccessToken, alice.RefreshToken, aliceOpaque.AccessToken} {
		wantInactive(t, e.introspect(tok))
	}
	if r := e.verify(http.MethodGet, alice.AccessToken, fwd(resRoot, "/")); r.status != http.StatusUnauthorized {
		t.Errorf("verify of a user no longer allowed: %d %s", r.status, r.body)
	}
	wantActive(t, e.introspect(bob.AccessToken))
	wantActive(t, e.introspect(machineTok))
	if r := e.verify(http.MethodGet, bob.AccessToken, fwd(resRoot, "/")); r.status != http.StatusOK {
		t.Errorf("verify of another user: %d %s", r.status, r.body)
	}
}
