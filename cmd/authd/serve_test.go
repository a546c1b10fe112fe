package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authd/authd/internal/store/pgtest"
)

type serverMetadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	RegistrationEndpoint              string   `json:"registration_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ISSParameterSupported             bool     `json:"authorization_response_iss_parameter_supported"`
}

// registerClient registers a client over RFC 7591 and returns the response.
func registerClient(t *testing.T, issuer string, metadata map[string]any) map[string]any {
	t.Helper()
	body, _ := json.Marshal(metadata)
	resp, err := http.Post(issuer+"/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %v", resp.StatusCode, out)
	}
	return out
}

// verifyWithJWKS verifies a JWT against the server's published JWKS using
// go-jose for the key set and golang-jwt for the token, as a resource
// server would.
func verifyWithJWKS(t *testing.T, issuer, raw string) jwt.MapClaims {
	t.Helper()
	var set jose.JSONWebKeySet
	getJSON(t, issuer+"/.well-known/jwks.json", http.StatusOK, &set)
	if len(set.Keys) == 0 {
		t.Fatal("JWKS has no keys")
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(raw, claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		keys := set.Key(kid)
		if len(keys) != 1 {
			t.Fatalf("kid %q not in JWKS", kid)
		}
		if keys[0].Algorithm != tok.Method.Alg() {
			t.Fatalf("JWKS alg %s, token alg %s", keys[0].Algorithm, tok.Method.Alg())
		}
		return keys[0].Key, nil
	}, jwt.WithValidMethods([]string{"ES256", "RS256"}), jwt.WithIssuer(issuer), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("token does not verify against the JWKS: %v", err)
	}
	if typ := tok.Header["typ"]; typ != "at+jwt" {
		t.Fatalf("typ header %v", typ)
	}
	return claims
}

func TestDevModeServesMetadataAndVerifiableTokens(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	inst := startAuthd(t, addr, nil, "--dev")

	if !strings.Contains(inst.Stdout.String(), inst.URL+"/.well-known/oauth-authorization-server") {
		t.Errorf("start-up banner lacks the discovery URL:\n%s", inst.Stdout.String())
	}
	if !strings.Contains(inst.Logs.String(), "DEVELOPMENT MODE") {
		t.Error("dev mode not loudly logged")
	}

	var md serverMetadata
	h := getJSON(t, inst.URL+"/.well-known/oauth-authorization-server", http.StatusOK, &md)
	if md.Issuer != inst.URL || md.AuthorizationEndpoint != inst.URL+"/authorize" || md.TokenEndpoint != inst.URL+"/token" ||
		md.JWKSURI != inst.URL+"/.well-known/jwks.json" || md.RegistrationEndpoint != inst.URL+"/register" {
		t.Fatalf("metadata endpoints: %+v", md)
	}
	if strings.Join(md.ResponseTypesSupported, ",") != "code" || strings.Join(md.CodeChallengeMethodsSupported, ",") != "S256" || !md.ISSParameterSupported {
		t.Fatalf("metadata capabilities: %+v", md)
	}
	if h.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(h.Get("Cache-Control"), "max-age") {
		t.Fatalf("metadata headers: %v", h)
	}
	var oidc serverMetadata
	getJSON(t, inst.URL+"/.well-known/openid-configuration", http.StatusOK, &oidc)
	if oidc.Issuer != md.Issuer {
		t.Fatalf("openid-configuration issuer %q", oidc.Issuer)
	}

	// A token signed by the server verifies against the served JWKS.
	reg := registerClient(t, inst.URL, map[string]any{
		"client_name":                "dev smoke test",
		"grant_types":                []string{"client_credentials"},
		"response_types":             []string{},
		"token_endpoint_auth_method": "client_secret_basic",
	})
	cc := clientcredentials.Config{
		ClientID:       reg["client_id"].(string),
		ClientSecret:   reg["client_secret"].(string),
		TokenURL:       md.TokenEndpoint,
		EndpointParams: url.Values{"resource": {"http://localhost:9000/mcp"}},
	}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	claims := verifyWithJWKS(t, inst.URL, tok.AccessToken)
	if claims["sub"] != cc.ClientID || claims["client_id"] != cc.ClientID || claims["aud"] != "http://localhost:9000/mcp" {
		t.Fatalf("claims %v", claims)
	}
}

// githubConfig writes a production-style config file: a GitHub upstream
// (never contacted by these tests) and an org allowlist.
func githubConfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "authd.yaml")
	err := os.WriteFile(p, []byte(`
