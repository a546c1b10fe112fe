// Package grants is the one list of the OAuth grant types authd serves,
// and who may use each. The composition root builds one Registry and hands
// it to /token (which grant types it dispatches), to registration and
// client ID metadata documents (which grant types a client may register,
// by where the client comes from) and to the RFC 8414 metadata
// (grant_types_supported), so that the three cannot disagree.
//
// Adding a grant: one Grant in Default (or added with With by the
// composition root when configuration enables it) plus its function in
// the dispatch map of internal/token; see docs/architecture.md.
package grants

import (
	"slices"
	"strings"

	"github.com/authd/authd/internal/store"
)

// Grant types (RFC 6749 §4, OAuth 2.1 §4).
const (
	AuthorizationCode = "authorization_code"
	RefreshToken      = "refresh_token"
	ClientCredentials = "client_credentials"
	// TokenExchange is RFC 8693's; served only when the configuration
	// allows a client to exchange (cmd/authd adds it with With).
	TokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// Removed are grant types OAuth 2.1 dropped; they are refused with a
// description that says so rather than as merely unsupported.
var Removed = []string{"implicit", "password"}

// Grant is one grant type and the clients that may use it.
type Grant struct {
	// Type is the grant_type value (a URN for extension grants).
	Type string
	// Dynamic lets clients registered at /register (RFC 7591) register
	// for the grant and use it. Operator-configured clients (config file,
	// admin CLI) may always; a grant without Dynamic is theirs only.
	// Checked at /token too, so that turning it off also stops clients
	// registered while it was on.
	Dynamic bool
	// Document lets client ID metadata document clients list the grant.
	Document bool
	// Confidential requires a client that authenticates (never
	// token_endpoint_auth_method none).
	Confidential bool
	// Requires is a grant the client must be registered for as well
	// (refresh_token is useful only with authorization_code).
	Requires string
}

// AllowedFor reports whether a client from src may use the grant.
func (g Grant) AllowedFor(src store.ClientSource) bool {
	switch src {
	case store.SourceDynamic:
		return g.Dynamic
	case store.SourceMetadata:
		return g.Document
	}
	return true
}

// Registry is the set of grant types a server serves, in the order the
// metadata lists them. The zero Registry serves nothing; use Default.
// Methods return changed copies, so a Registry handed out never changes.
type Registry struct {
	list []Grant
}

// Default is what authd serves out of the box: the authorization code
// grant (PKCE required) and refresh tokens for every kind of client, and
// client credentials for confidential clients the operator configured.
func Default() Registry {
	return New(
		Grant{Type: AuthorizationCode, Dynamic: true, Document: true},
		Grant{Type: RefreshToken, Dynamic: true, Document: true, Requires: AuthorizationCode},
		Grant{Type: ClientCredentials, Confidential: true},
	)
}

// OrDefault is r, or Default when r is the zero Registry (handlers built
// without a registry, as in tests, serve the defaults).
func (r Registry) OrDefault() Registry {
	if len(r.list) == 0 {
		return Default()
	}
	return r
}

// New is a registry of exactly gs (a later entry of one type replaces an
// earlier one).
func New(gs ...Grant) Registry {
	var r Registry
	for _, g := range gs {
		r = r.With(g)
	}
	return r
}

// With adds g, or replaces the grant of its type.
func (r Registry) With(g Grant) Registry {
	list := slices.Clone(r.list)
	if i := slices.IndexFunc(list, func(x Grant) bool { return x.Type == g.Type }); i >= 0 {
		list[i] = g
	} else {
		list = append(list, g)
	}
	return Registry{list: list}
}

// Without drops the given grant types.
func (r Registry) Without(types ...string) Registry {
	return Registry{list: slices.DeleteFunc(slices.Clone(r.list), func(g Grant) bool { return slices.Contains(types, g.Type) })}
}

// AllowDynamic sets whether dynamically registered clients may use the
// grant typ (no change when typ is not served).
func (r Registry) AllowDynamic(typ string, allow bool) Registry {
	g, ok := r.Lookup(typ)
	if !ok {
		return r
	}
	g.Dynamic = allow
	return r.With(g)
}

// Lookup returns the grant of type typ, if it is served.
func (r Registry) Lookup(typ string) (Grant, bool) {
	i := slices.IndexFunc(r.list, func(g Grant) bool { return g.Type == typ })
	if i < 0 {
		return Grant{}, false
	}
	return r.list[i], true
}

// Serves reports whether the grant type typ is served.
func (r Registry) Serves(typ string) bool {
	_, ok := r.Lookup(typ)
	return ok
}

// Types lists the grant types served (grant_types_supported).
func (r Registry) Types() []string {
	out := make([]string, 0, len(r.list))
	for _, g := range r.list {
		out = append(out, g.Type)
	}
	return out
}

// TypesFor lists the grant types a client from src may use.
func (r Registry) TypesFor(src store.ClientSource) []string {
	var out []string
	for _, g := range r.list {
		if g.AllowedFor(src) {
			out = append(out, g.Type)
		}
	}
	return out
}

// Allows reports whether a client from src may use the grant type typ:
// it is served and open to such clients.
func (r Registry) Allows(typ string, src store.ClientSource) bool {
	g, ok := r.Lookup(typ)
	return ok && g.AllowedFor(src)
}

// List joins grant types for a sentence: "a, b or c".
func List(types []string) string {
	switch len(types) {
	case 0:
		return "none"
	case 1:
		return types[0]
	}
	return strings.Join(types[:len(types)-1], ", ") + " or " + types[len(types)-1]
}
