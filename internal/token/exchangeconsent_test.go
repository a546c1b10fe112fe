package token_test

import (
	"context"
	"errors"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/token"
)

// An upstream token goes only to a subject token for a resource that
// declared that upstream's scopes (what the consent page showed): a
// server allowed the upstream, holding a token for a resource that
// declared none, gets invalid_target and nothing is handed out; with the
// declaration it gets the token.
func TestExchangeUpstreamNeedsConsentedResource(t *testing.T) {
	t.Parallel()
	const rs = "exchanging-rs"
	for _, declared := range []bool{false, true} {
		var handedOut atomic.Int32
		e := newEnv(t, func(h *token.Handler) {
			h.Grants = grants.Default().With(grants.Grant{Type: grants.TokenExchange, Confidential: true})
			h.Exchange = &token.Exchange{
				Clients: map[string]token.ExchangePolicy{rs: {ResourceServer: resA, Upstreams: []string{"github"}}},
				Upstreams: func(context.Context, string, string) (token.UpstreamToken, error) {
					handedOut.Add(1)
					return token.UpstreamToken{AccessToken: "gho_upstream", Scopes: []string{"repo"}}, nil
				},
			}
			// resB declares GitHub access; resA only when declared.
			for i, r := range h.Policy.Resources {
				if r.URI == resB || r.URI == resA && declared {
					h.Policy.Resources[i].UpstreamScopes = map[string][]string{"github": {"repo"}}
				}
			}
		})
		if err := e.st.CreateClient(e.ctx, store.Client{ID: rs, SecretHash: oauth.HashSecret(secret), Source: store.SourceConfig,
			Metadata: store.ClientMetadata{RedirectURIs: []string{redirect},
				GrantTypes: []string{token.GrantAuthorizationCode, token.GrantTokenExchange}},
			CreatedAt: start, UpdatedAt: start, LastUsedAt: start}); err != nil {
			t.Fatal(err)
		}
		code, verifier := e.code(publicClient) // the user's token for resA
		tok, err := e.exchange(publicClient, code, verifier)
		if err != nil {
			t.Fatalf("code exchange: %v", err)
		}
		r := e.post("/token", url.Values{
			"grant_type":         {token.GrantTokenExchange},
			"subject_token":      {tok.AccessToken},
			"subject_token_type": {token.TokenTypeAccessToken},
			"audience":           {"github"},
		}, basicAuth(rs, secret))
		if !declared {
			if r.status != 400 || r.str("error") != "invalid_target" || r.str("access_token") != "" || handedOut.Load() != 0 {
				t.Fatalf("undeclared upstream: %d %v (tokens handed out: %d), want 400 invalid_target and none", r.status, r.json, handedOut.Load())
			}
			continue
		}
		if r.status != 200 || r.str("access_token") != "gho_upstream" {
			t.Fatalf("declared upstream: %d %v, want the upstream token", r.status, r.json)
		}
	}
}

// An upstream that is down (or being refreshed by another replica) is the
// client's reason to retry, not a server error: 503 temporarily_unavailable
// with Retry-After, never a 500.
func TestExchangeUpstreamOutageIs503(t *testing.T) {
	t.Parallel()
	const rs = "exchanging-rs"
	e := newEnv(t, func(h *token.Handler) {
		h.Grants = grants.Default().With(grants.Grant{Type: grants.TokenExchange, Confidential: true})
		h.Exchange = &token.Exchange{
			Clients: map[string]token.ExchangePolicy{rs: {ResourceServer: resA, Upstreams: []string{"github"}}},
			Upstreams: func(context.Context, string, string) (token.UpstreamToken, error) {
				return token.UpstreamToken{}, errors.New("github: 502 from the token endpoint")
			},
		}
		for i, r := range h.Policy.Resources {
			if r.URI == resA {
				h.Policy.Resources[i].UpstreamScopes = map[string][]string{"github": {"repo"}}
			}
		}
	})
	if err := e.st.CreateClient(e.ctx, store.Client{ID: rs, SecretHash: oauth.HashSecret(secret), Source: store.SourceConfig,
		Metadata: store.ClientMetadata{RedirectURIs: []string{redirect},
			GrantTypes: []string{token.GrantAuthorizationCode, token.GrantTokenExchange}},
		CreatedAt: start, UpdatedAt: start, LastUsedAt: start}); err != nil {
		t.Fatal(err)
	}
	code, verifier := e.code(publicClient)
	tok, err := e.exchange(publicClient, code, verifier)
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	r := e.post("/token", url.Values{
		"grant_type":         {token.GrantTokenExchange},
		"subject_token":      {tok.AccessToken},
		"subject_token_type": {token.TokenTypeAccessToken},
		"audience":           {"github"},
	}, basicAuth(rs, secret))
	if r.status != 503 || r.str("error") != "temporarily_unavailable" || r.header.Get("Retry-After") == "" || r.str("access_token") != "" {
		t.Fatalf("upstream down: %d %v, want 503 temporarily_unavailable with Retry-After", r.status, r.json)
	}
}
