package introspect_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/store"
)

// TestTokenAndVerifyShareOnePolicy: /token, /introspect and /verify read
// one policy value (issue 15 §2), so what it says about a resource — its
// identity claims and its required scopes — is what the JWT carries, what
// introspection answers and what /verify enforces. The env hands both
// handlers the same *policy.Policy; this test changes that value once, in
// place, and checks that all three follow. Were /introspect and /verify
// given a resource list of their own (as cmd/authd built one before),
// the JWT would carry claims the answers leave out, and /verify would let
// a read-only token through.
func TestTokenAndVerifyShareOnePolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h *introspect.Handler) {
		root := &h.Policy.Resources[0] // resRoot
		root.Claims = idclaims.Set{Name: true, Groups: true, Upstream: true}
		root.RequiredScopes = []string{"write"}
	})
	carol, err := e.st.UpsertUser(e.ctx, store.User{
		Provider: "dev", Subject: "carol-id", Login: "carol", Name: "Carol",
		Email: "carol@example.com", EmailVerified: true, Groups: []string{"acme", "acme/ops"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"preferred_username": "carol", "email": "carol@example.com", // tokens.identity_claims
		"name": "Carol", "groups": []any{"acme", "acme/ops"},
		"upstream_provider": "dev", "upstream_id": "carol-id", "upstream_login": "carol",
	}
	identity := func(m map[string]any) string {
		out := map[string]any{}
		for k := range want {
			if v, ok := m[k]; ok {
				out[k] = v
			}
		}
		return fmt.Sprint(out)
	}

	rw := e.login(grantSpec{user: carol, scopes: []string{"read", "write"}, resources: []string{resRoot}}).AccessToken
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(rw, claims); err != nil {
		t.Fatalf("the access token is not a JWT: %v", err)
	}
	if got := identity(claims); got != fmt.Sprint(want) {
		t.Errorf("JWT identity claims %s, want %v", got, want)
	}
	if got := identity(wantActive(t, e.introspect(rw)).json); got != fmt.Sprint(want) {
		t.Errorf("introspection identity claims %s, want %v", got, want)
	}
	r := e.verify(http.MethodGet, rw, fwd(resRoot, "/"))
	if r.status != http.StatusOK {
		t.Fatalf("/verify of a token with the required scope: %d %s", r.status, r.body)
	}
	for h, v := range map[string]string{
		introspect.HeaderUser: "carol", introspect.HeaderEmail: "carol@example.com",
		introspect.HeaderName: "Carol", introspect.HeaderGroups: "acme,acme/ops",
		introspect.HeaderUpstreamProvider: "dev", introspect.HeaderUpstreamID: "carol-id", introspect.HeaderUpstreamLogin: "carol",
	} {
		if got := r.header.Get(h); got != v {
			t.Errorf("/verify %s = %q, want %q", h, got, v)
		}
	}

	// The policy's required scope, not the one the env started with
	// (read), is what /verify asks a token /token issued for resRoot for.
	ro := e.login(grantSpec{user: carol, scopes: []string{"read"}, resources: []string{resRoot}}).AccessToken
	wantChallenge(t, e.verify(http.MethodGet, ro, fwd(resRoot, "/")), http.StatusForbidden,
		`Bearer error="insufficient_scope", scope="write", resource_metadata="`+rootMetadata+`"`)
}
