package token_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/token"
)

// login redeems a fresh code for clientID and returns the tokens.
func (e *env) login(clientID string, mod ...func(*store.AuthCode)) *oauth2.Token {
	e.t.Helper()
	code, verifier := e.code(clientID, mod...)
	tok, err := e.exchange(clientID, code, verifier)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) refreshForm(rt string, kv ...string) url.Values {
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for i := 0; i < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return f
}

func TestRefreshRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.login(publicClient)
	g := e.grantOf(first.RefreshToken)

	e.clock.Add(30 * time.Minute)
	second, err := e.refresh(publicClient, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatal("refresh did not rotate")
	}
	_, claims := e.verify(second.AccessToken, resA)
	if claims["gid"] != g.ID || claims["sub"] != e.alice.ID || claims["scope"] != "read write" ||
		claims["auth_time"] != float64(start.Add(-time.Minute).Unix()) || claims["iat"] != float64(e.clock.Now().Unix()) {
		t.Errorf("claims after refresh: %v", claims)
	}
	next, err := e.st.GetRefreshToken(e.ctx, oauth.Digest(second.RefreshToken))
	if err != nil || next.GrantID != g.ID || next.Parent != oauth.Digest(first.RefreshToken) ||
		!next.ExpiresAt.Equal(e.clock.Now().Add(token.DefaultRefreshTokenLifetime)) {
		t.Fatalf("rotated token %+v %v", next, err)
	}

	// Presenting the spent token again: the whole family is revoked.
	e.clock.Add(time.Minute)
	_, err = e.refresh(publicClient, first.RefreshToken)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
	if g, _ := e.st.GetGrant(e.ctx, g.ID); g.RevokedAt == nil {
		t.Fatal("reuse did not revoke the grant")
	}
	_, err = e.refresh(publicClient, second.RefreshToken)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
	if !strings.Contains(e.logs.String(), `"event":"refresh_token_reuse"`) {
		t.Error("no refresh_token_reuse audit event")
	}
}

