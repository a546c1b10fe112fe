package token_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/token"
)

func testAuthorizationCode(t *testing.T, e *env) {
	code, verifier := e.code(publicClient)

	tok, err := e.exchange(publicClient, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || tok.RefreshToken == "" || !strings.HasPrefix(tok.RefreshToken, oauth.PrefixRefreshToken) {
		t.Fatalf("token response: %+v", tok)
	}
	if tok.ExpiresIn != 3600 || tok.Extra("scope") != "read write" {
		t.Errorf("expires_in %d scope %v", tok.ExpiresIn, tok.Extra("scope"))
	}

	g := e.grantOf(tok.RefreshToken)
	if g.ClientID != publicClient || g.UserID != e.alice.ID || g.RevokedAt != nil ||
		strings.Join(g.Resources, " ") != resA || strings.Join(g.Scopes, " ") != "read write" {
		t.Errorf("grant %+v", g)
	}
	if !g.ExpiresAt.Equal(start.Add(token.DefaultGrantLifetime)) {
		t.Errorf("grant expires %v", g.ExpiresAt)
	}

	jt, claims := e.verify(tok.AccessToken, resA)
	if kid, _ := jt.Header["kid"].(string); kid == "" {
		t.Error("no kid header")
	}
	want := map[string]any{
		"iss": issuer, "sub": e.alice.ID, "aud": resA, "client_id": publicClient, "scope": "read write",
		"gid": g.ID, "preferred_username": "alice", "email": "alice@example.com",
		"iat": float64(start.Unix()), "nbf": float64(start.Unix()), "exp": float64(start.Add(time.Hour).Unix()),
		"auth_time": float64(start.Add(-time.Minute).Unix()),
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
	if _, err := uuid.Parse(claims["jti"].(string)); err != nil {
		t.Errorf("jti %v is not a uuid", claims["jti"])
	}
	// One resource: aud is a plain string (RFC 7519 §4.1.3).
	if got := string(rawClaims(t, tok.AccessToken)["aud"]); got != `"`+resA+`"` {
		t.Errorf("aud JSON = %s", got)
	}
	ac, err := e.st.GetAuthCode(e.ctx, oauth.Digest(code), e.clock.Now())
	if err != nil || ac.UsedAt == nil || ac.GrantID != g.ID {
		t.Errorf("code after redemption: %+v %v", ac, err)
	}
}

func testAuthorizationCodeResponseHeaders(t *testing.T, e *env) {
	code, verifier := e.code(confClient)
	r := e.post("/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirect},
	}, postAuth(confClient, secret))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for k, v := range map[string]string{
		"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache",
		"Access-Control-Allow-Origin": "*",
	} {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Error("CORS allows credentials")
	}
	for _, k := range []string{"access_token", "token_type", "expires_in", "refresh_token", "scope"} {
		if _, ok := r.json[k]; !ok {
			t.Errorf("response lacks %s: %s", k, r.body)
		}
	}
}

func testPreflight(t *testing.T, e *env) {
	for _, path := range []string{"/token", "/revoke"} {
		req, _ := http.NewRequest(http.MethodOptions, e.srv.URL+path, nil)
		req.Header.Set("Origin", "https://inspector.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
			h.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s preflight: %d %v", path, resp.StatusCode, h)
		}
	}
}

func testAuthorizationCodeRejections(t *testing.T, e *env) {
	form := func(code, verifier string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirect}}
	}
	const (
		s400 = http.StatusBadRequest
		s401 = http.StatusUnauthorized
	)
	for _, tc := range []struct {
		name   string
		client string // whose code
		mod    func(*store.AuthCode)
		req    func(f url.Values)
		auth   func(*http.Request, url.Values)
		status int
		code   string
		before func(e *env)
		gone   bool // the code cannot be looked up afterwards (expired)
	}{
		{name: "code of another client", client: confClient, auth: basicAuth(otherClient, secret), status: s400, code: oauth.CodeInvalidGrant},
		{name: "public client redeeming a confidential client's code", client: confClient, auth: publicAuth(publicClient), status: s400, code: oauth.CodeInvalidGrant},
		{name: "missing code_verifier", req: func(f url.Values) { f.Del("code_verifier") }, status: s400, code: oauth.CodeInvalidRequest},
		{name: "short code_verifier", req: func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 42)) }, status: s400, code: oauth.CodeInvalidGrant},
		{name: "code_verifier with invalid characters", req: func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 42)+"!") }, status: s400, code: oauth.CodeInvalidGrant},
		{name: "code_verifier too long", req: func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 129)) }, status: s400, code: oauth.CodeInvalidGrant},
		{name: "wrong code_verifier", req: func(f url.Values) { f.Set("code_verifier", oauth2.GenerateVerifier()) }, status: s400, code: oauth.CodeInvalidGrant},
		{name: "stored challenge method not S256", mod: func(ac *store.AuthCode) { ac.CodeChallengeMethod = "plain" }, status: s400, code: oauth.CodeInvalidGrant},
		{name: "redirect_uri mismatch", req: func(f url.Values) { f.Set("redirect_uri", redirect+"/x") }, status: s400, code: oauth.CodeInvalidGrant},
		{name: "redirect_uri other loopback port", req: func(f url.Values) { f.Set("redirect_uri", "http://127.0.0.1:44444/callback") }, status: s400, code: oauth.CodeInvalidGrant},
		{name: "redirect_uri missing though sent to /authorize", req: func(f url.Values) { f.Del("redirect_uri") }, status: s400, code: oauth.CodeInvalidRequest},
		{name: "redirect_uri sent only here and different", mod: func(ac *store.AuthCode) { ac.RedirectURIProvided = false }, req: func(f url.Values) { f.Set("redirect_uri", "http://127.0.0.1:1/other") }, status: s400, code: oauth.CodeInvalidGrant},
		{name: "resource outside the authorization", req: func(f url.Values) { f.Add("resource", resB) }, status: s400, code: oauth.CodeInvalidTarget},
		{name: "one of two resources outside", req: func(f url.Values) { f["resource"] = []string{resA, resOther} }, status: s400, code: oauth.CodeInvalidTarget},
		{name: "malformed resource", req: func(f url.Values) { f.Set("resource", "not a uri") }, status: s400, code: oauth.CodeInvalidTarget},
		{name: "resource with fragment", req: func(f url.Values) { f.Set("resource", resA+"#x") }, status: s400, code: oauth.CodeInvalidTarget},
		{name: "expired code", mod: func(ac *store.AuthCode) {
			ac.CreatedAt, ac.ExpiresAt = ac.CreatedAt.Add(-2*time.Minute), ac.CreatedAt.Add(-time.Second)
		}, status: s400, code: oauth.CodeInvalidGrant, gone: true},
		{name: "unknown code", req: func(f url.Values) { f.Set("code", oauth.NewToken(oauth.PrefixCode)) }, status: s400, code: oauth.CodeInvalidGrant},
		{name: "missing code", req: func(f url.Values) { f.Del("code") }, status: s400, code: oauth.CodeInvalidRequest},
		{name: "public client presenting a secret", auth: postAuth(publicClient, "guess"), status: s401, code: oauth.CodeInvalidClient},
		{name: "confidential client without secret", client: confClient, auth: publicAuth(confClient), status: s401, code: oauth.CodeInvalidClient},
		{name: "confidential client wrong secret", client: confClient, auth: basicAuth(confClient, "wrong"), status: s401, code: oauth.CodeInvalidClient},
		{name: "basic and post at once", client: confClient, auth: func(r *http.Request, f url.Values) {
			basicAuth(confClient, secret)(r, f)
			postAuth(confClient, secret)(r, f)
		}, status: s400, code: oauth.CodeInvalidRequest},
		{name: "no client authentication", auth: func(*http.Request, url.Values) {}, status: s401, code: oauth.CodeInvalidClient},
		{name: "duplicated code", req: func(f url.Values) { f.Add("code", f.Get("code")) }, status: s400, code: oauth.CodeInvalidRequest},
		{name: "duplicated code_verifier", req: func(f url.Values) { f.Add("code_verifier", f.Get("code_verifier")) }, status: s400, code: oauth.CodeInvalidRequest},
		{name: "duplicated grant_type", req: func(f url.Values) { f.Add("grant_type", "authorization_code") }, status: s400, code: oauth.CodeInvalidRequest},
		{name: "unsupported grant type", req: func(f url.Values) { f.Set("grant_type", "password") }, status: s400, code: oauth.CodeUnsupportedGrantType},
		{name: "implicit grant type", req: func(f url.Values) { f.Set("grant_type", "implicit") }, status: s400, code: oauth.CodeUnsupportedGrantType},
		{name: "missing grant type", req: func(f url.Values) { f.Del("grant_type") }, status: s400, code: oauth.CodeInvalidRequest},
		{name: "grant type the client did not register", client: machine, auth: basicAuth(machine, secret), status: s400, code: oauth.CodeUnauthorizedClient},
		{name: "disabled user", mod: func(ac *store.AuthCode) { ac.UserID = e.bob.ID }, before: func(e *env) {
			if err := e.st.SetUserDisabled(e.ctx, e.bob.ID, true); err != nil {
				e.t.Fatal(err)
			}
		}, status: s400, code: oauth.CodeInvalidGrant},
		{name: "user no longer allowed", mod: func(ac *store.AuthCode) { ac.UserID = e.bob.ID }, before: func(e *env) {
			if err := e.st.SetUserDisabled(e.ctx, e.bob.ID, false); err != nil {
				e.t.Fatal(err)
			}
			e.deny(e.bob)
		}, status: s400, code: oauth.CodeInvalidGrant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			client := tc.client
			if client == "" {
				client = publicClient
			}
			var mods []func(*store.AuthCode)
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			code, verifier := e.code(client, mods...)
			if tc.before != nil {
				tc.before(e)
			}
			f := form(code, verifier)
			if tc.req != nil {
				tc.req(f)
			}
			auth := tc.auth
			if auth == nil {
				auth = publicAuth(publicClient)
			}
			r := e.post("/token", f, auth)
			wantError(t, r, tc.status, tc.code)
			if !tc.gone {
				e.codeUnused(code)
			}
		})
	}
}

