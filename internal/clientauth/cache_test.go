package clientauth

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
)

// source is a ClientGetter that counts lookups; block, when set, holds a
// lookup until it is closed.
type source struct {
	mu      sync.Mutex
	clients map[string]store.Client
	calls   int
	started chan struct{}
	block   chan struct{}
}

func (s *source) GetClient(_ context.Context, id string, _ time.Time) (store.Client, error) {
	s.mu.Lock()
	s.calls++
	c, ok := s.clients[id]
	block, started := s.block, s.started
	s.mu.Unlock()
	if started != nil {
		close(started)
	}
	if block != nil {
		<-block
	}
	if !ok {
		return store.Client{}, store.ErrNotFound
	}
	return c, nil
}

func (s *source) set(c store.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = c
}

func (s *source) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestCachedClients(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	src := &source{clients: map[string]store.Client{
		"a": {ID: "a", SecretHash: "old", AllowedScopes: []string{"x"}},
	}}
	c := NewCachedClients(src, 5*time.Second, clk.now)

	get := func(id string) (store.Client, error) { return c.GetClient(ctx, id, clk.now()) }

	if cl, err := get("a"); err != nil || cl.SecretHash != "old" {
		t.Fatalf("first lookup: %v %v", cl, err)
	}
	src.set(store.Client{ID: "a", SecretHash: "new"})
	clk.add(4 * time.Second)
	cl, err := get("a")
	if err != nil || cl.SecretHash != "old" || src.count() != 1 {
		t.Fatalf("within TTL: %v %v, %d lookups; want the cached client and 1 lookup", cl, err, src.count())
	}

	// Callers cannot change the cache through what they got.
	cl.AllowedScopes[0] = "changed"
	if cl, _ := get("a"); cl.AllowedScopes[0] != "x" {
		t.Fatal("cache entry was modified through a returned client")
	}

	clk.add(time.Second)
	if cl, err := get("a"); err != nil || cl.SecretHash != "new" || src.count() != 2 {
		t.Fatalf("after TTL: %v %v, %d lookups; want the new secret", cl, err, src.count())
	}

	src.set(store.Client{ID: "a", SecretHash: "newer"})
	c.Invalidate("a")
	if cl, _ := get("a"); cl.SecretHash != "newer" {
		t.Fatalf("after Invalidate: %q", cl.SecretHash)
	}

	// Unknown clients are not cached: one registered elsewhere works at once.
	if _, err := get("b"); err != store.ErrNotFound {
		t.Fatalf("unknown client: %v", err)
	}
	src.set(store.Client{ID: "b"})
	if _, err := get("b"); err != nil {
		t.Fatalf("client created after a miss: %v", err)
	}

	// A cached client past its idle expiry is gone, as in the store.
	exp := clk.now().Add(time.Second)
	src.set(store.Client{ID: "e", ExpiresAt: &exp})
	if _, err := get("e"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetClient(ctx, "e", exp); err != store.ErrNotFound {
		t.Fatalf("expired cached client: %v", err)
	}

	// A clock going backwards does not keep an entry forever.
	before := src.count()
	clk.add(-time.Hour)
	if _, err := get("a"); err != nil || src.count() != before+1 {
		t.Fatalf("after the clock went back: %v, lookups %d -> %d", err, before, src.count())
	}
}

func TestCachedClientsBounded(t *testing.T) {
	ctx := context.Background()
	src := &source{clients: map[string]store.Client{}}
	for i := range 50 {
		src.set(store.Client{ID: fmt.Sprint(i)})
	}
	c := NewCachedClients(src, time.Minute, nil)
	c.maxEntries = 10
	for i := range 50 {
		if _, err := c.GetClient(ctx, fmt.Sprint(i), time.Now()); err != nil {
			t.Fatal(err)
		}
		if n := c.Len(); n > 10 {
			t.Fatalf("cache holds %d entries, bound is 10", n)
		}
	}
	if _, err := c.GetClient(ctx, "49", time.Now()); err != nil || src.count() != 50 {
		t.Fatalf("most recent entry not cached: %v, %d lookups", err, src.count())
	}
}

// An Invalidate that races with a lookup must not leave the value read
// before the change in the cache.
func TestCachedClientsInvalidateDuringLookup(t *testing.T) {
	ctx := context.Background()
	src := &source{
		clients: map[string]store.Client{"a": {ID: "a", SecretHash: "old"}},
		started: make(chan struct{}), block: make(chan struct{}),
	}
	c := NewCachedClients(src, time.Minute, nil)
	done := make(chan store.Client)
	go func() {
		cl, _ := c.GetClient(ctx, "a", time.Now())
		done <- cl
	}()
	<-src.started
	c.Invalidate("a")
	src.mu.Lock()
	block := src.block
	src.block, src.started = nil, nil
	src.clients["a"] = store.Client{ID: "a", SecretHash: "new"}
	src.mu.Unlock()
	close(block)
	if cl := <-done; cl.SecretHash != "old" {
		t.Fatalf("racing lookup returned %q, want what it read (old)", cl.SecretHash)
	}
	if cl, err := c.GetClient(ctx, "a", time.Now()); err != nil || cl.SecretHash != "new" {
		t.Fatalf("after a racing Invalidate: %v %v; want the new client", cl, err)
	}
}

// InvalidateAll (after change notifications were interrupted) forgets
// every client: each is read again, with its current state.
func TestCachedClientsInvalidateAll(t *testing.T) {
	ctx := context.Background()
	src := &source{clients: map[string]store.Client{"a": {ID: "a", SecretHash: "a1"}, "b": {ID: "b", SecretHash: "b1"}}}
	c := NewCachedClients(src, time.Hour, nil)
	for _, id := range []string{"a", "b"} {
		if _, err := c.GetClient(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	src.set(store.Client{ID: "a", SecretHash: "a2"})
	src.set(store.Client{ID: "b", SecretHash: "b2"})
	c.InvalidateAll()
	if c.Len() != 0 {
		t.Fatalf("%d clients cached after InvalidateAll", c.Len())
	}
	before := src.count()
	for id, want := range map[string]string{"a": "a2", "b": "b2"} {
		if cl, err := c.GetClient(ctx, id, time.Now()); err != nil || cl.SecretHash != want {
			t.Fatalf("client %s after InvalidateAll: %+v %v, want secret %s", id, cl, err, want)
		}
	}
	if n := src.count() - before; n != 2 {
		t.Fatalf("%d reads of the source after InvalidateAll, want 2", n)
	}
}
