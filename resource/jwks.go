package resource

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds on how long a fetched JWK set is used before it is fetched again:
// its Cache-Control max-age, clamped to [minKeysCache, maxKeysCache], or
// defaultKeysCache without one.
const (
	minKeysCache     = time.Minute
	defaultKeysCache = 5 * time.Minute
	maxKeysCache     = 24 * time.Hour
)

// publicKey is a verification key pinned to the one algorithm it verifies.
type publicKey struct {
	key crypto.PublicKey
	alg string
}

// keySet is the authorization server's JWK set, fetched on first use and
// again when its cache lifetime ends or a token names a key id it lacks.
type keySet struct {
	client     *http.Client
	now        func() time.Time
	minRefetch time.Duration
	log        *slog.Logger

	fetchMu sync.Mutex // one fetch at a time

	mu        sync.Mutex
	keys      map[string]publicKey // by kid; nil until fetched once
	expiresAt time.Time
	attempted time.Time // last fetch attempt, successful or not
}

// errNoKeys: the JWK set was never fetched successfully.
var errNoKeys = errors.New("the authorization server's JWK set cannot be fetched")

// key returns the key kid of the set at uri.
func (ks *keySet) key(ctx context.Context, uri, kid string) (publicKey, error) {
	now := ks.now()
	ks.mu.Lock()
	k, found := ks.keys[kid]
	fetched := ks.keys != nil
	stale := !now.Before(ks.expiresAt)
	since := now.Sub(ks.attempted)
	ks.mu.Unlock()

	switch {
	case !fetched:
		// Never fetched: fetch, or wait for the fetch under way (refresh
		// skips an attempt made less than retryAfterFailure ago, by then
		// finished).
		ks.refresh(ctx, uri, retryAfterFailure)
	case stale && since >= retryAfterFailure:
		// Past its cache lifetime: fetch (a failure keeps the stale set,
		// better than refusing every token; meanwhile others use it).
		ks.refresh(ctx, uri, retryAfterFailure)
	case found:
		return k, nil
	case since >= ks.minRefetch:
		// An unknown key id: perhaps a key rotated in since the set was
		// fetched. Rate-limited, so forged key ids cannot make this server
		// hammer the authorization server.
		ks.refresh(ctx, uri, ks.minRefetch)
	}

	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.keys == nil {
		return publicKey{}, errNoKeys
	}
	if k, ok := ks.keys[kid]; ok {
		return k, nil
	}
	return publicKey{}, invalid("unknown signing key id")
}

// refresh fetches the set unless another caller attempted it less than
// minGap ago (typically while this one waited for the lock).
func (ks *keySet) refresh(ctx context.Context, uri string, minGap time.Duration) {
	ks.fetchMu.Lock()
	defer ks.fetchMu.Unlock()
	now := ks.now()
	ks.mu.Lock()
	if !ks.attempted.IsZero() && now.Sub(ks.attempted) < minGap && !now.Before(ks.attempted) {
		ks.mu.Unlock()
		return // attempted meanwhile
	}
	ks.attempted = now
	ks.mu.Unlock()

	keys, lifetime, err := ks.fetch(ctx, uri)
	if err != nil {
		ks.log.WarnContext(ctx, "fetching the authorization server's JWK set failed", "url", uri, "error", err.Error())
		return
	}
	ks.mu.Lock()
	ks.keys, ks.expiresAt = keys, now.Add(lifetime)
	ks.mu.Unlock()
}

// jwk is the public part of a JSON Web Key (RFC 7517 §4, RFC 7518 §6).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

func (ks *keySet) fetch(ctx context.Context, uri string) (map[string]publicKey, time.Duration, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	hdr, err := getJSON(ctx, ks.client, uri, &set)
	if err != nil {
		return nil, 0, err
	}
	keys := make(map[string]publicKey, len(set.Keys))
	for _, j := range set.Keys {
		if j.Kid == "" || (j.Use != "" && j.Use != "sig") {
			continue
		}
		k, err := parseJWK(j)
		if err != nil {
			ks.log.WarnContext(ctx, "a key of the authorization server's JWK set is ignored", "kid", j.Kid, "error", err.Error())
			continue
		}
		keys[j.Kid] = k
	}
	return keys, cacheLifetime(hdr.Get("Cache-Control")), nil
}

// cacheLifetime reads max-age from a Cache-Control value, within bounds.
func cacheLifetime(cc string) time.Duration {
	d := defaultKeysCache
	for _, dir := range strings.Split(cc, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
		switch strings.ToLower(name) {
		case "no-cache", "no-store":
			return minKeysCache
		case "max-age":
			if n, err := strconv.Atoi(strings.Trim(val, `"`)); err == nil && n >= 0 {
				d = time.Duration(n) * time.Second
			}
		}
	}
	return min(max(d, minKeysCache), maxKeysCache)
}

// curves are the EC curves accepted, with the one algorithm each signs
// with (RFC 7518 §3.4).
var curves = map[string]struct {
	curve elliptic.Curve
	alg   string
}{
	"P-256": {elliptic.P256(), "ES256"},
	"P-384": {elliptic.P384(), "ES384"},
	"P-521": {elliptic.P521(), "ES512"},
}

// rsaAlgs are the RSA signature algorithms accepted.
var rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// signingAlgs lists every algorithm a key may be pinned to: asymmetric
// only, so neither "none" nor an HMAC keyed with a public key can verify.
var signingAlgs = append([]string{"ES256", "ES384", "ES512"}, rsaAlgs...)

// parseJWK decodes a public key and the algorithm it is pinned to: its alg
// member, which must suit the key, or for EC keys the curve's algorithm.
func parseJWK(j jwk) (publicKey, error) {
	b64 := base64.RawURLEncoding
	switch j.Kty {
	case "EC":
		c, ok := curves[j.Crv]
		if !ok {
			return publicKey{}, fmt.Errorf("unsupported curve %q", j.Crv)
		}
		if j.Alg != "" && j.Alg != c.alg {
			return publicKey{}, fmt.Errorf("alg %q does not suit curve %s", j.Alg, j.Crv)
		}
		x, errX := b64.DecodeString(j.X)
		y, errY := b64.DecodeString(j.Y)
		size := (c.curve.Params().BitSize + 7) / 8
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return publicKey{}, errors.New("malformed EC coordinates")
		}
		// ParseUncompressedPublicKey checks that the point is on the curve.
		pub, err := ecdsa.ParseUncompressedPublicKey(c.curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return publicKey{}, err
		}
		return publicKey{key: pub, alg: c.alg}, nil
	case "RSA":
		ok := false
		for _, a := range rsaAlgs {
			ok = ok || j.Alg == a
		}
		if !ok {
			return publicKey{}, fmt.Errorf("RSA key without a supported alg (%q): cannot pin its algorithm", j.Alg)
		}
		n, errN := b64.DecodeString(j.N)
		e, errE := b64.DecodeString(j.E)
		if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 {
			return publicKey{}, errors.New("malformed RSA key")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 || pub.E < 3 || pub.E%2 == 0 {
			return publicKey{}, errors.New("RSA key too small or with a bad exponent")
		}
		return publicKey{key: pub, alg: j.Alg}, nil
	}
	return publicKey{}, fmt.Errorf("unsupported key type %q", j.Kty)
}
