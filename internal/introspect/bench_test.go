package introspect_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/store"
)

// BenchmarkIntrospectJWT measures /introspect for a user's JWT access
// token against Postgres, the way a resource server calls it: Basic
// authentication of a cached client, ES256 verification, and the store
// lookups. It runs the handler on every core; issue 9 asks for at least
// 6,000 per second on two.
//
// "strict" reads the user every time (three lookups: revoked jti, grant,
// user); "user-cache" keeps users for 5 s (two lookups).
func BenchmarkIntrospectJWT(b *testing.B) {
	benchIntrospect(b, func(e *env) string { return e.aliceToken().AccessToken })
}

// BenchmarkIntrospectOpaque is the same for an opaque access token (the
// token row and the user; issue 9: at least 5,000 per second).
func BenchmarkIntrospectOpaque(b *testing.B) {
	benchIntrospect(b, func(e *env) string {
		return e.login(grantSpec{user: e.alice, scopes: []string{"read"}, resources: []string{resOpaque}}).AccessToken
	})
}

func benchIntrospect(b *testing.B, mint func(*env) string) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"strict", 0}, {"user-cache", 5 * time.Second}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, func(h *introspect.Handler) { h.UserCacheTTL = bc.ttl })
			r := chi.NewRouter()
			e.h.Routes(r)
			body := url.Values{"token": {mint(e)}}.Encode()
			// A busy server has many requests in flight, each mostly
			// waiting on the database.
			b.SetParallelism(8)
			benchParallel(b, func() *http.Request {
				req := httptest.NewRequest(http.MethodPost, "/introspect", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(rs, url.QueryEscape(secret))
				return req
			}, r, `"active":true`)
		})
	}
}

// BenchmarkVerifyJWTParse measures /verify's own work for a JWT (header
// parsing, resource matching, ES256 verification, claim checks, identity
// headers) over the in-memory store, so that the database is not what is
// measured.
func BenchmarkVerifyJWTParse(b *testing.B) {
	e := newEnvWith(b, store.NewMemory())
	tok := e.aliceToken().AccessToken
	r := chi.NewRouter()
	e.h.Routes(r)
	benchParallel(b, func() *http.Request {
		req := httptest.NewRequest(http.MethodGet, "/verify", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-Host", "mcp.example.com")
		req.Header.Set("X-Forwarded-Uri", "/mcp")
		return req
	}, r, "")
}

func benchParallel(b *testing.B, newReq func() *http.Request, h http.Handler, wantBody string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, newReq())
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), wantBody) {
				b.Errorf("%d %s", w.Code, w.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
