// Package policy is the server's resource and scope policy: which
// protected resources exist (RFC 8707), the audience of a request that
// names none, which scopes the server knows and each resource offers and
// requires, each resource's access-token format, and which scopes a token
// for a set of resources may carry. It is built once from the
// configuration at start-up (config.Config.Policy) and handed to every
// endpoint that applies these rules, so /authorize, /token and
// registration cannot drift apart.
//
// A nil *Policy is the empty policy: no resources, every well-formed scope
// known, nothing any-resource.
package policy

import (
	"slices"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/oauth"
)

// Access-token formats.
const (
	FormatJWT    = "jwt"    // RFC 9068, verified locally by resources
	FormatOpaque = "opaque" // random, stored by digest, introspected
)

// Scope is a scope the operator declared, with the words consent and
// /apps pages show for it.
type Scope struct {
	Name        string
	Description string
}

// RouteScope says that requests to a resource matching Method (empty: any)
// and Path (exact, or a prefix when it ends in "*"; empty: any) need
// Scopes, on top of the resource's RequiredScopes (/verify step-up).
type RouteScope struct {
	Method string
	Path   string
	Scopes []string
}

// Resource is a protected resource tokens may be bound to, as configured.
type Resource struct {
	URI           string // canonical (oauth.CanonicalResource)
	Name          string // shown on consent and /apps pages
	Documentation string // resource_documentation of its RFC 9728 document
	// Scopes are the scopes the resource offers: a token for it may carry
	// only these. Empty: every scope the server knows.
	Scopes []string
	// RequiredScopes must all be in a token /verify lets through to it.
	RequiredScopes []string
	RouteScopes    []RouteScope
	// TokenFormat is FormatJWT or FormatOpaque; empty: Policy.TokenFormat.
	TokenFormat string
	// Claims are the identity claims tokens and introspection answers for
	// this resource carry.
	Claims idclaims.Set
	// ForwardUpstreamToken, when set, is the upstream id whose access
	// token for the user /verify adds as X-Forwarded-Access-Token, for an
	// unmodified server that calls that upstream as the user
	// (oauth2-proxy's convention). Off by default: it hands the upstream
	// token to the server and everything between the proxy and it.
	ForwardUpstreamToken string
	// UpstreamScopes are, per upstream id, the upstream scopes this
	// resource needs (resources[].upstream_scopes): asked for at sign-in,
	// shown on the consent page, and required before token exchange hands
	// out that upstream's token.
	UpstreamScopes map[string][]string
}

// Policy is the resource and scope policy. Its fields are set once, at
// start-up; the methods only read them, so one value is shared by every
// endpoint and request.
type Policy struct {
	Resources []Resource
	// AllowAnyResource accepts resource indicators that are not among
	// Resources (development): such a resource offers every known scope.
	AllowAnyResource bool
	// DefaultResource is the audience of a request naming no resource;
	// see DefaultAudienceFor.
	DefaultResource string
	// Scopes are the scopes the server knows; empty: every well-formed
	// scope is known.
	Scopes []Scope
	// RejectUnknownScopes answers a request naming an undeclared scope with
	// invalid_scope instead of dropping it (see Requested).
	RejectUnknownScopes bool
	// DefaultScopes are requested on behalf of a request naming no
	// grantable scope (RFC 6749 §3.3's pre-defined default).
	DefaultScopes []string
	// TokenFormat is the access-token format of resources that set none:
	// FormatJWT (also when empty) or FormatOpaque.
	TokenFormat string
}

// Resource returns the configured resource uri (canonical).
func (p *Policy) Resource(uri string) (Resource, bool) {
	if p == nil {
		return Resource{}, false
	}
	for _, r := range p.Resources {
		if r.URI == uri {
			return r, true
		}
	}
	return Resource{}, false
}

// Serves reports whether tokens may be bound to uri: a configured resource,
// or any resource when AllowAnyResource.
func (p *Policy) Serves(uri string) bool {
	_, ok := p.Resource(uri)
	return ok || (p != nil && p.AllowAnyResource)
}

