package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestMetricsExposition(t *testing.T) {
	m := New(func() PoolStats { return PoolStats{Acquired: 2, Idle: 3, Total: 5, Max: 10, AcquireCount: 42} })
	m.ObserveRequest("/register/{client_id}", "GET", 401, 3*time.Millisecond)
	m.ObserveToken("client_credentials", "issued")
	m.ObserveToken("refresh_token", "invalid_grant")
	m.ObserveAuthorizeEvent("login", "github")
	m.ObserveRegistration("created")
	m.ObserveIntrospection(true)
	m.ObserveIntrospection(false)

	out := scrape(t, m)
	for _, want := range []string{
		`authd_http_requests_total{method="GET",route="/register/{client_id}",status="401"} 1`,
		`authd_http_request_duration_seconds_count{method="GET",route="/register/{client_id}",status="401"} 1`,
		`authd_token_requests_total{grant_type="client_credentials",outcome="issued"} 1`,
		`authd_token_requests_total{grant_type="refresh_token",outcome="invalid_grant"} 1`,
		`authd_authorize_events_total{event="login",upstream="github"} 1`,
		`authd_client_registrations_total{outcome="created"} 1`,
		`authd_introspections_total{result="active"} 1`,
		`authd_db_pool_acquired_connections 2`,
		`authd_db_pool_acquires_total 42`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}
