package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/store"
)

// countingStore counts client reads, to tell a cached lookup from a read.
type countingStore struct {
	store.Store
	reads atomic.Int64
}

func (s *countingStore) GetClient(ctx context.Context, id string, now time.Time) (store.Client, error) {
	s.reads.Add(1)
	return s.Store.GetClient(ctx, id, now)
}

// TestClientSourceInvalidation: the sign-in flow and the token endpoints
// read a client through the source's caches (once per TTL), and one
// change forgets it for both: written through registration (RFC 7592) at
// once, or announced by another replica (invalidate, as changeListener
// calls it), or everything after a reconnection (invalidateAll).
func TestClientSourceInvalidation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mem := store.NewMemory()
	t.Cleanup(mem.Close)
	st := &countingStore{Store: mem}
	now := time.Now()
	cfg := config.Defaults()
	cfg.ClientMetadataDocuments.Enabled = false
	src := newClientSource(&cfg, st, grants.Default(), nil, time.Now, slog.New(slog.DiscardHandler))

	c := store.Client{ID: "app", Source: store.SourceDynamic, Metadata: store.ClientMetadata{ClientName: "v1"}, CreatedAt: now, UpdatedAt: now}
	if err := mem.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	names := func() (string, string) {
		t.Helper()
		a, err := src.signInStore().GetClient(ctx, "app", now)
		if err != nil {
			t.Fatal(err)
		}
		b, err := src.knownClients().GetClient(ctx, "app", now)
		if err != nil {
			t.Fatal(err)
		}
		return a.Metadata.ClientName, b.Metadata.ClientName
	}
	expect := func(what, want string, reads int64) {
		t.Helper()
		before := st.reads.Load()
		a, b := names()
		if a != want || b != want {
			t.Errorf("%s: sign-in sees %q, token endpoints %q, want %q", what, a, b, want)
		}
		if got := st.reads.Load() - before; got != reads {
			t.Errorf("%s: %d store reads, want %d", what, got, reads)
		}
	}
	expect("first lookups", "v1", 2)
	expect("cached", "v1", 0)

	// Changed through this replica's registration endpoints.
	c.Metadata.ClientName = "v2"
	if err := src.writeThrough().UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	expect("after an RFC 7592 update", "v2", 2)

	// Changed elsewhere: the caches hold the old row until told.
	c.Metadata.ClientName = "v3"
	if err := mem.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	expect("changed on another replica, not yet announced", "v2", 0)
	src.invalidate("app")
	expect("after the change notification", "v3", 2)

	c.Metadata.ClientName = "v4"
	if err := mem.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	src.invalidateAll()
	expect("after a reconnection", "v4", 2)
}
