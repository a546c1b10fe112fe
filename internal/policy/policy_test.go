package policy_test

import (
	"slices"
	"testing"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
)

const (
	wide   = "https://wide.example.com/mcp"   // read, write, admin; JWT; email and login
	narrow = "https://narrow.example.com/mcp" // read; opaque; email
	open   = "https://open.example.com/mcp"   // every declared scope
)

func testPolicy() *policy.Policy {
	return &policy.Policy{
		Resources: []policy.Resource{
			{URI: wide, Name: "Wide", Scopes: []string{"read", "write", "admin"}, TokenFormat: policy.FormatJWT, Claims: idclaims.Set{Email: true, Login: true}},
			{URI: narrow, Scopes: []string{"read"}, TokenFormat: policy.FormatOpaque, Claims: idclaims.Set{Email: true}},
			{URI: open},
		},
		Scopes: []policy.Scope{
			{Name: "read", Description: "Read things"}, {Name: "write"}, {Name: "admin"},
		},
		DefaultScopes: []string{"read", "write"},
	}
}

func TestResources(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	if r, ok := p.Resource(wide); !ok || r.Name != "Wide" {
		t.Errorf("Resource(wide) = %+v %t", r, ok)
	}
	if _, ok := p.Resource("https://other.example.com"); ok {
		t.Error("an unconfigured resource was found")
	}
	if !p.Serves(narrow) || p.Serves("https://other.example.com") {
		t.Error("Serves: configured resources only")
	}
	p.AllowAnyResource = true
	if !p.Serves("https://other.example.com") {
		t.Error("Serves with AllowAnyResource: any resource")
	}
	var nilPolicy *policy.Policy
	if _, ok := nilPolicy.Resource(wide); ok || nilPolicy.Serves(wide) {
		t.Error("the nil policy serves a resource")
	}
}

// TestDefaultAudience: DefaultResource, else the only resource, else
// invalid_target (never a token bound to nothing).
func TestDefaultAudience(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		p    *policy.Policy
		want []string
	}{
		{"explicit default", &policy.Policy{Resources: []policy.Resource{{URI: wide}, {URI: narrow}}, DefaultResource: narrow}, []string{narrow}},
		{"the only resource", &policy.Policy{Resources: []policy.Resource{{URI: wide}}}, []string{wide}},
		{"several, no default", &policy.Policy{Resources: []policy.Resource{{URI: wide}, {URI: narrow}}}, nil},
		{"none", &policy.Policy{}, nil},
		{"nil policy", nil, nil},
	} {
		got, oerr := tc.p.DefaultAudience()
		switch {
		case tc.want == nil && (oerr == nil || oerr.Code != oauth.CodeInvalidTarget):
			t.Errorf("%s: %v %v, want invalid_target", tc.name, got, oerr)
		case tc.want != nil && (oerr != nil || !slices.Equal(got, tc.want)):
			t.Errorf("%s: %v %v, want %v", tc.name, got, oerr, tc.want)
		}
	}
}

// TestDefaultAudienceFor: a client allowed exactly one resource gets it,
// whatever the server's default; any other client gets DefaultAudience.
func TestDefaultAudienceFor(t *testing.T) {
	t.Parallel()
	two := &policy.Policy{Resources: []policy.Resource{{URI: wide}, {URI: narrow}}}
	withDefault := &policy.Policy{Resources: []policy.Resource{{URI: wide}, {URI: narrow}}, DefaultResource: wide}
	for _, tc := range []struct {
		name    string
		p       *policy.Policy
		allowed []string
		want    []string
	}{
		{"one allowed, no default", two, []string{narrow}, []string{narrow}},
		{"one allowed, another default", withDefault, []string{narrow}, []string{narrow}},
		{"one allowed, nil policy", nil, []string{narrow}, []string{narrow}},
		{"two allowed: the default", withDefault, []string{wide, narrow}, []string{wide}},
		{"two allowed, no default", two, []string{wide, narrow}, nil},
		{"unrestricted: the default", withDefault, nil, []string{wide}},
		{"unrestricted, no default", two, nil, nil},
		{"none allowed: the default, for the caller to refuse", withDefault, []string{}, []string{wide}},
	} {
		got, oerr := tc.p.DefaultAudienceFor(tc.allowed)
		switch {
		case tc.want == nil && (oerr == nil || oerr.Code != oauth.CodeInvalidTarget):
			t.Errorf("%s: %v %v, want invalid_target", tc.name, got, oerr)
		case tc.want != nil && (oerr != nil || !slices.Equal(got, tc.want)):
			t.Errorf("%s: %v %v, want %v", tc.name, got, oerr, tc.want)
		}
		if len(tc.allowed) == 1 && oerr == nil {
			got[0] = "changed"
			if tc.allowed[0] == "changed" {
				t.Errorf("%s: the result aliases the client's allowed resources", tc.name)
			}
		}
	}
}

