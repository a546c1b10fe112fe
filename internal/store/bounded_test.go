package store_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/store/storetest"
)

// blockingStore's GetClient waits for release (or its context).
type blockingStore struct {
	store.Store
	entered chan struct{}
	release chan struct{}
}

func (s *blockingStore) GetClient(ctx context.Context, id string, now time.Time) (store.Client, error) {
	s.entered <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
		return store.Client{}, ctx.Err()
	}
	return s.Store.GetClient(ctx, id, now)
}

// Beyond maxInFlight an operation is refused at once; the ones in flight
// are not disturbed.
func TestBoundedShedsBeyondMaxInFlight(t *testing.T) {
	t.Parallel()
	slow := &blockingStore{Store: store.NewMemory(), entered: make(chan struct{}, 2), release: make(chan struct{})}
	b := store.NewBounded(slow, time.Hour, 2)
	var refused atomic.Int32
	b.OnRefused = func(reason string) {
		if reason == "overloaded" {
			refused.Add(1)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { _, errs[i] = b.GetClient(context.Background(), "c", time.Now()) })
	}
	<-slow.entered
	<-slow.entered
	start := time.Now()
	_, err := b.GetClient(context.Background(), "c", time.Now())
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, store.ErrOverloaded) || time.Since(start) > time.Second {
		t.Fatalf("third operation with two in flight: %v after %s, want ErrUnavailable (overloaded) at once", err, time.Since(start))
	}
	if refused.Load() != 1 {
		t.Fatalf("OnRefused(overloaded) called %d times, want 1", refused.Load())
	}
	close(slow.release)
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("operation %d in flight: %v, want the store's own answer (ErrNotFound)", i, err)
		}
	}
	// The slots are free again.
	if _, err := b.GetClient(context.Background(), "c", time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after the others finished: %v", err)
	}
}

// A request's operations share its budget; time spent outside them does
// not count; a client gone (its context cancelled) is not a deadline.
func TestBoundedRequestBudget(t *testing.T) {
	t.Parallel()
	slow := &blockingStore{Store: store.NewMemory(), entered: make(chan struct{}, 4), release: make(chan struct{})}
	b := store.NewBounded(slow, time.Hour, 0)
	var deadlines atomic.Int32
	b.OnRefused = func(reason string) {
		if reason == "deadline" {
			deadlines.Add(1)
		}
	}

	ctx := store.WithBudget(context.Background(), 100*time.Millisecond)
	start := time.Now()
	_, err := b.GetClient(ctx, "c", time.Now())
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, store.ErrDeadline) {
		t.Fatalf("operation outlasting the budget: %v, want ErrUnavailable (deadline)", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Fatalf("operation outlasting a 100ms budget returned after %s", d)
	}
	// The budget is spent: the next operation of the request is refused
	// without touching the store.
	if err := b.Ping(ctx); !errors.Is(err, store.ErrDeadline) {
		t.Fatalf("operation after the budget was spent: %v", err)
	}
	if deadlines.Load() != 2 {
		t.Fatalf("OnRefused(deadline) called %d times, want 2", deadlines.Load())
	}

	// Time between operations is not database time.
	ctx = store.WithBudget(context.Background(), 50*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("a quick operation after 100ms elsewhere, with a 50ms budget: %v", err)
	}

	// The caller going away is not the database being slow.
	// The first GetClient above left one entry behind: take it before the
	// goroutine waits for the next (it raced this receive and could take
	// it, leaving the test blocked here).
	<-slow.entered
	cctx, cancel := context.WithCancel(store.WithBudget(context.Background(), time.Hour))
	go func() { <-slow.entered; cancel() }()
	_, err = b.GetClient(cctx, "c", time.Now())
	if !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("operation whose caller went away: %v, want context.Canceled, not unavailable", err)
	}
}

// The deadline reaches Postgres: the statement of an operation given up is
// cancelled there, not left waiting (for a lock, here) to run later for
// nobody.
func TestBoundedCancelsStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c, _ := pgFixtures(t, s)
	admin, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)

	// Another session holds the client's row.
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM clients WHERE id = $1 FOR UPDATE`, c.ID); err != nil {
		t.Fatal(err)
	}
	b := store.NewBounded(s, 300*time.Millisecond, 0)
	conns := s.PoolStats().NewConns
	changed := c
	changed.Metadata.ClientName = "changed while locked"
	start := time.Now()
	err = b.UpdateClient(ctx, changed)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("UpdateClient blocked by a lock past its deadline: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("UpdateClient returned %s after its 300ms deadline", d)
	}
	// No backend of authd is still waiting for the lock.
	waiting := func() int {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'authd' AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(2 * time.Second); waiting() > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned UPDATE is still waiting for the lock in Postgres")
		}
	}
	// Released, the lock lets nothing through: the UPDATE is gone.
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	got, err := s.GetClient(ctx, c.ID, pgT0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Metadata.ClientName != c.Metadata.ClientName {
		t.Fatal("the UPDATE given up at its deadline was applied once the lock was released")
	}
	// The statement was cancelled, not its connection: the pool needed no
	// new one (a dropped connection costs a reconnection per time-out,
	// which a struggling database can least afford).
	if n := s.PoolStats().NewConns; n != conns {
		t.Fatalf("the pool opened %d connections after the cancelled statement, want none", n-conns)
	}
}

// Bounded passes every operation through unchanged: the conformance suite
// holds through it.
func TestBoundedConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(*testing.T) store.Store { return store.NewBounded(store.NewMemory(), time.Minute, 1000) })
}