keys:
  encryption_secret: test-encryption-secret-0123456789abcdef
upstreams:
  - id: github
    type: github
    client_id: gh-client
    client_secret: gh-secret
    github:
      base_url: http://127.0.0.1:1
      api_url: http://127.0.0.1:1/api
      load_teams: true
allowlist:
  github_orgs: [acme]
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPostgresMigrateUpThenServe(t *testing.T) {
	t.Parallel()
	dsn := pgtest.EmptyDSN(t)
	cfgFile := githubConfig(t)
	environ := map[string]string{"AUTHD_DATABASE_URL": dsn}

	// An unmigrated database is refused, naming the fix.
	var out, logs bytes.Buffer
	err := run(context.Background(), []string{"serve", "--config", cfgFile}, envOf(map[string]string{
		"AUTHD_DATABASE_URL": dsn, "AUTHD_ISSUER": "http://127.0.0.1:1", "AUTHD_LISTEN": "127.0.0.1:0",
	}), &out, &logs)
	if err == nil || !strings.Contains(err.Error(), "migrate") {
		t.Fatalf("serve on an empty database: %v", err)
	}

	// authd migrate up, then status.
	out.Reset()
	if err := run(context.Background(), []string{"migrate", "up"}, envOf(environ), &out, &logs); err != nil {
		t.Fatalf("migrate up: %v\n%s", err, logs.String())
	}
	if !strings.Contains(out.String(), "up to date") {
		t.Fatalf("migrate up output: %s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"migrate", "status"}, envOf(environ), &out, &logs); err != nil || !strings.Contains(out.String(), "up to date") {
		t.Fatalf("migrate status: %v %s", err, out.String())
	}
	// The database-only commands take an incomplete configuration (the
	// database URL may come from the file) but not an unreadable one: a
	// typo in a key must not be ignored by a migration job.
	dir := t.TempDir()
	incomplete, broken := dir+"/incomplete.yaml", dir+"/broken.yaml"
	os.WriteFile(incomplete, []byte("database_url: "+dsn+"\n"), 0o600)
	os.WriteFile(broken, []byte("databse_url: "+dsn+"\n"), 0o600)
	for _, args := range [][]string{{"migrate", "status"}, {"stats"}} {
		out.Reset()
		if err := run(context.Background(), append(args, "--config", incomplete), envOf(nil), &out, &logs); err != nil {
			t.Errorf("%v with only database_url in the file: %v", args, err)
		}
		err := run(context.Background(), append(args, "--config", broken), envOf(environ), &out, &logs)
		if err == nil || !strings.Contains(err.Error(), "databse_url") {
			t.Errorf("%v with an unknown key in the file: %v, want an error naming it", args, err)
		}
	}

	inst := startAuthd(t, freeAddr(t), environ, "--config", cfgFile)
	if statusOf(t, inst.URL+"/ready") != http.StatusOK {
		t.Fatal("not ready after migrate up")
	}
	var md serverMetadata
	getJSON(t, inst.URL+"/.well-known/oauth-authorization-server", http.StatusOK, &md)
	if md.Issuer != inst.URL {
		t.Fatalf("issuer %q", md.Issuer)
	}
}

func TestPostgresReadinessFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	cluster := pgtest.NewCluster(t)
	environ := map[string]string{"AUTHD_DATABASE_URL": cluster.DSN()}
	inst := startAuthd(t, freeAddr(t), environ, "--config", githubConfig(t))
	if statusOf(t, inst.URL+"/ready") != http.StatusOK || statusOf(t, inst.URL+"/health") != http.StatusOK {
		t.Fatal("not ready with the database up")
	}

	// Kill Postgres: readiness fails, liveness does not.
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, inst.URL+"/ready", http.StatusServiceUnavailable, 10*time.Second)
	if statusOf(t, inst.URL+"/health") != http.StatusOK {
		t.Fatal("/health failed while the database was down")
	}
	// Requests that need the database answer 503 temporarily_unavailable, not 500.
	resp, err := http.Post(inst.URL+"/register", "application/json", strings.NewReader(`{"redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"none"}`))
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]string
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || e["error"] != "temporarily_unavailable" {
		t.Fatalf("register with the database down: %d %v", resp.StatusCode, e)
	}

	// Restart Postgres: authd recovers without a restart.
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, inst.URL+"/ready", http.StatusOK, 20*time.Second)
	reg := registerClient(t, inst.URL, map[string]any{
		"redirect_uris":              []string{"https://app.example.com/cb"},
		"token_endpoint_auth_method": "none",
	})
	if reg["client_id"] == "" {
		t.Fatal("no client id after recovery")
	}
}

