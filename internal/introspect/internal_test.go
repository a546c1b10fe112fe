package introspect

import (
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"

	"github.com/authd/authd/internal/policy"
)

func TestMetadataURL(t *testing.T) {
	for resource, want := range map[string]string{
		"https://mcp.example.com":          "https://mcp.example.com/.well-known/oauth-protected-resource",
		"https://mcp.example.com/mcp":      "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
		"https://mcp.example.com/a/b/":     "https://mcp.example.com/.well-known/oauth-protected-resource/a/b/",
		"https://mcp.example.com:8443/mcp": "https://mcp.example.com:8443/.well-known/oauth-protected-resource/mcp",
		"https://mcp.example.com/a%20b":    "https://mcp.example.com/.well-known/oauth-protected-resource/a%20b",
		"https://mcp.example.com/x?v=1":    "https://mcp.example.com/.well-known/oauth-protected-resource/x?v=1",
	} {
		if got := metadataURL(resource); got != want {
			t.Errorf("metadataURL(%q) = %q, want %q", resource, got, want)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for uri, want := range map[string]string{
		"/":                     "/",
		"/mcp":                  "/mcp",
		"/mcp/":                 "/mcp",
		"/mcp?x=/admin":         "/mcp",
		"/public/../admin":      "/admin",
		"/public/%2e%2e/admin":  "/admin",
		"/public/%2E%2E/admin":  "/admin",
		"/../../admin":          "/admin",
		"//admin//x":            "/admin/x",
		"/a/./b":                "/a/b",
		"/admin%2Fx":            "/admin/x",
		"/mcp/..%2f..%2fadmin/": "/admin",
	} {
		got, err := cleanPath(uri)
		if err != nil || got != want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", uri, got, err, want)
		}
	}
	for _, uri := range []string{"", "mcp", "https://evil.example.com/", "*", "/%zz"} {
		if got, err := cleanPath(uri); err == nil {
			t.Errorf("cleanPath(%q) = %q, want an error", uri, got)
		}
	}
}

func TestCovers(t *testing.T) {
	m, err := newResourceMatcher(policy.Resource{URI: "https://mcp.example.com/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"/mcp": true, "/mcp/x": true, "/mcpx": false, "/": false, "/MCP": false, "/x/mcp": false} {
		if m.covers(p) != want {
			t.Errorf("covers(%q) = %v", p, !want)
		}
	}
	if _, err := newResourceMatcher(policy.Resource{URI: "https://MCP.example.com/"}); err == nil {
		t.Error("a non-canonical resource URI was accepted: tokens (canonical aud) could never match it")
	}
}

func TestTokenShapes(t *testing.T) {
	for s, want := range map[string]bool{
		"abc": true, "a-._~+/": true, "abc==": true, "a=b": false, "=": false, "": false, "a b": false, "a\tb": false,
	} {
		if isToken68(s) != want {
			t.Errorf("isToken68(%q) = %v", s, !want)
		}
	}
}

func TestChallengeQuoting(t *testing.T) {
	m := resourceMatcher{Resource: policy.Resource{RequiredScopes: []string{"a", "b"}}, metadataURL: `https://h/.well-known/oauth-protected-resource?q="x"\`}
	want := `Bearer error="invalid_token", scope="a b", resource_metadata="https://h/.well-known/oauth-protected-resource?q=\"x\"\\"`
	if got := m.challenge("invalid_token", m.RequiredScopes); got != want {
		t.Errorf("challenge = %s, want %s", got, want)
	}
}

// FuzzResourceOf: whatever a proxy forwards, resource matching never
// panics, and a match covers the cleaned request path, which has no dot
// segments left.
func FuzzResourceOf(f *testing.F) {
	for _, s := range []string{"/mcp", "/public/../mcp", "//mcp", "/mcp/%2e%2e/x", "/%zz", "mcp", "/mcp?x", "/\x00"} {
		f.Add("https", "mcp.example.com", s)
	}
	f.Add("http", "MCP.example.com:80", "/")
	f.Add("https", "[::1]:443", "/mcp")
	h := &Handler{Policy: &policy.Policy{Resources: []policy.Resource{{URI: "https://mcp.example.com"}, {URI: "https://mcp.example.com/mcp"}}}}
	h.prepare()
	f.Fuzz(func(t *testing.T, proto, host, uri string) {
		r := httptest.NewRequest(http.MethodGet, "/verify", nil)
		r.Header.Set("X-Forwarded-Proto", proto)
		r.Header.Set("X-Forwarded-Host", host)
		r.Header.Set("X-Forwarded-Uri", uri)
		m, err := h.resourceOf(r)
		if err != nil || m == nil {
			return
		}
		// Header values arrive trimmed (RFC 9110 §5.5), as forwarded reads them.
		p, err := cleanPath(strings.TrimSpace(uri))
		if err != nil {
			t.Fatalf("matched %q with an invalid path", uri)
		}
		if !m.covers(p) || p != path.Clean(p) || strings.Contains(p, "/../") {
			t.Fatalf("%q: matched %s for path %q", uri, m.URI, p)
		}
	})
}
