package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/store"
)

// FuzzVerifyJWT feeds arbitrary strings, seeded with a genuine access
// token and the classic forgeries of it (alg none, HS256 keyed with the
// public JWKS, RS256 header on an EC key, a foreign key under the genuine
// kid, edited claims, jku/kid tricks), to the JWT verification behind
// /introspect and /verify. Property: a token is accepted only if its header
// names an algorithm the key set pins (Algorithms()) and an independent
// verifier — go-jose's JWKS plus golang-jwt restricted to the algorithm of
// the JWK with that kid — accepts its signature. Inputs beyond maxTokenLen
// are refused before any parsing (bounded work per request).
func FuzzVerifyJWT(f *testing.F) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	km, err := keys.New(ctx, store.NewMemory(), keys.Options{
		Algorithm: keys.ES256, EncryptionKey: keys.DeriveKEK("fuzz-encryption-secret-0123456789abcdef"),
		Now: func() time.Time { return now },
	})
	if err != nil {
		f.Fatal(err)
	}
	const iss = "https://auth.example.com"
	s := &Service{Keys: km, Issuer: iss}
	claims := jwt.MapClaims{
		"iss": iss, "sub": "user-1", "aud": "https://mcp.example.com/mcp", "client_id": "client-1", "scope": "mcp:tools",
		"jti": "0b7e3f8e-3c1e-4a51-9a48-1d2f6f0f1a11", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "gid": "grant-1",
	}
	genuine, err := km.Sign(ctx, "at+jwt", claims)
	if err != nil {
		f.Fatal(err)
	}
	jwksJSON, err := km.JWKS(ctx)
	if err != nil {
		f.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwksJSON, &set); err != nil {
		f.Fatal(err)
	}

	parts := strings.Split(genuine, ".")
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	var header map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	json.Unmarshal(hb, &header)
	withHeader := func(k string, v any) string {
		m := map[string]any{}
		for kk, vv := range header {
			m[kk] = vv
		}
		m[k] = v
		return enc(m)
	}
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	hs.Header["kid"], hs.Header["typ"] = header["kid"], "at+jwt"
	hsTok, _ := hs.SignedString(jwksJSON)
	foreignKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	es := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	es.Header["kid"], es.Header["typ"] = header["kid"], "at+jwt"
	foreign, _ := es.SignedString(foreignKey)
	escalated := jwt.MapClaims{}
	for k, v := range claims {
		escalated[k] = v
	}
	escalated["scope"] = "admin"
	for _, s := range []string{
		genuine,
		withHeader("alg", "none") + "." + parts[1] + ".",
		withHeader("alg", "none") + "." + parts[1] + "." + parts[2],
		withHeader("alg", "RS256") + "." + parts[1] + "." + parts[2],
		withHeader("alg", "HS256") + "." + parts[1] + "." + parts[2],
		withHeader("alg", "ES384") + "." + parts[1] + "." + parts[2],
		withHeader("kid", "") + "." + parts[1] + "." + parts[2],
		withHeader("jku", "https://attacker.example/jwks") + "." + parts[1] + "." + parts[2],
		withHeader("typ", "JWT") + "." + parts[1] + "." + parts[2],
		hsTok,
		foreign,
		parts[0] + "." + enc(escalated) + "." + parts[2],
		parts[0] + "." + parts[1],
		genuine + ".",
		strings.Repeat("a", 9000),
	} {
		f.Add(s)
	}

	// The property must be reachable: the genuine token passes.
	if _, err := s.verifyJWT(genuine, now); err != nil {
		f.Fatalf("genuine token refused: %v", err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > maxTokenLen {
			if _, err := s.Inspect(ctx, raw, now); err == nil {
				t.Fatalf("accepted a %d-byte token", len(raw))
			}
			return
		}
		c, err := s.verifyJWT(raw, now)
		if err != nil {
			return
		}
		// Independent check of what was accepted.
		var alg string
		tok, perr := jwt.Parse(raw, func(tk *jwt.Token) (any, error) {
			kid, _ := tk.Header["kid"].(string)
			ks := set.Key(kid)
			if len(ks) != 1 {
				return nil, jwt.ErrTokenUnverifiable
			}
			alg = ks[0].Algorithm
			if tk.Method.Alg() != alg {
				return nil, jwt.ErrTokenSignatureInvalid
			}
			return ks[0].Key, nil
		}, jwt.WithValidMethods([]string{"ES256", "RS256"}), jwt.WithoutClaimsValidation())
		if perr != nil || !tok.Valid {
			t.Fatalf("verifyJWT accepted %q, which the independent verifier refuses: %v", raw, perr)
		}
		if !slices.Contains(km.Algorithms(), tok.Method.Alg()) || tok.Method.Alg() != alg {
			t.Fatalf("accepted algorithm %s (pinned: %v, key: %s)", tok.Method.Alg(), km.Algorithms(), alg)
		}
		if c.Issuer != iss || c.ExpiresAt == nil || !now.Before(c.ExpiresAt.Time) {
			t.Fatalf("accepted claims %+v", c)
		}
	})
}

