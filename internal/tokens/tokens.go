// Package tokens is the one home of authd's access tokens: their format
// (the RFC 9068 claims, with room for RFC 9449/8705 cnf and RFC 8693 act),
// issuing them (Issue: a signed JWT, or an opaque string stored by
// digest, as the resource's policy says), judging a token presented back
// (Inspect: recognise its kind, verify it, check revocation and that its
// grant, client and user still stand) and revoking one (Revoke).
//
// The endpoints are HTTP adapters over it: /token issues and /revoke
// revokes (internal/token), /introspect and /verify inspect
// (internal/introspect). A grant that must validate an incoming token
// (RFC 8693's subject_token) calls Inspect; no other package parses a JWT
// access token or tells one from an opaque token.
package tokens

import (
	"context"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/store"
)

// Access token formats, as resources[].token_format names them.
const (
	FormatJWT    = "jwt"
	FormatOpaque = "opaque"
)

// DefaultLifetime is an access token's lifetime when Service.Lifetime is
// zero.
const DefaultLifetime = time.Hour

// Store is what tokens are kept in and checked against.
// *store.Postgres and *store.Memory implement it.
type Store interface {
	// Opaque access tokens.
	CreateAccessToken(ctx context.Context, t store.AccessToken) error
	GetAccessToken(ctx context.Context, digest string) (store.AccessToken, error)
	RevokeAccessToken(ctx context.Context, digest string, now time.Time) error
	// JWT access tokens: revoked jtis, and the revoked jti, grant and
	// user of a user's token in one read.
	RevokeJTI(ctx context.Context, jti string, exp time.Time) error
	IsJTIRevoked(ctx context.Context, jti string, now time.Time) (bool, error)
	CheckJWTGrant(ctx context.Context, jti, grantID string, now time.Time) (bool, store.Grant, store.User, error)
	// Refresh tokens, grants and users.
	GetRefreshToken(ctx context.Context, digest string) (store.RefreshToken, error)
	GetGrantUser(ctx context.Context, id string) (store.Grant, store.User, error)
	RevokeGrant(ctx context.Context, id string, now time.Time) error
	GetUser(ctx context.Context, id string) (store.User, error)
}

// Clients looks up the client a token was issued to (a
// clientauth.CachedClients in production, so the hot path reads no row).
type Clients interface {
	GetClient(ctx context.Context, id string, now time.Time) (store.Client, error)
}

// Keys signs access tokens and finds the key that verifies one;
// *keys.Manager implements it.
type Keys interface {
	Sign(ctx context.Context, typ string, claims jwt.Claims) (string, error)
	Keyfunc(t *jwt.Token) (any, error)
	Algorithms() []string
}

// Policy is what the resource configuration says about the tokens for an
// audience: their format and the identity claims they carry.
type Policy interface {
	// Format is FormatJWT or FormatOpaque.
	Format(audience []string) string
	// IdentityClaims is what a token for audience may say about its user.
	IdentityClaims(audience []string) idclaims.Set
}

// Service issues, inspects and revokes access tokens. Its zero caches are
// ready to use; a Service must not be copied after first use.
type Service struct {
	Store   Store
	Clients Clients
	Keys    Keys
	Issuer  string
	// Policy decides format and identity claims at Issue; nil issues JWTs
	// without identity claims.
	Policy Policy
	// Lifetime of access tokens (DefaultLifetime when zero); a token never
	// outlives its grant.
	Lifetime time.Duration
	// UserCheck re-applies the current sign-in policy (the allowlist, from
	// the configuration: no upstream call) to the user of every user token
	// inspected; an error wrapping ErrUserNotAllowed makes the token
	// inactive, any other is an outage (503). Nil allows everyone.
	UserCheck func(ctx context.Context, u store.User) error
	// UserCacheTTL, when positive, keeps user rows this long, saving one
	// database round trip per opaque user token inspected (JWTs and
	// refresh tokens read the user together with their grant). The price:
	// a disabled user's tokens stay active for up to the TTL. Revocation
	// (jti, grant) is never cached.
	UserCacheTTL time.Duration

	users userCache
	jwts  jwtCache
}