// DefaultAudience is the audience of a request, and of a grant, that names
// no resource (clients before RFC 8707), for a client without a resource
// restriction: DefaultAudienceFor(nil).
func (p *Policy) DefaultAudience() ([]string, *oauth.Error) {
	return p.DefaultAudienceFor(nil)
}

// DefaultAudienceFor is the one default-audience rule: the audience of a
// request that names no resource (clients before RFC 8707) from a client
// allowed the resources allowed (store.Client.AllowedResources; nil: any).
// A client allowed exactly one resource gets that one: it can have a token
// for nothing else, so the audience is not in doubt. Otherwise it is
// DefaultResource, else the only configured resource. With none of these
// the request fails with invalid_target: a token bound to no resource
// would be accepted by any resource server that does not check the
// audience (a confused deputy). The caller still checks the result
// against what the client is allowed, as for a named resource.
//
// /authorize binds the code to it, so the user consents to the audience
// the token will really have; client_credentials applies it to its
// request; /token's code and refresh grants apply DefaultAudience to
// grants stored without resources.
func (p *Policy) DefaultAudienceFor(allowed []string) ([]string, *oauth.Error) {
	switch {
	case len(allowed) == 1:
		return []string{allowed[0]}, nil
	case p != nil && p.DefaultResource != "":
		return []string{p.DefaultResource}, nil
	case p != nil && len(p.Resources) == 1:
		return []string{p.Resources[0].URI}, nil
	}
	return nil, oauth.InvalidTarget("the resource parameter is required: name the protected resource (RFC 8707) the token is for")
}

// ScopeNames are the declared scopes' names, in configuration order.
func (p *Policy) ScopeNames() []string {
	if p == nil {
		return nil
	}
	out := make([]string, len(p.Scopes))
	for i, s := range p.Scopes {
		out[i] = s.Name
	}
	return out
}

// Known reports whether s is a scope the server knows: declared, or any
// scope when none are declared. Protocol scopes (oauth.ProtocolScope) are
// not permissions and are handled by Requested and RegisteredScope.
func (p *Policy) Known(s string) bool {
	return p == nil || len(p.Scopes) == 0 || slices.ContainsFunc(p.Scopes, func(x Scope) bool { return x.Name == s })
}

// ScopeDescription is the operator's description of scope s, or "".
func (p *Policy) ScopeDescription(s string) string {
	if p == nil {
		return ""
	}
	for _, x := range p.Scopes {
		if x.Name == s {
			return x.Description
		}
	}
	return ""
}

// Requested parses a scope parameter (RFC 6749 §3.3) into the scopes that
// may be granted: offline_access and openid are dropped (they name no
// permission at a resource), and so are scopes the server does not know
// unless RejectUnknownScopes, which answers invalid_scope instead (real
// clients add values of their own, such as "claudeai", that no server
// declares). An empty result means the request names no grantable scope,
// which callers treat like an absent scope parameter. /authorize, /token's
// refresh and client_credentials grants all parse scope here.
func (p *Policy) Requested(param string) ([]string, *oauth.Error) {
	rule := oauth.ScopeRule{Known: p.ScopeNames()}
	if p != nil {
		rule.RejectUnknown = p.RejectUnknownScopes
	}
	return rule.Requested(param)
}

// RegisteredScope is a client's registered scope metadata (RFC 7591 §2,
// already validated) as the server stores and echoes it: only the scopes
// Requested would let through, plus offline_access, which the server
// metadata lists (RFC 7591 §3.2.1 lets the server replace the value, and
// it must not advertise back what authd never grants). openid is dropped
// whether or not scopes are declared: authd issues no ID tokens and lists
// no openid in its metadata.
func (p *Policy) RegisteredScope(scope string) string {
	toks, err := oauth.ParseScope(scope)
	if err != nil {
		return "" // validated by the caller; never reached
	}
	var keep []string
	for _, s := range toks {
		if s == oauth.ScopeOfflineAccess || (!oauth.ProtocolScope(s) && p.Known(s)) {
			keep = append(keep, s)
		}
	}
	return oauth.JoinScope(keep)
}

