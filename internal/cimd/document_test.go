package cimd

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

const testID = "https://client.example.com/oauth/metadata.json"

func TestParseDocument(t *testing.T) {
	with := func(edit func(d map[string]any)) []byte {
		d := validDoc(testID)
		edit(d)
		b, _ := json.Marshal(d)
		return b
	}
	m, err := ParseDocument(testID, with(func(map[string]any) {}))
	if err != nil {
		t.Fatal(err)
	}
	if m.ClientName != "Example MCP Client" || m.TokenEndpointAuthMethod != "none" || len(m.RedirectURIs) != 2 {
		t.Fatalf("metadata %+v", m)
	}
	// No method stated: a public client (a document cannot hold a secret).
	m, err = ParseDocument(testID, with(func(d map[string]any) { delete(d, "token_endpoint_auth_method") }))
	if err != nil || m.TokenEndpointAuthMethod != "none" {
		t.Fatalf("absent auth method: %v %q", err, m.TokenEndpointAuthMethod)
	}

	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"not JSON", []byte(`<html>`), "not a JSON object"},
		{"array", []byte(`[]`), "not a JSON object"},
		{"null", []byte(`null`), "not a JSON object"},
		{"trailing data", []byte(`{"client_id":"x"} {}`), "not a JSON object"},
		{"no client_id", with(func(d map[string]any) { delete(d, "client_id") }), "has no client_id"},
		{"client_id differs", with(func(d map[string]any) { d["client_id"] = "https://evil.example.com/oauth/metadata.json" }), "client_id is not the URL"},
		{"client_id differs by port", with(func(d map[string]any) { d["client_id"] = "https://client.example.com:443/oauth/metadata.json" }), "client_id is not the URL"},
		{"client_id differs by case", with(func(d map[string]any) { d["client_id"] = "https://Client.example.com/oauth/metadata.json" }), "client_id is not the URL"},
		{"client_id not a string", with(func(d map[string]any) { d["client_id"] = 7 }), "client_id must be a string"},
		{"no client_name", with(func(d map[string]any) { delete(d, "client_name") }), "has no client_name"},
		{"blank client_name", with(func(d map[string]any) { d["client_name"] = "  " }), "has no client_name"},
		{"client_name with RLO", with(func(d map[string]any) { d["client_name"] = "Good\u202eApp" }), "invisible formatting"},
		{"no redirect_uris", with(func(d map[string]any) { delete(d, "redirect_uris") }), "has no redirect_uris"},
		{"empty redirect_uris", with(func(d map[string]any) { d["redirect_uris"] = []string{} }), "has no redirect_uris"},
		{"redirect_uris not strings", with(func(d map[string]any) { d["redirect_uris"] = []any{1} }), "array of strings"},
		{"http redirect", with(func(d map[string]any) { d["redirect_uris"] = []string{"http://evil.example.com/cb"} }), "http is allowed only for loopback"},
		{"javascript redirect", with(func(d map[string]any) { d["redirect_uris"] = []string{"javascript:alert(1)"} }), "not allowed"},
		{"fragment redirect", with(func(d map[string]any) { d["redirect_uris"] = []string{"https://a.example.com/cb#x"} }), "fragment"},
		{"wildcard redirect host", with(func(d map[string]any) { d["redirect_uris"] = []string{"https://*.example.com/cb"} }), "host"},
		{"redirect with a code in its query", with(func(d map[string]any) { d["redirect_uris"] = []string{"https://a.example.com/cb?code=x"} }), "must not carry code"},
		{"redirect with a state in its query", with(func(d map[string]any) { d["redirect_uris"] = []string{"https://a.example.com/cb?state=x"} }), "must not carry state"},
		{"client_secret", with(func(d map[string]any) { d["client_secret"] = "s3cret" }), "must not contain client_secret"},
		{"client_secret_expires_at", with(func(d map[string]any) { d["client_secret_expires_at"] = 0 }), "must not contain client_secret_expires_at"},
		{"client_secret_basic", with(func(d map[string]any) { d["token_endpoint_auth_method"] = "client_secret_basic" }), "needs a shared secret"},
		{"client_secret_post", with(func(d map[string]any) { d["token_endpoint_auth_method"] = "client_secret_post" }), "needs a shared secret"},
		{"private_key_jwt", with(func(d map[string]any) { d["token_endpoint_auth_method"] = "private_key_jwt" }), "private_key_jwt is not supported by this server"},
		{"client_credentials", with(func(d map[string]any) { d["grant_types"] = []string{"authorization_code", "client_credentials"} }), "client_credentials is not available"},
		{"no code grant", with(func(d map[string]any) { d["grant_types"] = []string{"refresh_token"} }), "must include authorization_code"},
		{"token response type", with(func(d map[string]any) { d["response_types"] = []string{"token"} }), "response type token"},
		{"bad application_type", with(func(d map[string]any) { d["application_type"] = "desktop" }), "application_type"},
		{"javascript logo", with(func(d map[string]any) { d["logo_uri"] = "javascript:alert(1)" }), "logo_uri must be an https URL"},
		{"bad scope", with(func(d map[string]any) { d["scope"] = "a\"b" }), "scope"},
		// Issue 16 part 6: text that is not UTF-8, lone surrogates and a
		// repeated member (which copy would count?) make a document unusable.
		{"repeated client_id", []byte(`{"client_id":"` + testID + `","client_id":"https://evil.example.com/m.json","client_name":"x","redirect_uris":["https://a.example.com/cb"]}`), "client_id appears more than once"},
		{"repeated redirect_uris", []byte(`{"client_id":"` + testID + `","client_name":"x","redirect_uris":["https://a.example.com/cb"],"redirect_uris":["https://evil.example.com/cb"]}`), "redirect_uris appears more than once"},
		{"lone surrogate", []byte(`{"client_id":"` + testID + `","client_name":"\ud800","redirect_uris":["https://a.example.com/cb"]}`), "client_name is not valid text"},
		{"invalid UTF-8", []byte(`{"client_id":"` + testID + `","client_name":"x","contacts":["` + "\xff" + `"],"redirect_uris":["https://a.example.com/cb"]}`), "contacts is not valid text"},
	} {
		_, err := ParseDocument(testID, tc.body)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestParseClientID(t *testing.T) {
	for _, id := range []string{
		"https://claude.ai/oauth/mcp-oauth-client-metadata",
		"https://example.com:8443/client.json",
		"https://example.com/c?v=1",
		"https://93.184.216.34/client",
	} {
		if _, err := ParseClientID(id); err != nil {
			t.Errorf("%s refused: %v", id, err)
		}
	}
	for id, want := range map[string]string{
		"http://example.com/client":            "https",
		"https://example.com":                  "path",
		"https://example.com/":                 "path",
		"https://user:pw@example.com/c":        "user information",
		"https://example.com/c#frag":           "fragment",
		"https://example.com/a/../c":           ". or ..",
		"https://example.com/a/./c":            ". or ..",
		"https://example.com/a/%2e%2E/c":       ". or ..",
		"https://example.com/a b":              "whitespace",
		"https:///c":                           "host",
		"https://example.com:x/c":              "",
		"https://" + strings.Repeat("a", 2001): "too long",
	} {
		_, err := ParseClientID(id)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseClientID(%q) = %v, want error containing %q", id, err, want)
		}
	}
}

