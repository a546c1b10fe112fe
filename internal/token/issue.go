package token

import (
	"context"
	"slices"
	"time"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/tokens"
)

// issue creates an access token through the token core (internal/tokens),
// JWT or opaque according to its resources, returning it with its lifetime
// in seconds. It never outlives its grant.
func (h *Handler) issue(ctx context.Context, now time.Time, req tokens.Request) (string, int64, error) {
	t, err := h.tokens().Issue(ctx, now, req)
	if err != nil {
		return "", 0, err
	}
	return t.Value, t.ExpiresIn, nil
}

// tokens is the token core configured from the handler: it issues, and at
// /revoke revokes. It keeps no state worth sharing between requests here
// (its caches serve /introspect), so a Handler stays a plain value.
func (h *Handler) tokens() *tokens.Service {
	s := &tokens.Service{
		Store:     h.Store,
		Keys:      h.Keys,
		Issuer:    h.Issuer,
		Policy:    resourcePolicy{h},
		Lifetime:  h.AccessTokenLifetime,
		UserCheck: h.UserCheck,
	}
	if h.Clients != nil {
		s.Clients = h.Clients.Clients
	}
	return s
}

// resourcePolicy answers for the configured resources what the token core
// asks: the format and the identity claims of a token for an audience.
type resourcePolicy struct{ h *Handler }

func (p resourcePolicy) Format(resources []string) string { return p.h.format(resources) }
func (p resourcePolicy) IdentityClaims(resources []string) idclaims.Set {
	return p.h.identityClaims(resources)
}

// format is opaque if any of the token's resources asks for opaque tokens:
// such a resource relies on introspection, which a JWT would bypass.
func (h *Handler) format(resources []string) string {
	for _, uri := range resources {
		f := h.TokenFormat
		if r, ok := h.resource(uri); ok && r.TokenFormat != "" {
			f = r.TokenFormat
		}
		if f == FormatOpaque {
			return FormatOpaque
		}
	}
	return FormatJWT
}

// identityClaims is what a token for resources may say about its user
// (idclaims.ForToken, the rule /introspect answers by too).
func (h *Handler) identityClaims(resources []string) idclaims.Set {
	return idclaims.ForToken(resources, func(uri string) (idclaims.Set, bool) {
		r, ok := h.resource(uri)
		return r.Claims, ok
	}, h.IdentityClaims)
}

func (h *Handler) resource(uri string) (Resource, bool) {
	for _, r := range h.Resources {
		if r.URI == uri {
			return r, true
		}
	}
	return Resource{}, false
}

// defaultResources is the audience of a token whose request and
// authorization named no resource (see Handler.DefaultResource).
func (h *Handler) defaultResources() ([]string, error) {
	switch {
	case h.DefaultResource != "":
		return []string{h.DefaultResource}, nil
	case len(h.Resources) == 1:
		return []string{h.Resources[0].URI}, nil
	}
	return nil, oauth.InvalidTarget("the resource parameter is required: name the protected resource (RFC 8707) the token is for")
}

// audience picks the resources a token is bound to: the requested ones,
// which must lie within what was authorized, or all of those.
func audience(requested, authorized []string) ([]string, error) {
	if len(requested) == 0 {
		return authorized, nil
	}
	for _, r := range requested {
		if !slices.Contains(authorized, r) {
			return nil, oauth.InvalidTarget("resource %q was not authorized for this grant", truncate(r, 200))
		}
	}
	return requested, nil
}

// scopeAllowed reports whether scope s may appear in a token for resources:
// it must be known to the server, and accepted by at least one of them.
func (h *Handler) scopeAllowed(s string, resources []string) bool {
	if len(h.Scopes) > 0 && !slices.Contains(h.Scopes, s) {
		return false
	}
	for _, uri := range resources {
		r, ok := h.resource(uri)
		if !ok || len(r.Scopes) == 0 || slices.Contains(r.Scopes, s) {
			return true
		}
	}
	return false
}

// scopeRule is the server's rule for requested scopes, shared with
// /authorize.
func (h *Handler) scopeRule() oauth.ScopeRule {
	return oauth.ScopeRule{Known: h.Scopes, RejectUnknown: h.RejectUnknownScopes}
}

// scopesFor keeps the scopes that make sense for resources, so that a token
// narrowed to one resource does not carry another resource's scopes.
func (h *Handler) scopesFor(scopes, resources []string) []string {
	var out []string
	for _, s := range scopes {
		if h.scopeAllowed(s, resources) {
			out = append(out, s)
		}
	}
	return out
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
