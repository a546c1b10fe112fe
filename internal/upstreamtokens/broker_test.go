package upstreamtokens_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstream/upstreamtest"
	"github.com/authd/authd/internal/upstreamtokens"
)

const secret = "an-encryption-secret-of-at-least-32-characters"

// fixture is a fake GitHub issuing expiring tokens, a connector for it,
// and a user of authd who signed in there.
type fixture struct {
	gh     *upstreamtest.GitHub
	conn   upstream.Connector
	st     store.Store
	user   store.User
	ident  upstream.Identity
	logBuf *syncBuffer
	skew   atomic.Int64 // how far every clock (fake, connector, brokers) is ahead of time.Now
}

func (f *fixture) now() time.Time { return time.Now().Add(time.Duration(f.skew.Load())) }

// advance moves every clock of the fixture forward by d.
func (f *fixture) advance(d time.Duration) { f.skew.Add(int64(d)) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFixture(t *testing.T, st store.Store, life time.Duration) *fixture {
	t.Helper()
	gh := upstreamtest.NewGitHub(t)
	f := &fixture{gh: gh, st: st, logBuf: &syncBuffer{}}
	gh.SetTokenLifetime(life)
	gh.SetClock(f.now)
	gh.AddUser(upstreamtest.GitHubUser{ID: 4242, Login: "octo", Name: "Octo Cat",
		Emails: []upstreamtest.GitHubEmail{{Email: "octo@example.com", Primary: true, Verified: true}},
		Orgs:   []string{"Acme"}, Teams: map[string][]string{"Acme": {"devs"}}})
	cfg := gh.Config("github")
	cfg.RedirectURL = "https://authd.example/callback/github"
	cfg.StoreTokens = true
	cfg.GitHub.LoadTeams = true
	cfg.Now = f.now
	conn, err := upstream.New(t.Context(), cfg, gh.Client(), nil)
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	ident := signIn(t, gh.Client(), conn)
	if ident.Grant == nil || ident.Grant.AccessToken == "" {
		t.Fatal("the sign-in returned no upstream grant")
	}
	u, err := st.UpsertUser(t.Context(), store.User{Provider: "github", Subject: ident.Subject, Login: ident.Login,
		Groups: ident.Groups, CreatedAt: time.Now(), UpdatedAt: time.Now(), LastLoginAt: time.Now()})
	if err != nil {
		t.Fatalf("UpsertUser: %v", err)
	}
	f.conn, f.user, f.ident = conn, u, ident
	return f
}

// signIn drives a sign-in at the fake through the connector: the browser's
// redirect to the provider, its redirect back, the callback.
func signIn(t *testing.T, hc *http.Client, conn upstream.Connector) upstream.Identity {
	t.Helper()
	verifier := oauth.RandomString(32)
	o := upstream.LoginOptions{Verifier: verifier, Nonce: "n-" + oauth.RandomString(8)}
	noFollow := *hc
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Get(conn.AuthCodeURL("state-1", o))
	if err != nil {
		t.Fatalf("authorize at the fake: %v", err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize at the fake: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	r := httptest.NewRequest(http.MethodGet, "/callback/"+conn.ID()+"?"+loc.RawQuery, nil)
	ident, err := conn.HandleCallback(t.Context(), r, o)
	if err != nil {
		t.Fatalf("HandleCallback: %v", err)
	}
	return ident
}

// broker builds a broker (a replica) over the fixture's store for its
// upstream, on the fixture's clock.
func (f *fixture) broker(t *testing.T, keys *upstreamtokens.Keyring) *upstreamtokens.Broker {
	t.Helper()
	if keys == nil {
		var err error
		if keys, err = upstreamtokens.NewKeyring(secret); err != nil {
			t.Fatal(err)
		}
	}
	return &upstreamtokens.Broker{
		Store: f.st,
		Keys:  keys,
		Upstreams: map[string]upstreamtokens.Upstream{"github": {
			ID: "github", Type: upstream.TypeGitHub,
			Refresher:                  f.conn.(upstream.Refresher),
			Memberships:                f.conn.(upstream.MembershipReader),
			RevokeOnUpstreamRevocation: true,
		}},
		Now: f.now,
		Log: slog.New(slog.NewJSONHandler(f.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// githubLogin calls the fake GitHub's /user with at and returns the login.
func (f *fixture) githubLogin(t *testing.T, at string) (string, int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.gh.APIURL()+"/user", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := f.gh.Client().Do(req)
	if err != nil {
		t.Fatalf("GET /user: %v", err)
	}
	defer resp.Body.Close()
	var u struct{ Login string }
	_ = json.NewDecoder(resp.Body).Decode(&u)
	return u.Login, resp.StatusCode
}

func stores(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"memory":   func(*testing.T) store.Store { return store.NewMemory() },
		"postgres": func(t *testing.T) store.Store { return pgtest.New(t) },
	}
}

// A kept grant comes back as the user's token, usable at the upstream;
// at rest it is ciphertext bound to its user and upstream.
func TestKeepAndToken(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), 8*time.Hour)
			b := f.broker(t, nil)
			ctx := t.Context()

			_, err := b.Token(ctx, f.user.ID, "github")
			if !errors.Is(err, upstreamtokens.ErrNotStored) {
				t.Fatalf("Token before Keep: got %v, want ErrNotStored", err)
			}
			if err := b.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
				t.Fatalf("Keep: %v", err)
			}
			tok, err := b.Token(ctx, f.user.ID, "github")
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.AccessToken != f.ident.Grant.AccessToken || !strings.EqualFold(tok.TokenType, "bearer") {
				t.Fatalf("Token returned another token than the one kept (type %q)", tok.TokenType)
			}
			if tok.Expiry.IsZero() || tok.Expiry.Before(time.Now().Add(7*time.Hour)) {
				t.Fatalf("Token expiry %v, want about 8h from now", tok.Expiry)
			}
			if login, st := f.githubLogin(t, tok.AccessToken); login != "octo" {
				t.Fatalf("the upstream answered %d %q with the handed-out token, want octo", st, login)
			}
			if ok, _ := f.gh.Refreshes(); ok != 0 {
				t.Fatalf("an unexpired token was refreshed %d times", ok)
			}
			if got := strings.Join(tok.Scopes, " "); !strings.Contains(got, "read:org") {
				t.Fatalf("scopes %q, want the granted ones (read:org among them)", got)
			}
			if printed := fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok); strings.Contains(printed, tok.AccessToken) {
				t.Fatal("Token prints its access token")
			}
			if printed := fmt.Sprintf("%v %+v %#v", f.ident, f.ident, *f.ident.Grant); strings.Contains(printed, tok.AccessToken) {
				t.Fatal("an upstream Identity or Grant prints its access token")
			}

			row, err := f.st.GetUpstreamToken(ctx, f.user.ID, "github")
			if err != nil {
				t.Fatalf("GetUpstreamToken: %v", err)
			}
			for _, secretValue := range []string{f.ident.Grant.AccessToken, f.ident.Grant.RefreshToken} {
				if bytes.Contains(row.Sealed, []byte(secretValue)) || strings.Contains(row.KeyID, secretValue) {
					t.Fatal("a token is stored in clear")
				}
			}
			if !row.Refreshable || row.ExpiresAt == nil {
				t.Fatalf("row Refreshable %v ExpiresAt %v, want a refreshable expiring grant", row.Refreshable, row.ExpiresAt)
			}

			// The same ciphertext on another user's row does not open.
			other, err := f.st.UpsertUser(ctx, store.User{Provider: "github", Subject: "777", CreatedAt: time.Now(), UpdatedAt: time.Now(), LastLoginAt: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			moved := row
			moved.UserID = other.ID
			if err := f.st.PutUpstreamToken(ctx, moved); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Token(ctx, other.ID, "github"); !errors.Is(err, upstreamtokens.ErrDecrypt) {
				t.Fatalf("Token of a row moved to another user: got %v, want ErrDecrypt", err)
			}

			// An upstream that does not keep tokens has none to give.
			if _, err := b.Token(ctx, f.user.ID, "google"); !errors.Is(err, upstreamtokens.ErrNotStored) {
				t.Fatalf("Token of an upstream without store_tokens: got %v, want ErrNotStored", err)
			}
			if strings.Contains(f.logBuf.String(), tok.AccessToken) {
				t.Fatal("the access token reached the log")
			}
		})
	}
}

// Covers: a live grant with the scopes covers; missing scopes, no grant,
// a dead grant, or one sealed under a secret no longer configured do not
// (the sign-in then goes to the upstream again and replaces it).
func TestCovers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, store.NewMemory(), 8*time.Hour)
	b := f.broker(t, nil)
	ctx := t.Context()
	check := func(what string, scopes []string, want bool) {
		t.Helper()
		got, err := b.Covers(ctx, f.user.ID, "github", scopes)
		if err != nil || got != want {
			t.Fatalf("%s: Covers %v (err %v), want %v", what, got, err, want)
		}
	}
	check("no grant kept", nil, false)
	if ok, err := b.Covers(ctx, f.user.ID, "google", []string{"x"}); err != nil || !ok {
		t.Fatal("an upstream that keeps no tokens must not send the user back to it")
	}
	if err := b.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
		t.Fatal(err)
	}
	check("granted scopes", []string{"read:org"}, true)
	check("a scope not granted", []string{"repo"}, false)

	other, err := upstreamtokens.NewKeyring("another-secret-0123456789abcdef0123456789")
	if err != nil {
		t.Fatal(err)
	}
	b.Keys = other
	check("sealed under a secret no longer configured", nil, false)
	if _, err := b.Token(ctx, f.user.ID, "github"); !errors.Is(err, upstreamtokens.ErrDecrypt) {
		t.Fatalf("Token of a row sealed under another secret: got %v, want ErrDecrypt", err)
	}
	// A new sign-in replaces the row under the current secret.
	if err := b.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
		t.Fatal(err)
	}
	check("re-kept under the current secret", nil, true)
}