func testNonFormBody(t *testing.T, e *env) {
	code, verifier := e.code(publicClient)
	body, _ := json.Marshal(map[string]string{"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "client_id": publicClient})
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/token", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	wantError(t, e.do(req), http.StatusBadRequest, oauth.CodeInvalidRequest)

	big := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "client_id": {publicClient}, "pad": {strings.Repeat("x", 70<<10)}}
	wantError(t, e.post("/token", big, nil), http.StatusRequestEntityTooLarge, oauth.CodeInvalidRequest)

	// Parameters in the query string are not read.
	req, _ = http.NewRequest(http.MethodPost, e.srv.URL+"/token?"+url.Values{"code": {code}}.Encode(),
		strings.NewReader(url.Values{"grant_type": {"authorization_code"}, "code_verifier": {verifier}, "client_id": {publicClient}, "redirect_uri": {redirect}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	wantError(t, e.do(req), http.StatusBadRequest, oauth.CodeInvalidRequest)
	e.codeUnused(code)
}

func testRedirectURIOptional(t *testing.T, e *env) {
	notSent := func(ac *store.AuthCode) { ac.RedirectURIProvided = false }
	// Omitted at /authorize and here: fine.
	code, verifier := e.code(publicClient, notSent)
	r := e.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}}, publicAuth(publicClient))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// Omitted at /authorize, sent here and equal to the code's: fine.
	code, verifier = e.code(publicClient, notSent)
	if _, err := e.exchange(publicClient, code, verifier); err != nil {
		t.Fatal(err)
	}
}

func testNoRefreshTokenUnlessRegistered(t *testing.T, e *env) {
	code, verifier := e.code(codeOnly)
	tok, err := e.exchange(codeOnly, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" {
		t.Fatal("refresh token issued to a client that did not register refresh_token")
	}
	e.verify(tok.AccessToken, resA)
}

func testAudience(t *testing.T, e *env) {
	both := func(ac *store.AuthCode) { ac.Resources = []string{resA, resB} }

	// Narrowed to one of the authorized resources.
	code, verifier := e.code(publicClient, both)
	tok, err := e.exchange(publicClient, code, verifier, oauth2.SetAuthURLParam("resource", resA))
	if err != nil {
		t.Fatal(err)
	}
	_, claims := e.verify(tok.AccessToken, resA)
	if claims["aud"] != resA {
		t.Errorf("aud = %v", claims["aud"])
	}
	// The grant keeps both, for later refreshes.
	if g := e.grantOf(tok.RefreshToken); len(g.Resources) != 2 {
		t.Errorf("grant resources %v", g.Resources)
	}

	// No resource named at /authorize: the default resource.
	code, verifier = e.code(publicClient, func(ac *store.AuthCode) { ac.Resources = nil })
	tok, err = e.exchange(publicClient, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	e.verify(tok.AccessToken, resA)
	if g := e.grantOf(tok.RefreshToken); strings.Join(g.Resources, " ") != resA {
		t.Errorf("grant resources %v, want the default", g.Resources)
	}

	// A resource that wants opaque tokens gets one, stored by digest.
	code, verifier = e.code(publicClient, both)
	tok, err = e.exchange(publicClient, code, verifier, oauth2.SetAuthURLParam("resource", resB))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.AccessToken, oauth.PrefixAccessToken) || tok.Extra("scope") != "read" {
		t.Fatalf("access token for the opaque resource: %q scope %v", tok.AccessToken, tok.Extra("scope"))
	}
	at, err := e.st.GetAccessToken(e.ctx, oauth.Digest(tok.AccessToken))
	if err != nil || at.ClientID != publicClient || at.UserID != e.alice.ID || strings.Join(at.Resources, " ") != resB ||
		!at.ExpiresAt.Equal(start.Add(time.Hour)) || at.GrantID != e.grantOf(tok.RefreshToken).ID {
		t.Fatalf("stored opaque token %+v %v", at, err)
	}

	// Both resources: opaque wins, since resB relies on introspection.
	code, verifier = e.code(publicClient, both)
	tok, err = e.exchange(publicClient, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.AccessToken, oauth.PrefixAccessToken) {
		t.Errorf("token for a JWT and an opaque resource is not opaque: %q", tok.AccessToken)
	}
}

func TestAudienceArray(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h *token.Handler) { h.Policy.Resources[1].TokenFormat = "" })
	code, verifier := e.code(publicClient, func(ac *store.AuthCode) { ac.Resources = []string{resA, resB} })
	tok, err := e.exchange(publicClient, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(rawClaims(t, tok.AccessToken)["aud"]); got != `["`+resA+`","`+resB+`"]` {
		t.Errorf("aud JSON = %s", got)
	}
	// A token for A and B verifies for B too; one narrowed to A does not.
	e.verify(tok.AccessToken, resB)
	code, verifier = e.code(publicClient, func(ac *store.AuthCode) { ac.Resources = []string{resA, resB} })
	tok, err = e.exchange(publicClient, code, verifier, oauth2.SetAuthURLParam("resource", resA))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(rawClaims(t, tok.AccessToken)["aud"]); got != `"`+resA+`"` {
		t.Errorf("narrowed aud JSON = %s", got)
	}
	if _, err := jwt.Parse(tok.AccessToken, e.keys.Keyfunc, jwt.WithValidMethods(e.keys.Algorithms()),
		jwt.WithIssuer(issuer), jwt.WithAudience(resB), jwt.WithTimeFunc(e.clock.Now)); err == nil {
		t.Error("a token bound to resA verifies for resB")
	}
	// resA allows read and write, resB only read: a token for B alone
	// carries read only.
	code, verifier = e.code(publicClient, func(ac *store.AuthCode) { ac.Resources = []string{resA, resB} })
	tok, err = e.exchange(publicClient, code, verifier, oauth2.SetAuthURLParam("resource", resB))
	if err != nil {
		t.Fatal(err)
	}
	if _, claims := e.verify(tok.AccessToken, resB); claims["scope"] != "read" || tok.Extra("scope") != "read" {
		t.Errorf("scope for resB = %v / %v, want read", claims["scope"], tok.Extra("scope"))
	}
}

