package ratelimit

import (
	"testing"
	"time"
)

func TestBudgetChargesOnlyFailures(t *testing.T) {
	clk := newClock()
	b := NewBudget(60, 3, 0, clk.Now) // one failure a second, three at once
	for i := range 3 {
		if blocked, _ := b.Blocked("a"); blocked {
			t.Fatalf("failure %d within the burst blocked", i+1)
		}
		b.Charge("a")
	}
	blocked, retry := b.Blocked("a")
	if !blocked || retry <= 0 || retry > time.Second {
		t.Fatalf("after the burst: blocked=%v retry=%v", blocked, retry)
	}
	if blocked, _ := b.Blocked("b"); blocked {
		t.Fatal("another key is blocked")
	}
	clk.Advance(time.Second)
	if blocked, _ := b.Blocked("a"); blocked {
		t.Fatal("still blocked after a refill")
	}
	// Concurrent failures that all passed Blocked go into debt: the key
	// waits them off.
	for range 5 {
		b.Charge("a")
	}
	if _, retry := b.Blocked("a"); retry < 3*time.Second {
		t.Fatalf("debt not waited off: retry %v", retry)
	}
	clk.Advance(time.Hour)
	if blocked, _ := b.Blocked("a"); blocked {
		t.Fatal("blocked after an hour")
	}
	var none *Budget
	none.Charge("a")
	if blocked, _ := none.Blocked("a"); blocked || NewBudget(0, 1, 0, nil) != nil {
		t.Fatal("a nil budget blocks")
	}
}

func TestBudgetBoundsKeys(t *testing.T) {
	b := NewBudget(1, 1, 2, newClock().Now)
	for _, k := range []string{"a", "b", "c"} {
		b.Charge(k)
	}
	if len(b.keys) != 2 || b.lru.Len() != 2 {
		t.Fatalf("%d keys kept, want 2", len(b.keys))
	}
	if blocked, _ := b.Blocked("a"); blocked {
		t.Fatal("the evicted key is still blocked")
	}
}
