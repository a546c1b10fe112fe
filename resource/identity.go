package resource

import (
	"context"
	"slices"
	"time"
)

// Identity is what a valid access token says: who it speaks for, which
// client holds it, what it may do, for which resources and until when.
//
// Email, Name, Login, Groups and Upstream are set only when the
// authorization server is configured to tell this resource (in authd: the
// resource's claims setting); otherwise they are empty.
type Identity struct {
	// Subject is the token's sub: the user's id at the authorization
	// server, or the client's id for a client_credentials token.
	Subject string
	// ClientID is the OAuth client the token was issued to.
	ClientID string
	// Scopes are the granted scopes.
	Scopes []string
	// Audience lists the resources the token is for; it always contains
	// this server's [Config.Resource].
	Audience []string
	// ExpiresAt is when the token stops being valid.
	ExpiresAt time.Time
	// TokenID is the token's jti, when it has one.
	TokenID string

	// Email is the user's verified email address.
	Email string
	// Name is the user's display name.
	Name string
	// Login is the user's handle (preferred_username), e.g. a GitHub login.
	Login string
	// Groups are the user's groups: the upstream's OIDC groups, or GitHub
	// "org" and "org/team" memberships.
	Groups []string
	// Upstream is the user's account at the identity provider they signed
	// in with.
	Upstream Upstream
}

// Upstream is an account at an upstream identity provider.
type Upstream struct {
	// Provider is the authorization server's name for the provider, e.g.
	// "github" (authd: the upstream's id).
	Provider string
	// ID is the provider's immutable id of the user: GitHub's numeric user
	// id, or an OpenID Connect sub.
	ID string
	// Login is the user's handle at the provider.
	Login string
}

// HasScopes reports whether every one of scopes was granted.
func (id *Identity) HasScopes(scopes ...string) bool {
	for _, s := range scopes {
		if !slices.Contains(id.Scopes, s) {
			return false
		}
	}
	return true
}

// InGroup reports whether the user is a member of group.
func (id *Identity) InGroup(group string) bool {
	return slices.Contains(id.Groups, group)
}

type identityKey struct{}

// WithIdentity returns a copy of ctx carrying id, as [Protector.Middleware]
// does for the requests it lets through.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity [Protector.Middleware] put in ctx.
func IdentityFrom(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok && id != nil
}
