package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/allowlist"
	"github.com/authd/authd/internal/authorize"
	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/discovery"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/token"
	"github.com/authd/authd/internal/upstream"
)

const (
	testJWTResource    = "https://mcp.example.com/mcp"
	testOpaqueResource = "https://mcp.example.com/opaque"
	testIntrospectTok  = "authbench-test-introspection-token-0123456789"
)

// devServer is authd's endpoints as `authd serve --dev` wires them (dev
// login, open registration without rate limits, one JWT and one opaque
// resource, a static introspection token) over a fresh Postgres database.
func devServer(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	st := pgtest.New(t)
	log := slog.New(slog.DiscardHandler)
	var h http.Handler = http.NotFoundHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	issuer := srv.URL

	km, err := keys.New(ctx, st, keys.Options{EncryptionKey: keys.DeriveKEK("authbench test"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := upstream.New(ctx, upstream.Config{ID: "dev", Type: "dev", Name: "Dev", RedirectURL: issuer + "/callback/dev"}, http.DefaultClient, log)
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	(&discovery.Handler{
		Metadata: discovery.NewMetadata(issuer, discovery.Features{Registration: true, Introspection: true, Revocation: true, GrantTypes: grants.Default().Types()}),
		JWKS:     km.JWKS, Log: log,
	}).Routes(r)
	regPolicy := register.DefaultPolicy()
	regPolicy.RateLimit = register.Policy{}.RateLimit
	regPolicy.AllowClientCredentials = true // authbench registers its machine client
	(&register.Handler{Store: st, Issuer: issuer, Policy: regPolicy, Log: log}).Routes(r)
	// One resource policy for /authorize and /token, as cmd/authd builds it.
	pol := &policy.Policy{
		Resources: []policy.Resource{
			{URI: testJWTResource, Name: "JWT"},
			{URI: testOpaqueResource, Name: "Opaque", TokenFormat: policy.FormatOpaque},
		},
		DefaultResource: testJWTResource,
	}
	(&authorize.Handler{
		Store: st, Issuer: issuer, Connectors: []upstream.Connector{dev},
		Allowlist: allowlist.Policy{AllowAllUsers: true},
		Policy:    pol, DevMode: true, Log: log,
	}).Routes(r)
	clients := &clientauth.Authenticator{Clients: clientauth.NewCachedClients(st, time.Second, nil)}
	(&token.Handler{
		Store: st, Clients: clients, Keys: km, Issuer: issuer,
		Policy: pol, Grants: grants.Default().AllowDynamic(grants.ClientCredentials, true), Log: log,
	}).Routes(r)
	(&introspect.Handler{Store: st, Clients: clients, Keys: km, Issuer: issuer, BearerTokens: []string{testIntrospectTok}, Log: log}).Routes(r)
	h = r
	return issuer
}

// Every op runs against a real server and reports only successes; the
// JSON output carries the counts.
func TestOpsEndToEnd(t *testing.T) {
	target := devServer(t)
	for _, tc := range []struct {
		op     string
		extra  []string
		status string
	}{
		{opClientCredentials, nil, "200"},
		{opIntrospect, []string{"-introspect-token", testIntrospectTok}, "200"},
		{opIntrospect, []string{"-introspect-token", testIntrospectTok, "-token-from", "code-flow"}, "200"},
		{opIntrospectOpaque, []string{"-introspect-token", testIntrospectTok, "-opaque-resource", testOpaqueResource}, "200"},
		{opRegister, nil, "201"},
		{opRefresh, nil, "200"},
		{opCodeFlow, nil, "200"},
	} {
		t.Run(strings.Join(append([]string{tc.op}, tc.extra...), " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"-target", target, "-op", tc.op, "-concurrency", "2", "-requests", "6", "-json"}, tc.extra...)
			if err := run(context.Background(), args, &out, &errOut); err != nil {
				t.Fatalf("%v\n%s", err, errOut.String())
			}
			var res result
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out.String())
			}
			if res.Requests != 6 || res.Errors != 0 || res.Statuses[tc.status] != 6 || res.PerSecond <= 0 || res.P50 <= 0 || res.Max < res.P99 {
				t.Fatalf("result %+v", res)
			}
		})
	}
}

// Preparation failures stop the run before anything is timed, naming the
// cause.
func TestPrepareFailures(t *testing.T) {
	target := devServer(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong introspection token", []string{"-op", opIntrospect, "-introspect-token", "not-the-configured-token-at-all"}, "trial introspection"},
		{"JWT resource as opaque", []string{"-op", opIntrospectOpaque, "-introspect-token", testIntrospectTok, "-opaque-resource", testJWTResource}, "not opaque"},
		{"wrong client secret", []string{"-op", opClientCredentials, "-client-id", "nobody", "-client-secret", "x"}, "HTTP 401"},
		{"target is not the issuer", []string{"-op", opRegister, "-target", strings.Replace(target, "127.0.0.1", "localhost", 1)}, "not the server's issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-target", target, "-requests", "1", "-concurrency", "1"}, tc.args...)
			var out, errOut bytes.Buffer
			err := run(context.Background(), args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Fatalf("a failed preparation printed a result: %s", out.String())
			}
		})
	}
}
