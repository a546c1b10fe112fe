package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// TestMetricsListenerAndRateLimits: /metrics lives on its own listener and
// counts requests by route pattern; the public endpoints are rate-limited
// per client address with a 429, Retry-After and an RFC-style JSON error.
func TestMetricsListenerAndRateLimits(t *testing.T) {
	t.Parallel()
	metricsAddr := freeAddr(t)
	inst := startAuthd(t, freeAddr(t), map[string]string{
		"AUTHD_METRICS_LISTEN":                          metricsAddr,
		"AUTHD_RATE_LIMITS_AUTHORIZE_PER_IP_PER_MINUTE": "1",
		"AUTHD_RATE_LIMITS_AUTHORIZE_PER_IP_BURST":      "2",
		"AUTHD_RATE_LIMITS_TOKEN_PER_IP_PER_MINUTE":     "1",
		"AUTHD_RATE_LIMITS_TOKEN_PER_IP_BURST":          "1",
		"AUTHD_RATE_LIMITS_REVOKE_PER_IP_PER_MINUTE":    "1",
		"AUTHD_RATE_LIMITS_REVOKE_PER_IP_BURST":         "1",
	}, "--dev")

	// Two requests within the burst are served (an error page: no client),
	// the third is refused.
	for i := 0; i < 2; i++ {
		if got := statusOf(t, inst.URL+"/authorize?client_id=nope"); got != http.StatusBadRequest {
			t.Fatalf("request %d: %d", i, got)
		}
	}
	resp, err := http.Get(inst.URL + "/authorize?client_id=nope")
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]string
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || e["error"] == "" {
		t.Fatalf("third request: %d Retry-After=%q %v", resp.StatusCode, resp.Header.Get("Retry-After"), e)
	}
	// The sign-in pages share /authorize's budget.
	for _, path := range []string{"/login?req=x", "/callback/dev?state=x&code=y", "/consent?req=x"} {
		if got := statusOf(t, inst.URL+path); got != http.StatusTooManyRequests {
			t.Errorf("%s after the authorize limit: %d, want 429", path, got)
		}
	}
	// Other endpoints have their own budgets.
	if got := statusOf(t, inst.URL+"/.well-known/oauth-authorization-server"); got != http.StatusOK {
		t.Fatalf("metadata after the authorize limit: %d", got)
	}
	for _, path := range []string{"/token", "/revoke"} {
		for i, want := range []int{http.StatusBadRequest, http.StatusTooManyRequests} {
			// From a browser-based client: even the 429 is readable by it.
			req, _ := http.NewRequest(http.MethodPost, inst.URL+path, strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "token": {"x"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", "https://app.example")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
				t.Errorf("%s request %d: CORS headers %v", path, i+1, resp.Header)
			}
			var e map[string]string
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized && want == http.StatusBadRequest {
				want = http.StatusUnauthorized // no client authentication: invalid_client
			}
			if resp.StatusCode != want || e["error"] == "" {
				t.Errorf("%s request %d: %d %v, want %d", path, i+1, resp.StatusCode, e, want)
			}
			if want == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
				t.Errorf("%s: 429 without Retry-After", path)
			}
		}
	}

	// Not on the public listener.
	if got := statusOf(t, inst.URL+"/metrics"); got != http.StatusNotFound {
		t.Fatalf("/metrics on the public port: %d", got)
	}
	resp, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`authd_http_requests_total{method="GET",route="/authorize",status="400"} 2`,
		`authd_http_requests_total{method="GET",route="/authorize",status="429"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Raw paths never become labels.
	if strings.Contains(string(body), "client_id=nope") {
		t.Error("query string in metrics")
	}
}

// TestPurgeStatsAndKeysCommands runs the maintenance commands against a
// real database: purge removes what expired and keeps the rest, stats
// counts, keys rotate/list show the key life cycle.
func TestPurgeStatsAndKeysCommands(t *testing.T) {
	t.Parallel()
	dsn, st := postgresStore(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	createDynamicClients(t, st, now, map[string]time.Time{"expired-client": past, "live-client": future})
	environ := envOf(map[string]string{
		"AUTHD_DATABASE_URL": dsn, "AUTHD_ISSUER": "https://auth.example.com",
		"AUTHD_KEYS_ENCRYPTION_SECRET":    "test-encryption-secret-0123456789abcdef",
		"AUTHD_ALLOWLIST_ALLOW_ALL_USERS": "true", "AUTHD_DEV": "true",
	})
	cli := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, environ, &out, &errOut); err != nil {
			t.Fatalf("authd %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}

	if out := cli("stats"); !strings.Contains(out, "clients: 1\n") {
		t.Fatalf("stats before purge (the expired client is not live):\n%s", out)
	}
	if out := cli("purge"); !strings.Contains(out, "clients: 1 deleted") {
		t.Fatalf("purge:\n%s", out)
	}
	if _, err := st.GetClient(context.Background(), "live-client", now); err != nil {
		t.Fatalf("purge removed a live client: %v", err)
	}
	if out := cli("purge"); strings.Contains(out, "clients: 1 deleted") {
		t.Fatalf("second purge deleted again:\n%s", out)
	}

	cli("keys", "list") // creates the first key
	if out := cli("keys", "rotate"); !strings.Contains(out, "published now") {
		t.Fatalf("keys rotate: %s", out)
	}
	var infos []struct {
		Kid, State string
		Published  bool
	}
	if err := json.Unmarshal([]byte(cli("keys", "list", "-o", "json")), &infos); err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, k := range infos {
		states[k.State]++
		if !k.Published {
			t.Errorf("key %s not published", k.Kid)
		}
	}
	if states["active"] != 1 || states["next"] != 1 {
		t.Fatalf("keys after rotate: %+v", infos)
	}
}

// TestBackgroundPurgeOnReplicas: every replica purges expired rows every
// purge_interval, several at once without errors (rows another replica is
// deleting are skipped), and keeps what is live.
func TestBackgroundPurgeOnReplicas(t *testing.T) {
	t.Parallel()
	dsn, st := postgresStore(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	clients := map[string]time.Time{"live-client": future}
	for i := range 500 {
		clients[fmt.Sprintf("expired-%d", i)] = past
	}
	createDynamicClients(t, st, now, clients)
	f := newFlowEnv(t, dsn)
	f.env["AUTHD_PURGE_INTERVAL"] = "100ms"
	a, b := f.start(t), f.start(t)

	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := st.CountClients(context.Background(), store.SourceDynamic)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d dynamic clients left after 20s of background purges, want 1", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := st.GetClient(context.Background(), "live-client", now); err != nil {
		t.Fatalf("background purge removed a live client: %v", err)
	}
	for name, inst := range map[string]*instance{"a": a, "b": b} {
		if logs := inst.Logs.String(); strings.Contains(logs, "purge failed") {
			t.Errorf("replica %s: a purge failed:\n%s", name, logs)
		}
	}
	// The replica that deleted them logs it (just after the delete).
	for !strings.Contains(a.Logs.String()+b.Logs.String(), `"event":"purge"`) {
		if time.Now().After(deadline) {
			t.Fatal("no replica logged a purge")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// createDynamicClients stores a public dynamic client per id, expiring at
// the time given.
func createDynamicClients(t *testing.T, st store.Store, now time.Time, expiry map[string]time.Time) {
	t.Helper()
	for id, exp := range expiry {
		if err := st.CreateClient(context.Background(), store.Client{
			ID: id, Source: store.SourceDynamic, CreatedAt: now, UpdatedAt: now, LastUsedAt: now, ExpiresAt: &exp,
			Metadata: store.ClientMetadata{TokenEndpointAuthMethod: "none"},
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRegistrationDisabled: with registration.enabled false, discovery
// advertises no registration_endpoint and /register does not exist.
func TestRegistrationDisabled(t *testing.T) {
	t.Parallel()
	for _, enabled := range []string{"true", "false"} {
		inst := startAuthd(t, freeAddr(t), map[string]string{"AUTHD_REGISTRATION_ENABLED": enabled}, "--dev")
		var md map[string]any
		getJSON(t, inst.URL+"/.well-known/oauth-authorization-server", http.StatusOK, &md)
		_, advertised := md["registration_endpoint"]
		resp, err := http.Post(inst.URL+"/register", "application/json",
			strings.NewReader(`{"redirect_uris":["http://127.0.0.1:9/cb"],"token_endpoint_auth_method":"none"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch {
		case enabled == "true" && (!advertised || resp.StatusCode != http.StatusCreated):
			t.Errorf("registration on: advertised %v, POST /register %d", advertised, resp.StatusCode)
		case enabled == "false" && (advertised || resp.StatusCode != http.StatusNotFound):
			t.Errorf("registration off: advertised %v, POST /register %d, want not advertised and 404", advertised, resp.StatusCode)
		}
	}
}

// postgresStore is a fresh migrated database and a store on it, closed
// when the test ends.
func postgresStore(t *testing.T) (string, *store.Postgres) {
	t.Helper()
	dsn := pgtest.DSN(t)
	st, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return dsn, st
}
