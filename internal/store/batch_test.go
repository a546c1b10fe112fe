package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeInserts records what a batcher sends and can hold statements until
// released, so that tests decide what queues behind them.
type fakeInserts struct {
	mu      sync.Mutex
	singles []int
	batches [][]int
	// hold, when set, blocks every statement until it is closed.
	hold chan struct{}
	// started receives a value as each statement starts, cancelled as one
	// is cancelled.
	started, cancelled chan struct{}
	// failSingle and failMany make statements fail.
	failSingle map[int]error
	failMany   error
	// leaveOut are rows a multi-row statement leaves out (and reports in
	// a *partialInsert) while writing the others.
	leaveOut map[int]bool
}

func (f *fakeInserts) wait(ctx context.Context) error {
	f.started <- struct{}{}
	if f.hold == nil {
		return nil
	}
	select {
	case <-f.hold:
		return nil
	case <-ctx.Done():
		f.cancelled <- struct{}{}
		return ctx.Err()
	}
}

// written returns the rows written alone and in batches so far.
func (f *fakeInserts) written() ([]int, [][]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.singles), slices.Clone(f.batches)
}

func (f *fakeInserts) insert(ctx context.Context, row int) error {
	if err := f.wait(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failSingle[row]; err != nil {
		return err
	}
	f.singles = append(f.singles, row)
	return nil
}

func (f *fakeInserts) insertMany(ctx context.Context, rows []int) error {
	if err := f.wait(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failMany != nil {
		return f.failMany
	}
	var written []int
	partial := &partialInsert{}
	for i, r := range rows {
		if f.leaveOut[r] {
			partial.failed = append(partial.failed, i)
		} else {
			written = append(written, r)
		}
	}
	f.batches = append(f.batches, written)
	if len(partial.failed) > 0 {
		return partial
	}
	return nil
}

func newFakeBatcher(f *fakeInserts) *batcher[int] {
	f.started, f.cancelled = make(chan struct{}, 1000), make(chan struct{}, 1000)
	return &batcher[int]{insert: f.insert, insertMany: f.insertMany, maxRows: 4, maxFlushes: 2}
}

func (b *batcher[T]) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

func (b *batcher[T]) inFlight() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushing
}

// waitFor polls cond (the batcher's state changes on other goroutines).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fill starts the batcher's two statements (rows 0 and 1, held), then
// queues rows 2..n-1 behind them, and returns each caller's result.
func fill(t *testing.T, b *batcher[int], f *fakeInserts, n int) []chan error {
	t.Helper()
	results := make([]chan error, n)
	for i := range n {
		results[i] = make(chan error, 1)
		go func() { results[i] <- b.do(t.Context(), i) }()
		if i < b.maxFlushes {
			<-f.started // in flight, alone
		} else {
			waitFor(t, fmt.Sprintf("row %d to queue", i), func() bool { return b.queued() == i-b.maxFlushes+1 })
		}
	}
	return results
}

func TestBatcherRowAloneWhenIdle(t *testing.T) {
	t.Parallel()
	f := &fakeInserts{}
	b := newFakeBatcher(f)
	for i := range 3 {
		if err := b.do(t.Context(), i); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(f.singles, []int{0, 1, 2}) || len(f.batches) != 0 {
		t.Fatalf("sequential rows: singles %v, batches %v; want each alone", f.singles, f.batches)
	}
}

// Rows arriving while statements are in flight go out together, at most
// maxRows per statement, in arrival order, and every caller learns its row
// was written.
func TestBatcherCoalescesWhileBusy(t *testing.T) {
	t.Parallel()
	f := &fakeInserts{hold: make(chan struct{})}
	b := newFakeBatcher(f)
	results := fill(t, b, f, 8)
	close(f.hold)
	for i, r := range results {
		if err := <-r; err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}
	singles, batches := f.written()
	slices.Sort(singles)
	if !slices.Equal(singles, []int{0, 1}) {
		t.Errorf("rows alone = %v, want the two that found the batcher idle", singles)
	}
	// Two statements drain the queue, in whichever order they finish.
	slices.SortFunc(batches, func(a, b []int) int { return a[0] - b[0] })
	if want := [][]int{{2, 3, 4, 5}, {6, 7}}; fmt.Sprint(batches) != fmt.Sprint(want) {
		t.Errorf("batches = %v, want %v", batches, want)
	}
	if got := b.flushed.Load(); got != 2 {
		t.Errorf("flushed = %d, want 2", got)
	}
	waitFor(t, "the statements to end", func() bool { return b.inFlight() == 0 })
	if b.queued() != 0 {
		t.Errorf("after the last row: %d queued", b.queued())
	}
}

// A failed multi-row statement wrote nothing; its rows are then inserted
// one by one, so that only the bad row's caller gets an error.
func TestBatcherFailedBatchInsertsRowsAlone(t *testing.T) {
	t.Parallel()
	bad := errors.New("bad row")
	f := &fakeInserts{hold: make(chan struct{}), failMany: errors.New("statement failed"), failSingle: map[int]error{3: bad}}
	b := newFakeBatcher(f)
	results := fill(t, b, f, 5)
	close(f.hold)
	for i, r := range results {
		err := <-r
		switch {
		case i == 3 && !errors.Is(err, bad):
			t.Errorf("the bad row: %v, want its own error", err)
		case i != 3 && err != nil:
			t.Errorf("row %d, batched with a bad one: %v", i, err)
		}
	}
	singles, _ := f.written()
	slices.Sort(singles)
	if !slices.Equal(singles, []int{0, 1, 2, 4}) {
		t.Errorf("rows written = %v, want every row but the bad one", singles)
	}
}

// Rows a statement leaves out are inserted alone, each getting its own
// outcome; the rows it wrote are done, not written again.
func TestBatcherPartialBatch(t *testing.T) {
	t.Parallel()
	gone := errors.New("parent gone")
	f := &fakeInserts{hold: make(chan struct{}), leaveOut: map[int]bool{2: true, 4: true}, failSingle: map[int]error{2: gone}}
	b := newFakeBatcher(f)
	results := fill(t, b, f, 5)
	close(f.hold)
	for i, r := range results {
		err := <-r
		switch {
		case i == 2 && !errors.Is(err, gone):
			t.Errorf("row 2, left out and refused alone: %v, want its own error", err)
		case i != 2 && err != nil:
			t.Errorf("row %d: %v", i, err)
		}
	}
	singles, batches := f.written()
	slices.Sort(singles)
	var batched []int
	for _, b := range batches {
		batched = append(batched, b...)
	}
	slices.Sort(batched)
	// Rows 0 and 1 went out alone (nothing in flight); 2, 3 and 4 queued
	// and went out together, which wrote 3 and left out 2 and 4.
	if !slices.Equal(singles, []int{0, 1, 4}) || !slices.Equal(batched, []int{3}) {
		t.Errorf("written alone %v and in batches %v; want [0 1 4] and [3]", singles, batched)
	}
}

// An unreachable database fails every row alike: no row-by-row retry.
func TestBatcherUnavailableFailsTheBatch(t *testing.T) {
	t.Parallel()
	f := &fakeInserts{hold: make(chan struct{}), failMany: Unavailable(errors.New("connection refused"))}
	b := newFakeBatcher(f)
	results := fill(t, b, f, 4)
	close(f.hold)
	for i, r := range results {
		err := <-r
		switch {
		case i < 2 && err != nil:
			t.Errorf("row %d, written alone: %v", i, err)
		case i >= 2 && !errors.Is(err, ErrUnavailable):
			t.Errorf("row %d: %v, want ErrUnavailable", i, err)
		}
	}
	if singles, _ := f.written(); len(singles) != 2 {
		t.Errorf("rows written alone = %v, want only the two in flight", singles)
	}
}

// A caller that gives up gets its context's error at once; a queued row
// whose caller is gone is not sent, and a statement whose callers have all
// gone is cancelled.
func TestBatcherCallerGivesUp(t *testing.T) {
	t.Parallel()
	f := &fakeInserts{hold: make(chan struct{})}
	b := newFakeBatcher(f)
	b.maxFlushes = 1

	ctx0, cancel0 := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() { first <- b.do(ctx0, 0) }()
	<-f.started
	ctx1, cancel1 := context.WithCancel(t.Context())
	gone := make(chan error, 1)
	go func() { gone <- b.do(ctx1, 1) }()
	waitFor(t, "row 1 to queue", func() bool { return b.queued() == 1 })
	stays := make(chan error, 1)
	go func() { stays <- b.do(t.Context(), 2) }()
	waitFor(t, "row 2 to queue", func() bool { return b.queued() == 2 })

	cancel1()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued caller that gave up: %v, want context.Canceled", err)
	}
	// The only caller of the statement in flight gives up: it learns so at
	// once, and the statement is cancelled rather than left holding the
	// batcher.
	cancel0()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller of the statement in flight: %v, want context.Canceled", err)
	}
	<-f.cancelled
	close(f.hold)
	if err := <-stays; err != nil {
		t.Fatalf("the caller that stayed: %v", err)
	}
	if singles, batches := f.written(); !slices.Equal(singles, []int{2}) || len(batches) != 0 {
		t.Errorf("singles %v, batches %v: want row 2 alone (row 1's caller left before it was sent)", singles, batches)
	}
}