// TestVerifyJWTBoundedAllocations: the work one hostile token costs is
// bounded. For worst-case inputs up to maxTokenLen (deeply nested or huge
// JSON in header and claims, many segments, long base64), verification
// allocates a bounded amount: a small multiple of the input, never a
// function of what the input claims (lengths, depths). Over maxTokenLen
// nothing is parsed at all.
func TestVerifyJWTBoundedAllocations(t *testing.T) {
	km, err := keys.New(context.Background(), store.NewMemory(), keys.Options{
		Algorithm: keys.ES256, EncryptionKey: keys.DeriveKEK("alloc-encryption-secret-0123456789abcdef"),
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{Keys: km, Issuer: "https://auth.example.com"}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	// Payload sizes chosen so the token stays just under maxTokenLen.
	fit := func(seg func(n int) string) string {
		n := 16
		for len(seg(n*2)) <= maxTokenLen {
			n *= 2
		}
		return seg(n)
	}
	now := time.Now()
	inputs := map[string]string{
		"nested header": fit(func(n int) string {
			return b64(`{"alg":"ES256","x":`+strings.Repeat("[", n)+strings.Repeat("]", n)+`}`) + ".e30.c2ln"
		}),
		"nested claims": fit(func(n int) string {
			return b64(`{"alg":"ES256","typ":"at+jwt"}`) + "." + b64(`{"a":`+strings.Repeat(`{"a":`, n)+`1`+strings.Repeat("}", n+1)) + ".c2ln"
		}),
		"many members": fit(func(n int) string {
			var sb strings.Builder
			sb.WriteString(`{"alg":"ES256"`)
			for i := range n {
				fmt.Fprintf(&sb, `,"k%d":%d`, i, i)
			}
			return b64(sb.String()+"}") + ".e30.c2ln"
		}),
		"huge number": fit(func(n int) string {
			return b64(`{"alg":"ES256","typ":"at+jwt"}`) + "." + b64(`{"exp":1`+strings.Repeat("0", n)+`}`) + ".c2ln"
		}),
		"many segments": fit(func(n int) string { return strings.Repeat("a.", n) + "a" }),
		"long signature": fit(func(n int) string {
			return b64(`{"alg":"ES256","typ":"at+jwt","kid":"x"}`) + ".e30." + strings.Repeat("A", n)
		}),
	}
	for name, raw := range inputs {
		if len(raw) > maxTokenLen {
			t.Fatalf("%s: %d bytes, over maxTokenLen", name, len(raw))
		}
		if _, err := s.verifyJWT(raw, now); err == nil {
			t.Fatalf("%s: accepted", name)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const runs = 20
		for range runs {
			s.verifyJWT(raw, now)
		}
		runtime.ReadMemStats(&after)
		perCall := (after.TotalAlloc - before.TotalAlloc) / runs
		// 64 bytes allocated per input byte at most: generous (JSON
		// decoding into interfaces costs some tens), but linear.
		if limit := uint64(64 * maxTokenLen); perCall > limit {
			t.Errorf("%s (%d bytes): %d bytes allocated per verification, over %d", name, len(raw), perCall, limit)
		}
		t.Logf("%s: %d bytes in, %d bytes allocated per verification", name, len(raw), perCall)
	}
	over := strings.Repeat("a", maxTokenLen+1)
	if allocs := testing.AllocsPerRun(20, func() { s.Inspect(context.Background(), over, now) }); allocs > 5 {
		t.Errorf("a token over maxTokenLen costs %v allocations; it must be refused before parsing", allocs)
	}
}
