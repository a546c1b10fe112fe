package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// batcher coalesces concurrent single-row inserts into multi-row ones:
// group commit done by authd rather than by PostgreSQL. A durable
// single-row INSERT costs PostgreSQL far more in per-statement and
// per-commit work (protocol, executor start-up, commit record, WAL flush)
// than in the row itself; under load, one statement for the rows of every
// request waiting at that moment makes that work once per batch. Each
// caller still returns only after the statement holding its row has
// committed, so nothing is handed out before it is stored.
//
// When no other insert is under way a row goes out alone, at once, in the
// single-row statement (no added latency at low load). While maxFlushes
// statements are in flight, arrivals queue; the next statement takes the
// whole queue (up to maxRows). A failed multi-row statement writes nothing
// (it is one transaction); its callers then insert their rows one by one,
// each getting its own error (a conflict, a missing parent), so a bad row
// never fails another caller's.
type batcher[T any] struct {
	// insert writes one row: the statement every row took before batching.
	insert func(ctx context.Context, row T) error
	// insertMany writes rows in one statement, all or none.
	insertMany func(ctx context.Context, rows []T) error
	maxRows    int
	maxFlushes int

	mu       sync.Mutex
	queue    []*batchCall[T]
	flushing int // statements in flight

	// flushed counts multi-row statements and the rows they carried, for
	// tests and benchmarks.
	flushed, flushedRows atomic.Int64
}

type batchCall[T any] struct {
	ctx  context.Context
	row  T
	err  error
	done chan struct{}
}

// errInsertAlone tells a caller that its batch failed as a whole and its row
// is to be inserted alone.
var errInsertAlone = errors.New("store: insert the row alone")

// partialInsert is what insertMany returns when its statement committed
// every row but those at failed (rows it leaves out rather than fail the
// statement for, such as a token of a client that is gone): those are
// inserted alone, each to get its own error.
type partialInsert struct{ failed []int }

func (*partialInsert) Error() string { return "store: rows of a batch were left out" }

// do inserts row, possibly together with other callers' rows, and returns
// once it is committed (or failed). If ctx ends first, do returns its error;
// the row may still be written, as with a statement cancelled in flight.
func (b *batcher[T]) do(ctx context.Context, row T) error {
	c := &batchCall[T]{ctx: ctx, row: row, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	lead := b.flushing < b.maxFlushes
	if lead {
		b.flushing++
	}
	b.mu.Unlock()
	if lead {
		go b.flush()
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return mapErr(ctx.Err())
	}
	if errors.Is(c.err, errInsertAlone) {
		return b.insert(ctx, row)
	}
	return c.err
}

// flush writes the queue in statements of at most maxRows rows until it is
// empty. It runs on a goroutine of its own, so that a caller can give up
// while its row is in flight.
func (b *batcher[T]) flush() {
	for {
		b.mu.Lock()
		batch := b.take()
		if len(batch) == 0 {
			b.flushing--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.write(batch)
	}
}

// take removes up to maxRows calls from the queue, dropping those whose
// caller has given up. b.mu is held.
func (b *batcher[T]) take() []*batchCall[T] {
	var batch []*batchCall[T]
	n := 0
	for _, c := range b.queue {
		n++
		if c.ctx.Err() != nil {
			c.err = mapErr(c.ctx.Err())
			close(c.done)
			continue
		}
		batch = append(batch, c)
		if len(batch) == b.maxRows {
			break
		}
	}
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch
}

// write runs one statement for batch and tells every caller the outcome.
// The statement is not cancelled with any one caller's context (the others
// still wait for it) but once every caller has given up. It carries the
// first caller's values, so that its trace span is a child of that
// request's (a row alone: its own request's, as before batching).
func (b *batcher[T]) write(batch []*batchCall[T]) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(batch[0].ctx))
	defer cancel()
	var waiting atomic.Int64
	waiting.Store(int64(len(batch)))
	for _, c := range batch {
		stop := context.AfterFunc(c.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}

	var err error
	var partial *partialInsert
	if len(batch) == 1 {
		err = b.insert(ctx, batch[0].row)
	} else {
		rows := make([]T, len(batch))
		for i, c := range batch {
			rows[i] = c.row
		}
		err = b.insertMany(ctx, rows)
		b.flushed.Add(1)
		b.flushedRows.Add(int64(len(rows)))
		if errors.As(err, &partial) {
			err = nil
		} else if err != nil && !errors.Is(err, ErrUnavailable) {
			// Which row failed, and why, is for each caller's own insert
			// to find out. (An unreachable database fails them all alike.)
			err = errInsertAlone
		}
	}
	for _, c := range batch {
		c.err = err
	}
	if partial != nil {
		for _, i := range partial.failed {
			batch[i].err = errInsertAlone
		}
	}
	for _, c := range batch {
		close(c.done)
	}
}
