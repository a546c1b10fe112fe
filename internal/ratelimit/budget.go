package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// Budget counts failures per key (a token bucket per key that only
// failures drain), for attempts whose success must never be limited but
// whose failures must be: guessing client credentials. Callers Take a
// token before doing the attempt's work and Refund it when the attempt
// succeeded, so a legitimate caller that succeeds spends nothing over
// time, while attempts in flight at once are bounded by the burst: a
// failure is charged before its outcome is known.
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

// Take reserves one failure for key before the attempt's work: it
// reports whether key still had one, and if not how long until it will.
// The caller gives the reservation back with Refund when the attempt
// succeeds (or should not count); kept, it is the failure's charge.
// Reserving before the work, not charging after it, is what bounds
// concurrent attempts: however many run at once, at most burst of them
// are admitted before any has finished.
func (b *Budget) Take(key string) (bool, time.Duration) {
	if b == nil {
		return true, 0
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
	d.at = now
	if d.tokens < 1 {
		return false, max(time.Duration((1-d.tokens)/b.rate*float64(time.Second)), time.Nanosecond)
	}
	d.tokens--
	return true, 0
}

// Refund gives back a reservation Take made for key. A key evicted
// meanwhile starts full anyway.
func (b *Budget) Refund(key string) {
	if b == nil {
		return
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.keys[key]
	if !ok {
		return
	}
	d := e.Value.(*debt)
	d.tokens = min(b.refill(d, now)+1, b.burst)
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
