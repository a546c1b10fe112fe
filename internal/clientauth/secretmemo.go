package clientauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"

	"github.com/authd/authd/internal/oauth"
)

// maxMemoSecrets bounds the memo of secrets verified at request time; when
// full it starts afresh, which costs one bcrypt comparison per client.
// Pinned secrets (Pin) are kept apart and never forgotten.
const maxMemoSecrets = 10000

// secretMemo holds a fast keyed digest of the secrets known to match a
// bcrypt hash, so that no request pays for bcrypt (~50-100 ms of CPU) once
// the right secret is known: neither a resource server calling /introspect
// on every request it serves, nor an attacker guessing, whose wrong
// guesses would otherwise cost a bcrypt comparison each and take visibly
// longer than a guess at an unknown client id (about 100 ms against a few,
// which tells which ids are configured confidential clients).
//
// An entry is keyed by client id and stored hash (a new secret or hash
// takes effect at once) and holds HMAC-SHA256 of the secret under a key
// made at start-up that never leaves the process: nothing that could be
// checked offline exists outside memory, and the database keeps only the
// bcrypt hash. Entries come from Pin, at start-up, for configured clients
// whose secret authd is given in clear (so their very first check is
// fast), and from the first successful bcrypt comparison otherwise.
//
// When an entry exists it decides alone: a wrong secret costs one HMAC, as
// a right one does. (bcrypt ignores bytes past the 72nd; the memo does
// not, so a presented secret that only shares the first 72 bytes of the
// right one is refused, which is stricter.) Secrets authd generated are
// stored as SHA-256 already and never reach the memo.
type secretMemo struct {
	mu     sync.Mutex
	key    []byte
	m      map[string][sha256.Size]byte
	pinned map[string][sha256.Size]byte
}

// Pin records, for client id whose stored secret hash is hash, that secret
// is its secret, after checking that it matches hash (one bcrypt
// comparison now instead of at the first request). It reports whether the
// secret matched. Call it at start-up for configured clients whose secret
// is given in clear; a hash that is not bcrypt needs no pinning.
func (a *Authenticator) Pin(id, hash, secret string) bool {
	if !oauth.IsBcryptHash(hash) {
		return oauth.VerifySecret(hash, secret)
	}
	if !oauth.VerifySecret(hash, secret) {
		return false
	}
	a.verified.put(id+"\x00"+hash, a.verified.mac(secret), true)
	return true
}

// verifySecret is oauth.VerifySecret, with the memo deciding for bcrypt
// hashes whose secret it knows.
func (a *Authenticator) verifySecret(id, hash, presented string) bool {
	if !oauth.IsBcryptHash(hash) {
		return oauth.VerifySecret(hash, presented)
	}
	memoKey := id + "\x00" + hash
	mac := a.verified.mac(presented)
	if want, ok := a.verified.get(memoKey); ok {
		return hmac.Equal(want[:], mac[:])
	}
	// Not known yet (a bcrypt secret_hash configured without the secret):
	// the one case that pays for bcrypt, until the first success.
	if !oauth.VerifySecret(hash, presented) {
		return false
	}
	a.verified.put(memoKey, mac, false)
	return true
}

func (m *secretMemo) mac(secret string) [sha256.Size]byte {
	m.mu.Lock()
	if m.key == nil {
		m.key = make([]byte, 32)
		_, _ = rand.Read(m.key)
	}
	key := m.key
	m.mu.Unlock()
	h := hmac.New(sha256.New, key)
	h.Write([]byte(secret))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func (m *secretMemo) get(k string) ([sha256.Size]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.pinned[k]; ok {
		return v, true
	}
	v, ok := m.m[k]
	return v, ok
}

func (m *secretMemo) put(k string, v [sha256.Size]byte, pin bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if pin {
		if m.pinned == nil {
			m.pinned = map[string][sha256.Size]byte{}
		}
		m.pinned[k] = v
		return
	}
	if m.m == nil || len(m.m) >= maxMemoSecrets {
		m.m = map[string][sha256.Size]byte{}
	}
	m.m[k] = v
}
