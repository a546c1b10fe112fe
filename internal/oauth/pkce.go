package oauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
)

// MethodS256 is the only code_challenge_method authd accepts: OAuth 2.1
// §4.1.1 and the MCP spec require S256, and "plain" offers no protection
// against a leaked authorization request.
const MethodS256 = "S256"

// ValidVerifier reports whether v is an RFC 7636 §4.1 code_verifier:
// 43–128 characters of [A-Za-z0-9-._~].
func ValidVerifier(v string) bool {
	return len(v) >= 43 && len(v) <= 128 && unreserved(v)
}

// ValidChallenge reports whether c can be an S256 code_challenge: the
// base64url (no padding) encoding of 32 bytes is exactly 43 characters.
func ValidChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	// Strict: a non-canonical encoding (non-zero trailing bits) is never
	// what S256Challenge produces, so no verifier could ever match it.
	_, err := base64.RawURLEncoding.Strict().DecodeString(c)
	return err == nil
}

// S256Challenge computes BASE64URL(SHA256(verifier)) (RFC 7636 §4.2).
func S256Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// VerifyPKCE checks verifier against the stored challenge. A verifier
// without a stored challenge, or a challenge without a verifier, fails
// (RFC 9700 §4.8.2: no downgrade).
func VerifyPKCE(challenge, method, verifier string) bool {
	if challenge == "" || verifier == "" || method != MethodS256 || !ValidVerifier(verifier) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(S256Challenge(verifier)), []byte(challenge)) == 1
}

func unreserved(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9',
			c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}
