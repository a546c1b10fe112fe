package clientauth

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/authd/authd/internal/store"
)

// Cache defaults: short enough that an operator's change is visible
// everywhere within seconds, long enough that a machine client calling
// /token in a loop reads its row once per TTL.
const (
	DefaultCacheTTL        = 5 * time.Second
	DefaultCacheMaxEntries = 10000
)

// CachedClients is a ClientGetter that remembers clients for a short TTL,
// so that the client_credentials path needs no database round trip at all
// and the other grants one fewer.
//
// Consistency: a client deleted, disabled or given a new secret through
// another replica (or directly in the database) is still seen as it was by
// this replica for up to TTL, unless something calls Invalidate when it
// hears of the change (authd does, on the database's change
// notifications). Changes made through this replica take effect at once if
// the code making them calls Invalidate. Unknown ids are not
// cached, so a client registered on another replica is usable immediately.
type CachedClients struct {
	src        ClientGetter
	ttl        time.Duration
	maxEntries int
	now        func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
	gen     uint64 // bumped by every Invalidate
}

type cacheEntry struct {
	client  store.Client
	fetched time.Time
}

// NewCachedClients caches src's clients for ttl (DefaultCacheTTL if <= 0),
// holding at most DefaultCacheMaxEntries. now is the clock deciding when an
// entry is stale (time.Now if nil).
func NewCachedClients(src ClientGetter, ttl time.Duration, now func() time.Time) *CachedClients {
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	if now == nil {
		now = time.Now
	}
	return &CachedClients{
		src: src, ttl: ttl, maxEntries: DefaultCacheMaxEntries, now: now,
		entries: map[string]cacheEntry{},
	}
}

// GetClient returns the cached client when fresh, else asks the source.
// A cached client whose idle expiry (ExpiresAt) has passed at now is
// reported as not found, as the store would.
func (c *CachedClients) GetClient(ctx context.Context, id string, now time.Time) (store.Client, error) {
	clock := c.now()
	c.mu.Lock()
	e, ok := c.entries[id]
	if ok && (clock.Sub(e.fetched) >= c.ttl || clock.Before(e.fetched)) {
		delete(c.entries, id)
		ok = false
	}
	gen := c.gen
	c.mu.Unlock()
	if ok {
		if e.client.ExpiresAt != nil && !now.Before(*e.client.ExpiresAt) {
			c.Invalidate(id)
			return store.Client{}, store.ErrNotFound
		}
		return clone(e.client), nil
	}

	cl, err := c.src.GetClient(ctx, id, now)
	if err != nil {
		return store.Client{}, err
	}
	c.mu.Lock()
	// An Invalidate during the read may have been for this very client:
	// then what was read may predate the change, so it is not kept.
	if c.gen == gen {
		c.put(id, cacheEntry{client: cl, fetched: clock})
	}
	c.mu.Unlock()
	return clone(cl), nil
}

// Invalidate forgets id, so the next lookup reads the source. Call it after
// changing or deleting a client through this replica.
func (c *CachedClients) Invalidate(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.gen++
	c.mu.Unlock()
}

// InvalidateAll forgets every client, for when changes may have been
// missed (the change notifications were interrupted).
func (c *CachedClients) InvalidateAll() {
	c.mu.Lock()
	clear(c.entries)
	c.gen++
	c.mu.Unlock()
}

// Len reports how many clients are cached.
func (c *CachedClients) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// put stores e, making room first when full: stale entries go, and if that
// is not enough, arbitrary ones (map order), which at worst costs a lookup.
// Caller holds c.mu.
func (c *CachedClients) put(id string, e cacheEntry) {
	if _, ok := c.entries[id]; !ok && len(c.entries) >= c.maxEntries {
		for k, old := range c.entries {
			if e.fetched.Sub(old.fetched) >= c.ttl {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.maxEntries {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[id] = e
}

// clone copies the slices of a cached client so callers cannot alter the
// cache through the value they got.
func clone(c store.Client) store.Client {
	c.AllowedScopes = slices.Clone(c.AllowedScopes)
	c.AllowedResources = slices.Clone(c.AllowedResources)
	m := &c.Metadata
	m.RedirectURIs = slices.Clone(m.RedirectURIs)
	m.GrantTypes = slices.Clone(m.GrantTypes)
	m.ResponseTypes = slices.Clone(m.ResponseTypes)
	m.Contacts = slices.Clone(m.Contacts)
	return c
}