// Offered is what resource uri offers: its Scopes, or every declared scope
// when it lists none (nil when nothing is declared either: any scope). A
// resource that is not configured offers every known scope.
func (p *Policy) Offered(uri string) []string {
	if r, ok := p.Resource(uri); ok && len(r.Scopes) > 0 {
		return slices.Clone(r.Scopes)
	}
	return p.ScopeNames()
}

// ScopeAllowed returns "" when scope s may be in a token for all of
// resources issued to a client allowed clientScopes (nil: any), or why not,
// as words that follow "scope <s> " in an invalid_scope description.
//
// Several resources at once: a scope is allowed only when EVERY resource
// of the set offers it; a token's scope is the intersection of what its
// audiences offer, never the union. RFC 8707 does not say how scope and
// several resource values combine, and its §3 warns that a token with
// several audiences "can be used by any one of those resources to access
// any of the others". Were a scope that only resource B offers
// put in a token for A and B, A (which never agreed to that scope) could
// replay it at B with that permission; with the intersection, every
// permission in the token is one each of its audiences defines. A client
// that needs B's own scopes asks for a token for B alone (or narrows the
// audience at /token with the resource parameter, RFC 8707 §2.2). The
// identity claims of such a token follow the same rule (idclaims.ForToken).
//
// What a caller does with a refused scope: one the client named is
// refused with invalid_scope (/authorize, client_credentials); one it did
// not name — a default, or a granted scope when /token narrows or
// refreshes — is left out of the token (RFC 6749 §3.3 lets the server
// issue less than requested, and the response's scope says so).
func (p *Policy) ScopeAllowed(s string, clientScopes, resources []string) string {
	if !p.Known(s) {
		return "is not known to this server"
	}
	if clientScopes != nil && !slices.Contains(clientScopes, s) {
		return "is not allowed for this client"
	}
	for _, uri := range resources {
		if r, ok := p.Resource(uri); ok && len(r.Scopes) > 0 && !slices.Contains(r.Scopes, s) {
			return "is not available for resource " + uri
		}
	}
	return ""
}

// CheckScopes refuses, with invalid_scope, a requested scope that
// ScopeAllowed does not allow.
func (p *Policy) CheckScopes(scopes, clientScopes, resources []string) *oauth.Error {
	for _, s := range scopes {
		if why := p.ScopeAllowed(s, clientScopes, resources); why != "" {
			return oauth.InvalidScope("scope %s %s", s, why)
		}
	}
	return nil
}

// AllowedScopes keeps the scopes ScopeAllowed allows, in order.
func (p *Policy) AllowedScopes(scopes, clientScopes, resources []string) []string {
	var out []string
	for _, s := range scopes {
		if p.ScopeAllowed(s, clientScopes, resources) == "" {
			out = append(out, s)
		}
	}
	return out
}

// Format is the access-token format for a token bound to resources:
// opaque if any of them asks for opaque tokens, since such a resource
// relies on introspection (revocation takes effect at once), which a JWT
// would bypass.
func (p *Policy) Format(resources []string) string {
	for _, uri := range resources {
		f := FormatJWT
		if p != nil && p.TokenFormat != "" {
			f = p.TokenFormat
		}
		if r, ok := p.Resource(uri); ok && r.TokenFormat != "" {
			f = r.TokenFormat
		}
		if f == FormatOpaque {
			return FormatOpaque
		}
	}
	return FormatJWT
}

// IdentityClaims is what a token for audience may say about its user, by
// each resource's claims setting (idclaims.ForToken; basic is
// tokens.identity_claims): the one rule tokens are issued by and
// /introspect answers by.
func (p *Policy) IdentityClaims(audience []string, basic bool) idclaims.Set {
	return idclaims.ForToken(audience, func(uri string) (idclaims.Set, bool) {
		r, ok := p.Resource(uri)
		return r.Claims, ok
	}, basic)
}
