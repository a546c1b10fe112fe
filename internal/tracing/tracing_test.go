package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// Tracing is off unless the OTEL_* variables ask for it, and refuses what
// authd cannot do rather than silently exporting nothing.
func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		on      bool
		wantErr string
	}{
		{env: nil, on: false},
		{env: map[string]string{"OTEL_SERVICE_NAME": "authd-eu"}, on: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, on: false},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, on: false},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "otlp only"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, wantErr: "http/protobuf only"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true},
	} {
		on, err := Enabled(envOf(tc.env))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want %q", tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil || on != tc.on {
			t.Errorf("%v: on=%v err=%v, want on=%v", tc.env, on, err, tc.on)
		}
	}
}

type plain struct{ hits int }

func (p *plain) ServeHTTP(http.ResponseWriter, *http.Request) { p.hits++ }

// Off, nothing is installed on the request path: the handler and the
// client are the very ones passed in, and Setup hands back a no-op.
func TestOffInstallsNothing(t *testing.T) {
	tp, shutdown, err := Setup(context.Background(), envOf(nil), "test")
	if err != nil || !IsNoop(tp) {
		t.Fatalf("Setup with no OTEL_* variables: %T %v", tp, err)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := &plain{}
	if got := Middleware(tp)(h); got != http.Handler(h) {
		t.Fatalf("Middleware(noop) wrapped the handler: %T", got)
	}
	hc := &http.Client{}
	if Client(noop.NewTracerProvider(), hc) != hc || Client(nil, hc) != hc {
		t.Fatal("Client(noop) replaced the client")
	}
}

// On, an unrouted request still gets a span, named without the raw path.
func TestMiddlewareNamesUnroutedRequests(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := Middleware(tp)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/secret/path?code=abc", nil))
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "GET unmatched" || spans[0].Status().Code.String() != "Error" {
		t.Fatalf("spans %v", spans)
	}
	for _, a := range spans[0].Attributes() {
		if strings.Contains(a.Value.String(), "secret") || strings.Contains(a.Value.String(), "code=abc") {
			t.Fatalf("span attribute %s=%s carries the raw path", a.Key, a.Value.String())
		}
	}
}
