package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// load runs the prepared bench: workers are set up (untimed), warm up for
// o.warmup (untimed), then run until o.duration has passed or o.requests
// operations have started. Even a duration run stops at maxRequests.
func load(ctx context.Context, o *options, b *bench, now func() time.Time) (result, error) {
	workers := make([]opFunc, o.concurrency)
	var wg sync.WaitGroup
	errs := make([]error, o.concurrency)
	for i := range workers {
		wg.Go(func() { workers[i], errs[i] = b.newWorker(ctx, i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return result{}, fmt.Errorf("preparing workers: %w", err)
	}

	if o.warmup > 0 {
		drive(ctx, workers, now().Add(o.warmup), maxRequests, now)
	}
	limit := int64(maxRequests)
	var deadline time.Time
	if o.requests > 0 {
		limit = int64(o.requests)
	} else {
		deadline = now().Add(o.duration)
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return result{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return result{}, err
		}
		defer pprof.StopCPUProfile()
	}
	start := now()
	recs, firstErr := drive(ctx, workers, deadline, limit, now)
	res := summarize(recs, now().Sub(start))
	res.Op, res.Target, res.Concurrency = o.op, o.target.String(), o.concurrency
	if firstErr != nil {
		res.ErrorSample = truncate(firstErr.Error(), 300)
	}
	return res, ctx.Err()
}

// drive has every worker perform operations until deadline (if not zero)
// passes, limit operations have been started, or ctx ends. It returns the
// workers' recorders and the first error seen.
func drive(ctx context.Context, workers []opFunc, deadline time.Time, limit int64, now func() time.Time) ([]*recorder, error) {
	var started atomic.Int64
	var firstErr error
	var once sync.Once
	recs := make([]*recorder, len(workers))
	var wg sync.WaitGroup
	for i, op := range workers {
		rec := newRecorder()
		recs[i] = rec
		wg.Go(func() {
			for ctx.Err() == nil && started.Add(1) <= limit {
				t0 := now()
				if !deadline.IsZero() && !t0.Before(deadline) {
					return
				}
				status, err := op(ctx)
				if ctx.Err() != nil {
					return // interrupted: neither a success nor the server's fault
				}
				rec.record(now().Sub(t0), status, err == nil)
				if err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	return recs, firstErr
}
