package upstream_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/upstream"
)

const issuer = "https://authd.example"

// flow is what authd keeps in the pending request towards the upstream.
type flow struct {
	state, verifier, nonce string
	forceLogin             bool
	maxAge                 *int
}

// options is what authd passes the connector for f.
func (f flow) options(loginHint string) upstream.LoginOptions {
	return upstream.LoginOptions{Verifier: f.verifier, Nonce: f.nonce, LoginHint: loginHint, ForceLogin: f.forceLogin, MaxAge: f.maxAge}
}

func newFlow() flow {
	return flow{state: oauth2.GenerateVerifier(), verifier: oauth2.GenerateVerifier(), nonce: oauth2.GenerateVerifier()}
}

func connect(t *testing.T, c upstream.Config, hc *http.Client) upstream.Connector {
	t.Helper()
	c.RedirectURL = issuer + "/callback/" + c.ID
	conn, err := upstream.New(t.Context(), c, hc, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return conn
}

// authorize plays the browser: it follows the connector's login URL at the
// fake, which approves at once, and returns the request that arrives at
// authd's callback.
func authorize(t *testing.T, conn upstream.Connector, hc *http.Client, f flow, loginHint string) *http.Request {
	t.Helper()
	u := conn.AuthCodeURL(f.state, f.options(loginHint))
	if u == "" {
		t.Fatal("AuthCodeURL returned nothing")
	}
	browser := *hc
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := browser.Get(u)
	if err != nil {
		t.Fatalf("GET login URL: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login URL answered %d, want 302", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	want := issuer + "/callback/" + conn.ID() + "?"
	if !strings.HasPrefix(loc, want) {
		t.Fatalf("redirected to %q, want %s…", loc, want)
	}
	back, _ := url.Parse(loc)
	if got := back.Query().Get("state"); got != f.state {
		t.Fatalf("state came back as %q, want %q", got, f.state)
	}
	return httptest.NewRequest(http.MethodGet, loc, nil)
}

// login runs a whole sign-in.
func login(t *testing.T, conn upstream.Connector, hc *http.Client, loginHint string) (upstream.Identity, error) {
	t.Helper()
	f := newFlow()
	r := authorize(t, conn, hc, f, loginHint)
	return conn.HandleCallback(t.Context(), r, f.options(""))
}

// wantError asserts err is an *upstream.Error with the code, and that no
// identity came with it.
func wantError(t *testing.T, id upstream.Identity, err error, code string) *upstream.Error {
	t.Helper()
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want *upstream.Error %s", err, code)
	}
	if ue.Code != code {
		t.Fatalf("code = %q (%v), want %q", ue.Code, ue, code)
	}
	if ue.Message == "" {
		t.Error("Error.Message is empty; the user needs an explanation")
	}
	if id.Subject != "" || id.Email != "" || id.Login != "" {
		t.Errorf("identity %+v returned along with the error", id)
	}
	return ue
}

func callbackRequest(conn upstream.Connector, q url.Values) *http.Request {
	return httptest.NewRequestWithContext(context.Background(), http.MethodGet, issuer+"/callback/"+conn.ID()+"?"+q.Encode(), nil)
}
