package register_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/ratelimit"
	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// testStore is the store the handler tests run against: real Postgres.
type testStore interface {
	register.Store
	register.StaticStore
	CountClients(ctx context.Context, source store.ClientSource) (int64, error)
	UpsertUser(ctx context.Context, u store.User) (store.User, error)
	AddConsent(ctx context.Context, c store.Consent) error
	GetConsent(ctx context.Context, userID, clientID string) (store.Consent, error)
}

func newStore(t *testing.T) testStore {
	t.Helper()
	return pgtest.New(t)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t     *testing.T
	srv   *httptest.Server
	st    testStore
	clock *clock
	h     *register.Handler
}

// remoteHeader lets a test pose as another client address, standing in for
// the server's trusted-proxy middleware, which sets r.RemoteAddr.
const remoteHeader = "X-Test-Remote-Addr"

func testPolicy() register.Policy {
	p := register.DefaultPolicy()
	p.RateLimit = ratelimit.Config{}
	p.MaxRedirectURIs = 3
	p.MaxContacts = 2
	p.ClientIdleLifetime = 30 * 24 * time.Hour
	// Tests register machine clients; the default (off) has its own test.
	p.AllowClientCredentials = true
	return p
}

func newEnv(t *testing.T, p register.Policy, limiter *ratelimit.Limiter) *env {
	t.Helper()
	e := &env{t: t, st: newStore(t), clock: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	r := chi.NewRouter()
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// A public address unless the test poses as another: a
			// loopback peer (the test client's own) is never shared.
			r.RemoteAddr = "203.0.113.5:40000"
			if a := r.Header.Get(remoteHeader); a != "" {
				r.RemoteAddr = a
			}
			next.ServeHTTP(w, r)
		})
	})
	e.srv = httptest.NewServer(r)
	t.Cleanup(e.srv.Close)
	e.h = &register.Handler{
		Store:   e.st,
		Issuer:  e.srv.URL,
		Policy:  p,
		Limiter: limiter,
		Now:     e.clock.Now,
	}
	e.h.Routes(r)
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// oauthError asserts an RFC 6749-style JSON error and returns its code.
func (r response) oauthError(t *testing.T) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json", ct)
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("not an OAuth error body: %s", r.body)
	}
	return e.Error
}

type req struct {
	method, path string
	body         any    // marshalled as JSON unless it is a string or []byte
	token        string // Bearer token
	contentType  string // default application/json when there is a body
	remote       string
}

func (e *env) do(rq req) response {
	e.t.Helper()
	var body io.Reader
	switch b := rq.body.(type) {
	case nil:
	case string:
		body = bytes.NewBufferString(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		body = bytes.NewReader(j)
	}
	hr, err := http.NewRequest(rq.method, e.srv.URL+rq.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if rq.body != nil {
		ct := rq.contentType
		if ct == "" {
			ct = "application/json"
		}
		hr.Header.Set("Content-Type", ct)
	}
	if rq.token != "" {
		hr.Header.Set("Authorization", "Bearer "+rq.token)
	}
	if rq.remote != "" {
		hr.Header.Set(remoteHeader, rq.remote)
	}
	resp, err := e.srv.Client().Do(hr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) register(body any) response {
	e.t.Helper()
	return e.do(req{method: http.MethodPost, path: "/register", body: body})
}

func (e *env) count() int64 {
	e.t.Helper()
	n, err := e.st.CountClients(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) client(id string) store.Client {
	e.t.Helper()
	c, err := e.st.GetClient(context.Background(), id, e.clock.Now())
	if err != nil {
		e.t.Fatalf("GetClient(%s): %v", id, err)
	}
	return c
}

// registration is the parts of a client information response the tests use.
type registration struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at"`
	RegistrationAccessToken string   `json:"registration_access_token"`
	RegistrationClientURI   string   `json:"registration_client_uri"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	ClientName              string   `json:"client_name"`
	Scope                   string   `json:"scope"`
	ApplicationType         string   `json:"application_type"`
}

func (r response) registration(t *testing.T) registration {
	t.Helper()
	var reg registration
	if err := json.Unmarshal(r.body, &reg); err != nil {
		t.Fatalf("decode client information response: %v: %s", err, r.body)
	}
	return reg
}

// mustStatus fails unless the response has the given status.
func (r response) mustStatus(t *testing.T, want int) response {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
	return r
}
