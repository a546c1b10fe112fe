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
	for i := range 3 {
		if ok, _ := b.Take("a"); !ok {
			t.Fatalf("failure %d within the burst blocked", i+1)
		}
	}
	ok, retry := b.Take("a")
	if ok || retry <= 0 || retry > time.Second {
		t.Fatalf("after the burst: ok=%v retry=%v", ok, retry)
	}
	if ok, _ := b.Take("b"); !ok {
		t.Fatal("another key is blocked")
	}
	clk.Advance(time.Second)
	// A success gives its reservation back: any number of them pass.
	for i := range 10 {
		if ok, _ := b.Take("a"); !ok {
			t.Fatalf("success %d after a refill blocked", i+1)
		}
		b.Refund("a")
	}
	b.Refund("a") // more refunds than takes never exceed the burst
	clk.Advance(time.Hour)
	for i := range 3 {
		if ok, _ := b.Take("a"); !ok {
			t.Fatalf("after an hour, failure %d blocked", i+1)
		}
	}
	if ok, _ := b.Take("a"); ok {
		t.Fatal("refunds raised the budget above the burst")
	}
	var none *Budget
	none.Refund("a")
	if ok, _ := none.Take("a"); !ok || NewBudget(0, 1, 0, nil) != nil {
		t.Fatal("a nil budget blocks")
	}
}

// TestBudgetConcurrentTakes: attempts in flight at once are bounded by
// the burst, whatever their outcome turns out to be.
func TestBudgetConcurrentTakes(t *testing.T) {
	b := NewBudget(1, 20, 0, newClock().Now)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 1000 {
		wg.Go(func() {
			if ok, _ := b.Take("a"); ok {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	if n := admitted.Load(); n != 20 {
		t.Fatalf("%d of 1000 concurrent takes admitted, burst 20", n)
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