func TestNoDefaultResource(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h *token.Handler) { h.Policy.DefaultResource = "" })
	code, verifier := e.code(publicClient, func(ac *store.AuthCode) { ac.Resources = nil })
	_, err := e.exchange(publicClient, code, verifier)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidTarget)
	e.codeUnused(code)
}

// A second valid presentation of a code revokes everything the first one
// produced (OAuth 2.1 §4.1.3).
func testCodeReplayRevokesGrant(t *testing.T, e *env) {
	code, verifier := e.code(publicClient, func(ac *store.AuthCode) { ac.Resources = []string{resA, resB} })
	first, err := e.exchange(publicClient, code, verifier, oauth2.SetAuthURLParam("resource", resB))
	if err != nil {
		t.Fatal(err)
	}
	g := e.grantOf(first.RefreshToken)

	_, err = e.exchange(publicClient, code, verifier)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)

	if g, _ := e.st.GetGrant(e.ctx, g.ID); g.RevokedAt == nil {
		t.Fatal("grant not revoked after code replay")
	}
	_, err = e.refresh(publicClient, first.RefreshToken)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
	if at, err := e.st.GetAccessToken(e.ctx, oauth.Digest(first.AccessToken)); err != nil || at.RevokedAt == nil {
		t.Fatalf("opaque access token of the replayed code not revoked: %+v %v", at, err)
	}
	if !strings.Contains(e.logs.String(), `"event":"authorization_code_replay"`) {
		t.Error("no audit event for the replay")
	}
}

