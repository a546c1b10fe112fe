package tokens

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerifyJWTCache compares checking a JWT access token the first
// time (signature and claims: "cold") with checking it again ("cached"),
// which is what a resource server introspecting on every request causes.
func BenchmarkVerifyJWTCache(b *testing.B) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s := &Service{Keys: &fakeKeys{pub: &priv.PublicKey}, Issuer: "https://auth.example.com"}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": s.Issuer, "sub": "5f0c2b7e-8d1a-4a8e-9d55-0c1e3f1c2a77", "aud": "https://mcp.example.com/mcp",
		"client_id": "4d1f6c7e-2b8a-4e3f-9a1d-7c6b5a4e3d2c", "scope": "mcp:tools", "jti": "0b8e7c6d-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	tok.Header["kid"], tok.Header["typ"] = "k1", "at+jwt"
	raw, err := tok.SignedString(priv)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.jwts.m = nil
			if _, err := s.verifyJWT(raw, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.verifyJWT(raw, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
