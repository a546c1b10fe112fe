package clientauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"

	"github.com/authd/authd/internal/oauth"
)

// maxMemoSecrets bounds the memo; when full it starts afresh, which costs
// one bcrypt comparison per client.
const maxMemoSecrets = 10000

// secretMemo remembers which secrets passed a bcrypt comparison, so that a
// client with an operator-chosen secret (stored with bcrypt, ~50-100 ms of
// CPU per check) does not pay that on every request: a resource server
// configured with one in authd.yaml calls /introspect on every request it
// serves, and bcrypt would cap it at a few dozen calls per second per core.
//
// Only successes are remembered, keyed by client id and the stored hash
// (so a new secret or hash takes effect at once), as an HMAC of the
// presented secret under a key made at start-up that never leaves the
// process: a wrong secret always gets the full bcrypt comparison, and
// nothing that could be checked offline is stored anywhere but in memory.
// Secrets authd generated are stored as SHA-256 already and skip the memo.
type secretMemo struct {
	mu  sync.Mutex
	key []byte
	m   map[string][sha256.Size]byte
}

// verifySecret is oauth.VerifySecret, remembering bcrypt successes.
func (a *Authenticator) verifySecret(id, hash, presented string) bool {
	if !oauth.IsBcryptHash(hash) {
		return oauth.VerifySecret(hash, presented)
	}
	memoKey := id + "\x00" + hash
	mac := a.verified.mac(presented)
	if want, ok := a.verified.get(memoKey); ok && hmac.Equal(want[:], mac[:]) {
		return true
	}
	if !oauth.VerifySecret(hash, presented) {
		return false
	}
	a.verified.put(memoKey, mac)
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
	v, ok := m.m[k]
	return v, ok
}

func (m *secretMemo) put(k string, v [sha256.Size]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil || len(m.m) >= maxMemoSecrets {
		m.m = map[string][sha256.Size]byte{}
	}
	m.m[k] = v
}
