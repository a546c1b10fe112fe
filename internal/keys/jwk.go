package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// Algorithms authd signs with (RFC 7518 §3.1).
const (
	ES256 = "ES256" // ECDSA P-256 with SHA-256
	RS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256
)

// minRSABits is the smallest RSA modulus accepted from PEM files; generated
// RSA keys have exactly this size (RFC 7518 §3.3 requires at least 2048).
const minRSABits = 2048

// jwk is a public JSON Web Key (RFC 7517 §4, RFC 7518 §6.2–6.3). Only public
// members exist here, so a private value can never be serialised by mistake.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

var b64 = base64.RawURLEncoding

// algorithmFor names the JWS algorithm a key of pub's type signs with, and
// rejects key types and sizes authd does not sign with.
func algorithmFor(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("EC key on curve %s: only P-256 (ES256) is supported", k.Curve.Params().Name)
		}
		return ES256, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return "", fmt.Errorf("RSA key of %d bits: at least %d are required", k.N.BitLen(), minRSABits)
		}
		return RS256, nil
	}
	return "", fmt.Errorf("unsupported key type %T: use an EC P-256 or RSA key", pub)
}

// publicJWK describes pub as a JWK with the given kid and alg.
func publicJWK(pub crypto.PublicKey, kid, alg string) (jwk, error) {
	j := jwk{Kid: kid, Use: "sig", Alg: alg}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		// SEC 1 uncompressed point 0x04||X||Y, coordinates already padded
		// to the field size as RFC 7518 §6.2.1.2 requires.
		p, err := k.Bytes()
		if err != nil || len(p) != 65 {
			return jwk{}, fmt.Errorf("encoding EC public key: %v", err)
		}
		j.Kty, j.Crv, j.X, j.Y = "EC", "P-256", b64.EncodeToString(p[1:33]), b64.EncodeToString(p[33:])
	case *rsa.PublicKey:
		j.Kty, j.N, j.E = "RSA", b64.EncodeToString(k.N.Bytes()), b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())
	default:
		return jwk{}, fmt.Errorf("unsupported key type %T", pub)
	}
	return j, nil
}

// parsePublicJWK is the inverse of publicJWK: it decodes a stored public
// JWK and validates it (the EC point must lie on P-256).
func parsePublicJWK(b []byte) (crypto.PublicKey, jwk, error) {
	var j jwk
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, jwk{}, fmt.Errorf("decoding public JWK: %w", err)
	}
	switch j.Kty {
	case "EC":
		if j.Crv != "P-256" {
			return nil, jwk{}, fmt.Errorf("public JWK: unsupported curve %q", j.Crv)
		}
		x, errX := b64.DecodeString(j.X)
		y, errY := b64.DecodeString(j.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return nil, jwk{}, errors.New("public JWK: malformed EC coordinates")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, jwk{}, fmt.Errorf("public JWK: %w", err)
		}
		return pub, j, nil
	case "RSA":
		n, errN := b64.DecodeString(j.N)
		e, errE := b64.DecodeString(j.E)
		if errN != nil || errE != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, jwk{}, errors.New("public JWK: malformed RSA modulus or exponent")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.E < 3 || pub.E%2 == 0 {
			return nil, jwk{}, errors.New("public JWK: invalid RSA exponent")
		}
		return pub, j, nil
	}
	return nil, jwk{}, fmt.Errorf("public JWK: unsupported key type %q", j.Kty)
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of pub,
// used as the kid: stable, derived from the key alone, so every replica and
// every PEM-configured instance names a key the same way.
func thumbprint(pub crypto.PublicKey) (string, error) {
	j, err := publicJWK(pub, "", "")
	if err != nil {
		return "", err
	}
	// RFC 7638 §3.2: the required members only, in lexicographic order, no
	// whitespace. json.Marshal of these fixed-alphabet strings is exact.
	var canonical string
	switch j.Kty {
	case "EC":
		canonical = fmt.Sprintf(`{"crv":%q,"kty":%q,"x":%q,"y":%q}`, j.Crv, j.Kty, j.X, j.Y)
	case "RSA":
		canonical = fmt.Sprintf(`{"e":%q,"kty":%q,"n":%q}`, j.E, j.Kty, j.N)
	}
	sum := sha256.Sum256([]byte(canonical))
	return b64.EncodeToString(sum[:]), nil
}

// samePublicKey reports whether a and b are the same public key.
func samePublicKey(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}
