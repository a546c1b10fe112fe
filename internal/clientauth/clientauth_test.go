package clientauth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	confSecret    = "s3cr:et+/ü%=&"
	specialID     = "id:with+plus/and space"
	specialSecret = "pa:ss+word=="
	bcryptSecret  = "operator chosen"
)

type clientStore interface {
	clientauth.ClientGetter
	CreateClient(ctx context.Context, c store.Client) error
}

// seed creates one client of every kind the tests need.
func seed(t *testing.T, st clientStore) {
	t.Helper()
	// What oauth.HashChosenSecret makes, at the cheapest cost.
	bh, err := bcrypt.GenerateFromPassword([]byte(bcryptSecret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	past := now.Add(-time.Minute)
	future := now.Add(time.Hour)
	for _, c := range []store.Client{
		{ID: "conf", SecretHash: oauth.HashSecret(confSecret)},
		{ID: specialID, SecretHash: oauth.HashSecret(specialSecret)},
		{ID: "pub"},
		{ID: "disabled", SecretHash: oauth.HashSecret(confSecret), Disabled: true},
		{ID: "expired", SecretHash: oauth.HashSecret(confSecret), SecretExpiresAt: &past},
		{ID: "notyetexpired", SecretHash: oauth.HashSecret(confSecret), SecretExpiresAt: &future},
		{ID: "bcrypt", SecretHash: string(bh)},
	} {
		c.Source = store.SourceConfig
		c.CreatedAt, c.UpdatedAt, c.LastUsedAt = now, now, now
		c.Metadata.GrantTypes = []string{"authorization_code"}
		if err := st.CreateClient(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
}

// server exposes ReadForm + CheckSingle + Authenticate over real HTTP, as
// the endpoints use them.
func server(t *testing.T, st clientauth.ClientGetter) *httptest.Server {
	t.Helper()
	a := &clientauth.Authenticator{Clients: st, Now: func() time.Time { return now }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form, err := clientauth.ReadForm(w, r, 1024)
		if err == nil {
			err = clientauth.CheckSingle(form, "resource")
		}
		if err != nil {
			oauth.WriteError(w, r, nil, err)
			return
		}
		c, m, err := a.Authenticate(r, form)
		if err != nil {
			oauth.WriteError(w, r, nil, err)
			return
		}
		oauth.WriteJSON(w, http.StatusOK, map[string]string{"client_id": c.ID, "method": string(m)})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// basic encodes id and secret the RFC 6749 §2.3.1 way.
func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func rawBasic(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }

type result struct {
	status    int
	challenge string
	body      map[string]string
}

func post(t *testing.T, srv *httptest.Server, auth []string, body string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return result{resp.StatusCode, resp.Header.Get("WWW-Authenticate"), m}
}

func TestAuthenticate(t *testing.T) {
	stores := map[string]clientStore{
		"memory":   store.NewMemory(),
		"postgres": pgtest.New(t),
	}
	for name, st := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			seed(t, st)
			srv := server(t, st)
			testAuthenticate(t, srv)
		})
	}
}

func testAuthenticate(t *testing.T, srv *httptest.Server) {
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	const (
		ok      = ""
		badReq  = oauth.CodeInvalidRequest
		badClnt = oauth.CodeInvalidClient
	)
	for _, tc := range []struct {
		name   string
		auth   []string
		body   string
		code   string // expected error; "" = success
		client string
		method clientauth.Method
		basic  bool // a Basic challenge is expected on failure
	}{
		{name: "basic", auth: []string{basic("conf", confSecret)}, client: "conf", method: clientauth.MethodBasic},
		{name: "basic lower-case scheme", auth: []string{"basic " + strings.TrimPrefix(basic("conf", confSecret), "Basic ")}, client: "conf", method: clientauth.MethodBasic},
		{name: "basic with ':' and '+' percent-encoded", auth: []string{basic(specialID, specialSecret)}, client: specialID, method: clientauth.MethodBasic},
		{name: "basic with encoded ':' in id", auth: []string{rawBasic("id%3Awith%2Bplus%2Fand+space:pa%3Ass%2Bword%3D%3D")}, client: specialID, method: clientauth.MethodBasic},
		{name: "basic not form-decoded is a different secret", auth: []string{rawBasic("conf:" + confSecret)}, code: badClnt, basic: true},
		{name: "basic '+' means space", auth: []string{rawBasic("id%3Awith%2Bplus%2Fand+space:pa:ss+word==")}, code: badClnt, basic: true},
		{name: "basic bad base64", auth: []string{"Basic !!!"}, code: badClnt, basic: true},
		{name: "basic without colon", auth: []string{rawBasic("conf")}, code: badClnt, basic: true},
		{name: "basic bad percent escape", auth: []string{rawBasic("conf:%zz")}, code: badClnt, basic: true},
		{name: "basic empty id", auth: []string{rawBasic(":" + confSecret)}, code: badClnt, basic: true},
		{name: "basic wrong secret", auth: []string{basic("conf", "nope")}, code: badClnt, basic: true},
		{name: "basic unknown client", auth: []string{basic("ghost", confSecret)}, code: badClnt, basic: true},
		{name: "basic and matching client_id", auth: []string{basic("conf", confSecret)}, body: form("client_id", "conf"), client: "conf", method: clientauth.MethodBasic},
		{name: "basic and other client_id", auth: []string{basic("conf", confSecret)}, body: form("client_id", "pub"), code: badReq},
		{name: "basic and post", auth: []string{basic("conf", confSecret)}, body: form("client_id", "conf", "client_secret", confSecret), code: badReq},
		{name: "two Authorization headers", auth: []string{basic("conf", confSecret), basic("conf", confSecret)}, code: badReq},
		{name: "bearer header is not client auth", auth: []string{"Bearer abc"}, body: form("client_id", "conf", "client_secret", confSecret), client: "conf", method: clientauth.MethodPost},

		{name: "post", body: form("client_id", "conf", "client_secret", confSecret), client: "conf", method: clientauth.MethodPost},
		{name: "post with special characters", body: form("client_id", specialID, "client_secret", specialSecret), client: specialID, method: clientauth.MethodPost},
		{name: "post bcrypt secret", body: form("client_id", "bcrypt", "client_secret", bcryptSecret), client: "bcrypt", method: clientauth.MethodPost},
		{name: "post wrong secret", body: form("client_id", "conf", "client_secret", "nope"), code: badClnt},
		{name: "post unknown client", body: form("client_id", "ghost", "client_secret", "x"), code: badClnt},
		{name: "post disabled client", body: form("client_id", "disabled", "client_secret", confSecret), code: badClnt},
		{name: "post expired secret", body: form("client_id", "expired", "client_secret", confSecret), code: badClnt},
		{name: "post secret not yet expired", body: form("client_id", "notyetexpired", "client_secret", confSecret), client: "notyetexpired", method: clientauth.MethodPost},
		{name: "duplicated client_secret", body: "client_id=conf&client_secret=" + url.QueryEscape(confSecret) + "&client_secret=" + url.QueryEscape(confSecret), code: badReq},
		{name: "duplicated client_id", body: "client_id=conf&client_id=conf", code: badReq},

		{name: "public by client_id", body: form("client_id", "pub"), client: "pub", method: clientauth.MethodNone},
		{name: "public with empty client_secret", body: "client_id=pub&client_secret=", client: "pub", method: clientauth.MethodNone},
		{name: "public with basic and empty password", auth: []string{basic("pub", "")}, client: "pub", method: clientauth.MethodNone},
		{name: "public presenting a secret (post)", body: form("client_id", "pub", "client_secret", "x"), code: badClnt},
		{name: "public presenting a secret (basic)", auth: []string{basic("pub", "x")}, code: badClnt, basic: true},
		{name: "confidential presenting no secret", body: form("client_id", "conf"), code: badClnt},
		{name: "confidential with empty client_secret", body: "client_id=conf&client_secret=", code: badClnt},
		{name: "confidential with basic and empty password", auth: []string{basic("conf", "")}, code: badClnt, basic: true},
		{name: "unknown public-style client", body: form("client_id", "ghost"), code: badClnt},
		{name: "no client at all", body: form("grant_type", "client_credentials"), code: badClnt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := post(t, srv, tc.auth, tc.body)
			if tc.code == ok {
				if got.status != http.StatusOK || got.body["client_id"] != tc.client || got.body["method"] != string(tc.method) {
					t.Fatalf("got %d %v, want client %q via %s", got.status, got.body, tc.client, tc.method)
				}
				return
			}
			want := http.StatusBadRequest
			if tc.code == badClnt {
				want = http.StatusUnauthorized
			}
			if got.status != want || got.body["error"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", got.status, got.body, want, tc.code)
			}
			if tc.code == badClnt && got.body["error_description"] != "client authentication failed" {
				t.Errorf("description %q reveals why authentication failed", got.body["error_description"])
			}
			// Every 401 carries a challenge (RFC 9110 §15.5.2).
			if wantChallenge := tc.code == badClnt; (got.challenge != "") != wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want a Basic challenge: %v", got.challenge, wantChallenge)
			} else if wantChallenge && !strings.HasPrefix(got.challenge, "Basic ") {
				t.Errorf("WWW-Authenticate = %q", got.challenge)
			}
		})
	}
}

func TestAuthenticateLongClientID(t *testing.T) {
	a := &clientauth.Authenticator{Clients: mustNotCall{t: t}, Now: func() time.Time { return now }}
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	_, _, err := a.Authenticate(r, url.Values{"client_id": {strings.Repeat("a", 3000)}})
	if oe := oauth.AsError(err); oe.Code != oauth.CodeInvalidClient || oe.Status != http.StatusUnauthorized {
		t.Fatalf("err = %v", err)
	}
}

// mustNotCall fails the test if the store is consulted.
type mustNotCall struct{ t *testing.T }

func (g mustNotCall) GetClient(context.Context, string, time.Time) (store.Client, error) {
	g.t.Error("GetClient called for an id that should have been rejected first")
	return store.Client{}, store.ErrNotFound
}

func TestAuthenticateStoreFailure(t *testing.T) {
	a := &clientauth.Authenticator{Clients: failingGetter{}, Now: func() time.Time { return now }}
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	_, _, err := a.Authenticate(r, url.Values{"client_id": {"conf"}, "client_secret": {"x"}})
	if oe := oauth.AsError(err); oe.Status != http.StatusServiceUnavailable {
		t.Fatalf("err = %v (status %d), want 503", err, oe.Status)
	}
}

type failingGetter struct{}

func (failingGetter) GetClient(context.Context, string, time.Time) (store.Client, error) {
	return store.Client{}, store.Unavailable(context.DeadlineExceeded)
}

func TestReadForm(t *testing.T) {
	srv := server(t, store.NewMemory())
	do := func(ct, body string) result {
		t.Helper()
		resp, err := srv.Client().Post(srv.URL, ct, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return result{status: resp.StatusCode, body: m}
	}
	for _, tc := range []struct {
		name, ct, body string
		status         int
	}{
		{"json body", "application/json", `{"client_id":"pub"}`, http.StatusBadRequest},
		{"no content type", "", "client_id=pub", http.StatusBadRequest},
		{"multipart", "multipart/form-data; boundary=x", "--x--", http.StatusBadRequest},
		{"bad escape", "application/x-www-form-urlencoded", "client_id=%zz", http.StatusBadRequest},
		{"semicolon separator", "application/x-www-form-urlencoded", "client_id=pub;a=b", http.StatusBadRequest},
		{"too large", "application/x-www-form-urlencoded", "client_id=" + strings.Repeat("a", 2000), http.StatusRequestEntityTooLarge},
		{"duplicated unknown parameter", "application/x-www-form-urlencoded", "client_id=pub&x=1&x=2", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := do(tc.ct, tc.body)
			if got.status != tc.status || got.body["error"] != oauth.CodeInvalidRequest {
				t.Fatalf("got %d %v, want %d invalid_request", got.status, got.body, tc.status)
			}
		})
	}
}

func TestCheckSingle(t *testing.T) {
	if err := clientauth.CheckSingle(url.Values{"resource": {"a", "b"}, "scope": {"x"}}, "resource"); err != nil {
		t.Errorf("repeatable resource rejected: %v", err)
	}
	err := clientauth.CheckSingle(url.Values{"resource": {"a", "b"}, "scope": {"x", "y"}}, "resource")
	if oe := oauth.AsError(err); oe.Code != oauth.CodeInvalidRequest || !strings.Contains(oe.Description, "scope") {
		t.Errorf("duplicated scope: %v", err)
	}
	if err := clientauth.CheckSingle(url.Values{"resource": {"a", "b"}}); err == nil {
		t.Error("resource repeated where not allowed: accepted")
	}
}

func BenchmarkClientSecretVerify(b *testing.B) {
	hash := oauth.HashSecret(confSecret)
	st := store.NewMemory()
	if err := st.CreateClient(context.Background(), store.Client{
		ID: "conf", SecretHash: hash, Source: store.SourceConfig, CreatedAt: now, UpdatedAt: now,
	}); err != nil {
		b.Fatal(err)
	}
	a := &clientauth.Authenticator{Clients: st, Now: func() time.Time { return now }}
	r := httptest.NewRequest(http.MethodPost, "/token", nil)
	r.Header.Set("Authorization", basic("conf", confSecret))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := a.Authenticate(r, url.Values{}); err != nil {
			b.Fatal(err)
		}
	}
}
