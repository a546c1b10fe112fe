package introspect

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
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
	h := &Handler{Keys: km, Issuer: iss}
	h.prepare()
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
	if _, err := h.verifyJWT(genuine, now); err != nil {
		f.Fatalf("genuine token refused: %v", err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > maxTokenLen {
			if _, err := h.inspect(ctx, raw, now); err == nil {
				t.Fatalf("accepted a %d-byte token", len(raw))
			}
			return
		}
		c, err := h.verifyJWT(raw, now)
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
