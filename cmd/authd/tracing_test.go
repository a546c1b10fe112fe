package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store/pgtest"
)

// headerRecorder remembers the traceparent of every request it carries.
type headerRecorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []string // "host traceparent"
}

func (h *headerRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.seen = append(h.seen, r.URL.Host+" "+r.Header.Get("traceparent"))
	h.mu.Unlock()
	return h.base.RoundTrip(r)
}

// TestTracingSpanTreeOfACodeFlow: with a tracer provider recording in
// memory, one MCP code flow through the binary on Postgres yields a server
// span per request named by its route; the store's statements are child
// spans of the request that sent them; the upstream calls of the callback
// are client spans under it, and the upstream receives their trace context
// (traceparent); a traceparent sent to /token makes its span a child of the
// caller's; and every access-log line carries its request's trace_id.
func TestTracingSpanTreeOfACodeFlow(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	f := newFlowEnv(t, pgtest.DSN(t))
	upstream := &headerRecorder{base: f.github.Client().Transport}
	inst := startAuthdEnv(t, freeAddr(t), f.env, func(e *env) {
		e.upstreamClient = &http.Client{Transport: upstream}
		e.tracerProvider = tp
	}, "--config", f.cfg)

	reg := registerClient(t, inst.URL, map[string]any{
		"client_name": "traced client", "redirect_uris": []string{"http://127.0.0.1/callback"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{
		ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:45126/callback",
		Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, f.github.Client().Transport, "http://127.0.0.1:45126/callback")
	q := b.authorize(t, inst.URL, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))

	// The token request comes from a traced caller.
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	caller := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
		return http.DefaultTransport.RoundTrip(r)
	})}
	tokens, err := conf.Exchange(context.WithValue(context.Background(), oauth2.HTTPClient, caller), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	inst.Stop(t) // every request has finished and logged

	spans := rec.Ended()
	children := func(parent sdktrace.ReadOnlySpan) (out []sdktrace.ReadOnlySpan) {
		for _, s := range spans {
			if s.Parent().SpanID() == parent.SpanContext().SpanID() && s.SpanContext().TraceID() == parent.SpanContext().TraceID() {
				out = append(out, s)
			}
		}
		return out
	}
	server := func(name string) sdktrace.ReadOnlySpan {
		t.Helper()
		for _, s := range spans {
			if s.Name() == name && s.SpanKind() == trace.SpanKindServer {
				return s
			}
		}
		var names []string
		for _, s := range spans {
			names = append(names, s.Name())
		}
		t.Fatalf("no server span %q; spans: %v", name, names)
		return nil
	}
	attr := func(s sdktrace.ReadOnlySpan, key string) string {
		for _, a := range s.Attributes() {
			if string(a.Key) == key {
				return a.Value.String()
			}
		}
		return ""
	}

	for _, name := range []string{"POST /register", "GET /authorize", "GET /callback/{provider}", "POST /consent", "POST /token"} {
		s := server(name)
		if route := strings.TrimPrefix(name, strings.SplitN(name, " ", 2)[0]+" "); attr(s, "http.route") != route {
			t.Errorf("%s: http.route %q", name, attr(s, "http.route"))
		}
		var queries int
		for _, c := range children(s) {
			if strings.HasPrefix(c.Name(), "postgresql ") && c.SpanKind() == trace.SpanKindClient && attr(c, "db.system.name") == "postgresql" {
				queries++
				if c.StartTime().Before(s.StartTime()) || c.EndTime().After(s.EndTime()) {
					t.Errorf("%s: store span %s outside its request", name, c.Name())
				}
			}
		}
		if queries == 0 {
			t.Errorf("%s: no store spans among its children %v", name, spanNames(children(s)))
		}
	}

	// The callback's calls to the upstream (token exchange, user API):
	// client spans under the request, whose context the upstream received.
	cb := server("GET /callback/{provider}")
	var upstreamSpans []sdktrace.ReadOnlySpan
	for _, c := range children(cb) {
		if c.SpanKind() == trace.SpanKindClient && !strings.HasPrefix(c.Name(), "postgresql ") {
			upstreamSpans = append(upstreamSpans, c)
		}
	}
	if len(upstreamSpans) < 2 {
		t.Fatalf("callback: %d upstream client spans, want the token exchange and the user API; children %v", len(upstreamSpans), spanNames(children(cb)))
	}
	upstream.mu.Lock()
	seen := strings.Join(upstream.seen, "\n")
	upstream.mu.Unlock()
	for _, s := range upstreamSpans {
		want := "00-" + s.SpanContext().TraceID().String() + "-" + s.SpanContext().SpanID().String() + "-01"
		if !strings.Contains(seen, want) {
			t.Errorf("upstream call %s: the upstream did not receive traceparent %s; it saw:\n%s", s.Name(), want, seen)
		}
	}

	// /token continues the caller's trace.
	tok := server("POST /token")
	if tok.SpanContext().TraceID().String() != callerTrace || tok.Parent().SpanID().String() != callerSpan || !tok.Parent().IsRemote() {
		t.Errorf("/token span: trace %s parent %s, want the caller's %s/%s", tok.SpanContext().TraceID(), tok.Parent().SpanID(), callerTrace, callerSpan)
	}
	if attr(tok, "http.response.status_code") != "200" {
		t.Errorf("/token span status %q", attr(tok, "http.response.status_code"))
	}

	// Spans carry no secret: not the code, the verifier, the tokens or the
	// upstream client secret (store spans hold statements, whose values
	// are parameters; upstream spans hold hosts and paths, not queries).
	for _, s := range spans {
		var text strings.Builder
		text.WriteString(s.Name())
		for _, a := range s.Attributes() {
			text.WriteString(" " + a.Value.String())
		}
		for _, e := range s.Events() {
			text.WriteString(" " + e.Name)
			for _, a := range e.Attributes {
				text.WriteString(" " + a.Value.String())
			}
		}
		for _, secret := range []string{q.Get("code"), verifier, tokens.AccessToken, tokens.RefreshToken, f.github.ClientSecret} {
			if strings.Contains(text.String(), secret) {
				t.Errorf("span %s carries a secret", s.Name())
			}
		}
	}

	// Each request's access-log line names its trace.
	traceOf := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(inst.Logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg     string `json:"msg"`
			Method  string `json:"method"`
			Route   string `json:"route"`
			TraceID string `json:"trace_id"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "request" {
			continue
		}
		traceOf[line.Method+" "+line.Route] = line.TraceID
	}
	for _, name := range []string{"GET /authorize", "GET /callback/{provider}", "POST /token"} {
		if got, want := traceOf[name], server(name).SpanContext().TraceID().String(); got != want {
			t.Errorf("access log of %s: trace_id %q, want %q", name, got, want)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}
