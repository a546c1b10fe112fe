package keys

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// The private key reaches the store only encrypted, bound to its kid, and
// opens only with the right key-encryption key.
func TestPrivateKeysEncryptedAtRest(t *testing.T) {
	kek := DeriveKEK("0123456789abcdef0123456789abcdef-test-secret")
	for _, alg := range []string{ES256, RS256} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			st := pgtest.New(t)
			m, err := New(context.Background(), st, Options{Algorithm: alg, EncryptionKey: kek})
			if err != nil {
				t.Fatal(err)
			}
			active := m.cur.Load().active
			rows, err := st.ListSigningKeys(context.Background())
			if err != nil || len(rows) != 1 {
				t.Fatalf("rows %v, %v", rows, err)
			}
			row := rows[0]
			if row.ID != active.id || row.State != store.KeyActive || row.Algorithm != alg {
				t.Fatalf("stored row %+v", row)
			}

			// None of the private key's encodings or secret values appear.
			der, err := x509.MarshalPKCS8PrivateKey(active.private)
			if err != nil {
				t.Fatal(err)
			}
			secrets := [][]byte{der, []byte("PRIVATE KEY")}
			switch k := active.private.(type) {
			case *ecdsa.PrivateKey:
				d, err := k.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				sec1, _ := x509.MarshalECPrivateKey(k)
				secrets = append(secrets, d, sec1)
			case *rsa.PrivateKey:
				secrets = append(secrets, k.D.Bytes(), k.Primes[0].Bytes(), x509.MarshalPKCS1PrivateKey(k))
			}
			for _, s := range secrets {
				if bytes.Contains(row.EncryptedPrivateKey, s) || bytes.Contains(row.PublicJWK, s) {
					t.Fatal("the stored row contains private key material in clear")
				}
			}
			if len(row.EncryptedPrivateKey) != 12+len(der)+16 {
				t.Fatalf("sealed length %d, want nonce+DER+tag = %d", len(row.EncryptedPrivateKey), 12+len(der)+16)
			}

			// It opens with the right KEK and kid only.
			priv, err := open(kek, row.ID, row.EncryptedPrivateKey)
			if err != nil || !samePublicKey(priv.Public(), active.public) {
				t.Fatalf("open with the right KEK: %v", err)
			}
			if _, err := open(DeriveKEK("some other secret, long enough to pass"), row.ID, row.EncryptedPrivateKey); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("open with a wrong KEK: %v", err)
			}
			if _, err := open(kek, "another-kid", row.EncryptedPrivateKey); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("open under another kid: %v", err)
			}
			tampered := bytes.Clone(row.EncryptedPrivateKey)
			tampered[len(tampered)-1] ^= 1
			if _, err := open(kek, row.ID, tampered); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("open of a tampered ciphertext: %v", err)
			}
			if _, err := open(kek, row.ID, row.EncryptedPrivateKey[:10]); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("open of a truncated ciphertext: %v", err)
			}
		})
	}
}

// Two seals of one key differ (fresh nonce each time).
func TestSealUsesFreshNonces(t *testing.T) {
	kek := DeriveKEK("0123456789abcdef0123456789abcdef-test-secret")
	priv, err := generate(ES256)
	if err != nil {
		t.Fatal(err)
	}
	a, err := seal(kek, "kid", priv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := seal(kek, "kid", priv)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[:12], b[:12]) || bytes.Equal(a, b) {
		t.Fatal("nonce reused")
	}
}

// A stored public key that does not match the encrypted private key (a
// tampered row) is refused rather than published.
func TestMismatchedStoredPublicKeyRefused(t *testing.T) {
	kek := DeriveKEK("0123456789abcdef0123456789abcdef-test-secret")
	st := store.NewMemory()
	m := &Manager{kek: kek, alg: ES256}
	m.now = time.Now
	row, err := m.newKey(store.KeyActive)
	if err != nil {
		t.Fatal(err)
	}
	other, err := m.newKey(store.KeyNext)
	if err != nil {
		t.Fatal(err)
	}
	row.PublicJWK = bytes.Replace(other.PublicJWK, []byte(other.ID), []byte(row.ID), 1)
	if err := st.CreateSigningKey(context.Background(), row); err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), st, Options{EncryptionKey: kek})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("does not match the private key")) {
		t.Fatalf("New with a mismatched public key: %v", err)
	}
}
