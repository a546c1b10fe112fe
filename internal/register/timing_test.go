package register_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/store"
)

// BenchmarkRegistrationTokenTiming compares RFC 7592 GET /register/{id}
// failing for an unknown client, a known client with a wrong registration
// access token, and near-miss tokens (last or first character changed),
// next to the success path. authenticate compares digests in constant time
// and does the same work against a dummy digest when the client is unknown,
// so the sub-benchmarks should match within noise; see
// BenchmarkClientAuthenticationTiming for how to compare them, and why this
// is a benchmark rather than a test.
func BenchmarkRegistrationTokenTiming(b *testing.B) {
	h := &register.Handler{Store: store.NewMemory(), Issuer: "https://auth.example.com", Policy: register.DefaultPolicy()}
	r := chi.NewRouter()
	h.Routes(r)
	body, _ := json.Marshal(map[string]any{"client_name": "t", "redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "client_secret_basic"})
	rec := httptest.NewRecorder()
	post := httptest.NewRequest(http.MethodPost, "/register", bytes.NewReader(body))
	post.Header.Set("Content-Type", "application/json")
	r.ServeHTTP(rec, post)
	var reg struct {
		ClientID string `json:"client_id"`
		RAT      string `json:"registration_access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &reg); err != nil || rec.Code != http.StatusCreated {
		b.Fatalf("register: %d %s", rec.Code, rec.Body)
	}
	flip := func(s string, i int) string {
		bs := []byte(s)
		bs[i] ^= 1
		return string(bs)
	}
	for _, c := range []struct {
		name, id, token string
		status          int
	}{
		{"case=unknown-client", "00000000-0000-0000-0000-000000000000", reg.RAT, http.StatusUnauthorized},
		{"case=wrong-token", reg.ClientID, flip(flip(reg.RAT, 20), 30), http.StatusUnauthorized},
		{"case=near-miss-last", reg.ClientID, flip(reg.RAT, len(reg.RAT)-1), http.StatusUnauthorized},
		{"case=near-miss-first", reg.ClientID, flip(reg.RAT, 0), http.StatusUnauthorized},
		{"case=correct", reg.ClientID, reg.RAT, http.StatusOK},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/register/"+c.id, nil)
			req.Header.Set("Authorization", "Bearer "+c.token)
			for b.Loop() {
				w := httptest.NewRecorder()
				r.ServeHTTP(w, req)
				if w.Code != c.status {
					b.Fatalf("%d, want %d", w.Code, c.status)
				}
			}
		})
	}
}
