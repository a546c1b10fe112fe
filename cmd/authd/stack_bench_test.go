package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/authd/authd/internal/store"
)

// The stack benchmarks run one request through everything serve puts in
// front of a handler (the database budget, the router's middleware, the
// endpoint) on the in-memory store: authd's own CPU and allocations per
// request, without the network and PostgreSQL that cmd/authbench adds.

const stackIntrospectSecret = "stack-bench-introspect-secret-0123456789abcdef"

func stackHandler(b *testing.B) http.Handler {
	b.Helper()
	sum := sha256.Sum256([]byte(stackIntrospectSecret))
	yaml := `issuer: http://127.0.0.1:8080
log: {level: error}
keys: {encryption_secret: stack-bench-encryption-secret-0123456789abcdef}
resources:
  - {uri: https://mcp.example.com/mcp, name: MCP (JWT)}
  - {uri: https://mcp.example.com/opaque, name: MCP (opaque), token_format: opaque}
default_resource: https://mcp.example.com/mcp
clients:
  - {id: bench-introspector, name: resource server, secret_hash: "sha256$` + hex.EncodeToString(sum[:]) + `", introspect: true}
rate_limits:
  authorize: {per_ip_per_minute: 0, per_ip_burst: 0}
  token: {per_ip_per_minute: 0, per_ip_burst: 0}
  revoke: {per_ip_per_minute: 0, per_ip_burst: 0}
registration:
  allow_client_credentials: true
  rate_limit: {per_ip_per_minute: 0, per_ip_burst: 0, global_per_minute: 0, global_burst: 0}
introspection: {rate_limit: {per_ip_per_minute: 0, per_ip_burst: 0}}
`
	path := filepath.Join(b.TempDir(), "authd.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	addConfigFlags(fs)
	if err := fs.Parse([]string{"--dev", "--config", path}); err != nil {
		b.Fatal(err)
	}
	cfg, err := loadConfig(fs, envOf(nil))
	if err != nil {
		b.Fatal(err)
	}
	st := store.NewMemory()
	b.Cleanup(st.Close)
	a, err := buildApp(b.Context(), deps{cfg: cfg, store: st, log: slog.New(slog.DiscardHandler), now: time.Now, started: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	return databaseBudget(a.handler, cfg.DatabaseTimeout)
}

// stackDo serves one request and fails the benchmark unless the status is want.
func stackDo(b *testing.B, h http.Handler, req *http.Request, want int) []byte {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != want {
		b.Fatalf("%s %s: status %d, want %d: %s", req.Method, req.URL.Path, rec.Code, want, rec.Body)
	}
	return rec.Body.Bytes()
}

func stackPost(path string, form url.Values) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080"+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = "127.0.0.1:40000"
	return req
}

// stackClient registers a confidential client_credentials client.
func stackClient(b *testing.B, h http.Handler) (id, secret string) {
	body, _ := json.Marshal(map[string]any{
		"client_name": "bench", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "redirect_uris": []string{},
	})
	req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/register", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "127.0.0.1:40000"
	var c struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal(stackDo(b, h, req, http.StatusCreated), &c); err != nil {
		b.Fatal(err)
	}
	return c.ID, c.Secret
}

func stackToken(b *testing.B, h http.Handler, id, secret, resource string) string {
	req := stackPost("/token", url.Values{"grant_type": {"client_credentials"}, "resource": {resource}})
	req.SetBasicAuth(id, secret)
	var t struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(stackDo(b, h, req, http.StatusOK), &t); err != nil {
		b.Fatal(err)
	}
	return t.AccessToken
}

func benchmarkIntrospectStack(b *testing.B, resource string) {
	h := stackHandler(b)
	id, secret := stackClient(b, h)
	tok := stackToken(b, h, id, secret, resource)
	form := url.Values{"token": {tok}}.Encode()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/introspect", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = "127.0.0.1:40000"
		req.SetBasicAuth("bench-introspector", stackIntrospectSecret)
		body := stackDo(b, h, req, http.StatusOK)
		if !strings.Contains(string(body), `"active":true`) {
			b.Fatalf("inactive: %s", body)
		}
	}
}

func BenchmarkIntrospectStackJWT(b *testing.B) {
	benchmarkIntrospectStack(b, "https://mcp.example.com/mcp")
}
func BenchmarkIntrospectStackOpaque(b *testing.B) {
	benchmarkIntrospectStack(b, "https://mcp.example.com/opaque")
}

func BenchmarkClientCredentialsStack(b *testing.B) {
	h := stackHandler(b)
	id, secret := stackClient(b, h)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		stackToken(b, h, id, secret, "https://mcp.example.com/mcp")
	}
}
