package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/idclaims"
)

// fakeKeys verifies with one ES256 key that a test can withdraw, and
// counts how often the key was asked for.
type fakeKeys struct {
	priv      *ecdsa.PrivateKey
	pub       *ecdsa.PublicKey
	withdrawn atomic.Bool
	calls     atomic.Int64
}

func (k *fakeKeys) Keyfunc(t *jwt.Token) (any, error) {
	k.calls.Add(1)
	if k.withdrawn.Load() || t.Header["kid"] != "k1" || t.Method.Alg() != "ES256" {
		return nil, errors.New("unknown key")
	}
	return k.pub, nil
}

func (k *fakeKeys) Algorithms() []string { return []string{"ES256"} }

// Sign signs with the key, if the test gave its private half.
func (k *fakeKeys) Sign(_ context.Context, typ string, c jwt.Claims) (string, error) {
	if k.priv == nil {
		return "", errors.New("fakeKeys: no private key")
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"], tok.Header["typ"] = "k1", typ
	return tok.SignedString(k.priv)
}

func TestVerifiedJWTCache(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := &fakeKeys{pub: &priv.PublicKey}
	s := &Service{Keys: keys, Issuer: "https://auth.example.com"}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sign := func(exp time.Time) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"iss": s.Issuer, "sub": "alice", "aud": "https://mcp.example.com", "client_id": "c1",
			"jti": "j1", "iat": now.Unix(), "nbf": now.Unix(), "exp": exp.Unix(),
		})
		tok.Header["kid"], tok.Header["typ"] = "k1", "at+jwt"
		s, err := tok.SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	raw := sign(now.Add(time.Hour))

	c, err := s.verifyJWT(raw, now)
	if err != nil || c.ClientID != "c1" {
		t.Fatalf("first verification: %+v, %v", c, err)
	}
	if n := len(s.jwts.m); n != 1 {
		t.Fatalf("%d cached tokens after one verification, want 1", n)
	}
	// A hit still asks whether the signing key is published, and returns a
	// copy the caller cannot alter the cache through.
	before := keys.calls.Load()
	c.Audience[0] = "changed"
	c, err = s.verifyJWT(raw, now.Add(time.Minute))
	if err != nil || c.Audience[0] != "https://mcp.example.com" || keys.calls.Load() != before+1 {
		t.Fatalf("cached verification: %+v, %v, key asked %d times", c, err, keys.calls.Load()-before)
	}

	// A token differing from a cached one in its signature is not a hit.
	tampered := raw[:len(raw)-2] + "AA"
	if tampered == raw {
		tampered = raw[:len(raw)-2] + "BB"
	}
	if _, err := s.verifyJWT(tampered, now); err == nil {
		t.Fatal("tampered token verified")
	}

	// A withdrawn key ends its cached tokens at once.
	keys.withdrawn.Store(true)
	if _, err := s.verifyJWT(raw, now); err == nil {
		t.Fatal("cached token verified after its key was withdrawn")
	}
	keys.withdrawn.Store(false)

	// Expiry is checked on every hit, and the entry goes.
	if _, err := s.verifyJWT(raw, now.Add(time.Hour)); err == nil {
		t.Fatal("cached token verified at its exp")
	}
	if _, ok := s.jwts.m[sha256.Sum256([]byte(raw))]; ok {
		t.Fatal("expired token still cached")
	}
}

func TestJWTCacheBounded(t *testing.T) {
	var c jwtCache
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := jwtEntry{claims: Claims{ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}
	for i := range maxCachedJWTs + 10 {
		var k [sha256.Size]byte
		k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
		c.put(k, e, now)
	}
	if n := len(c.m); n > maxCachedJWTs {
		t.Fatalf("cache holds %d tokens, bound is %d", n, maxCachedJWTs)
	}
}

// TestJWTCacheHoldsNoIdentity: a token carrying every identity claim is
// cached without any of them (personal data the cache never uses), and a
// hit and a miss return the same claims.
func TestJWTCacheHoldsNoIdentity(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{Keys: &fakeKeys{pub: &priv.PublicKey}, Issuer: "https://auth.example.com"}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": s.Issuer, "sub": "alice", "aud": "https://mcp.example.com", "client_id": "c1",
		"jti": "j1", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"email": "alice@example.com", "name": "Alice", "preferred_username": "alice",
		"groups": []string{"acme", "acme/writers"}, "upstream_provider": "github",
		"upstream_id": "1001", "upstream_login": "alice",
	})
	tok.Header["kid"], tok.Header["typ"] = "k1", "at+jwt"
	raw, err := tok.SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	miss, err := s.verifyJWT(raw, now)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := s.jwts.m[sha256.Sum256([]byte(raw))]
	if !ok {
		t.Fatal("verified token not cached")
	}
	if !reflect.DeepEqual(e.claims.Identity, idclaims.Identity{}) {
		t.Errorf("cached entry holds identity claims: %+v", e.claims.Identity)
	}
	if e.claims.Subject != "alice" || e.claims.ClientID != "c1" || e.claims.ID != "j1" {
		t.Errorf("cached entry lost registered claims: %+v", e.claims)
	}
	hit, err := s.verifyJWT(raw, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(miss.Identity, idclaims.Identity{}) || !reflect.DeepEqual(hit.Identity, idclaims.Identity{}) {
		t.Errorf("verifyJWT returned identity claims: miss %+v, hit %+v", miss.Identity, hit.Identity)
	}
}

// TestCachedClaimsValid: a remembered token is refused, as ParseWithClaims
// would refuse it, once expired (no leeway) or when issued or valid only
// beyond clockSkew in the future (a clock that went back), and accepted
// within the skew.
func TestCachedClaimsValid(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	date := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }
	for _, tc := range []struct {
		name string
		c    Claims
		want bool
	}{
		{"valid", Claims{IssuedAt: date(-time.Minute), ExpiresAt: date(time.Hour)}, true},
		{"issued within the skew", Claims{IssuedAt: date(clockSkew - time.Second), ExpiresAt: date(time.Hour)}, true},
		{"not before within the skew", Claims{IssuedAt: date(0), NotBefore: date(clockSkew - time.Second), ExpiresAt: date(time.Hour)}, true},
		{"expires now", Claims{IssuedAt: date(-time.Hour), ExpiresAt: date(0)}, false},
		{"expired", Claims{IssuedAt: date(-time.Hour), ExpiresAt: date(-time.Second)}, false},
		{"no expiry", Claims{IssuedAt: date(-time.Minute)}, false},
		{"no iat", Claims{ExpiresAt: date(time.Hour)}, false},
		{"issued in the future", Claims{IssuedAt: date(clockSkew + time.Second), ExpiresAt: date(time.Hour)}, false},
		{"not yet valid", Claims{IssuedAt: date(0), NotBefore: date(clockSkew + time.Second), ExpiresAt: date(time.Hour)}, false},
	} {
		if got := cachedClaimsValid(&tc.c, now); got != tc.want {
			t.Errorf("%s: cachedClaimsValid = %v, want %v", tc.name, got, tc.want)
		}
	}
}
