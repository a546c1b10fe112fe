package resource

import (
	"context"
	"errors"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// accessTokenClaims are the claims of an RFC 9068 access token, with the
// identity claims authd adds for resources configured for them.
type accessTokenClaims struct {
	jwt.RegisteredClaims
	ClientID          string   `json:"client_id"`
	Scope             string   `json:"scope"`
	Email             string   `json:"email"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Groups            []string `json:"groups"`
	UpstreamProvider  string   `json:"upstream_provider"`
	UpstreamID        string   `json:"upstream_id"`
	UpstreamLogin     string   `json:"upstream_login"`
}

// verifyJWT verifies raw as an RFC 9068 access token for this resource:
// signed by a key of the issuer's JWK set with the algorithm that key is
// pinned to, typ at+jwt, iss the issuer, aud containing the resource, exp
// in the future and nbf and iat not (within the leeway), and sub and
// client_id present (§2.2).
func (p *Protector) verifyJWT(ctx context.Context, raw string) (*Identity, error) {
	md, err := p.as.get(ctx)
	if err != nil {
		return nil, err
	}
	if md.JWKSURI == "" {
		return nil, errors.New("the authorization server's metadata has no jwks_uri: configure Introspection instead")
	}
	var keyErr error
	keyfunc := func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, invalid("no kid")
		}
		k, err := p.keys.key(ctx, md.JWKSURI, kid)
		if err != nil {
			keyErr = err
			return nil, err
		}
		// The key decides the algorithm, never the token (RFC 8725 §3.1).
		if alg, _ := t.Header["alg"].(string); alg != k.alg || t.Method.Alg() != k.alg {
			return nil, invalid("alg does not match the key's")
		}
		return k.key, nil
	}
	var c accessTokenClaims
	tok, err := jwt.ParseWithClaims(raw, &c, keyfunc,
		jwt.WithValidMethods(signingAlgs),
		jwt.WithIssuer(p.cfg.Issuer),
		jwt.WithAudience(p.cfg.Resource),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(p.leeway),
		jwt.WithTimeFunc(p.cfg.Now),
	)
	switch {
	case keyErr != nil && !errors.Is(keyErr, ErrInvalidToken):
		return nil, keyErr // the keys could not be fetched: not the token's fault
	case err != nil:
		return nil, invalid(err.Error())
	case !isAccessTokenType(tok.Header["typ"]):
		// Another kind of JWT from the same issuer, e.g. an ID token (RFC
		// 9068 §4).
		return nil, invalid("typ is not at+jwt")
	case c.Subject == "" || c.ClientID == "":
		return nil, invalid("sub or client_id missing")
	}
	id := &Identity{
		Subject:   c.Subject,
		ClientID:  c.ClientID,
		Scopes:    strings.Fields(c.Scope),
		Audience:  c.Audience,
		ExpiresAt: c.ExpiresAt.Time,
		TokenID:   c.ID,
		Email:     c.Email,
		Name:      c.Name,
		Login:     c.PreferredUsername,
		Groups:    c.Groups,
		Upstream:  Upstream{Provider: c.UpstreamProvider, ID: c.UpstreamID, Login: c.UpstreamLogin},
	}
	return id, nil
}

// isAccessTokenType accepts "at+jwt" and its full media type (RFC 9068
// §4), compared case-insensitively as media types are.
func isAccessTokenType(typ any) bool {
	s, _ := typ.(string)
	return strings.EqualFold(s, "at+jwt") || strings.EqualFold(s, "application/at+jwt")
}
