package grants_test

import (
	"slices"
	"testing"

	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/store"
)

func TestRegistry(t *testing.T) {
	def := grants.Default()
	if got := def.Types(); !slices.Equal(got, []string{"authorization_code", "refresh_token", "client_credentials"}) {
		t.Fatalf("Default().Types() = %v", got)
	}
	// client_credentials is the operator's to hand out, never a
	// dynamic or metadata-document client's by default.
	for src, want := range map[store.ClientSource][]string{
		store.SourceDynamic:  {"authorization_code", "refresh_token"},
		store.SourceMetadata: {"authorization_code", "refresh_token"},
		store.SourceConfig:   {"authorization_code", "refresh_token", "client_credentials"},
	} {
		if got := def.TypesFor(src); !slices.Equal(got, want) {
			t.Errorf("TypesFor(%s) = %v, want %v", src, got, want)
		}
	}
	open := def.AllowDynamic(grants.ClientCredentials, true)
	if !open.Allows(grants.ClientCredentials, store.SourceDynamic) || def.Allows(grants.ClientCredentials, store.SourceDynamic) {
		t.Error("AllowDynamic must open client_credentials in the copy only")
	}
	if open.Allows(grants.ClientCredentials, store.SourceMetadata) {
		t.Error("AllowDynamic opened client_credentials to metadata-document clients")
	}

	// A new grant is one entry; removing one leaves the others in order.
	const exchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	withEx := def.With(grants.Grant{Type: exchange, Confidential: true})
	if g, ok := withEx.Lookup(exchange); !ok || !g.Confidential || g.AllowedFor(store.SourceDynamic) || !g.AllowedFor(store.SourceConfig) {
		t.Errorf("Lookup(%s) = %+v %v", exchange, g, ok)
	}
	if def.Serves(exchange) {
		t.Error("With changed the registry it was called on")
	}
	if got := withEx.Without(grants.RefreshToken).Types(); !slices.Equal(got, []string{"authorization_code", "client_credentials", exchange}) {
		t.Errorf("Without(refresh_token) = %v", got)
	}
	if got := def.Types(); len(got) != 3 {
		t.Errorf("Without changed the registry it was called on: %v", got)
	}
	// Replacing keeps the position.
	if got := def.With(grants.Grant{Type: grants.AuthorizationCode}).Types(); !slices.Equal(got, def.Types()) {
		t.Errorf("replacing a grant moved it: %v", got)
	}
}