// TestScopeAllowedSeveralResources: a scope is allowed for a set of
// resources only when every one of them offers it (the intersection).
func TestScopeAllowedSeveralResources(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	p.AllowAnyResource = true
	for _, tc := range []struct {
		scope        string
		clientScopes []string
		resources    []string
		wantWhy      string
	}{
		{"write", nil, []string{wide}, ""},
		{"write", nil, []string{wide, narrow}, "is not available for resource " + narrow},
		{"write", nil, []string{narrow, wide}, "is not available for resource " + narrow},
		{"read", nil, []string{wide, narrow, open}, ""},
		{"admin", nil, []string{wide, open}, ""}, // open offers every declared scope
		{"admin", nil, []string{"https://any.example.com", wide}, ""},
		{"delete", nil, []string{open}, "is not known to this server"},
		{"write", []string{"read"}, []string{wide}, "is not allowed for this client"},
		{"read", []string{}, []string{wide}, "is not allowed for this client"}, // empty, not nil: nothing
		{"read", nil, nil, ""},
	} {
		if got := p.ScopeAllowed(tc.scope, tc.clientScopes, tc.resources); got != tc.wantWhy {
			t.Errorf("ScopeAllowed(%s, %v, %v) = %q, want %q", tc.scope, tc.clientScopes, tc.resources, got, tc.wantWhy)
		}
	}

	both := []string{wide, narrow}
	if got := p.AllowedScopes([]string{"read", "write", "admin"}, nil, both); !slices.Equal(got, []string{"read"}) {
		t.Errorf("AllowedScopes for both = %v, want [read]", got)
	}
	if got := p.AllowedScopes([]string{"admin", "read", "write"}, nil, []string{wide}); !slices.Equal(got, []string{"admin", "read", "write"}) {
		t.Errorf("AllowedScopes for wide = %v, want all, in order", got)
	}
	if oerr := p.CheckScopes([]string{"read", "write"}, nil, both); oerr == nil || oerr.Code != oauth.CodeInvalidScope ||
		oerr.Description != "scope write is not available for resource "+narrow {
		t.Errorf("CheckScopes for both = %v, want invalid_scope naming write and %s", oerr, narrow)
	}
	if oerr := p.CheckScopes([]string{"read", "write"}, nil, []string{wide}); oerr != nil {
		t.Errorf("CheckScopes for wide = %v", oerr)
	}
}

