package oauth

import (
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

// FuzzPKCEValidation compares ValidVerifier, ValidChallenge and VerifyPKCE
// with the RFC 7636 grammar written out independently, on seeds from the
// downgrade and weak-verifier attacks: empty, short, long, padded,
// non-unreserved characters, the challenge itself as verifier ("plain"),
// and other methods.
func FuzzPKCEValidation(f *testing.F) {
	v := "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	for _, s := range [][3]string{
		{v, S256Challenge(v), MethodS256},
		{v, S256Challenge(v), "plain"},
		{v, S256Challenge(v), "s256"},
		{v, v, "plain"},
		{S256Challenge(v), S256Challenge(v), MethodS256},
		{"", "", ""},
		{v[:42], S256Challenge(v[:42]), MethodS256},
		{v + v + v, S256Challenge(v + v + v), MethodS256},
		{v + "=", S256Challenge(v + "="), MethodS256},
		{v + "\x00", S256Challenge(v + "\x00"), MethodS256},
		{v, S256Challenge(v) + "=", MethodS256},
		{v, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", MethodS256},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, verifier, challenge, method string) {
		wantVerifier := len(verifier) >= 43 && len(verifier) <= 128
		for i := 0; i < len(verifier) && wantVerifier; i++ {
			c := verifier[i]
			wantVerifier = 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
		}
		if got := ValidVerifier(verifier); got != wantVerifier {
			t.Fatalf("ValidVerifier(%q) = %v", verifier, got)
		}
		_, err := base64.RawURLEncoding.Strict().DecodeString(challenge)
		if got, want := ValidChallenge(challenge), len(challenge) == 43 && err == nil; got != want {
			t.Fatalf("ValidChallenge(%q) = %v, want %v", challenge, got, want)
		}
		sum := sha256.Sum256([]byte(verifier))
		want := method == MethodS256 && wantVerifier && challenge == base64.RawURLEncoding.EncodeToString(sum[:])
		if got := VerifyPKCE(challenge, method, verifier); got != want {
			t.Fatalf("VerifyPKCE(%q, %q, %q) = %v, want %v", challenge, method, verifier, got, want)
		}
	})
}
