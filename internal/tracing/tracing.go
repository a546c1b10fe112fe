// Package tracing is authd's OpenTelemetry tracing: a span per HTTP request
// named by its route, client spans for calls to upstream identity
// providers with the W3C trace context propagated to them, and the switch
// that turns it all on from the standard OTEL_* environment variables.
// Off (the default) every piece is a no-op or absent, so the request path
// pays nothing for it. Store queries get their spans from the store
// (store.WithTracerProvider), the only package that sees SQL.
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Name is the instrumentation scope of authd's spans.
const Name = "github.com/authd/authd"

// propagator is W3C Trace Context, the format OTEL_PROPAGATORS defaults to.
var propagator = propagation.TraceContext{}

// Enabled reports whether the OTEL_* variables ask for traces: an OTLP
// endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT) or
// OTEL_TRACES_EXPORTER=otlp, unless OTEL_TRACES_EXPORTER=none or
// OTEL_SDK_DISABLED=true. authd exports nothing by default: an
// authorization server should not start sending data to localhost:4318
// because no one said otherwise.
func Enabled(getenv func(string) string) (bool, error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false, nil
	}
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return false, nil
	case "otlp":
	case "":
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return false, nil
		}
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: authd exports traces with otlp only (or none)", exp)
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := getenv(k); p != "" {
			if p != "http/protobuf" {
				return false, fmt.Errorf("%s=%s: authd's OTLP exporter speaks http/protobuf only", k, p)
			}
			break
		}
	}
	return true, nil
}

// Setup returns the tracer provider the OTEL_* variables ask for (see
// Enabled) and a function that flushes and stops it. Off, it is a no-op
// provider and shutdown does nothing. The OTLP/HTTP exporter, the sampler
// (OTEL_TRACES_SAMPLER, default parentbased_always_on) and the resource
// (OTEL_SERVICE_NAME, default "authd"; OTEL_RESOURCE_ATTRIBUTES) read
// their standard variables themselves.
func Setup(ctx context.Context, getenv func(string) string, version string) (trace.TracerProvider, func(context.Context) error, error) {
	on, err := Enabled(getenv)
	if err != nil || !on {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("authd"), semconv.ServiceVersion(version)),
		resource.WithFromEnv(), // after the defaults above, so it overrides them
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// IsNoop reports whether tp records nothing, so callers can leave their
// hot paths untouched.
func IsNoop(tp trace.TracerProvider) bool {
	if tp == nil {
		return true
	}
	_, ok := tp.(noop.TracerProvider)
	return ok
}

// Middleware starts a server span for every request, as the child of a
// W3C traceparent the caller sent, and names it by the chi route pattern
// ("POST /token") once routing is done, never by the raw path. With a
// no-op provider it returns next unchanged.
func Middleware(tp trace.TracerProvider) func(http.Handler) http.Handler {
	if IsNoop(tp) {
		return func(next http.Handler) http.Handler { return next }
	}
	tracer := tp.Tracer(Name)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			ctx, span := tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLScheme(scheme(r))))
			defer span.End()
			rec := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(rec, r.WithContext(ctx))
			route := "unmatched"
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
				route = rc.RoutePattern()
			}
			span.SetName(r.Method + " " + route)
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			span.SetAttributes(semconv.HTTPRoute(route), semconv.HTTPResponseStatusCode(status))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
		})
	}
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Client returns hc with a transport that makes a client span of every
// request, as a child of the request's context, and sends the trace
// context along (traceparent). Spans carry the method, host and path,
// never the query (which can hold codes). With a no-op provider it
// returns hc itself.
func Client(tp trace.TracerProvider, hc *http.Client) *http.Client {
	if IsNoop(tp) {
		return hc
	}
	c := *hc
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = &transport{base: base, tracer: tp.Tracer(Name)}
	return &c
}

type transport struct {
	base   http.RoundTripper
	tracer trace.Tracer
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, span := t.tracer.Start(r.Context(), r.Method+" "+r.URL.Host, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			semconv.HTTPRequestMethodKey.String(r.Method),
			semconv.ServerAddress(r.URL.Hostname()),
			attribute.String("url.path", r.URL.Path),
		))
	defer span.End()
	r = r.Clone(ctx) // a RoundTripper must not modify the caller's request
	propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		span.SetStatus(codes.Error, "transport error")
		span.RecordError(err)
		return nil, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
	return resp, nil
}
