package config

import (
	"reflect"
	"testing"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/policy"
)

// TestPolicy: Config.Policy carries every resource and scope setting into
// the one policy value the endpoints share, identity claims parsed.
func TestPolicy(t *testing.T) {
	t.Parallel()
	c := Defaults()
	c.Scopes = []ScopeConfig{{Name: "mcp:tools", Description: "Use the tools"}, {Name: "mcp:admin"}}
	c.UnknownScopes = UnknownScopesReject
	c.DefaultScopes = []string{"mcp:tools"}
	c.AllowAnyResource = true
	c.DefaultResource = "https://a.example.com/mcp"
	c.Tokens.Format = policy.FormatOpaque
	c.Resources = []ResourceConfig{{
		URI: "https://a.example.com/mcp", Name: "A", Documentation: "https://a.example.com/docs",
		Scopes: []string{"mcp:tools", "mcp:admin"}, RequiredScopes: []string{"mcp:tools"},
		TokenFormat: policy.FormatJWT, Claims: []string{"email", "groups"},
		RouteScopes:          []RouteScopeConfig{{Method: "POST", Path: "/admin*", Scopes: []string{"mcp:admin"}}},
		ForwardUpstreamToken: "github",
	}, {URI: "https://b.example.com/mcp"}}
	want := &policy.Policy{
		Resources: []policy.Resource{{
			URI: "https://a.example.com/mcp", Name: "A", Documentation: "https://a.example.com/docs",
			Scopes: []string{"mcp:tools", "mcp:admin"}, RequiredScopes: []string{"mcp:tools"},
			RouteScopes: []policy.RouteScope{{Method: "POST", Path: "/admin*", Scopes: []string{"mcp:admin"}}},
			TokenFormat: policy.FormatJWT, Claims: idclaims.Set{Email: true, Groups: true},
			ForwardUpstreamToken: "github",
		}, {URI: "https://b.example.com/mcp"}},
		AllowAnyResource:    true,
		DefaultResource:     "https://a.example.com/mcp",
		Scopes:              []policy.Scope{{Name: "mcp:tools", Description: "Use the tools"}, {Name: "mcp:admin"}},
		RejectUnknownScopes: true,
		DefaultScopes:       []string{"mcp:tools"},
		TokenFormat:         policy.FormatOpaque,
	}
	if got := c.Policy(); !reflect.DeepEqual(got, want) {
		t.Errorf("Policy() =\n%+v\nwant\n%+v", got, want)
	}
	c.UnknownScopes = UnknownScopesIgnore
	if c.Policy().RejectUnknownScopes {
		t.Error("unknown_scopes: ignore gives RejectUnknownScopes")
	}
}
