package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond}, // nearest rank: ceil(0.5*4) = 2nd
		{ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(1, 2, 3, 4), 0, 1 * time.Millisecond},
		{ms(hundred...), 90, 90 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 99.5, 100 * time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
		}
	}
}

// Failures count by status and as errors, never towards latency or
// throughput.
func TestSummarize(t *testing.T) {
	a, b := newRecorder(), newRecorder()
	a.record(2*time.Millisecond, 200, true)
	a.record(4*time.Millisecond, 200, true)
	a.record(100*time.Millisecond, 503, false)
	b.record(6*time.Millisecond, 200, true)
	b.record(time.Second, 0, false)
	res := summarize([]*recorder{a, b}, 2*time.Second)
	if res.Requests != 5 || res.Errors != 2 || res.PerSecond != 1.5 {
		t.Fatalf("counts: %+v", res)
	}
	if res.P50 != 4 || res.P99 != 6 || res.Max != 6 {
		t.Fatalf("latencies: %+v", res)
	}
	if res.Statuses["200"] != 3 || res.Statuses["503"] != 1 || res.Statuses["0"] != 1 {
		t.Fatalf("statuses: %v", res.Statuses)
	}

	var text bytes.Buffer
	res.Op, res.ErrorSample = "register", "HTTP 503: busy"
	if err := res.write(&text, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"op register", "5 operations, 2 errors, 2/s", "p50 4.00ms", "no-response=1", "200=3", "503=1", "first error: HTTP 503"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := res.write(&js, true); err != nil {
		t.Fatal(err)
	}
	var back result
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Requests != 5 || back.P99 != 6 || back.Statuses["503"] != 1 {
		t.Fatalf("JSON round trip: %+v, %v\n%s", back, err, js.String())
	}
}

// drive stops at the request limit exactly, and at the deadline, with a
// fake clock so no test waits on real time.
func TestDriveBounds(t *testing.T) {
	var calls atomic.Int64
	op := func(context.Context) (int, error) {
		if calls.Add(1)%4 == 0 {
			return 500, errors.New("boom")
		}
		return 200, nil
	}
	recs, firstErr := drive(context.Background(), []opFunc{op, op, op}, time.Time{}, 40, time.Now)
	res := summarize(recs, time.Second)
	if res.Requests != 40 || calls.Load() != 40 || res.Errors != 10 || firstErr == nil {
		t.Fatalf("limit 40: %d requests, %d calls, %d errors, first error %v", res.Requests, calls.Load(), res.Errors, firstErr)
	}

	var clock atomic.Int64 // each reading advances a millisecond
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return base.Add(time.Duration(clock.Add(1)) * time.Millisecond) }
	calls.Store(0)
	recs, _ = drive(context.Background(), []opFunc{op}, base.Add(100*time.Millisecond), maxRequests, now)
	if n := summarize(recs, time.Second).Requests; n == 0 || n > 100 {
		t.Fatalf("deadline run did %d operations", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	recs, _ = drive(ctx, []opFunc{op}, time.Time{}, 10, time.Now)
	if n := summarize(recs, time.Second).Requests; n != 0 {
		t.Fatalf("a cancelled run did %d operations", n)
	}
}
