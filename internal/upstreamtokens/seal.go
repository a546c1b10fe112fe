package upstreamtokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// HKDF info labels: the encryption key and the key id come from the same
// operator secret as the signing-key KEK (internal/keys) but under labels
// of their own, so no derived value is ever another's; "v1" lets a later
// scheme coexist.
const (
	encInfo   = "authd upstream-token encryption v1"
	keyIDInfo = "authd upstream-token key id v1"
)

// Keyring holds the key new rows are sealed with and the older keys rows
// may still be sealed with, each known by its id. The id is derived from
// the secret under its own label: it names the key without revealing it.
type Keyring struct {
	current string
	keys    map[string]cipher.AEAD
}

// ErrDecrypt: a stored row cannot be opened. Its key is not in the keyring
// (keys.encryption_secret changed and the old one is not kept among
// keys.previous_encryption_secrets), or the row
// was altered or moved to another user or upstream.
var ErrDecrypt = errors.New("upstreamtokens: cannot decrypt the stored upstream token: it was sealed under a secret that is neither keys.encryption_secret nor one of keys.previous_encryption_secrets, or the row was altered")

// NewKeyring derives the keys from secret (used to seal) and previous
// (still accepted to open, for rotating the secret). Secrets must be
// random; config requires at least 32 characters.
func NewKeyring(secret string, previous ...string) (*Keyring, error) {
	if secret == "" {
		return nil, errors.New("upstreamtokens: an encryption secret is required to keep upstream tokens (keys.encryption_secret)")
	}
	kr := &Keyring{keys: map[string]cipher.AEAD{}}
	for i, s := range append([]string{secret}, previous...) {
		if s == "" {
			continue
		}
		id, aead, err := derive(s)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			kr.current = id
		}
		if _, dup := kr.keys[id]; !dup {
			kr.keys[id] = aead
		}
	}
	return kr, nil
}

func derive(secret string) (string, cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, encInfo, 32)
	if err != nil {
		return "", nil, err
	}
	defer clear(k)
	idb, err := hkdf.Key(sha256.New, []byte(secret), nil, keyIDInfo, 8)
	if err != nil {
		return "", nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return "", nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return "", nil, err
	}
	return hex.EncodeToString(idb), aead, nil
}

// Fingerprint is the key id of secret: what the rows it seals name, what
// each replica logs and records at start-up (store.RecordEncryptionSecret)
// and `authd keys reencrypt` checks, so that a mistyped or regenerated
// secret is told apart from the one replicas use. Being an HKDF output
// under a label of its own, it reveals nothing of the secret.
func Fingerprint(secret string) (string, error) {
	if secret == "" {
		return "", errors.New("upstreamtokens: no encryption secret to fingerprint")
	}
	idb, err := hkdf.Key(sha256.New, []byte(secret), nil, keyIDInfo, 8)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(idb), nil
}

// Knows reports whether rows sealed under key id can be opened.
func (kr *Keyring) Knows(keyID string) bool {
	_, ok := kr.keys[keyID]
	return ok
}

// secrets is what a row's ciphertext holds.
type secrets struct {
	AccessToken  string `json:"a"`
	RefreshToken string `json:"r,omitempty"`
	TokenType    string `json:"t,omitempty"`
}

// additionalData binds a ciphertext to its row: a sealed token copied onto
// another user's or upstream's row (by someone with write access to the
// database) does not open there. User ids are uuids and upstream ids
// [a-z0-9_-], so the NUL separators are unambiguous.
func additionalData(keyID, userID, upstream string) []byte {
	return []byte("authd upstream token\x00" + keyID + "\x00" + userID + "\x00" + upstream)
}

// seal encrypts s for (userID, upstream) under the current key: it
// returns the key id and nonce || ciphertext+tag.
func (kr *Keyring) seal(userID, upstream string, s secrets) (string, []byte, error) {
	pt, err := json.Marshal(s)
	if err != nil {
		return "", nil, err
	}
	defer clear(pt)
	aead := kr.keys[kr.current]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(pt)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, err
	}
	return kr.current, aead.Seal(nonce, nonce, pt, additionalData(kr.current, userID, upstream)), nil
}

func (kr *Keyring) open(keyID, userID, upstream string, sealed []byte) (secrets, error) {
	aead, ok := kr.keys[keyID]
	if !ok {
		return secrets{}, fmt.Errorf("%w (key id %q is not among the configured secrets)", ErrDecrypt, keyID)
	}
	ns := aead.NonceSize()
	if len(sealed) < ns+aead.Overhead() {
		return secrets{}, ErrDecrypt
	}
	pt, err := aead.Open(nil, sealed[:ns], sealed[ns:], additionalData(keyID, userID, upstream))
	if err != nil {
		return secrets{}, ErrDecrypt
	}
	defer clear(pt)
	var s secrets
	if err := json.Unmarshal(pt, &s); err != nil {
		return secrets{}, ErrDecrypt
	}
	return s, nil
}
