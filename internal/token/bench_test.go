package token_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/token"
)

// BenchmarkClientCredentials measures the whole /token handler for a
// machine client: form parsing, Basic authentication against a cached
// client, and an ES256-signed JWT.
func BenchmarkClientCredentials(b *testing.B) {
	ctx := context.Background()
	now := func() time.Time { return start }
	st := store.NewMemory()
	if err := st.CreateClient(ctx, store.Client{
		ID: machine, SecretHash: oauth.HashSecret(secret), Source: store.SourceConfig,
		Metadata:  store.ClientMetadata{GrantTypes: []string{token.GrantClientCredentials}},
		CreatedAt: start, UpdatedAt: start,
	}); err != nil {
		b.Fatal(err)
	}
	km, err := keys.New(ctx, st, keys.Options{Algorithm: "ES256", EncryptionKey: keys.DeriveKEK("bench"), Now: now})
	if err != nil {
		b.Fatal(err)
	}
	h := &token.Handler{
		Store:   st,
		Clients: &clientauth.Authenticator{Clients: clientauth.NewCachedClients(st, time.Minute, now), Now: now},
		Keys:    km,
		Issuer:  issuer,
		Policy:  &policy.Policy{Resources: []policy.Resource{{URI: resA}}},
		Now:     now,
	}
	r := chi.NewRouter()
	h.Routes(r)
	body := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}.Encode()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(machine, url.QueryEscape(secret))
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

func BenchmarkVerifyPKCE(b *testing.B) {
	verifier := oauth2.GenerateVerifier()
	challenge := oauth.S256Challenge(verifier)
	b.ReportAllocs()
	for b.Loop() {
		if !oauth.VerifyPKCE(challenge, oauth.MethodS256, verifier) {
			b.Fatal("verifier rejected")
		}
	}
}
