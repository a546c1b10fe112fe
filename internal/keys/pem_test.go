package keys_test

import (
	"context"
	"crypto"

	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/store"
)

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func kidOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	j := jose.JSONWebKey{Key: pub}
	tp, err := j.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// failingStore fails the test if the manager touches it.
type failingStore struct{ t testing.TB }

func (s failingStore) ListSigningKeys(context.Context) ([]store.SigningKey, error) {
	s.t.Error("PEM keys: the store was read")
	return nil, errors.New("unexpected")
}
func (s failingStore) CreateSigningKey(context.Context, store.SigningKey) error {
	s.t.Error("PEM keys: the store was written")
	return errors.New("unexpected")
}
func (s failingStore) ActivateSigningKey(context.Context, string, time.Time, time.Time) error {
	s.t.Error("PEM keys: the store was written")
	return errors.New("unexpected")
}

func TestPEMKeys(t *testing.T) {
	c := newClock()
	ec := mustECKey(t, elliptic.P256())
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sec1, _ := x509.MarshalECPrivateKey(ec)
	// As `openssl ecparam -name prime256v1 -genkey` writes it.
	opensslEC := append(pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), pemBlock("EC PRIVATE KEY", sec1)...)

	for _, tc := range []struct {
		name     string
		pems     [][]byte
		wantAlg  string
		wantKids []string
	}{
		{"PKCS8 EC then PKCS1 RSA", [][]byte{pkcs8(t, ec), pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))}, "ES256", []string{kidOf(t, &ec.PublicKey), kidOf(t, &rk.PublicKey)}},
		{"openssl SEC1 EC", [][]byte{opensslEC}, "ES256", []string{kidOf(t, &ec.PublicKey)}},
		{"PKCS8 RSA then EC", [][]byte{pkcs8(t, rk), pkcs8(t, ec)}, "RS256", []string{kidOf(t, &rk.PublicKey), kidOf(t, &ec.PublicKey)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := options(t, c, "ES256")
			opts.EncryptionKey = nil // not needed: nothing is stored
			opts.PEMKeys = tc.pems
			m := newManager(t, failingStore{t}, opts)

			raw := sign(t, m, c.Now())
			if got := headerKid(t, raw); got != tc.wantKids[0] {
				t.Fatalf("signing with %s, want the first PEM key %s", got, tc.wantKids[0])
			}
			set := jwks(t, m)
			if got := kids(set); !slices.Equal(got, tc.wantKids) {
				t.Fatalf("JWKS kids %v, want %v", got, tc.wantKids)
			}
			if set.Keys[0].Algorithm != tc.wantAlg {
				t.Fatalf("first key alg %s", set.Keys[0].Algorithm)
			}
			if err := verifyWithJWKS(set, c, raw); err != nil {
				t.Fatalf("token does not verify with the JWKS: %v", err)
			}
			if _, err := verify(m, c, raw); err != nil {
				t.Fatalf("token does not verify with Keyfunc: %v", err)
			}
			if _, err := m.Rotate(context.Background(), false); !errors.Is(err, keys.ErrPEMKeys) {
				t.Fatalf("Rotate with PEM keys: %v", err)
			}
			if err := m.Reload(context.Background()); err != nil {
				t.Fatalf("Reload with PEM keys: %v", err)
			}
			infos, err := m.List(context.Background())
			if err != nil || len(infos) != len(tc.wantKids) || infos[0].State != store.KeyActive || infos[0].Source != "pem" {
				t.Fatalf("List() = %+v, %v", infos, err)
			}
			// An unknown kid does not try to reload from a store.
			forged := sign(t, newManager(t, store.NewMemory(), options(t, c, "ES256")), c.Now())
			if _, err := verify(m, c, forged); !errors.Is(err, keys.ErrUnknownKey) {
				t.Fatalf("token of another key: %v", err)
			}
		})
	}
}

func TestPEMKeysRejected(t *testing.T) {
	c := newClock()
	ec := mustECKey(t, elliptic.P256())
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte{1, 2, 3}})
	der, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	for _, tc := range []struct {
		name string
		pems [][]byte
		want string
	}{
		{"P-384", [][]byte{pkcs8(t, mustECKey(t, elliptic.P384()))}, "only P-256"},
		{"RSA 1024", [][]byte{pkcs8(t, small)}, "at least 2048"},
		{"Ed25519", [][]byte{pkcs8(t, ed)}, "unsupported key type"},
		{"passphrase-encrypted", [][]byte{encrypted}, "encrypted with a passphrase"},
		{"PKCS8 encrypted", [][]byte{pemBlock("ENCRYPTED PRIVATE KEY", []byte{1})}, "encrypted with a passphrase"},
		{"public key only", [][]byte{pemBlock("PUBLIC KEY", der)}, `unexpected PEM block "PUBLIC KEY"`},
		{"not PEM", [][]byte{[]byte("hello")}, "no PEM private key"},
		{"garbage DER", [][]byte{pemBlock("PRIVATE KEY", []byte("nope"))}, "parsing PRIVATE KEY"},
		{"two keys in one file", [][]byte{append(pkcs8(t, ec), pkcs8(t, mustECKey(t, elliptic.P256()))...)}, "more than one private key"},
		{"same key twice", [][]byte{pkcs8(t, ec), pkcs8(t, ec)}, "PEM key 2: the same key is given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := options(t, c, "ES256")
			opts.PEMKeys = tc.pems
			_, err := keys.New(context.Background(), failingStore{t}, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func BenchmarkSignES256(b *testing.B) { benchmarkSign(b, "ES256") }
func BenchmarkSignRS256(b *testing.B) { benchmarkSign(b, "RS256") }

func benchmarkSign(b *testing.B, alg string) {
	c := newClock()
	m := newManager(b, store.NewMemory(), options(b, c, alg))
	ctx := context.Background()
	claims := claimsAt(c.Now())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Sign(ctx, "at+jwt", claims); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkVerifyES256(b *testing.B) {
	c := newClock()
	m := newManager(b, store.NewMemory(), options(b, c, "ES256"))
	raw := sign(b, m, c.Now())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := verify(m, c, raw); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
