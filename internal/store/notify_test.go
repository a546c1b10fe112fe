package store_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// changeLog collects what a Listener reports.
type changeLog struct {
	mu       sync.Mutex
	changes  []store.Change
	connects int
	notify   chan struct{}
}

func (c *changeLog) add(ch store.Change) {
	c.mu.Lock()
	c.changes = append(c.changes, ch)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// waitFor waits until want was reported, or fails after a generous bound.
func (c *changeLog) waitFor(t *testing.T, want store.Change) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		for _, got := range c.changes {
			if got == want {
				c.mu.Unlock()
				return
			}
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-deadline:
			t.Fatalf("no %+v notified; got %+v", want, c.snapshot())
		}
	}
}

func (c *changeLog) snapshot() []store.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]store.Change(nil), c.changes...)
}

// startListener runs a Listener on dsn until the test ends.
func startListener(t *testing.T, dsn string, keepalive time.Duration) *changeLog {
	t.Helper()
	log := &changeLog{notify: make(chan struct{}, 1)}
	connected := make(chan struct{}, 16)
	l := &store.Listener{
		DSN: dsn, OnChange: log.add, Keepalive: keepalive,
		OnConnect: func() {
			log.mu.Lock()
			log.connects++
			log.mu.Unlock()
			connected <- struct{}{}
		},
		Log: slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done }) // before the database is dropped
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener did not connect")
	}
	return log
}

// The triggers announce what caches depend on, and only that: a client's
// use (TouchClient, on every request) is not announced, its deletion and
// changes are; users disabled; any signing key change. A quiet connection
// survives its keepalive pings.
func TestPostgresListenerChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c, u := pgFixtures(t, s)
	log := startListener(t, dsn, 100*time.Millisecond)

	if err := s.TouchClient(ctx, c.ID, pgT0.Add(time.Hour), time.Hour); err != nil {
		t.Fatal(err)
	}
	c.Disabled = true
	if err := s.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	log.waitFor(t, store.Change{Kind: store.ChangeClient, ID: c.ID})
	if n := len(log.snapshot()); n != 1 {
		t.Fatalf("%d changes after a touch and an update, want 1 (the touch is not announced): %+v", n, log.snapshot())
	}
	if _, err := s.DisableUser(ctx, u.ID, pgT0); err != nil {
		t.Fatal(err)
	}
	log.waitFor(t, store.Change{Kind: store.ChangeUser, ID: u.ID})
	if err := s.CreateSigningKey(ctx, store.SigningKey{ID: "k1", Algorithm: "ES256", State: store.KeyActive,
		PublicJWK: []byte(`{}`), EncryptedPrivateKey: []byte("x"), CreatedAt: pgT0}); err != nil {
		t.Fatal(err)
	}
	log.waitFor(t, store.Change{Kind: store.ChangeKeys})
	if err := s.DeleteClient(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	log.waitFor(t, store.Change{Kind: store.ChangeClient, ID: c.ID})

	time.Sleep(500 * time.Millisecond) // several keepalive periods
	log.mu.Lock()
	connects := log.connects
	log.mu.Unlock()
	if connects != 1 {
		t.Fatalf("the listener connected %d times, want once (keepalive pings must not break the connection)", connects)
	}
}

// A lost listening connection is replaced, and the replacement announced
// (OnConnect: reload everything, changes may have been missed); changes
// after it arrive as before.
func TestPostgresListenerReconnects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c, _ := pgFixtures(t, s)
	log := startListener(t, dsn, time.Minute)
	admin, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'authd-listen'`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminating the listening connection: %d terminated, %v", killed, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		log.mu.Lock()
		n := log.connects
		log.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the listener did not reconnect after its connection was terminated")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Disabled = true
	if err := s.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	log.waitFor(t, store.Change{Kind: store.ChangeClient, ID: c.ID})
}
