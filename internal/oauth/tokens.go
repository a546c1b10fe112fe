package oauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Prefixes of the credentials authd issues. They make a leaked value easy to
// recognise (secret scanners, log review) and let introspection route a
// token without trusting token_type_hint.
const (
	PrefixCode              = "authd_ac_"
	PrefixRefreshToken      = "authd_rt_"
	PrefixAccessToken       = "authd_at_"
	PrefixClientSecret      = "authd_cs_"
	PrefixRegistrationToken = "authd_rat_"
	PrefixSession           = "authd_s_"
	PrefixRequest           = "authd_rq_"
	PrefixState             = "authd_st_"
)

// NewToken returns prefix followed by 256 bits from crypto/rand, base64url
// encoded: the guessing probability is far below OAuth 2.1 §7.7's 2^-128.
func NewToken(prefix string) string {
	return prefix + RandomString(32)
}

// RandomString returns n random bytes, base64url encoded without padding.
func RandomString(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never returns an error on supported platforms (Go 1.24+).
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Digest is how the store keys a high-entropy token: SHA-256, base64url.
// A single fast hash is sound here because the input carries 256 bits of
// randomness; a database dump yields no usable credential.
func Digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

const (
	schemeSHA256 = "sha256$"
	schemeBcrypt = "$2"
)

// HashSecret hashes a client secret authd generated itself (NewToken): a
// single SHA-256 is enough for 256 random bits and keeps /token fast.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return schemeSHA256 + hex.EncodeToString(sum[:])
}

// HashChosenSecret hashes a secret an operator chose (config, CLI), which
// may be low-entropy: bcrypt.
func HashChosenSecret(secret string) (string, error) {
	b, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// IsBcryptHash reports whether hash is one HashChosenSecret made: costly
// to check, unlike HashSecret's.
func IsBcryptHash(hash string) bool { return strings.HasPrefix(hash, schemeBcrypt) }

// IsSecretHash reports whether s looks like a hash HashSecret or
// HashChosenSecret produced (config may carry a pre-hashed secret).
func IsSecretHash(s string) bool {
	if strings.HasPrefix(s, schemeSHA256) {
		_, err := hex.DecodeString(s[len(schemeSHA256):])
		return err == nil && len(s) == len(schemeSHA256)+64
	}
	_, err := bcrypt.Cost([]byte(s))
	return err == nil
}

// dummyHash is compared against when the client is unknown, so that an
// unknown client id and a wrong secret take the same time.
var dummyHash = HashSecret("authd-dummy-secret-for-constant-time-comparison")

// VerifySecret reports whether presented matches hash, in time independent
// of where they differ. An empty hash (unknown client) still does the work.
func VerifySecret(hash, presented string) bool {
	ok := hash != ""
	if !ok {
		hash = dummyHash
	}
	switch {
	case strings.HasPrefix(hash, schemeSHA256):
		want, err := hex.DecodeString(hash[len(schemeSHA256):])
		if err != nil {
			return false
		}
		got := sha256.Sum256([]byte(presented))
		return subtle.ConstantTimeCompare(want, got[:]) == 1 && ok
	case strings.HasPrefix(hash, schemeBcrypt):
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(presented)) == nil && ok
	}
	return false
}

// ConstantTimeEqual compares two strings without leaking where they differ.
func ConstantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
