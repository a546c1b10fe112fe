// Package idclaims decides which identity claims about a user a protected
// resource receives — in the JWT access tokens bound to it, in
// introspection answers about them and in /verify's headers — and fills
// them from the user's row. Each resource gets only what the operator
// configured for it (resources[].claims); nothing by default.
package idclaims

import (
	"fmt"
	"slices"

	"github.com/authd/authd/internal/store"
)

// The names of resources[].claims.
const (
	Email    = "email"    // email: the verified email address
	Name     = "name"     // name: the display name
	Login    = "login"    // preferred_username: the upstream login
	Groups   = "groups"   // groups: OIDC groups, GitHub "org" and "org/team"
	Upstream = "upstream" // upstream_provider, upstream_id, upstream_login
)

// Names lists every claim set name, in documentation order.
var Names = []string{Email, Name, Login, Groups, Upstream}

// Set is which identity claims a resource receives.
type Set struct {
	Email, Name, Login, Groups, Upstream bool
}

// Parse reads the configured names; an unknown one is an error naming it.
func Parse(names []string) (Set, error) {
	var s Set
	for _, n := range names {
		switch n {
		case Email:
			s.Email = true
		case Name:
			s.Name = true
		case Login:
			s.Login = true
		case Groups:
			s.Groups = true
		case Upstream:
			s.Upstream = true
		default:
			return Set{}, fmt.Errorf("%q is not one of %v", n, Names)
		}
	}
	return s, nil
}

// Intersect is what both s and o receive: a token for several resources
// carries only what every one of them is configured for, since each of
// them can read it.
func (s Set) Intersect(o Set) Set {
	return Set{
		Email: s.Email && o.Email, Name: s.Name && o.Name, Login: s.Login && o.Login,
		Groups: s.Groups && o.Groups, Upstream: s.Upstream && o.Upstream,
	}
}

// Union is what either receives.
func (s Set) Union(o Set) Set {
	return Set{
		Email: s.Email || o.Email, Name: s.Name || o.Name, Login: s.Login || o.Login,
		Groups: s.Groups || o.Groups, Upstream: s.Upstream || o.Upstream,
	}
}

// forAudience is the set for a token bound to audience: the intersection
// of the resources' sets (lookup reports a resource's set, and false for an
// unconfigured resource, which gets nothing). An empty audience gets nothing.
// Unexported so that ForToken stays the one rule callers apply.
func forAudience(audience []string, lookup func(uri string) (Set, bool)) Set {
	var out Set
	for i, uri := range audience {
		s, ok := lookup(uri)
		if !ok {
			return Set{}
		}
		if i == 0 {
			out = s
		} else {
			out = out.Intersect(s)
		}
	}
	return out
}

// Basic is what tokens.identity_claims adds to every user token: the
// login (preferred_username) and the verified email. /verify's X-Auth-User
// and X-Auth-Email headers always carry these two.
var Basic = Set{Login: true, Email: true}

// ForToken is the one rule for what a user token bound to audience says
// about its user, in the JWT itself and in introspection answers about
// it: what every one of its resources is configured for (forAudience:
// each can read the token), plus Basic when basic (tokens.identity_claims)
// is on. /token (token.Handler.identityClaims) and /introspect
// (introspect.Handler.identityClaims) both call it, with their own lookup
// of the configured resources.
func ForToken(audience []string, lookup func(uri string) (Set, bool), basic bool) Set {
	s := forAudience(audience, lookup)
	if basic {
		s = s.Union(Basic)
	}
	return s
}

// Identity is the identity claims of a token or introspection answer, with
// their JSON names; embed it in a claims struct.
type Identity struct {
	Email             string   `json:"email,omitempty"`
	Name              string   `json:"name,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Groups            []string `json:"groups,omitempty"`
	UpstreamProvider  string   `json:"upstream_provider,omitempty"`
	UpstreamID        string   `json:"upstream_id,omitempty"`
	UpstreamLogin     string   `json:"upstream_login,omitempty"`
}

// For fills the claims s allows from u. An unverified email is never
// given out.
func For(s Set, u *store.User) Identity {
	var id Identity
	if u == nil {
		return id // client_credentials: no user
	}
	if s.Email && u.EmailVerified {
		id.Email = u.Email
	}
	if s.Name {
		id.Name = u.Name
	}
	if s.Login {
		id.PreferredUsername = u.Login
	}
	if s.Groups && len(u.Groups) > 0 {
		id.Groups = slices.Clone(u.Groups)
	}
	if s.Upstream {
		id.UpstreamProvider, id.UpstreamID, id.UpstreamLogin = u.Provider, u.Subject, u.Login
	}
	return id
}