// TestScopeVocabulary: one rule for what a request, a token and a
// registration may name: protocol scopes never granted, openid never
// registered, undeclared scopes dropped or refused.
func TestScopeVocabulary(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	got, oerr := p.Requested("read offline_access openid claudeai write")
	if oerr != nil || !slices.Equal(got, []string{"read", "write"}) {
		t.Errorf("Requested = %v %v, want [read write]", got, oerr)
	}
	p.RejectUnknownScopes = true
	if _, oerr := p.Requested("read claudeai"); oerr == nil || oerr.Code != oauth.CodeInvalidScope {
		t.Errorf("Requested with RejectUnknownScopes: %v, want invalid_scope", oerr)
	}
	if got, oerr := p.Requested("read offline_access openid"); oerr != nil || !slices.Equal(got, []string{"read"}) {
		t.Errorf("protocol scopes are never unknown: %v %v", got, oerr)
	}
	if _, oerr := p.Requested(`read "x"`); oerr == nil || oerr.Code != oauth.CodeInvalidScope {
		t.Errorf("malformed scope: %v", oerr)
	}

	if got := p.RegisteredScope("openid offline_access admin claudeai read"); got != "offline_access admin read" {
		t.Errorf("RegisteredScope with declared scopes = %q", got)
	}
	var undeclared *policy.Policy
	if got := undeclared.RegisteredScope("openid offline_access claudeai"); got != "offline_access claudeai" {
		t.Errorf("RegisteredScope with no declared scopes = %q, want openid dropped all the same", got)
	}
	if got, _ := undeclared.Requested("openid offline_access claudeai"); !slices.Equal(got, []string{"claudeai"}) {
		t.Errorf("Requested with no declared scopes = %v", got)
	}

	if !slices.Equal(p.ScopeNames(), []string{"read", "write", "admin"}) || p.ScopeDescription("read") != "Read things" || p.ScopeDescription("x") != "" {
		t.Errorf("names %v, description %q", p.ScopeNames(), p.ScopeDescription("read"))
	}
	if !slices.Equal(p.Offered(narrow), []string{"read"}) || !slices.Equal(p.Offered(open), []string{"read", "write", "admin"}) ||
		!slices.Equal(p.Offered("https://any.example.com"), []string{"read", "write", "admin"}) {
		t.Errorf("Offered: narrow %v, open %v", p.Offered(narrow), p.Offered(open))
	}
}

// TestFormat: opaque when any resource of the audience wants opaque.
func TestFormat(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	for _, tc := range []struct {
		resources []string
		server    string
		want      string
	}{
		{[]string{wide}, "", policy.FormatJWT},
		{[]string{narrow}, "", policy.FormatOpaque},
		{[]string{wide, narrow}, "", policy.FormatOpaque},
		{[]string{open}, policy.FormatOpaque, policy.FormatOpaque},
		{[]string{wide}, policy.FormatOpaque, policy.FormatJWT}, // the resource's own setting wins
		{[]string{"https://any.example.com"}, policy.FormatOpaque, policy.FormatOpaque},
	} {
		p.TokenFormat = tc.server
		if got := p.Format(tc.resources); got != tc.want {
			t.Errorf("Format(%v) with server default %q = %s, want %s", tc.resources, tc.server, got, tc.want)
		}
	}
}

// TestIntersectionProperties: over every audience drawn from the test
// policy's resources (and one unconfigured), what a token may carry is
// offered by each of its audiences, and narrowing the audience never
// loses a scope (so a client that narrows with resource= at /token always
// gets at least what the wider token had).
func TestIntersectionProperties(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	p.AllowAnyResource = true
	all := []string{wide, narrow, open, "https://any.example.com"}
	scopes := []string{"read", "write", "admin", "delete"}
	var audiences [][]string
	for mask := 1; mask < 1<<len(all); mask++ {
		var aud []string
		for i, r := range all {
			if mask&(1<<i) != 0 {
				aud = append(aud, r)
			}
		}
		audiences = append(audiences, aud)
	}
	for _, aud := range audiences {
		got := p.AllowedScopes(scopes, nil, aud)
		for _, s := range got {
			for _, r := range aud {
				if !slices.Contains(p.Offered(r), s) {
					t.Errorf("audience %v carries %s, which %s does not offer", aud, s, r)
				}
			}
		}
		for _, sub := range audiences {
			if oauth.Subset(sub, aud) && !oauth.Subset(got, p.AllowedScopes(scopes, nil, sub)) {
				t.Errorf("narrowing %v to %v loses scopes: %v, then %v", aud, sub, got, p.AllowedScopes(scopes, nil, sub))
			}
		}
	}
}
