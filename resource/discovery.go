package resource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// asMetadata is what this package reads of the RFC 8414 authorization
// server metadata.
type asMetadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// maxDocumentBytes bounds the metadata and JWK set documents.
const maxDocumentBytes = 1 << 20

// retryAfterFailure is how long a failed metadata fetch is remembered, so
// that a down authorization server is not asked once per request.
const retryAfterFailure = time.Second

// serverMetadata fetches the authorization server's metadata once.
type serverMetadata struct {
	issuer string
	client *http.Client
	now    func() time.Time

	mu       sync.Mutex
	md       *asMetadata
	failedAt time.Time
	err      error
}

func (s *serverMetadata) get(ctx context.Context) (*asMetadata, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.md != nil {
		return s.md, nil
	}
	if now := s.now(); s.err != nil && now.Sub(s.failedAt) < retryAfterFailure && !now.Before(s.failedAt) {
		return nil, s.err
	}
	md, err := s.fetch(ctx)
	if err != nil {
		s.err, s.failedAt = err, s.now()
		return nil, err
	}
	s.md, s.err = md, nil
	return md, nil
}

// wellKnownURL is the RFC 8414 §3.1 metadata URL of issuer: the well-known
// path inserted between the host and the issuer's path.
func wellKnownURL(issuer string) string {
	u, _ := url.Parse(issuer) // checked by New
	return u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + pathAfterHost(u.EscapedPath())
}

func (s *serverMetadata) fetch(ctx context.Context) (*asMetadata, error) {
	var md asMetadata
	if _, err := getJSON(ctx, s.client, wellKnownURL(s.issuer), &md); err != nil {
		return nil, fmt.Errorf("authorization server metadata: %w", err)
	}
	// RFC 8414 §3.3: the document must be the issuer's own, or whoever
	// serves it could name any keys.
	if md.Issuer != s.issuer {
		return nil, fmt.Errorf("authorization server metadata names issuer %q, want %q", md.Issuer, s.issuer)
	}
	return &md, nil
}

// getJSON fetches u and decodes its JSON body into v, returning the
// response's headers.
func getJSON(ctx context.Context, c *http.Client, u string, v any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxDocumentBytes {
		return nil, errors.New("GET " + u + ": document too large")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return resp.Header, nil
}
