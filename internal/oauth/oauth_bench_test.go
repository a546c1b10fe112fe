package oauth_test

import (
	"testing"

	"github.com/authd/authd/internal/oauth"
)

// BenchmarkVerifySecret compares the two ways client secrets are stored:
// one SHA-256 for the 256-bit secrets authd generates, bcrypt for secrets
// an operator chose. "unknown" is the dummy comparison for an unknown
// client id, which must cost what a known one does.
func BenchmarkVerifySecret(b *testing.B) {
	generated := oauth.NewToken(oauth.PrefixClientSecret)
	chosen := "an operator-chosen secret"
	bcryptHash, err := oauth.HashChosenSecret(chosen)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, hash, secret string
		want               bool
	}{
		{"sha256", oauth.HashSecret(generated), generated, true},
		{"bcrypt", bcryptHash, chosen, true},
		{"unknown", "", generated, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if oauth.VerifySecret(bc.hash, bc.secret) != bc.want {
					b.Fatal("unexpected result")
				}
			}
		})
	}
}

// BenchmarkVerifyPKCE is the S256 check at code redemption.
func BenchmarkVerifyPKCE(b *testing.B) {
	verifier := oauth.RandomString(32)
	challenge := oauth.S256Challenge(verifier)
	b.ReportAllocs()
	for b.Loop() {
		if !oauth.VerifyPKCE(challenge, oauth.MethodS256, verifier) {
			b.Fatal("verifier rejected")
		}
	}
}

// BenchmarkMatchRedirectURI covers an exact match among several
// registered URIs and a loopback URI whose port varies (RFC 8252 §7.3).
func BenchmarkMatchRedirectURI(b *testing.B) {
	registered := []string{
		"https://claude.ai/api/mcp/auth_callback",
		"https://chatgpt.com/connector_platform_oauth_redirect",
		"http://127.0.0.1/callback",
	}
	for _, bc := range []struct{ name, requested string }{
		{"exact", "https://chatgpt.com/connector_platform_oauth_redirect"},
		{"loopback-port", "http://127.0.0.1:53682/callback"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := oauth.MatchRedirectURI(registered, bc.requested); !ok {
					b.Fatal("no match")
				}
			}
		})
	}
}