func testRefreshConfidentialPost(t *testing.T, e *env) {
	first := e.login(confClient)
	// Registered for basic, refreshing with post: accepted.
	r := e.post("/token", e.refreshForm(first.RefreshToken), postAuth(confClient, secret))
	if r.status != http.StatusOK || r.str("refresh_token") == "" {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func testRefreshScopeAndResource(t *testing.T, e *env) {
	tok := e.login(publicClient, func(ac *store.AuthCode) { ac.Resources = []string{resA, resB} })
	rt := tok.RefreshToken
	auth := publicAuth(publicClient)

	// Narrowing scope affects this access token only.
	r := e.post("/token", e.refreshForm(rt, "scope", "read", "resource", resA), auth)
	if r.status != http.StatusOK || r.str("scope") != "read" {
		t.Fatalf("narrowed refresh: %d %s", r.status, r.body)
	}
	if _, claims := e.verify(r.str("access_token"), resA); claims["scope"] != "read" || claims["aud"] != resA {
		t.Errorf("narrowed claims %v", claims)
	}
	rt = r.str("refresh_token")
	r = e.post("/token", e.refreshForm(rt, "resource", resA), auth)
	if r.status != http.StatusOK || r.str("scope") != "read write" {
		t.Fatalf("scope after narrowing once: %d %s", r.status, r.body)
	}
	rt = r.str("refresh_token")
	// An empty scope parameter is an absent one (RFC 6749 §3.3).
	r = e.post("/token", e.refreshForm(rt, "scope", "", "resource", resA), auth)
	if r.status != http.StatusOK || r.str("scope") != "read write" {
		t.Fatalf("refresh with an empty scope: %d %s", r.status, r.body)
	}
	rt = r.str("refresh_token")

	// Widening is refused and spends nothing.
	for _, tc := range []struct {
		kv   []string
		code string
	}{
		{[]string{"scope", "read admin"}, oauth.CodeInvalidScope},
		{[]string{"scope", "read \"bad\""}, oauth.CodeInvalidScope},
		{[]string{"resource", resOther}, oauth.CodeInvalidTarget},
		{[]string{"resource", resA, "resource", resOther}, oauth.CodeInvalidTarget},
		{[]string{"scope", "read", "scope", "write"}, oauth.CodeInvalidRequest},
		{[]string{"refresh_token", rt}, oauth.CodeInvalidRequest},
	} {
		wantError(t, e.post("/token", e.refreshForm(rt, tc.kv...), auth), http.StatusBadRequest, tc.code)
	}
	if old, err := e.st.GetRefreshToken(e.ctx, oauth.Digest(rt)); err != nil || old.UsedAt != nil {
		t.Fatal("a refused refresh spent the token")
	}

	// Resource narrowing to the opaque resource yields an opaque token.
	r = e.post("/token", e.refreshForm(rt, "resource", resB), auth)
	if r.status != http.StatusOK || !strings.HasPrefix(r.str("access_token"), oauth.PrefixAccessToken) || r.str("scope") != "read" {
		t.Fatalf("refresh for resB: %d %s", r.status, r.body)
	}
}

func testRefreshRejections(t *testing.T, e *env) {
	tok := e.login(publicClient)
	conf := e.login(confClient)

	for _, tc := range []struct {
		name   string
		form   url.Values
		auth   func(*http.Request, url.Values)
		status int
		code   string
	}{
		{"another client's token", e.refreshForm(tok.RefreshToken), basicAuth(otherClient, secret), http.StatusBadRequest, oauth.CodeInvalidGrant},
		{"confidential client's token by a public client", e.refreshForm(conf.RefreshToken), publicAuth(publicClient), http.StatusBadRequest, oauth.CodeInvalidGrant},
		{"confidential client without secret", e.refreshForm(conf.RefreshToken), publicAuth(confClient), http.StatusUnauthorized, oauth.CodeInvalidClient},
		{"unknown token", e.refreshForm(oauth.NewToken(oauth.PrefixRefreshToken)), publicAuth(publicClient), http.StatusBadRequest, oauth.CodeInvalidGrant},
		{"access token as refresh token", e.refreshForm(tok.AccessToken), publicAuth(publicClient), http.StatusBadRequest, oauth.CodeInvalidGrant},
		{"missing token", url.Values{"grant_type": {"refresh_token"}}, publicAuth(publicClient), http.StatusBadRequest, oauth.CodeInvalidRequest},
		{"client without the refresh_token grant", e.refreshForm(tok.RefreshToken), publicAuth(codeOnly), http.StatusBadRequest, oauth.CodeUnauthorizedClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			wantError(t, e.post("/token", tc.form, tc.auth), tc.status, tc.code)
		})
	}
	// A foreign client's attempts neither rotated nor revoked anything.
	for _, rt := range []string{tok.RefreshToken, conf.RefreshToken} {
		if old, err := e.st.GetRefreshToken(e.ctx, oauth.Digest(rt)); err != nil || old.UsedAt != nil {
			t.Fatal("a rejected refresh spent the token")
		}
		if g := e.grantOf(rt); g.RevokedAt != nil {
			t.Fatal("a rejected refresh revoked the grant")
		}
	}
	if _, err := e.refresh(publicClient, tok.RefreshToken); err != nil {
		t.Fatalf("owner's refresh after foreign attempts: %v", err)
	}
}

// TestRefreshUserCheckOutage: when the user check cannot be made (the
// database behind the membership re-check is down), refresh and code
// redemption answer 503 temporarily_unavailable and the grant is kept: it
// works again once the outage is over (security review: an outage used to
// read as "no longer allowed" and revoke the grant for good).
func TestRefreshUserCheckOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.login(publicClient)
	code, verifier := e.code(publicClient)

	e.denied.mu.Lock()
	e.denied.down = true
	e.denied.mu.Unlock()
	_, err := e.refresh(publicClient, tok.RefreshToken)
	wantRetrieveError(t, err, http.StatusServiceUnavailable, oauth.CodeTemporarilyUnavailable)
	if g := e.grantOf(tok.RefreshToken); g.RevokedAt != nil {
		t.Fatal("an outage of the user check revoked the grant")
	}
	_, err = e.exchange(publicClient, code, verifier)
	wantRetrieveError(t, err, http.StatusServiceUnavailable, oauth.CodeTemporarilyUnavailable)

	e.denied.mu.Lock()
	e.denied.down = false
	e.denied.mu.Unlock()
	if _, err := e.refresh(publicClient, tok.RefreshToken); err != nil {
		t.Fatalf("refresh after the outage: %v", err)
	}
}