func TestServeWaitsForDatabase(t *testing.T) {
	t.Parallel()
	cluster := pgtest.NewCluster(t)
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	vars := map[string]string{
		"AUTHD_LISTEN": addr, "AUTHD_ISSUER": "http://" + addr,
		"AUTHD_DATABASE_URL": cluster.DSN(), "AUTHD_MIGRATE_ON_START": "true",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	logs := &syncBuffer{}
	e := &env{getenv: envOf(vars), stdout: &syncBuffer{}, stderr: logs, now: time.Now, ready: ready}
	go func() { done <- newRootCmd(e).ExecuteContextC(ctx, []string{"serve", "--config", githubConfig(t)}) }()

	// Up and live at once, not ready while the database is down.
	select {
	case err := <-done:
		t.Fatalf("authd exited while the database was down: %v\n%s", err, logs.String())
	case <-time.After(500 * time.Millisecond):
	}
	waitStatus(t, "http://"+addr+"/health", http.StatusOK, 10*time.Second)
	if got := statusOf(t, "http://"+addr+"/ready"); got != http.StatusServiceUnavailable {
		t.Fatalf("/ready = %d before the database is up", got)
	}
	if got := statusOf(t, "http://"+addr+"/.well-known/oauth-authorization-server"); got != http.StatusServiceUnavailable {
		t.Fatalf("metadata = %d before the database is up", got)
	}
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("authd exited: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("not ready 30s after the database came up:\n%s", logs.String())
	}
	waitStatus(t, "http://"+addr+"/ready", http.StatusOK, 5*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestMetricsListenerThatCannotBindFailsBeforeReady: a metrics address in
// use stops authd with an error naming it, and "ready" is never logged or
// signalled (an orchestrator must not route traffic to it first).
func TestMetricsListenerThatCannotBindFailsBeforeReady(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := freeAddr(t)
	vars := map[string]string{"AUTHD_LISTEN": addr, "AUTHD_METRICS_LISTEN": taken.Addr().String()}
	ready := make(chan string, 1)
	logs := &syncBuffer{}
	e := &env{getenv: envOf(vars), stdout: &syncBuffer{}, stderr: logs, now: time.Now, ready: ready}
	err = newRootCmd(e).ExecuteContextC(t.Context(), []string{"serve", "--dev"})
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("serve = %v, want an error naming %s", err, taken.Addr())
	}
	select {
	case <-ready:
		t.Fatal("ready signalled although the metrics listener could not bind")
	default:
	}
	if strings.Contains(logs.String(), `"msg":"ready"`) || strings.Contains(logs.String(), "msg=ready") {
		t.Fatalf("logged ready before failing:\n%s", logs.String())
	}
}
