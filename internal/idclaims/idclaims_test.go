package idclaims_test

import (
	"testing"

	"github.com/authd/authd/internal/idclaims"
)

// TestForToken is the one identity-claims rule for a user token and the
// introspection answers about it: the intersection of what its resources
// are configured for (an unconfigured one gets nothing), plus Basic when
// tokens.identity_claims is on.
func TestForToken(t *testing.T) {
	t.Parallel()
	const a, b, unknown = "https://a.example.com/mcp", "https://b.example.com/mcp", "https://unknown.example.com"
	sets := map[string]idclaims.Set{
		a: {Email: true, Groups: true, Upstream: true},
		b: {Groups: true, Name: true},
	}
	lookup := func(uri string) (idclaims.Set, bool) {
		s, ok := sets[uri]
		return s, ok
	}
	for _, tc := range []struct {
		name     string
		audience []string
		basic    bool
		want     idclaims.Set
	}{
		{"one resource", []string{a}, false, idclaims.Set{Email: true, Groups: true, Upstream: true}},
		{"two resources: what both get", []string{a, b}, false, idclaims.Set{Groups: true}},
		{"order does not matter", []string{b, a}, false, idclaims.Set{Groups: true}},
		{"an unconfigured resource gets nothing", []string{a, unknown}, false, idclaims.Set{}},
		{"no audience", nil, false, idclaims.Set{}},
		{"basic adds login and email", []string{b}, true, idclaims.Set{Groups: true, Name: true, Login: true, Email: true}},
		{"basic for two resources", []string{a, b}, true, idclaims.Set{Groups: true, Login: true, Email: true}},
		{"basic even for an unconfigured resource", []string{unknown}, true, idclaims.Basic},
	} {
		if got := idclaims.ForToken(tc.audience, lookup, tc.basic); got != tc.want {
			t.Errorf("%s: ForToken(%v, basic %v) = %+v, want %+v", tc.name, tc.audience, tc.basic, got, tc.want)
		}
	}
}
