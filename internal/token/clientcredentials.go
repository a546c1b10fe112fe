package token

import (
	"context"
	"slices"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/tokens"
)

// clientCredentials issues a token to a confidential client acting for
// itself (RFC 6749 §4.4): the subject is the client, there is no user, no
// grant and no refresh token (§4.4.3). With JWT access tokens and a cached
// client lookup this path touches no database at all.
func (h *Handler) clientCredentials(ctx context.Context, req *request) (*response, error) {
	// A confidential client the registry lets use the grant (checked in
	// parse: grants.Grant Confidential, Dynamic).
	c := req.client

	aud := req.resources
	if len(aud) == 0 {
		if len(c.AllowedResources) == 1 {
			aud = c.AllowedResources
		} else {
			var err error
			if aud, err = h.defaultResources(); err != nil {
				return nil, err
			}
		}
	}
	for _, r := range aud {
		if _, ok := h.resource(r); !ok && !h.AllowAnyResource {
			return nil, oauth.InvalidTarget("resource %q is not a resource this server issues tokens for", truncate(r, 200))
		}
		if c.AllowedResources != nil && !slices.Contains(c.AllowedResources, r) {
			return nil, oauth.InvalidTarget("the client may not obtain tokens for resource %q", truncate(r, 200))
		}
	}

	allowed := func(s string) bool {
		return (c.AllowedScopes == nil || slices.Contains(c.AllowedScopes, s)) && h.scopeAllowed(s, aud)
	}
	var scopes []string
	// RFC 6749 §3.3: an empty scope parameter is no scope parameter, and so
	// is one naming only scopes the server drops (oauth.ScopeRule).
	requested, oerr := h.scopeRule().Requested(req.form.Get("scope"))
	if oerr != nil {
		return nil, oerr
	}
	if len(requested) > 0 {
		for _, s := range requested {
			if !allowed(s) {
				return nil, oauth.InvalidScope("scope %q is not allowed for this client and resource", truncate(s, 100))
			}
		}
		scopes = requested
	} else {
		// RFC 6749 §3.3: without a scope parameter, a pre-defined default
		// applies: what the client may have, else the server's defaults,
		// in either case only what is allowed here.
		defaults := h.DefaultScopes
		if c.AllowedScopes != nil {
			defaults = c.AllowedScopes
		}
		for _, s := range defaults {
			if allowed(s) {
				scopes = append(scopes, s)
			}
		}
	}

	access, expiresIn, err := h.issue(ctx, req.now, tokens.Request{ClientID: c.ID, Scopes: scopes, Audience: aud})
	if err != nil {
		return nil, err
	}
	h.touchClient(ctx, req) // a machine client in use must not idle out
	h.log().InfoContext(ctx, "token issued", "event", "token_issued", "grant_type", req.grantType, "client_id", c.ID)
	return &response{AccessToken: access, TokenType: "Bearer", ExpiresIn: expiresIn, Scope: oauth.JoinScope(scopes)}, nil
}
