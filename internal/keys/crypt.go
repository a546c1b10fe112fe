package keys

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// kekInfo labels the HKDF output so the same operator secret can never yield
// this key for another purpose; the version lets a future scheme coexist.
const kekInfo = "authd signing-key encryption v1"

// DeriveKEK turns the operator's keys.encryption_secret into the 32-byte
// AES-256-GCM key that encrypts signing keys at rest: HKDF-SHA256 (RFC 5869)
// with no salt and a fixed info label. HKDF does not stretch a password, so
// the secret must be random (config requires at least 32 characters, e.g.
// `openssl rand -base64 48`). An empty secret yields nil, which New rejects
// unless the keys come from PEM files.
func DeriveKEK(secret string) []byte {
	if secret == "" {
		return nil
	}
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, kekInfo, 32)
	if err != nil {
		return nil // unreachable: HKDF fails only beyond 255 hash blocks
	}
	return k
}

// ErrDecrypt means a stored private key could not be decrypted: neither the
// configured encryption secret nor any previous one is the one that
// encrypted it, or the stored bytes were altered.
var ErrDecrypt = errors.New("keys: cannot decrypt the stored signing key: it was encrypted with a secret that is neither keys.encryption_secret nor one of keys.previous_encryption_secrets (after changing the secret, keep the old one there until `authd keys reencrypt` has run), or the stored key is corrupt")

// seal encrypts the PKCS #8 DER of priv with AES-256-GCM under kek. The kid
// is the additional data, so a ciphertext moved to another key's row fails to
// open. The result is nonce || ciphertext+tag.
func seal(kek []byte, kid string, priv crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("keys: encoding private key: %w", err)
	}
	defer clear(der)
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(der)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, der, []byte(kid)), nil
}

// open reverses seal and checks that the key is one authd signs with.
func open(kek []byte, kid string, sealed []byte) (crypto.Signer, error) {
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrDecrypt
	}
	ns := aead.NonceSize()
	der, err := aead.Open(nil, sealed[:ns], sealed[ns:], []byte(kid))
	if err != nil {
		return nil, ErrDecrypt
	}
	defer clear(der)
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("keys: decrypted key %s is not PKCS #8: %w", kid, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("keys: decrypted key %s has unsupported type %T", kid, k)
	}
	return s, nil
}

// openAny opens sealed with the first of keks that can, trying them in
// order, and returns that key's index. A stored key carries no id of the
// key that encrypted it (nor does its row), so this is trial decryption,
// which AES-GCM makes safe: under a wrong key the tag check fails (a
// false match has probability 2^-128), and a failed attempt costs about a
// microsecond. It happens once per key a process decrypts: the current
// secret comes first, so after `authd keys reencrypt` there are no failed
// attempts at all. The error is ErrDecrypt unless one key opened the
// ciphertext and the result was no usable key.
func openAny(keks [][]byte, kid string, sealed []byte) (crypto.Signer, int, error) {
	for i, kek := range keks {
		priv, err := open(kek, kid, sealed)
		if errors.Is(err, ErrDecrypt) {
			continue
		}
		if err != nil {
			return nil, i, err
		}
		return priv, i, nil
	}
	return nil, -1, ErrDecrypt
}

func newAEAD(kek []byte) (cipher.AEAD, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("keys: the encryption key must be 32 bytes, got %d (derive it with keys.DeriveKEK)", len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// generate creates a new private key for alg.
func generate(alg string) (crypto.Signer, error) {
	switch alg {
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RS256:
		return rsa.GenerateKey(rand.Reader, minRSABits)
	}
	return nil, fmt.Errorf("keys: unsupported algorithm %q (use ES256 or RS256)", alg)
}

// parsePEM reads one private key from PEM: PKCS #8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY", as `openssl ecparam -genkey` writes it, whose "EC
// PARAMETERS" block is skipped) or PKCS #1 ("RSA PRIVATE KEY").
func parsePEM(data []byte) (crypto.Signer, error) {
	var found crypto.Signer
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "EC PARAMETERS" {
			continue
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "" {
			return nil, errors.New("the key is encrypted with a passphrase; provide it unencrypted (protect the file with permissions instead)")
		}
		var (
			k   any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			return nil, fmt.Errorf("unexpected PEM block %q: expected a private key", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
		}
		if found != nil {
			return nil, errors.New("more than one private key; give each key its own file")
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", k)
		}
		found = s
	}
	if found == nil {
		return nil, errors.New("no PEM private key found")
	}
	return found, nil
}
