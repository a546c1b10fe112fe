package token_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/token"
)

// TestMultiResourceScopes (issue 15 §2): a token for several resources
// carries only the scopes every one of them offers — the rule /authorize
// applies (policy.ScopeAllowed). resA offers read and write, resB only
// read. A grant holding write for both (authorized before resB stopped
// offering it, say) yields read for both and read write for resA alone,
// at code redemption and at refresh; client_credentials refuses write for
// both when asked, and leaves it out of the defaults.
func TestMultiResourceScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h *token.Handler) { h.Policy.DefaultScopes = []string{"read", "write"} })
	both := func(ac *store.AuthCode) { ac.Resources = []string{resA, resB} }
	scopeOf := func(what, access, want string, resp string) {
		t.Helper()
		if resp != want {
			t.Errorf("%s: response scope %q, want %q", what, resp, want)
		}
		if strings.HasPrefix(access, oauth.PrefixAccessToken) {
			at, err := e.st.GetAccessToken(e.ctx, oauth.Digest(access))
			if err != nil || oauth.JoinScope(at.Scopes) != want {
				t.Errorf("%s: stored token scopes %v (%v), want %q", what, at.Scopes, err, want)
			}
		}
	}

	// authorization_code.
	code, verifier := e.code(publicClient, both)
	tok, err := e.exchange(publicClient, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	scopeOf("code for both", tok.AccessToken, "read", tok.Extra("scope").(string))
	code, verifier = e.code(publicClient, both)
	narrowed, err := e.exchange(publicClient, code, verifier, oauth2.SetAuthURLParam("resource", resA))
	if err != nil {
		t.Fatal(err)
	}
	scopeOf("code narrowed to resA", narrowed.AccessToken, "read write", narrowed.Extra("scope").(string))

	// refresh_token: the grant keeps write; each token gets what its
	// audience offers.
	r := e.post("/token", e.refreshForm(tok.RefreshToken), publicAuth(publicClient))
	if r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	scopeOf("refresh for both", r.str("access_token"), "read", r.str("scope"))
	r = e.post("/token", e.refreshForm(r.str("refresh_token"), "resource", resA), publicAuth(publicClient))
	if r.status != http.StatusOK {
		t.Fatalf("refresh for resA: %d %s", r.status, r.body)
	}
	scopeOf("refresh narrowed to resA", r.str("access_token"), "read write", r.str("scope"))

	// client_credentials.
	cc := func(scope string) url.Values {
		f := url.Values{"grant_type": {"client_credentials"}, "resource": {resA, resB}}
		if scope != "" {
			f.Set("scope", scope)
		}
		return f
	}
	wantError(t, e.post("/token", cc("read write"), basicAuth(confClient, secret)), http.StatusBadRequest, oauth.CodeInvalidScope)
	r = e.post("/token", cc(""), basicAuth(confClient, secret))
	if r.status != http.StatusOK {
		t.Fatalf("client_credentials defaults for both: %d %s", r.status, r.body)
	}
	scopeOf("client_credentials defaults for both", r.str("access_token"), "read", r.str("scope"))
	r = e.post("/token", cc("read"), basicAuth(confClient, secret))
	if r.status != http.StatusOK {
		t.Fatalf("client_credentials read for both: %d %s", r.status, r.body)
	}
	scopeOf("client_credentials read for both", r.str("access_token"), "read", r.str("scope"))
}
