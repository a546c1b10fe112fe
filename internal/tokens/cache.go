package tokens

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/store"
)

// maxCachedUsers bounds the user cache; past it, stale entries go first,
// then arbitrary ones (which at worst costs a lookup).
const maxCachedUsers = 10000

// userCache remembers user rows for Service.UserCacheTTL.
type userCache struct {
	mu sync.Mutex
	m  map[string]cachedUser
}

type cachedUser struct {
	u       store.User
	fetched time.Time
}

func (c *userCache) get(id string, now time.Time, ttl time.Duration) (store.User, bool) {
	if ttl <= 0 {
		return store.User{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || now.Sub(e.fetched) >= ttl || now.Before(e.fetched) {
		return store.User{}, false
	}
	return e.u, true
}

func (c *userCache) put(u store.User, now time.Time, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	u.Groups = slices.Clone(u.Groups)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedUser{}
	}
	if _, ok := c.m[u.ID]; !ok && len(c.m) >= maxCachedUsers {
		for k, e := range c.m {
			if now.Sub(e.fetched) >= ttl {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < maxCachedUsers {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[u.ID] = cachedUser{u: u, fetched: now}
}

// maxCachedJWTs bounds the verified-token cache. An entry holds the
// registered claims (issuer, subject, audience, client, scope, jti, grant,
// times, cnf, act) and the key's kid and alg — a few hundred bytes — and
// never the identity claims, which verifyJWT drops.
const maxCachedJWTs = 10000

// jwtCache remembers verified JWT access tokens until they expire.
type jwtCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]jwtEntry
}

type jwtEntry struct {
	claims Claims
	// header and method are what Keyfunc needs to say whether the
	// signing key is still published.
	header map[string]any
	method jwt.SigningMethod
}

func (c *jwtCache) get(sum [sha256.Size]byte, now time.Time) (jwtEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[sum]
	if ok && !now.Before(e.claims.ExpiresAt.Time) {
		delete(c.m, sum)
		return jwtEntry{}, false
	}
	return e, ok
}

// put remembers e, making room first when full: expired entries go, then
// arbitrary ones (map order), which at worst costs a verification.
func (c *jwtCache) put(sum [sha256.Size]byte, e jwtEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[sha256.Size]byte]jwtEntry{}
	}
	if _, ok := c.m[sum]; !ok && len(c.m) >= maxCachedJWTs {
		for k, old := range c.m {
			if !now.Before(old.claims.ExpiresAt.Time) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < maxCachedJWTs {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[sum] = e
}
