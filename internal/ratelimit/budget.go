package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// Budget counts failures per key (a token bucket per key that only
// failures drain), for attempts whose success must never be limited but
// whose failures must be: guessing client credentials. Callers Take before
// doing the attempt's work, then Refund when it succeeded (or reached no
// verdict) or Charge when it failed.
//
// Attempts in flight are reserved against the budget once the key has
// failed recently (its bucket is not full): then no more attempts run at
// once than failures remain, however many arrive together. A key with no
// recent failure admits up to FreshInFlight attempts at once, so that a
// legitimate caller making many concurrent requests from one address is
// never refused for its own successes (reserving from the first request
// refused a resource server's 21st concurrent introspection); an attacker's
// first wave is bounded by that number, and from its first failure on the
// strict rule applies.
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

// FreshInFlight is how many attempts a key with no recent failure may
// have in flight at once.
const FreshInFlight = 256

type debt struct {
	key      string
	tokens   float64 // the bucket: drained by failures only
	inFlight int     // attempts taken, not yet refunded or charged
	at       time.Time
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

// Take admits an attempt for key before its work, or reports how long
// until it would be admitted. Every admitted attempt ends with Refund or
// Charge. A key that failed recently admits no more attempts at once than
// it has failures left; one with a full bucket admits up to FreshInFlight.
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
	fresh := d.tokens >= b.burst
	if avail := d.tokens - float64(d.inFlight); avail < 1 && !(fresh && d.inFlight < FreshInFlight) {
		return false, max(time.Duration((1-avail)/b.rate*float64(time.Second)), time.Nanosecond)
	}
	d.inFlight++
	return true, 0
}

// Refund ends an attempt Take admitted for key without a failure. A key
// evicted meanwhile is not recreated.
func (b *Budget) Refund(key string) { b.settle(key, false) }

// Charge ends an attempt Take admitted for key as a failure: it drains the
// bucket (down to one burst of debt).
func (b *Budget) Charge(key string) { b.settle(key, true) }

func (b *Budget) settle(key string, failed bool) {
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
	d.tokens = b.refill(d, now)
	d.at = now
	if d.inFlight > 0 {
		d.inFlight--
	}
	if failed {
		d.tokens = max(d.tokens-1, -b.burst)
	}
}

func (b *Budget) refill(d *debt, now time.Time) float64 {
	elapsed := now.Sub(d.at).Seconds()
	if elapsed < 0 {
		elapsed = 0
	}
	return min(d.tokens+elapsed*b.rate, b.burst)
}
