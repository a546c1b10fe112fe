package introspect_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/policy"
)

// TestNginxForwardAuthSecret runs deploy/nginx/mcp.conf in a real nginx
// with the README's forward_upstream_token additions (the secret on the
// auth_request subrequest, X-Forwarded-Access-Token copied onto the
// proxied request) and with authd's own /verify public through the same
// nginx, as when one proxy fronts authd and the MCP server. nginx is a
// trusted proxy. A client calling /verify through it with forged
// X-Forwarded-Host/-Uri (which nginx passes on) and its own access token
// gets no upstream token, not even with a guessed secret; the MCP server
// behind auth_request gets it, and never sees the secret.
func TestNginxForwardAuthSecret(t *testing.T) {
	t.Parallel()
	bin := nginxBinary(t)
	const upstreamToken = "gho_alice_upstream_token"
	e := newEnv(t, func(h *introspect.Handler) {
		h.Policy.Resources = []policy.Resource{{URI: resMCP, Scopes: []string{"mcp:tools"}, RequiredScopes: []string{"mcp:tools"}, ForwardUpstreamToken: "github"}}
		h.FromTrustedProxy = func(*http.Request) bool { return true } // every request comes from nginx
		h.ForwardAuthSecret = forwardSecret
		h.UpstreamTokens = func(context.Context, string, string) (string, error) { return upstreamToken, nil }
	})
	authdRouter := chi.NewRouter()
	e.h.Routes(authdRouter)
	authd := httptest.NewServer(authdRouter)
	t.Cleanup(authd.Close)
	var (
		mu       sync.Mutex
		upstream []http.Header
	)
	mcp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstream = append(upstream, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(mcp.Close)

	client := startNginx(t, bin, map[string]string{
		"server authd:8080;": "server " + authd.Listener.Addr().String() + ";",
		"server mcp:3000;":   "server " + mcp.Listener.Addr().String() + ";",
		// The README's additions for forward_upstream_token.
		"        proxy_pass http://authd/verify;\n": "        proxy_pass http://authd/verify;\n" +
			"        proxy_set_header X-Authd-Forward-Secret \"" + forwardSecret + "\";\n",
		"        auth_request /_authd_verify;\n": "        auth_request /_authd_verify;\n" +
			"        auth_request_set $authd_upstream_token $upstream_http_x_forwarded_access_token;\n" +
			"        proxy_set_header X-Forwarded-Access-Token $authd_upstream_token;\n",
		// authd's public endpoints behind the same nginx, with nginx's
		// defaults: the client's own headers are passed on.
		"    location / {\n": "    location = /verify {\n        proxy_pass http://authd;\n    }\n\n    location / {\n",
	})
	alice := e.login(grantSpec{user: e.alice, scopes: []string{"mcp:tools"}, resources: []string{resMCP}}).AccessToken
	call := func(target string, hd map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+alice)
		for k, v := range hd {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	// The attack: /verify through the trusted nginx, forged forwarded
	// headers naming the protected resource, the client's own token.
	forged := map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mcp.example.com", "X-Forwarded-Uri": "/mcp"}
	for _, secret := range []string{"", "guess-" + forwardSecret} {
		hd := map[string]string{}
		for k, v := range forged {
			hd[k] = v
		}
		if secret != "" {
			hd[introspect.HeaderForwardAuthSecret] = secret
		}
		resp := call("https://mcp.example.com/verify", hd)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/verify through nginx with forged headers: %d (the forged headers did not reach authd: the test no longer shows the attack)", resp.StatusCode)
		}
		if got := resp.Header.Get(introspect.HeaderForwardedAccessToken); got != "" {
			t.Errorf("/verify through nginx with forged headers, secret %q: got the upstream token (%v)", secret, got == upstreamToken)
		}
	}

	// The MCP server behind auth_request gets the token, not the secret.
	if resp := call("https://mcp.example.com/mcp", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("/mcp: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(upstream) != 1 {
		t.Fatalf("MCP server got %d requests, want 1", len(upstream))
	}
	if got := upstream[0].Values(introspect.HeaderForwardedAccessToken); len(got) != 1 || got[0] != upstreamToken {
		t.Errorf("MCP server got %s %q, want the user's upstream token", introspect.HeaderForwardedAccessToken, got)
	}
	if got := upstream[0].Values(introspect.HeaderForwardAuthSecret); len(got) != 0 {
		t.Errorf("MCP server got the forward-auth secret header %q", got)
	}
}
