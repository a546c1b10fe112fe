package tokens

import (
	"encoding/json"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/idclaims"
)

// TypeAccessToken is the JWT "typ" header of access tokens (RFC 9068 §2.1).
const TypeAccessToken = "at+jwt"

// Claims are the claims of a JWT access token (RFC 9068 §2.2), plus
// authd's grant id and, when configured, identity claims; the one
// definition of the format, written by Issue and read by Inspect.
type Claims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  Audience         `json:"aud"`
	ClientID  string           `json:"client_id"`
	Scope     string           `json:"scope,omitempty"`
	ID        string           `json:"jti"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	AuthTime  *jwt.NumericDate `json:"auth_time,omitempty"`
	// GrantID lets introspection and /verify see a revoked grant; absent
	// for client_credentials.
	GrantID string `json:"gid,omitempty"`
	// Confirmation binds the token to a key its holder proves (RFC 9449
	// DPoP, RFC 8705 mutual TLS); absent for bearer tokens.
	Confirmation *Confirmation `json:"cnf,omitempty"`
	// Actor is who acts for the subject (RFC 8693 §4.1), for a delegated
	// token; absent otherwise.
	Actor *Actor `json:"act,omitempty"`
	// Identity claims: what tokens.identity_claims and the resources'
	// claims settings allow.
	idclaims.Identity
}

func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c *Claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *Claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *Claims) GetAudience() (jwt.ClaimStrings, error)       { return jwt.ClaimStrings(c.Audience), nil }

// Confirmation is the cnf claim (RFC 7800 §3.1) with the members authd
// may bind tokens with.
type Confirmation struct {
	// JKT is the base64url SHA-256 JWK thumbprint of a DPoP key (RFC 9449 §6.1).
	JKT string `json:"jkt,omitempty"`
	// X5TS256 is the base64url SHA-256 thumbprint of a client certificate
	// (RFC 8705 §3.1).
	X5TS256 string `json:"x5t#S256,omitempty"`
}

// Actor is the act claim (RFC 8693 §4.1): the party acting for the
// token's subject. A chain of delegation nests: the outermost Actor is the
// current one, its Actor the one before it.
type Actor struct {
	Subject  string `json:"sub"`
	Issuer   string `json:"iss,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Actor    *Actor `json:"act,omitempty"`
}

// clone copies the chain, so that no caller can alter a cached token.
func (a *Actor) clone() *Actor {
	if a == nil {
		return nil
	}
	c := *a
	c.Actor = a.Actor.clone()
	return &c
}

func (c *Confirmation) clone() *Confirmation {
	if c == nil {
		return nil
	}
	cp := *c
	return &cp
}

// Audience is the aud claim: a single string for one resource, an array for
// several (RFC 7519 §4.1.3). jwt.ClaimStrings always writes an array unless
// a package-wide switch is flipped, which authd does not do.
type Audience []string

func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a *Audience) UnmarshalJSON(b []byte) error {
	var cs jwt.ClaimStrings
	if err := cs.UnmarshalJSON(b); err != nil {
		return err
	}
	*a = Audience(cs)
	return nil
}

// isAccessTokenType accepts "at+jwt" and its full media type (RFC 9068 §4),
// compared case-insensitively as media types are.
func isAccessTokenType(typ any) bool {
	s, _ := typ.(string)
	return strings.EqualFold(s, TypeAccessToken) || strings.EqualFold(s, "application/"+TypeAccessToken)
}