func TestPolicy(t *testing.T) {
	p := Policy{
		AllowedHosts:   []string{"claude.ai", ".example.com"},
		DeniedHosts:    []string{"bad.example.com"},
		BlockedClients: []string{"https://claude.ai/blocked"},
	}
	for id, ok := range map[string]bool{
		"https://claude.ai/oauth/meta":    true,
		"https://CLAUDE.AI/oauth/meta":    true,
		"https://app.example.com/meta":    true,
		"https://a.b.example.com/meta":    true,
		"https://example.com/meta":        false, // ".example.com" means subdomains
		"https://evilexample.com/meta":    false,
		"https://claude.ai.evil.net/meta": false,
		"https://bad.example.com/meta":    false,
		"https://claude.ai/blocked":       false,
		"https://chatgpt.com/oauth/meta":  false,
	} {
		u, err := url.Parse(id)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.check(id, u) == ""; got != ok {
			t.Errorf("%s: accepted %v, want %v (%s)", id, got, ok, p.check(id, u))
		}
	}
	// Without an allowlist only the denials apply.
	p.AllowedHosts = nil
	u, _ := url.Parse("https://chatgpt.com/meta")
	if r := p.check(u.String(), u); r != "" {
		t.Errorf("no allowlist: %s", r)
	}
}

func TestConfigValidate(t *testing.T) {
	if errs := DefaultConfig().Validate(); len(errs) != 0 {
		t.Fatalf("defaults: %v", errs)
	}
	c := DefaultConfig()
	c.MaxDocumentBytes = 10
	c.FetchTimeout = 0
	c.MinCache = time.Hour
	c.MaxCache = time.Minute
	c.AllowedHosts = []string{"https://claude.ai", "*.example.com", ""}
	c.DeniedHosts = []string{"Example.com"}
	c.BlockedClients = []string{"http://x.example.com/c"}
	errs := c.Validate()
	var text []string
	for _, e := range errs {
		text = append(text, e.Error())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{"max_document_bytes", "fetch_timeout", "max_cache", "allowed_hosts: \"https://claude.ai\"", "allowed_hosts: \"*.example.com\"", "allowed_hosts: \"\"", "denied_hosts: \"Example.com\" must be lower case", "blocked_clients"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
	if !slices.ContainsFunc(errs, func(e error) bool { return strings.HasPrefix(e.Error(), "max_cache") }) {
		t.Error("errors must start with the key name")
	}
}
