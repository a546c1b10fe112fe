package token_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/token"
)

// TestUnknownScopes: /token applies policy.Requested. By default scopes the
// server does not declare are dropped and the response's scope says what
// was granted (RFC 6749 §3.3); offline_access and openid are dropped in
// both modes; with RejectUnknownScopes an undeclared scope is invalid_scope.
// Known scopes outside what the client, resource or grant allows stay
// invalid_scope either way.
func TestUnknownScopes(t *testing.T) {
	t.Parallel()
	cc := func(scope string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "scope": {scope}, "resource": {resA}}
	}
	t.Run("ignore", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, tc := range []struct{ scope, want string }{
			{"read delete", "read"},
			{"claudeai write offline_access openid", "write"},
			{"offline_access openid claudeai", "read"}, // nothing grantable: the default
		} {
			r := e.post("/token", cc(tc.scope), basicAuth(confClient, secret))
			if r.status != http.StatusOK || r.str("scope") != tc.want {
				t.Errorf("client_credentials scope=%q: %d %s, want scope %q", tc.scope, r.status, r.body, tc.want)
			}
		}
		wantError(t, e.post("/token", cc("write admin"), basicAuth(confClient, secret)), http.StatusBadRequest, oauth.CodeInvalidScope)

		tok := e.login(publicClient)
		r := e.post("/token", e.refreshForm(tok.RefreshToken, "scope", "read offline_access claudeai"), publicAuth(publicClient))
		if r.status != http.StatusOK || r.str("scope") != "read" {
			t.Fatalf("refresh narrowing with dropped scopes: %d %s", r.status, r.body)
		}
		r = e.post("/token", e.refreshForm(r.str("refresh_token"), "scope", "offline_access"), publicAuth(publicClient))
		if r.status != http.StatusOK || r.str("scope") != "read write" {
			t.Fatalf("refresh with only offline_access keeps the grant's scope: %d %s", r.status, r.body)
		}
		wantError(t, e.post("/token", e.refreshForm(r.str("refresh_token"), "scope", "read admin"), publicAuth(publicClient)), http.StatusBadRequest, oauth.CodeInvalidScope)
	})
	t.Run("reject", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(h *token.Handler) { h.Policy.RejectUnknownScopes = true })
		wantError(t, e.post("/token", cc("read delete"), basicAuth(confClient, secret)), http.StatusBadRequest, oauth.CodeInvalidScope)
		r := e.post("/token", cc("read offline_access openid"), basicAuth(confClient, secret))
		if r.status != http.StatusOK || r.str("scope") != "read" {
			t.Fatalf("protocol scopes in reject mode: %d %s", r.status, r.body)
		}
		tok := e.login(publicClient)
		wantError(t, e.post("/token", e.refreshForm(tok.RefreshToken, "scope", "read claudeai"), publicAuth(publicClient)), http.StatusBadRequest, oauth.CodeInvalidScope)
	})
}
