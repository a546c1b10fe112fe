package clientauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// BenchmarkClientAuthenticationTiming compares how long client
// authentication takes to fail for an unknown client, a known client with
// a wrong secret, and near-miss secrets (differing in the last or the first
// character), next to the success path. The sub-benchmarks should report
// the same ns/op within noise: VerifySecret compares digests in constant
// time and does the same work with a dummy hash for unknown clients, so the
// answer's timing reveals neither which client ids exist nor how close a
// guess was. Compare with
//
//	go test -run '^$' -bench ClientAuthenticationTiming -count 10 ./internal/clientauth | benchstat -col /case -
//
// This is a benchmark, not an assertion: wall-clock comparisons on a
// shared 2-core CI machine are too noisy to fail a build on.
func BenchmarkClientAuthenticationTiming(b *testing.B) {
	secret := oauth.NewToken(oauth.PrefixClientSecret)
	st := store.NewMemory()
	if err := st.CreateClient(context.Background(), store.Client{
		ID: "known", SecretHash: oauth.HashSecret(secret), Source: store.SourceDynamic, CreatedAt: now, UpdatedAt: now, LastUsedAt: now,
	}); err != nil {
		b.Fatal(err)
	}
	// An operator-chosen secret is stored as bcrypt. Given in clear in the
	// configuration, it is pinned at start-up (Pin) and then costs one
	// HMAC, right or wrong ("configured-pinned"); given only as a bcrypt
	// secret_hash, each wrong guess costs bcrypt until the first success
	// ("configured-bcrypt-unpinned", the documented exception, which
	// TestSecurityClientAuthenticationTimingIsUniform does not cover).
	chosen, err := oauth.HashChosenSecret("operator-chosen-secret")
	if err != nil {
		b.Fatal(err)
	}
	if err := st.CreateClient(context.Background(), store.Client{
		ID: "configured", SecretHash: chosen, Source: store.SourceConfig, CreatedAt: now, UpdatedAt: now, LastUsedAt: now,
	}); err != nil {
		b.Fatal(err)
	}
	if err := st.CreateClient(context.Background(), store.Client{
		ID: "pinned", SecretHash: chosen, Source: store.SourceConfig, CreatedAt: now, UpdatedAt: now, LastUsedAt: now,
	}); err != nil {
		b.Fatal(err)
	}
	a := &clientauth.Authenticator{Clients: st, Now: func() time.Time { return now }}
	if !a.Pin("pinned", chosen, "operator-chosen-secret") {
		b.Fatal("pin failed")
	}
	flip := func(s string, i int) string {
		bs := []byte(s)
		bs[i] ^= 1
		return string(bs)
	}
	for _, c := range []struct {
		name, id, secret string
		ok               bool
	}{
		{"case=unknown-client", "unknown", secret, false},
		{"case=wrong-secret", "known", oauth.NewToken(oauth.PrefixClientSecret), false},
		{"case=near-miss-last", "known", flip(secret, len(secret)-1), false},
		{"case=near-miss-first", "known", flip(secret, 0), false},
		{"case=correct", "known", secret, true},
		{"case=configured-pinned-wrong-secret", "pinned", secret, false},
		{"case=configured-pinned-correct", "pinned", "operator-chosen-secret", true},
		{"case=configured-bcrypt-unpinned-wrong-secret", "configured", secret, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodPost, "/token", nil)
			r.Header.Set("Authorization", basic(c.id, c.secret))
			for b.Loop() {
				if _, _, err := a.Authenticate(r, url.Values{}); (err == nil) != c.ok {
					b.Fatalf("ok=%v: %v", c.ok, err)
				}
			}
		})
	}
}
