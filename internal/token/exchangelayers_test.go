package token_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/token"
)

// TestTokenExchangeClientLayers: two layers keep public and dynamically
// registered clients from token exchange: the grant registry (the grant
// is Confidential and not Dynamic, checked in parse for every grant) and
// the exchange's own checks (exchange.go: no client authentication, a
// client the operator did not configure). Each is tested with the other
// made permissive, or by the description only it gives, so that removing
// either layer fails a case here (end to end, TestTokenExchangeRefusals).
func TestTokenExchangeClientLayers(t *testing.T) {
	t.Parallel()
	const (
		pubX = "public-exchanger" // operator-configured, but public
		dynX = "dynamic-exchanger"
	)
	policy := token.ExchangePolicy{ResourceServer: resA, Resources: []string{resB}}
	setup := func(reg grants.Grant) func(*token.Handler) {
		return func(h *token.Handler) {
			h.Grants = grants.Default().With(reg)
			h.Exchange = &token.Exchange{Clients: map[string]token.ExchangePolicy{pubX: policy, dynX: policy, confClient: policy}}
		}
	}
	seed := func(e *env) {
		for _, c := range []store.Client{
			{ID: pubX, Source: store.SourceConfig, Metadata: store.ClientMetadata{GrantTypes: []string{token.GrantTokenExchange}, TokenEndpointAuthMethod: "none"}},
			{ID: dynX, Source: store.SourceDynamic, SecretHash: oauth.HashSecret(secret), Metadata: store.ClientMetadata{GrantTypes: []string{token.GrantTokenExchange}}},
		} {
			c.Metadata.RedirectURIs = []string{redirect}
			c.CreatedAt, c.UpdatedAt, c.LastUsedAt = start, start, start
			if err := e.st.CreateClient(e.ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	form := func(subject string) url.Values {
		return url.Values{
			"grant_type":         {token.GrantTokenExchange},
			"subject_token":      {subject},
			"subject_token_type": {token.TokenTypeAccessToken},
			"resource":           {resB},
		}
	}
	refused := func(t *testing.T, r reply, layer string) {
		t.Helper()
		wantError(t, r, http.StatusBadRequest, oauth.CodeUnauthorizedClient)
		if d := r.str("error_description"); !strings.Contains(d, layer) {
			t.Fatalf("refused by %q, want the layer saying %q", d, layer)
		}
	}

	t.Run("registry", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, setup(grants.Grant{Type: token.GrantTokenExchange, Confidential: true}))
		seed(e)
		subject := e.login(publicClient).AccessToken
		refused(t, e.post("/token", form(subject), publicAuth(pubX)), token.GrantTokenExchange+" is for confidential clients only")
		refused(t, e.post("/token", form(subject), basicAuth(dynX, secret)), "does not let dynamically registered clients use")
	})
	t.Run("exchange", func(t *testing.T) {
		t.Parallel()
		// A registry that would let both through.
		e := newEnv(t, setup(grants.Grant{Type: token.GrantTokenExchange, Dynamic: true}))
		seed(e)
		subject := e.login(publicClient).AccessToken
		refused(t, e.post("/token", form(subject), publicAuth(pubX)), "token exchange is for confidential clients only")
		refused(t, e.post("/token", form(subject), basicAuth(dynX, secret)), "the client may not exchange tokens")
	})
}
