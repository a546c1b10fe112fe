package main

import (
	"regexp"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store/pgtest"
)

// TestCodeFlowStatements counts, through the binary on Postgres, the
// statements a code flow sends (the store's spans under each request's
// span), for what issue 22 cut: the callback claims the pending request
// with one conditional write (no consume and store-again), the session
// check of the consent page and its submission reads the session and its
// user in one statement, and /token reads the code with its user.
func TestCodeFlowStatements(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	f := newFlowEnv(t, pgtest.DSN(t))
	inst := startAuthdEnv(t, freeAddr(t), f.env, func(e *env) {
		e.upstreamClient = f.github.Client()
		e.tracerProvider = tp
	}, "--config", f.cfg)

	reg := registerClient(t, inst.URL, map[string]any{
		"client_name": "counted client", "redirect_uris": []string{"http://127.0.0.1/callback"},
		"grant_types": []string{"authorization_code"}, "token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{
		ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:45127/callback",
		Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, f.github.Client().Transport, "http://127.0.0.1:45127/callback")
	q := b.authorize(t, inst.URL, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("resource", mcpResource), oauth2.SetAuthURLParam("prompt", "consent")))
	if _, err := conf.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier)); err != nil {
		t.Fatal(err)
	}
	inst.Stop(t) // every request has finished

	// statements[route] lists "OPERATION table…" of each store statement
	// sent while serving route, in order.
	spans := rec.Ended()
	route := map[trace.SpanID]string{}
	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindServer {
			route[s.SpanContext().SpanID()] = s.Name()
		}
	}
	tables := regexp.MustCompile(`\b(auth_requests|sessions|users|consents|auth_codes|grants|clients)\b`)
	statements := map[string][]string{}
	for _, s := range spans {
		name, ok := route[s.Parent().SpanID()]
		if !ok || !strings.HasPrefix(s.Name(), "postgresql ") {
			continue
		}
		var text string
		for _, a := range s.Attributes() {
			if a.Key == "db.query.text" {
				text = a.Value.AsString()
			}
		}
		statements[name] = append(statements[name], strings.TrimPrefix(s.Name(), "postgresql ")+" "+
			strings.Join(tables.FindAllString(text, -1), ","))
	}
	count := func(route, prefix string) int {
		n := 0
		for _, s := range statements[route] {
			if strings.HasPrefix(s, prefix) {
				n++
			}
		}
		return n
	}
	for _, r := range []string{"GET /callback/{provider}", "GET /consent", "POST /consent"} {
		if len(statements[r]) == 0 {
			t.Fatalf("no statements recorded for %s; recorded: %v", r, statements)
		}
	}

	cb := "GET /callback/{provider}"
	var pending []string
	for _, s := range statements[cb] {
		if strings.Contains(s, "auth_requests") {
			pending = append(pending, s)
		}
	}
	if len(pending) != 2 || !strings.HasPrefix(pending[0], "SELECT ") || !strings.HasPrefix(pending[1], "UPDATE ") {
		t.Errorf("the callback's statements on the pending request: %q, want its read by state and one conditional UPDATE\nall: %q",
			pending, statements[cb])
	}
	for _, r := range []string{"GET /consent", "POST /consent"} {
		var sess []string
		for _, s := range statements[r] {
			if strings.Contains(s, "sessions") {
				sess = append(sess, s)
			}
		}
		if len(sess) != 1 || !strings.HasPrefix(sess[0], "SELECT ") || !strings.Contains(sess[0], "users") || count(r, "SELECT users") != 0 {
			t.Errorf("%s: session statements %q, want one SELECT of the session joined with its user and no read of users alone\nall: %q",
				r, sess, statements[r])
		}
	}
	if count("POST /token", "SELECT users") != 0 || count("POST /token", "SELECT auth_codes,users") != 1 {
		t.Errorf("/token: %q, want the code read together with its user (one SELECT) and no read of users alone", statements["POST /token"])
	}
	if got := count("GET /authorize", "INSERT auth_requests") + count(cb, "UPDATE auth_requests") + count("POST /consent", "DELETE auth_requests"); got != 3 {
		t.Errorf("writes of the pending request: %d, want 3 (stored, signed in, consumed)\n%q", got, statements)
	}
	for _, r := range []string{"GET /authorize", cb, "GET /consent", "POST /consent", "POST /token"} {
		t.Logf("%s: %d statements %q", r, len(statements[r]), statements[r])
	}
}
