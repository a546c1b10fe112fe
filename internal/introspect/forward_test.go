package introspect_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/authd/authd/internal/introspect"
)

// TestVerifyForwardsUpstreamToken: a resource configured with
// ForwardUpstreamToken gets the user's upstream token in
// X-Forwarded-Access-Token; other resources, and machine tokens, get the
// header empty (so that it replaces one a client sent); a user without a
// usable upstream token is sent to sign in again. Only the proxy gets the
// token: never a request naming the resource with ?resource=, never one
// from a peer that is not a trusted proxy.
func TestVerifyForwardsUpstreamToken(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	tokens := map[string]string{} // user id → upstream token
	var fromProxy atomic.Bool     // what the server middleware would say
	fromProxy.Store(true)
	e := newEnv(t, func(h *introspect.Handler) {
		h.FromTrustedProxy = func(*http.Request) bool { return fromProxy.Load() }
		h.Policy.Resources[0].ForwardUpstreamToken = "github" // resRoot
		h.UpstreamTokens = func(_ context.Context, userID, upstream string) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			if tok, ok := tokens[userID]; ok && upstream == "github" {
				return tok, nil
			}
			return "", introspect.ErrUpstreamTokenGone
		}
	})
	mu.Lock()
	tokens[e.alice.ID] = "gho_alice_upstream_token"
	mu.Unlock()
	const header = "X-Forwarded-Access-Token"

	alice := e.aliceToken().AccessToken
	r := e.verify(http.MethodGet, alice, fwd(resRoot, "/mcp"))
	if r.status != http.StatusOK || r.header.Get(header) != "gho_alice_upstream_token" {
		t.Fatalf("alice at the forwarding resource: %d, %s %q", r.status, header, r.header.Get(header))
	}

	// The same token at the same resource named with ?resource=, which
	// any holder of the token can call: the header is sent, empty.
	r = e.verify(http.MethodGet, alice, forwarded{}, "resource="+url.QueryEscape(resRoot))
	if vs, ok := r.header[header]; r.status != http.StatusOK || !ok || len(vs) != 1 || vs[0] != "" {
		t.Fatalf("?resource= at the forwarding resource: %d, %s %q", r.status, header, vs)
	}
	// Forwarded headers from a peer that is not a trusted proxy (the
	// server middleware strips them; this layer does not rely on it).
	fromProxy.Store(false)
	r = e.verify(http.MethodGet, alice, fwd(resRoot, "/mcp"))
	if vs, ok := r.header[header]; r.status != http.StatusOK || !ok || len(vs) != 1 || vs[0] != "" {
		t.Fatalf("not from a trusted proxy: %d, %s %q", r.status, header, vs)
	}
	fromProxy.Store(true)

	// Another resource: the header is sent, empty.
	admin := e.login(grantSpec{user: e.alice, scopes: []string{"admin"}, resources: []string{resAdmin}}).AccessToken
	r = e.verify(http.MethodGet, admin, fwd(resRoot, "/admin/x"))
	if vs, ok := r.header[header]; r.status != http.StatusOK || !ok || len(vs) != 1 || vs[0] != "" {
		t.Fatalf("resource without forward_upstream_token: %d, %s %q", r.status, header, vs)
	}

	// A machine token has no user, so no upstream token.
	r = e.verify(http.MethodGet, e.machineToken(resRoot, "read"), fwd(resRoot, "/mcp"))
	if r.status != http.StatusOK || r.header.Get(header) != "" {
		t.Fatalf("machine token: %d, %s %q", r.status, header, r.header.Get(header))
	}

	// Bob has no upstream token kept: 401, so the client signs in again.
	bob := e.login(grantSpec{user: e.bob, scopes: []string{"read"}, resources: []string{resRoot}}).AccessToken
	r = e.verify(http.MethodGet, bob, fwd(resRoot, "/mcp"))
	wantChallenge(t, r, http.StatusUnauthorized, `Bearer error="invalid_token", resource_metadata="`+rootMetadata+`"`)
	if r.header.Get(header) != "" {
		t.Errorf("refusal carries %s", header)
	}
}