// A replay after the code's expiry is still a replay: the used code is
// kept as evidence while its grant lives, so waiting out the code lifetime
// does not dodge the revocation.
func TestCodeReplayAfterExpiryRevokesGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	code, verifier := e.code(publicClient)
	first, err := e.exchange(publicClient, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	g := e.grantOf(first.RefreshToken)
	e.clock.Add(time.Hour) // the code expired 59 minutes ago

	_, err = e.exchange(publicClient, code, verifier)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
	if g, _ := e.st.GetGrant(e.ctx, g.ID); g.RevokedAt == nil {
		t.Fatal("grant not revoked by a replay after the code's expiry")
	}
	_, err = e.refresh(publicClient, first.RefreshToken)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
}

// Replays that would have failed anyway (wrong verifier, other client,
// wrong redirect) must not revoke: anyone could otherwise end a user's grant.
func testInvalidReplayDoesNotRevoke(t *testing.T, e *env) {
	code, verifier := e.code(publicClient)
	first, err := e.exchange(publicClient, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	g := e.grantOf(first.RefreshToken)
	for name, r := range map[string]reply{
		"wrong verifier": e.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"code_verifier": {oauth2.GenerateVerifier()}, "redirect_uri": {redirect}}, publicAuth(publicClient)),
		"other client": e.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"code_verifier": {verifier}, "redirect_uri": {redirect}}, basicAuth(otherClient, secret)),
		"wrong redirect": e.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:1/x"}}, publicAuth(publicClient)),
	} {
		if r.status != http.StatusBadRequest || r.str("error") == "" {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	if g, _ := e.st.GetGrant(e.ctx, g.ID); g.RevokedAt != nil {
		t.Fatal("an invalid replay revoked the grant")
	}
	if _, err := e.refresh(publicClient, first.RefreshToken); err != nil {
		t.Fatalf("refresh after invalid replays: %v", err)
	}
}

// N clients race to redeem one code: exactly one gets tokens. The others
// are replays, so the grant ends revoked as well.
func testConcurrentCodeRedemption(t *testing.T, e *env) {
	code, verifier := e.code(publicClient)
	const n = 8
	var (
		wg      sync.WaitGroup
		barrier = make(chan struct{})
		mu      sync.Mutex
		wins    []*oauth2.Token
		losses  int
	)
	for range n {
		wg.Go(func() {
			<-barrier
			tok, err := e.exchange(publicClient, code, verifier)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins = append(wins, tok)
				return
			}
			if re, ok := err.(*oauth2.RetrieveError); ok && re.ErrorCode == oauth.CodeInvalidGrant {
				losses++
			} else {
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	close(barrier)
	wg.Wait()
	if len(wins) != 1 || losses != n-1 {
		t.Fatalf("%d winners, %d invalid_grant; want exactly 1 winner", len(wins), losses)
	}
	if g := e.grantOf(wins[0].RefreshToken); g.RevokedAt == nil {
		t.Error("grant survived concurrent replays of its code")
	}
}

func TestClientIdleExpirySlides(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h *token.Handler) { h.ClientIdleLifetime = 30 * 24 * time.Hour })
	exp := start.Add(24 * time.Hour)
	c, err := e.st.GetClient(e.ctx, publicClient, start)
	if err != nil {
		t.Fatal(err)
	}
	c.ExpiresAt = &exp
	c.Source = store.SourceDynamic
	if err := e.st.UpdateClient(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(2 * time.Hour)
	code, verifier := e.code(publicClient)
	if _, err := e.exchange(publicClient, code, verifier); err != nil {
		t.Fatal(err)
	}
	c, err = e.st.GetClient(e.ctx, publicClient, e.clock.Now())
	if err != nil || c.ExpiresAt == nil || !c.ExpiresAt.After(exp) {
		t.Fatalf("client idle expiry did not slide: %v %v\n%s", c.ExpiresAt, err, e.logs.String())
	}
}