// A user removed from the allowlist, disabled or deleted loses access at
// the next refresh, and the grant ends.
func TestRefreshRechecksUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	denied := e.login(publicClient)
	disabled := e.login(publicClient, func(ac *store.AuthCode) { ac.UserID = e.bob.ID })

	e.deny(e.alice)
	_, err := e.refresh(publicClient, denied.RefreshToken)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
	if g := e.grantOf(denied.RefreshToken); g.RevokedAt == nil {
		t.Error("grant of a user no longer allowed was not revoked")
	}

	if err := e.st.SetUserDisabled(e.ctx, e.bob.ID, true); err != nil {
		t.Fatal(err)
	}
	_, err = e.refresh(publicClient, disabled.RefreshToken)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
	if g := e.grantOf(disabled.RefreshToken); g.RevokedAt == nil {
		t.Error("grant of a disabled user was not revoked")
	}
	if !strings.Contains(e.logs.String(), `"event":"grant_revoked"`) {
		t.Error("no grant_revoked audit event")
	}
}

func TestRefreshLifetimes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h *token.Handler) {
		h.RefreshTokenLifetime = 24 * time.Hour
		h.GrantLifetime = 36 * time.Hour
		h.AccessTokenLifetime = 2 * time.Hour
	})
	tok := e.login(publicClient)
	if tok.ExpiresIn != 7200 {
		t.Errorf("expires_in %d", tok.ExpiresIn)
	}

	// Idle timeout: a token unused for longer than its lifetime is dead.
	idle := e.login(publicClient)
	e.clock.Add(23 * time.Hour)
	tok, err := e.refresh(publicClient, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(2 * time.Hour)
	_, err = e.refresh(publicClient, idle.RefreshToken)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)

	// Absolute lifetime: the refresh token and access token never outlive
	// the grant, and nothing is issued after it.
	tok, err = e.refresh(publicClient, tok.RefreshToken) // at 25h
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := e.st.GetRefreshToken(e.ctx, oauth.Digest(tok.RefreshToken))
	if !rt.ExpiresAt.Equal(start.Add(36 * time.Hour)) {
		t.Errorf("refresh token expires %v, want the grant's end", rt.ExpiresAt)
	}
	e.clock.Add(10*time.Hour + 30*time.Minute) // 35h30
	tok, err = e.refresh(publicClient, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ExpiresIn != 1800 {
		t.Errorf("access token lives %ds past a grant ending in 1800s", tok.ExpiresIn)
	}
	e.clock.Add(time.Hour)
	_, err = e.refresh(publicClient, tok.RefreshToken)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
}

// N requests race with one refresh token: exactly one gets new tokens.
// The losers presented a spent token, which is reuse, so the grant ends.
func testConcurrentRefresh(t *testing.T, e *env) {
	tok := e.login(publicClient)
	const n = 8
	var (
		wg      sync.WaitGroup
		barrier = make(chan struct{})
		mu      sync.Mutex
		wins    int
		losses  int
	)
	for range n {
		wg.Go(func() {
			<-barrier
			_, err := e.refresh(publicClient, tok.RefreshToken)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
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
	if wins != 1 || losses != n-1 {
		t.Fatalf("%d winners and %d invalid_grant, want exactly one winner", wins, losses)
	}
	if g := e.grantOf(tok.RefreshToken); g.RevokedAt == nil {
		t.Error("grant not revoked after concurrent reuse")
	}
}

func TestObserve(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		got []string
	)
	e := newEnv(t, func(h *token.Handler) {
		h.Observe = func(grantType, outcome string) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, grantType+" "+outcome)
		}
	})
	tok := e.login(publicClient)
	if _, err := e.refresh(publicClient, tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	_, _ = e.refresh(publicClient, tok.RefreshToken)
	e.post("/token", url.Values{"grant_type": {"password"}}, publicAuth(publicClient))
	e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basicAuth(machine, "wrong"))
	want := []string{
		"authorization_code issued", "refresh_token issued", "refresh_token refresh_token_reuse",
		"unknown unsupported_grant_type", "client_credentials invalid_client",
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("observed %q, want %q", got, want)
	}
}
