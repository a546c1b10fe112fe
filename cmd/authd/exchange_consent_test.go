package main

import (
	"strings"
	"testing"
)

// TestTokenExchangeUpstreamNeedsDeclaredScopes: a resource server may get
// the user's upstream token (token_exchange.upstreams, or /verify's
// forward_upstream_token) only if its resource declares upstream_scopes
// for that upstream, which is what the consent page shows the user;
// otherwise the user consented to nothing at that upstream.
func TestTokenExchangeUpstreamNeedsDeclaredScopes(t *testing.T) {
	t.Parallel()
	keeping := strings.Replace(validYAML, "    github: {load_teams: true}\n", "    github: {load_teams: true}\n    store_tokens: true\n", 1)
	const client = `clients:
  - id: rs
    secret: rs-secret-0123456789abcdef
    token_exchange:
      resource_server: https://mcp.example.com/mcp
      upstreams: [github]
`
	bad := keeping + `resources:
  - uri: https://mcp.example.com/mcp
  - uri: https://files.example.com
    forward_upstream_token: github
  - uri: https://empty.example.com
    forward_upstream_token: github
    upstream_scopes: {github: []}
` + client
	_, err := loadConfig(flagsFor(t, "--config", writeFile(t, bad)), envOf(nil))
	if err == nil {
		t.Fatal("upstream hand-out without declared upstream_scopes accepted")
	}
	for _, want := range []string{
		`clients[0].token_exchange.upstreams: resources["https://mcp.example.com/mcp"].upstream_scopes.github`,
		`resources[1].forward_upstream_token: resources[1].upstream_scopes.github`,
		`resources[2].forward_upstream_token: resources[2].upstream_scopes.github`,
		`resources[2].forward_upstream_token: introspection.forward_auth_secret is not set`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	good := keeping + `resources:
  - uri: https://mcp.example.com/mcp
    upstream_scopes: {github: [repo]}
  - uri: https://files.example.com
    forward_upstream_token: github
    upstream_scopes: {github: [read:user]}
introspection:
  forward_auth_secret: nginx-auth-request-secret-0123456789abcdef
` + client
	if _, err := loadConfig(flagsFor(t, "--config", writeFile(t, good)), envOf(nil)); err != nil {
		t.Fatalf("declared upstream hand-out refused: %v", err)
	}
	short := strings.Replace(good, "nginx-auth-request-secret-0123456789abcdef", "too-short", 1)
	if _, err := loadConfig(flagsFor(t, "--config", writeFile(t, short)), envOf(nil)); err == nil ||
		!strings.Contains(err.Error(), "resources[1].forward_upstream_token: introspection.forward_auth_secret is shorter than 32 characters") {
		t.Errorf("short forward_auth_secret: %v", err)
	}
}
