package keys_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/store"
)

// benchClaims are the size of a typical RFC 9068 access token's claims.
func benchClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "https://auth.example.com", "sub": "5f0c2b7e-8d1a-4a8e-9d55-0c1e3f1c2a77",
		"aud": "https://mcp.example.com/mcp", "client_id": "4d1f6c7e-2b8a-4e3f-9a1d-7c6b5a4e3d2c",
		"scope": "mcp:tools mcp:resources", "jti": "0b8e7c6d-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"gid": "9c8b7a6f-5e4d-4c3b-8a29-1f0e9d8c7b6a",
	}
}

func benchManager(b *testing.B, alg string) *keys.Manager {
	b.Helper()
	m, err := keys.New(context.Background(), store.NewMemory(), keys.Options{
		Algorithm: alg, EncryptionKey: keys.DeriveKEK("bench"), Now: time.Now, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkSign is the signing step of every JWT access token. ES256 is
// the default for a reason: RS256 (2048-bit) signs far slower.
func BenchmarkSign(b *testing.B) {
	for _, alg := range []string{keys.ES256, keys.RS256} {
		b.Run(alg, func(b *testing.B) {
			m := benchManager(b, alg)
			claims := benchClaims(time.Now())
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := m.Sign(ctx, "at+jwt", claims); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkVerify is what introspection and /verify do with a JWT they
// have not seen before: parse, pick the key by kid, check the signature
// and the claims, with the options every authd parser uses.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{keys.ES256, keys.RS256} {
		b.Run(alg, func(b *testing.B) {
			m := benchManager(b, alg)
			raw, err := m.Sign(context.Background(), "at+jwt", benchClaims(time.Now()))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, err := jwt.ParseWithClaims(raw, jwt.MapClaims{}, m.Keyfunc,
						jwt.WithValidMethods(m.Algorithms()), jwt.WithIssuer("https://auth.example.com"),
						jwt.WithExpirationRequired())
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
