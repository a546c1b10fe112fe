package token_test

import (
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/token"
)

// A client registered within the hour is not touched: its idle expiry was
// just set from its registration, and the write would be a round trip on
// every grant while the client cache serves the row as registered.
func TestNewClientNotTouched(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h *token.Handler) { h.ClientIdleLifetime = 30 * 24 * time.Hour })
	e.clock.Add(2 * time.Hour)
	c, err := e.st.GetClient(e.ctx, publicClient, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	exp := e.clock.Now().Add(24 * time.Hour)
	c.ExpiresAt, c.Source, c.CreatedAt, c.LastUsedAt = &exp, store.SourceDynamic, e.clock.Now(), time.Time{}
	if err := e.st.DeleteClient(e.ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.st.CreateClient(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(10 * time.Minute)
	code, verifier := e.code(publicClient)
	if _, err := e.exchange(publicClient, code, verifier); err != nil {
		t.Fatal(err)
	}
	got, err := e.st.GetClient(e.ctx, publicClient, e.clock.Now())
	if err != nil || got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) || !got.LastUsedAt.IsZero() {
		t.Fatalf("a client registered 10 minutes ago was touched: expires %v, last used %v, %v", got.ExpiresAt, got.LastUsedAt, err)
	}
}

// A client in use keeps living however short its idle lifetime: the use
// is recorded once it is a small part of that lifetime old, not only after
// an hour, which with the shortest allowed lifetime (1h) let a client used
// 40 minutes after its last recorded use expire 20 minutes later.
func TestClientInUseDoesNotIdleOut(t *testing.T) {
	t.Parallel()
	const idle = time.Hour
	e := newEnv(t, func(h *token.Handler) { h.ClientIdleLifetime = idle })
	c, err := e.st.GetClient(e.ctx, publicClient, start)
	if err != nil {
		t.Fatal(err)
	}
	exp := start.Add(idle)
	c.ExpiresAt, c.Source, c.CreatedAt, c.LastUsedAt = &exp, store.SourceDynamic, start, start
	if err := e.st.UpdateClient(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(40 * time.Minute)
	code, verifier := e.code(publicClient)
	if _, err := e.exchange(publicClient, code, verifier); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(30 * time.Minute) // 30 minutes after its last use
	if got, err := e.st.GetClient(e.ctx, publicClient, e.clock.Now()); err != nil {
		t.Fatalf("a client used 30 minutes ago, idle lifetime %s, is gone: %v (expires %v)", idle, err, got.ExpiresAt)
	}
}
