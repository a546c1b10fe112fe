package ratelimit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestPerKeyBurstThenRefill(t *testing.T) {
	clk := newClock()
	l := New(Config{PerKeyPerMinute: 60, PerKeyBurst: 3}, clk.Now)
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d within burst refused", i+1)
		}
	}
	ok, retry := l.Allow("a")
	if ok {
		t.Fatal("request beyond burst allowed")
	}
	if retry <= 0 || retry > time.Second {
		t.Fatalf("retryAfter = %v, want in (0, 1s] at 1 request/second", retry)
	}
	// Another key has its own bucket.
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("key b refused because key a is exhausted")
	}
	clk.Advance(retry)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("request after retryAfter refused")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("second request after one refill period allowed")
	}
}

func TestGlobalBudgetAcrossKeys(t *testing.T) {
	clk := newClock()
	l := New(Config{PerKeyPerMinute: 600, PerKeyBurst: 100, GlobalPerMinute: 6, GlobalBurst: 5}, clk.Now)
	for i := range 5 {
		if ok, _ := l.Allow(fmt.Sprint("key", i)); !ok {
			t.Fatalf("request %d within the global burst refused", i+1)
		}
	}
	ok, retry := l.Allow("fresh-key")
	if ok {
		t.Fatal("global budget exceeded but request allowed")
	}
	if retry <= 9*time.Second || retry > 10*time.Second {
		t.Fatalf("retryAfter = %v, want about 10s at 6 requests/minute", retry)
	}
	if got := RetryAfterSeconds(retry); got != 10 {
		t.Fatalf("RetryAfterSeconds(%v) = %d, want 10", retry, got)
	}
}

func TestRefusalDoesNotDrainOtherBucket(t *testing.T) {
	clk := newClock()
	l := New(Config{PerKeyPerMinute: 1, PerKeyBurst: 1, GlobalPerMinute: 1, GlobalBurst: 2}, clk.Now)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("first request refused")
	}
	// Key a is exhausted; its refusals must not consume the global budget.
	for range 5 {
		if ok, _ := l.Allow("a"); ok {
			t.Fatal("exhausted key allowed")
		}
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("global budget drained by another key's refused requests")
	}
}

func TestKeysAreBounded(t *testing.T) {
	clk := newClock()
	l := New(Config{PerKeyPerMinute: 1, PerKeyBurst: 1, MaxKeys: 100}, clk.Now)
	for i := range 10000 {
		l.Allow(fmt.Sprint("10.0.", i/256, ".", i%256))
	}
	l.mu.Lock()
	n, m := l.lru.Len(), len(l.keys)
	l.mu.Unlock()
	if n != 100 || m != 100 {
		t.Fatalf("after 10000 distinct keys: %d list entries, %d map entries; want 100", n, m)
	}
	// The most recently used keys survive, so a live client keeps its state.
	if ok, _ := l.Allow("10.0.39.15"); ok {
		t.Fatal("most recent key lost its bucket")
	}
}

func TestNilAndUnlimited(t *testing.T) {
	var nilLimiter *Limiter
	if ok, _ := nilLimiter.Allow("x"); !ok {
		t.Fatal("nil limiter refused")
	}
	l := New(Config{}, nil)
	for range 1000 {
		if ok, _ := l.Allow("x"); !ok {
			t.Fatal("limiter without rates refused")
		}
	}
	if len(l.keys) != 0 {
		t.Fatal("limiter without a per-key rate kept buckets")
	}
}

func TestConfigValidate(t *testing.T) {
	if errs := (Config{PerKeyPerMinute: 10, PerKeyBurst: 5, GlobalPerMinute: 100, GlobalBurst: 10}).Validate(); len(errs) != 0 {
		t.Fatalf("valid config rejected: %v", errs)
	}
	errs := Config{PerKeyPerMinute: -1, GlobalPerMinute: 10, MaxKeys: -1}.Validate()
	if len(errs) != 3 {
		t.Fatalf("got %d errors (%v), want 3: negative rate, missing global burst, negative max keys", len(errs), errs)
	}
}

func TestRemoteIPKey(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"192.0.2.7:1234", "192.0.2.7/32"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.7]:80", "192.0.2.7/32"},
		{"192.0.2.7", "192.0.2.7/32"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		if got := RemoteIPKey(r); got != tc.want {
			t.Errorf("RemoteIPKey(%q) = %q, want %q", tc.remote, got, tc.want)
		}
	}
}

func TestMiddlewareAnswers429(t *testing.T) {
	clk := newClock()
	l := New(Config{PerKeyPerMinute: 2, PerKeyBurst: 1}, clk.Now)
	h := Middleware(l, RemoteIPKey)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func() *http.Response {
		t.Helper()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := get(); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("first request: status %d", resp.StatusCode)
	}
	resp := get()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second request: status %d, want 429", resp.StatusCode)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra != 30 {
		t.Fatalf("Retry-After = %q, want 30 (2 requests/minute)", resp.Header.Get("Retry-After"))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	var body struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error != "too_many_requests" {
		t.Fatalf("body error = %q (%v), want too_many_requests", body.Error, err)
	}
	clk.Advance(30 * time.Second)
	if resp := get(); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("after Retry-After: status %d", resp.StatusCode)
	}
}

func TestConcurrentUse(t *testing.T) {
	l := New(Config{PerKeyPerMinute: 60, PerKeyBurst: 10, GlobalPerMinute: 60, GlobalBurst: 50, MaxKeys: 8}, newClock().Now)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				if ok, _ := l.Allow(fmt.Sprint(g, "-", i%16)); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed != 50 {
		t.Fatalf("%d requests allowed with a frozen clock, want exactly the global burst of 50", allowed)
	}
}
