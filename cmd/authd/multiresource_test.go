package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

// TestMultiResourceScopesAgree (issue 15 §2): a request naming two
// resources whose scopes differ gets the same answer at /authorize and at
// /token, from the one resource policy: a token for several resources may
// carry only the scopes every one of them offers (policy.ScopeAllowed).
// A scope the client names that one of them does not offer is
// invalid_scope at both endpoints; a default scope one of them does not
// offer is left out at both.
func TestMultiResourceScopesAgree(t *testing.T) {
	t.Parallel()
	const (
		wide   = "https://wide.example.com/mcp"   // mcp:tools and mcp:admin
		narrow = "https://narrow.example.com/mcp" // mcp:tools only
	)
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(upstreamtest.GitHubUser{
		ID: 1001, Login: "alice", Name: "Alice",
		Emails: []upstreamtest.GitHubEmail{{Email: "alice@example.com", Primary: true, Verified: true}},
		Orgs:   []string{"acme"},
	})
	cfg := filepath.Join(t.TempDir(), "authd.yaml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
keys: {encryption_secret: test-encryption-secret-0123456789abcdef}
scopes:
  - {name: mcp:tools, description: Use the tools}
  - {name: mcp:admin, description: Administer}
default_scopes: [mcp:tools, mcp:admin]
resources:
  - {uri: %s, scopes: [mcp:tools, mcp:admin]}
  - {uri: %s, scopes: [mcp:tools]}
default_resource: %s
upstreams:
  - {id: github, type: github, client_id: %s, client_secret: %s, github: {base_url: %s, api_url: %s, load_teams: true}}
allowlist: {github_orgs: [acme]}
`, wide, narrow, wide, gh.ClientID, gh.ClientSecret, gh.BaseURL(), gh.APIURL())), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	inst := startAuthdWith(t, freeAddr(t), map[string]string{"AUTHD_DATABASE_URL": pgtest.DSN(t)}, gh.Client(), "--config", cfg)

	const redirect = "http://127.0.0.1:45127/callback"
	reg := registerClient(t, inst.URL, map[string]any{
		"client_name": "multi-resource", "redirect_uris": []string{"http://127.0.0.1/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token", "client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
	})
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)
	b := newBrowser(t, gh.Client().Transport, redirect)
	conf := func(scopes ...string) *oauth2.Config {
		return &oauth2.Config{ClientID: id, ClientSecret: secret, RedirectURL: redirect, Scopes: scopes,
			Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token", AuthStyle: oauth2.AuthStyleInHeader}}
	}
	// authorize runs /authorize for resources and returns the redirect's
	// query and the PKCE verifier.
	authorize := func(c *oauth2.Config, resources ...string) (url.Values, string) {
		t.Helper()
		verifier := oauth2.GenerateVerifier()
		u := c.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))
		for _, r := range resources {
			u += "&resource=" + url.QueryEscape(r)
		}
		return b.authorize(t, inst.URL, u), verifier
	}
	clientCredentials := func(scope string, resources ...string) oauthResp {
		t.Helper()
		f := url.Values{"grant_type": {"client_credentials"}, "resource": resources}
		if scope != "" {
			f.Set("scope", scope)
		}
		r, err := tryPostTo(inst.URL, "/token", f, id, secret)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// A scope only the wide resource offers, asked for both resources:
	// refused at both endpoints.
	q, _ := authorize(conf("mcp:tools", "mcp:admin"), wide, narrow)
	if q.Get("error") != "invalid_scope" {
		t.Fatalf("/authorize for both resources with mcp:admin: %v, want invalid_scope", q)
	}
	wantOAuthError(t, "client_credentials for both resources with mcp:admin",
		clientCredentials("mcp:tools mcp:admin", wide, narrow), http.StatusBadRequest, "invalid_scope")

	// No scope named: the defaults, less what either resource does not
	// offer, at both endpoints.
	q, verifier := authorize(conf(), wide, narrow)
	if q.Get("code") == "" {
		t.Fatalf("/authorize for both resources without scope: %v", q)
	}
	tok, err := conf().Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("scope") != "mcp:tools" {
		t.Errorf("authorization_code for both resources without scope: scope %q, want mcp:tools", tok.Extra("scope"))
	}
	if r := clientCredentials("", wide, narrow); r.status != http.StatusOK || r.body["scope"] != "mcp:tools" {
		t.Errorf("client_credentials for both resources without scope: %d %s, want scope mcp:tools", r.status, r.raw)
	}

	// The wide resource alone offers both, at both endpoints; its refresh
	// keeps both.
	q, verifier = authorize(conf("mcp:tools", "mcp:admin"), wide)
	if q.Get("code") == "" {
		t.Fatalf("/authorize for the wide resource with both scopes: %v", q)
	}
	tok, err = conf().Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil || tok.Extra("scope") != "mcp:tools mcp:admin" {
		t.Fatalf("authorization_code for the wide resource: %v scope %v", err, tok.Extra("scope"))
	}
	r, err := tryPostTo(inst.URL, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, id, secret)
	if err != nil || r.status != http.StatusOK || r.body["scope"] != "mcp:tools mcp:admin" {
		t.Fatalf("refresh for the wide resource: %v %d %s", err, r.status, r.raw)
	}
	if r := clientCredentials("mcp:tools mcp:admin", wide); r.status != http.StatusOK || r.body["scope"] != "mcp:tools mcp:admin" {
		t.Errorf("client_credentials for the wide resource: %d %s", r.status, r.raw)
	}
}
