package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
)

// TestBrokerStoreIsBounded: the upstream-token broker's database calls go
// through the same bounds as requests' (store.Bounded: deadline, in-flight
// limit), not around them: a refresh holds no connection across the
// upstream call, so it needs no exemption.
func TestBrokerStoreIsBounded(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(flagsFor(t, "--dev"), envOf(map[string]string{
		"AUTHD_KEYS_ENCRYPTION_SECRET": "test-encryption-secret-0123456789abcdef",
		"AUTHD_UPSTREAMS":              `[{"id":"github","type":"github","store_tokens":true,"client_id":"id","client_secret":"secret"}]`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory()
	t.Cleanup(st.Close)
	a, err := buildApp(t.Context(), deps{cfg: cfg, store: st, log: slog.New(slog.DiscardHandler), now: time.Now, started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if a.upstreamTokens == nil {
		t.Fatal("no broker although github keeps tokens")
	}
	if _, ok := a.upstreamTokens.Store.(*store.Bounded); !ok {
		t.Fatalf("the broker's store is %T, want the bounded store requests use", a.upstreamTokens.Store)
	}
}
