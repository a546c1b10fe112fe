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

// tokens is the token core that issues, and at /revoke revokes: one
// Service for the handler, built by Routes, so that its verified-token
// cache outlives the request.
func (h *Handler) tokens() *tokens.Service { return h.core }

// newCore configures the token core from the handler's fields.
func (h *Handler) newCore() *tokens.Service {
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

func (p resourcePolicy) Format(resources []string) string { return p.h.Policy.Format(resources) }
func (p resourcePolicy) IdentityClaims(resources []string) idclaims.Set {
	return p.h.identityClaims(resources)
}

// identityClaims is what a token for resources may say about its user
// (idclaims.ForToken, the rule /introspect answers by too).
func (h *Handler) identityClaims(resources []string) idclaims.Set {
	return h.Policy.IdentityClaims(resources, h.IdentityClaims)
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
