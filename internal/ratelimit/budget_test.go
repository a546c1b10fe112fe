package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBudgetChargesOnlyFailures(t *testing.T) {
	clk := newClock()
	b := NewBudget(60, 3, 0, clk.Now) // one failure a second, three at once
	fail := func(key string) bool {
		ok, _ := b.Take(key)
		if ok {
			b.Charge(key)
		}
		return ok
	}
	for i := range 3 {
		if !fail("a") {
			t.Fatalf("failure %d within the burst blocked", i+1)
		}
	}
	ok, retry := b.Take("a")
	if ok || retry <= 0 || retry > time.Second {
		t.Fatalf("after the burst: ok=%v retry=%v", ok, retry)
	}
	if !fail("b") {
		t.Fatal("another key is blocked")
	}
	clk.Advance(time.Second)
	// A success is refunded: any number of them pass.
	for i := range 10 {
		if ok, _ := b.Take("a"); !ok {
			t.Fatalf("success %d after a refill blocked", i+1)
		}
		b.Refund("a")
	}
	b.Refund("a") // more refunds than takes never exceed the burst
	clk.Advance(time.Hour)
	for i := range 3 {
		if !fail("a") {
			t.Fatalf("after an hour, failure %d blocked", i+1)
		}
	}
	if ok, _ := b.Take("a"); ok {
		t.Fatal("refunds raised the budget above the burst")
	}
	var none *Budget
	none.Refund("a")
	none.Charge("a")
	if ok, _ := none.Take("a"); !ok || NewBudget(0, 1, 0, nil) != nil {
		t.Fatal("a nil budget blocks")
	}
}

// TestBudgetConcurrentTakes: attempts in flight at once are bounded by
// FreshInFlight on a key with no failure, by the failures left otherwise,
// whatever their outcome turns out to be.
func TestBudgetConcurrentTakes(t *testing.T) {
	takeAll := func(b *Budget, n int) int64 {
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if ok, _ := b.Take("a"); ok {
					admitted.Add(1)
				}
			})
		}
		wg.Wait()
		return admitted.Load()
	}
	// No failure yet: concurrent successes from one caller are not
	// refused, up to FreshInFlight at once.
	b := NewBudget(1, 20, 0, newClock().Now)
	if n := takeAll(b, 1000); n != FreshInFlight {
		t.Fatalf("fresh key: %d of 1000 concurrent takes admitted, want %d", n, FreshInFlight)
	}
	// After a failure the strict rule holds: no more in flight than the
	// failures left (20 - 1 charged).
	b = NewBudget(1, 20, 0, newClock().Now)
	if ok, _ := b.Take("a"); !ok {
		t.Fatal("first take refused")
	}
	b.Charge("a")
	if n := takeAll(b, 1000); n != 19 {
		t.Fatalf("after a failure: %d of 1000 concurrent takes admitted, want 19", n)
	}
}

func TestBudgetBoundsKeys(t *testing.T) {
	b := NewBudget(1, 1, 2, newClock().Now)
	for _, k := range []string{"a", "b", "c"} {
		b.Take(k)
	}
	if len(b.keys) != 2 || b.lru.Len() != 2 {
		t.Fatalf("%d keys kept, want 2", len(b.keys))
	}
	if ok, _ := b.Take("a"); !ok {
		t.Fatal("the evicted key is still blocked")
	}
}
