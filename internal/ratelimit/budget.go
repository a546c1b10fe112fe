package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// Budget counts failures per key (a token bucket per key that only
// failures drain), for attempts whose success must never be limited but
// whose failures must be: guessing client credentials. Callers ask Blocked
// before doing the attempt's work and Charge after it failed, so a
// legitimate caller that succeeds spends nothing, however often or however
// concurrently it calls. Concurrent failures that all passed Blocked are
// all charged: the bucket goes into debt (at most one burst deep), which
// blocks the key for longer, so over time failures never exceed the rate.
//
// Like Limiter, it keeps at most maxKeys buckets (least recently used
// evicted) and lives in one process: replicas keep separate budgets.
type Budget struct {
	now     func() time.Time
	rate    float64 // tokens per second
	burst   float64
	maxKeys int

	mu   sync.Mutex
	keys map[string]*list.Element // of *debt
	lru  *list.List
}

type debt struct {
	key    string
	tokens float64
	at     time.Time
}

// NewBudget allows burst failures per key at once and perMinute after
// that; perMinute <= 0 returns nil, a Budget that never blocks.
func NewBudget(perMinute float64, burst, maxKeys int, now func() time.Time) *Budget {
	if perMinute <= 0 || math.IsNaN(perMinute) || math.IsInf(perMinute, 0) {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Budget{
		now: now, rate: perMinute / 60, burst: float64(max(burst, 1)), maxKeys: maxKeys,
		keys: map[string]*list.Element{}, lru: list.New(),
	}
}

// Blocked reports whether key has spent its failures, and if so how long
// until one more is allowed. It spends nothing.
func (b *Budget) Blocked(key string) (bool, time.Duration) {
	if b == nil {
		return false, 0
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.keys[key]
	if !ok {
		return false, 0
	}
	d := e.Value.(*debt)
	tokens := b.refill(d, now)
	if tokens >= 1 {
		return false, 0
	}
	return true, max(time.Duration((1-tokens)/b.rate*float64(time.Second)), time.Nanosecond)
}

// Charge records one failure for key.
func (b *Budget) Charge(key string) {
	if b == nil {
		return
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	var d *debt
	if e, ok := b.keys[key]; ok {
		b.lru.MoveToFront(e)
		d = e.Value.(*debt)
		d.tokens = b.refill(d, now)
	} else {
		for b.lru.Len() >= b.maxKeys {
			oldest := b.lru.Back()
			b.lru.Remove(oldest)
			delete(b.keys, oldest.Value.(*debt).key)
		}
		d = &debt{key: key, tokens: b.burst}
		b.keys[key] = b.lru.PushFront(d)
	}
	d.tokens = max(d.tokens-1, -b.burst)
	d.at = now
}

// refill is d's token count at now. Called with b.mu held.
func (b *Budget) refill(d *debt, now time.Time) float64 {
	elapsed := now.Sub(d.at).Seconds()
	if elapsed < 0 {
		elapsed = 0
	}
	return min(d.tokens+elapsed*b.rate, b.burst)
}
