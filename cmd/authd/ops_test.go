package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsListenerAndRateLimits: /metrics lives on its own listener and
// counts requests by route pattern; the public endpoints are rate-limited
// per client address with a 429, Retry-After and an RFC-style JSON error.
func TestMetricsListenerAndRateLimits(t *testing.T) {
	metricsAddr := freeAddr(t)
	inst := startAuthd(t, freeAddr(t), map[string]string{
		"AUTHD_METRICS_LISTEN":                          metricsAddr,
		"AUTHD_RATE_LIMITS_AUTHORIZE_PER_IP_PER_MINUTE": "1",
		"AUTHD_RATE_LIMITS_AUTHORIZE_PER_IP_BURST":      "2",
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
	// Other endpoints have their own budgets.
	if got := statusOf(t, inst.URL+"/.well-known/oauth-authorization-server"); got != http.StatusOK {
		t.Fatalf("metadata after the authorize limit: %d", got)
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
