package store

// The single-statement fast paths, for tests that must know they ran
// (the public methods fall back to a transaction when they decline).
var (
	RotateFast = (*Postgres).rotateFast
	RedeemFast = (*Postgres).redeemFast
)

// BatchState reports, for the "clients" or "access_tokens" batcher, how
// many rows wait, how many statements are in flight, and how many
// multi-row statements ran with how many rows in all.
func BatchState(p *Postgres, kind string) (queued, inFlight int, statements, rows int64) {
	b := map[string]interface {
		state() (int, int, int64, int64)
	}{"clients": p.clientBatch, "access_tokens": p.tokenBatch}[kind]
	return b.state()
}

func (b *batcher[T]) state() (int, int, int64, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue), b.flushing, b.flushed.Load(), b.flushedRows.Load()
}

// BatchMaxFlushes is how many statements of one kind a batcher runs at
// once before rows queue.
const BatchMaxFlushes = batchMaxFlushes
