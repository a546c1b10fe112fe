package clientmeta_test

import (
	"strings"
	"testing"

	"github.com/authd/authd/internal/clientmeta"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/store"
)

// The rules every client's metadata passes are the same for registered
// clients and metadata documents; what differs is stated per source.
func TestRulesShared(t *testing.T) {
	valid := store.ClientMetadata{
		ClientName:   "App",
		RedirectURIs: []string{"https://app.example.com/cb"},
	}
	sources := map[store.ClientSource]clientmeta.Rules{
		store.SourceDynamic:  {Source: store.SourceDynamic, Grants: grants.Default(), MaxContacts: 5},
		store.SourceMetadata: {Source: store.SourceMetadata, Grants: grants.Default(), MaxContacts: 5},
	}
	for src, r := range sources {
		m, err := r.Validate(valid)
		if err != nil {
			t.Fatalf("%s: valid metadata refused: %v", src, err)
		}
		if len(m.GrantTypes) != 1 || m.GrantTypes[0] != "authorization_code" || len(m.ResponseTypes) != 1 {
			t.Errorf("%s: RFC 7591 defaults not applied: %+v", src, m)
		}
		// Valid output validates again to itself.
		if again, err := r.Validate(m); err != nil || again.TokenEndpointAuthMethod != m.TokenEndpointAuthMethod {
			t.Errorf("%s: accepted metadata fails the second time: %v", src, err)
		}
	}
	for name, tc := range map[string]struct {
		edit func(*store.ClientMetadata)
		want string
	}{
		"right-to-left override": {func(m *store.ClientMetadata) { m.ClientName = "Good\u202eApp" }, "client_name contains control or invisible formatting characters"},
		"response type token":    {func(m *store.ClientMetadata) { m.ResponseTypes = []string{"token"} }, "response type token is not supported"},
		"application type":       {func(m *store.ClientMetadata) { m.ApplicationType = "desktop" }, "application_type must be web or native"},
		"scope":                  {func(m *store.ClientMetadata) { m.Scope = `a"b` }, "scope: "},
		"implicit":               {func(m *store.ClientMetadata) { m.GrantTypes = []string{"implicit"} }, "implicit' was removed by OAuth 2.1"},
		"refresh alone":          {func(m *store.ClientMetadata) { m.GrantTypes = []string{"refresh_token"} }, "grant_types must include authorization_code"},
		"redirect fragment":      {func(m *store.ClientMetadata) { m.RedirectURIs = []string{"https://app.example.com/cb#x"} }, "fragment"},
		"javascript logo":        {func(m *store.ClientMetadata) { m.LogoURI = "javascript:alert(1)" }, "logo_uri must be an https URL"},
	} {
		for src, r := range sources {
			m := valid
			tc.edit(&m)
			if _, err := r.Validate(m); err == nil || !strings.Contains(err.Description, tc.want) {
				t.Errorf("%s, %s: %v, want a refusal containing %q", name, src, err, tc.want)
			}
		}
	}
	// Per source: documents carry no secret, and no grant the registry
	// keeps for operator-configured clients.
	m := valid
	m.TokenEndpointAuthMethod = "client_secret_basic"
	if _, err := sources[store.SourceMetadata].Validate(m); err == nil || !strings.Contains(err.Description, "needs a shared secret") {
		t.Errorf("document with client_secret_basic: %v", err)
	}
	m.GrantTypes = []string{"authorization_code", "client_credentials"}
	if _, err := sources[store.SourceDynamic].Validate(m); err == nil || !strings.Contains(err.Description, "dynamically registered clients") {
		t.Errorf("dynamic client_credentials: %v", err)
	}
	m.TokenEndpointAuthMethod = ""
	if _, err := sources[store.SourceMetadata].Validate(m); err == nil || !strings.Contains(err.Description, "client_credentials is not available to metadata-document clients") {
		t.Errorf("document client_credentials: %v", err)
	}
}
