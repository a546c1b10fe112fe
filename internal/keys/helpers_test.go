package keys_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

const issuer = "https://auth.example.com"

var kek = keys.DeriveKEK("0123456789abcdef0123456789abcdef-test-secret")

// clock is a settable time source shared by the managers of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)}
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

// countingStore counts ListSigningKeys calls and can be made to fail.
type countingStore struct {
	keys.Store
	lists atomic.Int64
	fail  atomic.Bool
}

var errDown = store.Unavailable(context.DeadlineExceeded)

func (s *countingStore) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	s.lists.Add(1)
	if s.fail.Load() {
		return nil, errDown
	}
	return s.Store.ListSigningKeys(ctx)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func options(t testing.TB, c *clock, alg string) keys.Options {
	return keys.Options{
		Algorithm:     alg,
		EncryptionKey: kek,
		TokenLifetime: time.Hour,
		Prepublish:    time.Hour,
		Now:           c.Now,
		Log:           testLogger(t),
	}
}

func newManager(t testing.TB, st keys.Store, opts keys.Options) *keys.Manager {
	t.Helper()
	m, err := keys.New(context.Background(), st, opts)
	if err != nil {
		t.Fatalf("keys.New: %v", err)
	}
	return m
}

func claimsAt(now time.Time) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   "user-1",
		Audience:  jwt.ClaimStrings{"https://mcp.example.com/mcp"},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}
}

func sign(t testing.TB, m *keys.Manager, now time.Time) string {
	t.Helper()
	tok, err := m.Sign(context.Background(), "at+jwt", claimsAt(now))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return tok
}

// parser verifies as every authd endpoint does; its clock is the test's.
func verify(m *keys.Manager, c *clock, raw string) (*jwt.Token, error) {
	return jwt.ParseWithClaims(raw, &jwt.RegisteredClaims{}, m.Keyfunc,
		jwt.WithValidMethods(m.Algorithms()), jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(c.Now))
}

// headerKid returns the kid a token was signed with.
func headerKid(t testing.TB, raw string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(raw, &jwt.RegisteredClaims{})
	if err != nil {
		t.Fatalf("parsing token header: %v", err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

// jwks decodes the manager's JWKS with go-jose, as a resource server would.
func jwks(t testing.TB, m *keys.Manager) jose.JSONWebKeySet {
	t.Helper()
	b, err := m.JWKS(context.Background())
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("JWKS is not a JWK set: %v\n%s", err, b)
	}
	return set
}

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

// verifyWithJWKS checks raw against a JWK set with go-jose keys and
// golang-jwt, independently of keys.Manager.
func verifyWithJWKS(set jose.JSONWebKeySet, c *clock, raw string) error {
	_, err := jwt.Parse(raw, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		ks := set.Key(kid)
		if len(ks) != 1 {
			return nil, keys.ErrUnknownKey
		}
		if ks[0].Algorithm != tok.Method.Alg() {
			return nil, keys.ErrAlgorithmMismatch
		}
		return ks[0].Key, nil
	}, jwt.WithValidMethods([]string{"ES256", "RS256"}), jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(c.Now))
	return err
}

func storedKeys(t testing.TB, st keys.Store) map[string]store.SigningKey {
	t.Helper()
	rows, err := st.ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.SigningKey{}
	for _, r := range rows {
		out[r.ID] = r
	}
	return out
}

// stores runs f against Postgres and the memory store.
func stores(t *testing.T, f func(t *testing.T, newStore func(t *testing.T) keys.Store)) {
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		f(t, func(t *testing.T) keys.Store { return pgtest.New(t) })
	})
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		f(t, func(t *testing.T) keys.Store { return store.NewMemory() })
	})
}
