package resource

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxCachedIntrospections bounds the introspection cache.
const maxCachedIntrospections = 10000

// introspector asks the authorization server about tokens (RFC 7662).
type introspector struct {
	cfg    Introspection
	client *http.Client
	now    func() time.Time
	leeway time.Duration

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedIdentity
}

type cachedIdentity struct {
	id    Identity
	until time.Time
}

// introspectionResponse is an RFC 7662 §2.2 answer, with authd's identity
// claims.
type introspectionResponse struct {
	Active            bool             `json:"active"`
	Scope             string           `json:"scope"`
	ClientID          string           `json:"client_id"`
	TokenType         string           `json:"token_type"`
	Subject           string           `json:"sub"`
	Audience          jwt.ClaimStrings `json:"aud"`
	Issuer            string           `json:"iss"`
	ExpiresAt         *int64           `json:"exp"`
	NotBefore         *int64           `json:"nbf"`
	JTI               string           `json:"jti"`
	Email             string           `json:"email"`
	Name              string           `json:"name"`
	PreferredUsername string           `json:"preferred_username"`
	Groups            []string         `json:"groups"`
	UpstreamProvider  string           `json:"upstream_provider"`
	UpstreamID        string           `json:"upstream_id"`
	UpstreamLogin     string           `json:"upstream_login"`
}

func (in *introspector) check(ctx context.Context, md *asMetadata, issuer, resource, raw string) (*Identity, error) {
	if md.IntrospectionEndpoint == "" {
		return nil, errors.New("the authorization server's metadata has no introspection_endpoint")
	}
	now := in.now()
	sum := digest(raw)
	if in.cfg.CacheTTL > 0 {
		in.mu.Lock()
		e, ok := in.cache[sum]
		in.mu.Unlock()
		if ok && now.Before(e.until) {
			// A copy the caller may change without changing what later
			// requests get from the cache.
			id := e.id
			id.Scopes = slices.Clone(id.Scopes)
			id.Audience = slices.Clone(id.Audience)
			id.Groups = slices.Clone(id.Groups)
			return &id, nil
		}
	}

	r, err := in.ask(ctx, md.IntrospectionEndpoint, raw)
	if err != nil {
		return nil, err
	}
	switch {
	case !r.Active:
		return nil, invalid("introspection: not active")
	case r.TokenType == "refresh_token":
		return nil, invalid("introspection: a refresh token is not an access token")
	case r.Issuer != "" && r.Issuer != issuer:
		return nil, invalid("introspection: another issuer")
	case !slices.Contains(r.Audience, resource):
		// RFC 8707: a token for another resource is not accepted here, nor
		// one bound to no resource at all.
		return nil, invalid("introspection: not meant for this resource")
	case r.ExpiresAt == nil || !now.Before(time.Unix(*r.ExpiresAt, 0)):
		return nil, invalid("introspection: expired or without exp")
	case r.NotBefore != nil && now.Before(time.Unix(*r.NotBefore, 0).Add(-in.leeway)):
		return nil, invalid("introspection: not yet valid")
	case r.Subject == "" || r.ClientID == "":
		return nil, invalid("introspection: sub or client_id missing")
	}
	id := Identity{
		Subject:   r.Subject,
		ClientID:  r.ClientID,
		Scopes:    strings.Fields(r.Scope),
		Audience:  r.Audience,
		ExpiresAt: time.Unix(*r.ExpiresAt, 0),
		TokenID:   r.JTI,
		Email:     r.Email,
		Name:      r.Name,
		Login:     r.PreferredUsername,
		Groups:    r.Groups,
		Upstream:  Upstream{Provider: r.UpstreamProvider, ID: r.UpstreamID, Login: r.UpstreamLogin},
	}
	if in.cfg.CacheTTL > 0 {
		in.put(sum, id, now)
	}
	return &id, nil
}

// put remembers an active answer for CacheTTL, never past the token's exp.
func (in *introspector) put(sum [sha256.Size]byte, id Identity, now time.Time) {
	until := now.Add(in.cfg.CacheTTL)
	if id.ExpiresAt.Before(until) {
		until = id.ExpiresAt
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cache == nil {
		in.cache = map[[sha256.Size]byte]cachedIdentity{}
	}
	if len(in.cache) >= maxCachedIntrospections {
		for k, e := range in.cache {
			if !now.Before(e.until) {
				delete(in.cache, k)
			}
		}
		for k := range in.cache {
			if len(in.cache) < maxCachedIntrospections {
				break
			}
			delete(in.cache, k)
		}
	}
	in.cache[sum] = cachedIdentity{id: id, until: until}
}

// ask POSTs the token to the introspection endpoint, authenticating with
// HTTP Basic (RFC 6749 §2.3.1: both parts form-encoded first).
func (in *introspector) ask(ctx context.Context, endpoint, raw string) (*introspectionResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(url.Values{"token": {raw}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(in.cfg.ClientID), url.QueryEscape(in.cfg.ClientSecret))
	resp, err := in.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("introspection: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes))
	if err != nil {
		return nil, fmt.Errorf("introspection: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		// 401: this server's credentials are wrong, an operator's problem,
		// not the token's; never let a token through for it.
		return nil, fmt.Errorf("introspection: status %d", resp.StatusCode)
	}
	var r introspectionResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("introspection: %w", err)
	}
	return &r, nil
}
