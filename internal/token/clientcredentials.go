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
		var oerr *oauth.Error
		if aud, oerr = h.Policy.DefaultAudienceFor(c.AllowedResources); oerr != nil {
			return nil, oerr
		}
	}
	for _, r := range aud {
		if !h.Policy.Serves(r) {
			return nil, oauth.InvalidTarget("resource %q is not a resource this server issues tokens for", truncate(r, 200))
		}
		if c.AllowedResources != nil && !slices.Contains(c.AllowedResources, r) {
			return nil, oauth.InvalidTarget("the client may not obtain tokens for resource %q", truncate(r, 200))
		}
	}

	// RFC 6749 §3.3: an empty scope parameter is no scope parameter, and so
	// is one naming only scopes the server drops (policy.Requested).
	scopes, oerr := h.Policy.Requested(req.form.Get("scope"))
	if oerr != nil {
		return nil, oerr
	}
	if len(scopes) > 0 {
		// Named scopes are refused unless the client and every resource
		// of aud allow them, as at /authorize (policy.ScopeAllowed).
		if oerr := h.Policy.CheckScopes(scopes, c.AllowedScopes, aud); oerr != nil {
			return nil, oerr
		}
	} else {
		// RFC 6749 §3.3: without a scope parameter, a pre-defined default
		// applies: what the client may have, else the server's defaults,
		// in either case only what is allowed here.
		defaults := h.Policy.DefaultScopes
		if c.AllowedScopes != nil {
			defaults = c.AllowedScopes
		}
		scopes = h.Policy.AllowedScopes(defaults, c.AllowedScopes, aud)
	}

	access, expiresIn, err := h.issue(ctx, req.now, tokens.Request{ClientID: c.ID, Scopes: scopes, Audience: aud})
	if err != nil {
		return nil, err
	}
	h.touchClient(ctx, req) // a machine client in use must not idle out
	h.log().InfoContext(ctx, "token issued", "event", "token_issued", "grant_type", req.grantType, "client_id", c.ID)
	return &response{AccessToken: access, TokenType: "Bearer", ExpiresIn: expiresIn, Scope: oauth.JoinScope(scopes)}, nil
}
