package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// recorder collects one worker's samples; workers never share one, so it
// needs no lock. Samples are kept exactly (8 bytes each, and the run is
// bounded by maxRequests), so percentiles are exact, not estimated.
type recorder struct {
	latencies []time.Duration // of successful operations
	statuses  map[int]int     // every outcome by HTTP status; 0 = transport error
	failures  int
}

func newRecorder() *recorder { return &recorder{statuses: map[int]int{}} }

// record notes one finished operation: its latency counts only if it
// succeeded, so that fast failures cannot make a server look quick.
func (r *recorder) record(d time.Duration, status int, ok bool) {
	r.statuses[status]++
	if ok {
		r.latencies = append(r.latencies, d)
	} else {
		r.failures++
	}
}

// result is what a run reports.
type result struct {
	Op          string  `json:"op"`
	Target      string  `json:"target"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	Requests    int     `json:"requests"` // operations finished, failed ones included
	Errors      int     `json:"errors"`
	// PerSecond counts successful operations only.
	PerSecond float64 `json:"per_second"`
	// Latencies of successful operations, in milliseconds.
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	// Statuses counts outcomes by HTTP status ("0": no response).
	Statuses map[string]int `json:"statuses"`
	// ErrorSample is the first failure's description, if any.
	ErrorSample string `json:"error_sample,omitempty"`
}

// summarize merges the workers' recorders over a run that took elapsed.
func summarize(recs []*recorder, elapsed time.Duration) result {
	res := result{Seconds: elapsed.Seconds(), Statuses: map[string]int{}}
	var all []time.Duration
	for _, r := range recs {
		all = append(all, r.latencies...)
		res.Errors += r.failures
		for s, n := range r.statuses {
			res.Statuses[strconv.Itoa(s)] += n
			res.Requests += n
		}
	}
	slices.Sort(all)
	if elapsed > 0 {
		res.PerSecond = float64(len(all)) / elapsed.Seconds()
	}
	res.P50 = ms(percentile(all, 50))
	res.P90 = ms(percentile(all, 90))
	res.P99 = ms(percentile(all, 99))
	if len(all) > 0 {
		res.Max = ms(all[len(all)-1])
	}
	return res
}

// percentile returns the p-th percentile of sorted by the nearest-rank
// method: the smallest sample with at least p% of samples at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func (res result) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "op %s against %s, concurrency %d, %.1fs\n", res.Op, res.Target, res.Concurrency, res.Seconds)
	fmt.Fprintf(&b, "  %d operations, %d errors, %.0f/s\n", res.Requests, res.Errors, res.PerSecond)
	fmt.Fprintf(&b, "  latency p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms\n", res.P50, res.P90, res.P99, res.Max)
	codes := make([]string, 0, len(res.Statuses))
	for s := range res.Statuses {
		codes = append(codes, s)
	}
	slices.Sort(codes)
	b.WriteString("  statuses:")
	for _, s := range codes {
		label := s
		if s == "0" {
			label = "no-response"
		}
		fmt.Fprintf(&b, " %s=%d", label, res.Statuses[s])
	}
	b.WriteString("\n")
	if res.ErrorSample != "" {
		fmt.Fprintf(&b, "  first error: %s\n", res.ErrorSample)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
