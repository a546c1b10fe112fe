// Package resource protects an HTTP resource server, typically an MCP
// server, with access tokens issued by authd (or any OAuth 2.1
// authorization server that publishes RFC 8414 metadata and issues RFC 9068
// JWT access tokens or answers RFC 7662 introspection).
//
// A [Protector] is built from a few options ([Config]) and offers:
//
//   - token checking: RFC 9068 JWT access tokens verified locally against
//     the issuer's JWK set (found through its RFC 8414 metadata, cached as
//     its Cache-Control says, refetched on an unknown key id at most once
//     per [Config.MinRefetchInterval]), or RFC 7662 introspection with client
//     credentials when [Config.Introspection] is set (with an optional short
//     cache, or on every request, so that a revocation is seen at once;
//     with [Introspection.VerifyJWTs], JWTs are verified locally first and
//     only those that pass are introspected);
//   - [Protector.Middleware] for net/http: a request without a token, or
//     with one that is not valid for this resource, gets 401 with an RFC
//     6750 challenge naming the RFC 9728 metadata; one whose token lacks a
//     scope gets 403 error="insufficient_scope" with the scopes it needs,
//     which is how MCP clients (2025-11-25) run step-up authorization;
//   - [Protector.RequireScopes] and [Protector.InsufficientScope] for the
//     handlers, or MCP tools (see the mcpsdk subpackage), that need more
//     than every request does;
//   - [Protector.MetadataHandler], the RFC 9728 protected-resource metadata
//     at [Protector.MetadataPath] (the path-inserted form);
//   - [IdentityFrom]: who the token speaks for, in the request's context.
//
// The package depends on the standard library and
// github.com/golang-jwt/jwt/v5 only; it imports nothing of authd's server.
// Its API is stable: within authd's major version it only grows.
//
// RFC 8414 metadata has no list of access-token signing algorithms, so
// each key is pinned to the algorithm its JWK names (its alg member, or
// for EC keys the curve's one algorithm); RSA keys without alg are
// ignored, and no symmetric algorithm or "none" is ever accepted.
package resource
