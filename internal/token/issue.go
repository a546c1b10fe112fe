package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// TypeAccessToken is the JWT "typ" header of access tokens (RFC 9068 §2.1).
const TypeAccessToken = "at+jwt"

// Claims are the claims of a JWT access token (RFC 9068 §2.2), plus
// authd's grant id and, when configured, identity claims.
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

// accessToken describes the access token to issue.
type accessToken struct {
	clientID  string
	user      *store.User // nil for client_credentials
	grant     *store.Grant
	scopes    []string
	resources []string
}

// issue creates an access token, JWT or opaque according to its resources,
// returning it with its lifetime in seconds. It never outlives its grant.
func (h *Handler) issue(ctx context.Context, now time.Time, at accessToken) (string, int64, error) {
	exp := now.Add(orDefault(h.AccessTokenLifetime, DefaultAccessTokenLifetime))
	if at.grant != nil && at.grant.ExpiresAt.Before(exp) {
		exp = at.grant.ExpiresAt
	}
	// Whole seconds, so that expires_in and the exp claim agree.
	exp = exp.Truncate(time.Second)
	expiresIn := int64(exp.Sub(now).Seconds())

	if h.Policy.Format(at.resources) == FormatOpaque {
		value := oauth.NewToken(oauth.PrefixAccessToken)
		t := store.AccessToken{
			Digest: oauth.Digest(value), ClientID: at.clientID,
			Scopes: at.scopes, Resources: at.resources, CreatedAt: now, ExpiresAt: exp,
		}
		if at.grant != nil {
			t.GrantID = at.grant.ID
			authTime := at.grant.AuthTime
			t.AuthTime = &authTime
		}
		if at.user != nil {
			t.UserID = at.user.ID
		}
		if err := h.Store.CreateAccessToken(ctx, t); errors.Is(err, store.ErrNotFound) {
			// The grant was revoked meanwhile (reuse detection, a code
			// replay, /revoke): no token outlives it.
			return "", 0, oauth.InvalidGrant("the grant was revoked").WithCause(err)
		} else if err != nil {
			return "", 0, fmt.Errorf("store opaque access token: %w", err)
		}
		return value, expiresIn, nil
	}

	c := &Claims{
		Issuer:    h.Issuer,
		Subject:   at.clientID,
		Audience:  Audience(at.resources),
		ClientID:  at.clientID,
		Scope:     oauth.JoinScope(at.scopes),
		ID:        uuid.NewString(),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	}
	if at.grant != nil {
		c.GrantID = at.grant.ID
		c.AuthTime = jwt.NewNumericDate(at.grant.AuthTime)
	}
	if at.user != nil {
		c.Subject = at.user.ID
		c.Identity = idclaims.For(h.identityClaims(at.resources), at.user)
	}
	signed, err := h.Keys.Sign(ctx, TypeAccessToken, c)
	if err != nil {
		return "", 0, fmt.Errorf("sign access token: %w", err)
	}
	return signed, expiresIn, nil
}

// identityClaims is what a token for resources may say about its user:
// what every one of them is configured for (each can read the token), and
// tokens.identity_claims' login and email.
func (h *Handler) identityClaims(resources []string) idclaims.Set {
	s := h.Policy.Claims(resources)
	if h.IdentityClaims {
		s = s.Union(idclaims.Set{Login: true, Email: true})
	}
	return s
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
