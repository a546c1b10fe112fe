package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// clientScopes is what MCP clients put in scope: the resource's scopes,
// offline_access (MCP SEP-2207, when the server lists it), openid out of
// OpenID Connect habit, and values of their own no server declares.
var clientScopes = []string{"mcp:tools", "offline_access", "openid", "claudeai"}

// TestScopesAsMCPClientsSendThem is issue 16 part 4: with scopes declared,
// offline_access, openid and unknown scopes never fail a request; the
// user consents to, the grant stores and the token response reports only
// what was granted (RFC 6749 §3.3); offline_access is advertised in the
// server's metadata and not in the resource's.
func TestScopesAsMCPClientsSendThem(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	ctx := context.Background()

	var md struct {
		ScopesSupported []string `json:"scopes_supported"`
	}
	getJSON(t, s.inst.URL+"/.well-known/oauth-authorization-server", http.StatusOK, &md)
	if !slices.Equal(md.ScopesSupported, []string{"mcp:tools", "mcp:resources", "offline_access"}) {
		t.Errorf("authorization server scopes_supported %v, want the declared scopes and offline_access", md.ScopesSupported)
	}
	resp, body := get(t, s.inst.URL+"/.well-known/oauth-protected-resource/mcp", http.Header{"X-Forwarded-Host": {"mcp.example.com"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "mcp:tools") || strings.Contains(body, "offline_access") {
		t.Errorf("protected resource metadata (offline_access is no resource scope, SEP-2207): %d %s", resp.StatusCode, body)
	}

	redirect := "http://127.0.0.1:41001/cb"
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", redirect)
	conf.Scopes = clientScopes

	// The consent page asks only for what can be granted.
	b := newBrowser(t, s.github.Client().Transport, redirect)
	page, err := b.c.Get(conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", mcpResource)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if page.StatusCode != http.StatusOK || !strings.Contains(string(raw), "(mcp:tools)") {
		t.Fatalf("want the consent page for mcp:tools, got %d %s\n%s", page.StatusCode, page.Header.Get("Location"), raw)
	}
	for _, dropped := range []string{"offline_access", "openid", "claudeai"} {
		if strings.Contains(string(raw), dropped) {
			t.Errorf("consent page mentions %s", dropped)
		}
	}

	verifier := oauth2.GenerateVerifier()
	q := b.authorize(t, s.inst.URL, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
	if q.Get("code") == "" {
		t.Fatalf("authorization with %v: %v", clientScopes, q)
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	// Refresh tokens follow the client's registered grant_types.
	if tok.Extra("scope") != "mcp:tools" || tok.RefreshToken == "" {
		t.Fatalf("token response scope %q refresh %t, want scope mcp:tools and a refresh token", tok.Extra("scope"), tok.RefreshToken != "")
	}
	if claims := verifyWithJWKS(t, s.inst.URL, tok.AccessToken); claims["scope"] != "mcp:tools" {
		t.Fatalf("access token scope %v", claims["scope"])
	}
	var consented, granted []string
	if err := s.db.QueryRow(ctx, "SELECT scopes FROM consents WHERE client_id = $1", conf.ClientID).Scan(&consented); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow(ctx, "SELECT scopes FROM grants WHERE client_id = $1", conf.ClientID).Scan(&granted); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(consented, []string{"mcp:tools"}) || !slices.Equal(granted, []string{"mcp:tools"}) {
		t.Fatalf("stored consent %v, grant %v; want [mcp:tools]", consented, granted)
	}

	// A refresh sending the same scope list keeps working.
	r := s.token(t, url.Values{"grant_type": {"refresh_token"}, "client_id": {conf.ClientID}, "refresh_token": {tok.RefreshToken},
		"scope": {strings.Join(clientScopes, " ")}})
	if r.status != http.StatusOK || r.body["scope"] != "mcp:tools" || r.body["refresh_token"] == nil {
		t.Fatalf("refresh with %v: %d %s", clientScopes, r.status, r.raw)
	}
	// Narrowing to a known scope outside the grant is still refused.
	r = s.token(t, url.Values{"grant_type": {"refresh_token"}, "client_id": {conf.ClientID}, "refresh_token": {r.body["refresh_token"].(string)},
		"scope": {"mcp:resources offline_access"}})
	wantOAuthError(t, "refresh asking for more than the grant", r, http.StatusBadRequest, "invalid_scope")

	// A client that did not register refresh_token gets none, offline_access or not.
	noRefresh := registerClient(t, s.inst.URL, map[string]any{
		"client_name": "no refresh", "redirect_uris": []string{"http://127.0.0.1/cb"}, "token_endpoint_auth_method": "none",
	})["client_id"].(string)
	conf2 := s.oauthConfig(noRefresh, "", redirect)
	conf2.Scopes = clientScopes
	tok2 := s.tokens(t, conf2)
	if tok2.RefreshToken != "" || tok2.Extra("scope") != "mcp:tools" {
		t.Fatalf("client without the refresh_token grant: refresh %t scope %q", tok2.RefreshToken != "", tok2.Extra("scope"))
	}

	// client_credentials: the same rule.
	cc := s.confidentialClient(t, "https://app.example.com/cb")
	r = s.post(t, "/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"claudeai mcp:tools openid offline_access"}, "resource": {mcpResource}},
		cc["client_id"].(string), cc["client_secret"].(string))
	if r.status != http.StatusOK || r.body["scope"] != "mcp:tools" {
		t.Fatalf("client_credentials with unknown scopes: %d %s", r.status, r.raw)
	}
	// Only dropped scopes: as if none were asked for (the defaults).
	r = s.post(t, "/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"offline_access claudeai"}, "resource": {mcpResource}},
		cc["client_id"].(string), cc["client_secret"].(string))
	if r.status != http.StatusOK || r.body["scope"] != "mcp:tools" {
		t.Fatalf("client_credentials with only dropped scopes: %d %s", r.status, r.raw)
	}
}

// TestUnknownScopesReject: unknown_scopes: reject keeps the strict answer
// for undeclared scopes, while offline_access and openid still pass.
func TestUnknownScopesReject(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, map[string]string{"AUTHD_UNKNOWN_SCOPES": "reject"})
	redirect := "http://127.0.0.1:41002/cb"
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", redirect)
	conf.Scopes = []string{"mcp:tools", "offline_access", "openid"}
	tok := s.tokens(t, conf)
	if tok.Extra("scope") != "mcp:tools" || tok.RefreshToken == "" {
		t.Fatalf("strict mode with offline_access and openid: scope %q refresh %t", tok.Extra("scope"), tok.RefreshToken != "")
	}

	// An unknown scope is refused before sign-in, by an error redirect.
	b := newBrowser(t, s.github.Client().Transport, redirect)
	conf.Scopes = clientScopes
	q := b.authorize(t, s.inst.URL, conf.AuthCodeURL("st2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", mcpResource)))
	if q.Get("error") != "invalid_scope" || q.Get("state") != "st2" || !strings.Contains(q.Get("error_description"), "claudeai") {
		t.Fatalf("unknown scope in strict mode: %v", q)
	}
	r := s.token(t, url.Values{"grant_type": {"refresh_token"}, "client_id": {conf.ClientID}, "refresh_token": {tok.RefreshToken}, "scope": {"mcp:tools claudeai"}})
	wantOAuthError(t, "refresh with an unknown scope in strict mode", r, http.StatusBadRequest, "invalid_scope")
}
