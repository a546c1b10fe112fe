package introspect_test

import (
	"context"
	"errors"
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
// usable upstream token is sent to sign in again. Only the proxy's auth
// subrequest gets the token: never a request naming the resource with
// ?resource=, never one from a peer that is not a trusted proxy, never
// one without the forward-auth secret (a client calling /verify through
// the same trusted proxy with forged X-Forwarded-* headers).
func TestVerifyForwardsUpstreamToken(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	tokens := map[string]string{} // user id → upstream token
	var fromProxy atomic.Bool     // what the server middleware would say
	fromProxy.Store(true)
	var upstreamDown atomic.Bool
	e := newEnv(t, func(h *introspect.Handler) {
		h.FromTrustedProxy = func(*http.Request) bool { return fromProxy.Load() }
		h.ForwardAuthSecret = forwardSecret
		h.Policy.Resources[0].ForwardUpstreamToken = "github" // resRoot
		h.UpstreamTokens = func(_ context.Context, userID, upstream string) (string, error) {
			if upstreamDown.Load() {
				return "", errors.New("github: token endpoint unreachable")
			}
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
	// A client reaching /verify through the trusted proxy that fronts
	// authd, with X-Forwarded-Host/-Uri it forged and its own token: no
	// secret, so the header is sent, empty.
	r := e.verify(http.MethodGet, alice, fwd(resRoot, "/mcp"))
	if vs, ok := r.header[header]; r.status != http.StatusOK || !ok || len(vs) != 1 || vs[0] != "" {
		t.Fatalf("forged forwarded headers through the trusted proxy: %d, %s %q", r.status, header, vs)
	}
	// A wrong secret (and an empty one) likewise.
	for _, secret := range []string{forwardSecret[:len(forwardSecret)-1] + "x", forwardSecret + "x", " "} {
		r = e.verifyWithSecret(alice, secret, fwd(resRoot, "/mcp"))
		if vs, ok := r.header[header]; r.status != http.StatusOK || !ok || len(vs) != 1 || vs[0] != "" {
			t.Fatalf("wrong forward-auth secret %q: %d, %s %q", secret, r.status, header, vs)
		}
	}

	// The proxy's auth subrequest, with the secret.
	r = e.verifyWithSecret(alice, forwardSecret, fwd(resRoot, "/mcp"))
	if r.status != http.StatusOK || r.header.Get(header) != "gho_alice_upstream_token" {
		t.Fatalf("alice at the forwarding resource: %d, %s %q", r.status, header, r.header.Get(header))
	}

	// The same token at the same resource named with ?resource=, which
	// any holder of the token can call: the header is sent, empty.
	r = e.verifyWithSecret(alice, forwardSecret, forwarded{}, "resource="+url.QueryEscape(resRoot))
	if vs, ok := r.header[header]; r.status != http.StatusOK || !ok || len(vs) != 1 || vs[0] != "" {
		t.Fatalf("?resource= at the forwarding resource: %d, %s %q", r.status, header, vs)
	}
	// Forwarded headers from a peer that is not a trusted proxy (the
	// server middleware strips them; this layer does not rely on it).
	fromProxy.Store(false)
	r = e.verifyWithSecret(alice, forwardSecret, fwd(resRoot, "/mcp"))
	if vs, ok := r.header[header]; r.status != http.StatusOK || !ok || len(vs) != 1 || vs[0] != "" {
		t.Fatalf("not from a trusted proxy: %d, %s %q", r.status, header, vs)
	}
	fromProxy.Store(true)

	// Another resource: the header is sent, empty.
	admin := e.login(grantSpec{user: e.alice, scopes: []string{"admin"}, resources: []string{resAdmin}}).AccessToken
	r = e.verifyWithSecret(admin, forwardSecret, fwd(resRoot, "/admin/x"))
	if vs, ok := r.header[header]; r.status != http.StatusOK || !ok || len(vs) != 1 || vs[0] != "" {
		t.Fatalf("resource without forward_upstream_token: %d, %s %q", r.status, header, vs)
	}

	// A machine token has no user, so no upstream token.
	r = e.verifyWithSecret(e.machineToken(resRoot, "read"), forwardSecret, fwd(resRoot, "/mcp"))
	if r.status != http.StatusOK || r.header.Get(header) != "" {
		t.Fatalf("machine token: %d, %s %q", r.status, header, r.header.Get(header))
	}

	// Bob has no upstream token kept: 401, so the client signs in again.
	bob := e.login(grantSpec{user: e.bob, scopes: []string{"read"}, resources: []string{resRoot}}).AccessToken
	r = e.verifyWithSecret(bob, forwardSecret, fwd(resRoot, "/mcp"))
	wantChallenge(t, r, http.StatusUnauthorized, `Bearer error="invalid_token", resource_metadata="`+rootMetadata+`"`)
	if r.header.Get(header) != "" {
		t.Errorf("refusal carries %s", header)
	}

	// The upstream is down: 503 with Retry-After (the proxy retries), not
	// a 500, and no token.
	upstreamDown.Store(true)
	r = e.verifyWithSecret(alice, forwardSecret, fwd(resRoot, "/mcp"))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.header.Get(header) != "" {
		t.Errorf("upstream down: %d, Retry-After %q, %s %q; want 503 with Retry-After and no token", r.status, r.header.Get("Retry-After"), header, r.header.Get(header))
	}
}

// forwardSecret is the test's introspection.forward_auth_secret.
const forwardSecret = "proxy-only-forward-auth-secret-0123456789"

// verifyWithSecret calls /verify as the ForwardAuth proxy's auth
// subrequest: GET, with the forward-auth secret header.
func (e *env) verifyWithSecret(tok, secret string, f forwarded, query ...string) reply {
	e.t.Helper()
	target := e.srv.URL + "/verify"
	if len(query) > 0 {
		target += "?" + query[0]
	}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set(introspect.HeaderForwardAuthSecret, secret)
	setForwarded(req, f)
	return e.do(req)
}
