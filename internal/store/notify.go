package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ChangesChannel is the NOTIFY channel the database's triggers announce
// changes on (migration 00005).
const ChangesChannel = "authd_changes"

// Change is one announced change: Kind is ChangeKeys (ID empty),
// ChangeClient or ChangeUser (ID the row's id).
type Change struct {
	Kind string
	ID   string
}

const (
	ChangeKeys   = "keys"
	ChangeClient = "client"
	ChangeUser   = "user"
)

// keepaliveTimeout bounds the ping of a quiet listening connection.
const keepaliveTimeout = 5 * time.Second

func parseChange(payload string) (Change, bool) {
	if payload == ChangeKeys {
		return Change{Kind: ChangeKeys}, true
	}
	kind, id, ok := strings.Cut(payload, ":")
	if !ok || id == "" || (kind != ChangeClient && kind != ChangeUser) {
		return Change{}, false
	}
	return Change{Kind: kind, ID: id}, true
}

// Listener receives the changes other replicas (and the admin CLI, and
// anyone writing to the database) make, as they commit.
type Listener struct {
	// DSN is the database to LISTEN on. It must reach PostgreSQL itself,
	// or a PgBouncer in session mode: LISTEN belongs to a session, which
	// transaction pooling hands to other clients between transactions.
	DSN string
	// OnChange is called for every change, one at a time.
	OnChange func(Change)
	// OnConnect is called after each (re)connection, once LISTEN is in
	// place: changes made while disconnected were missed, so everything
	// cached should be reloaded.
	OnConnect func()
	Log       *slog.Logger
	// MaxBackoff bounds the wait between reconnection attempts (30s if 0).
	MaxBackoff time.Duration
	// Keepalive: after this long without a notification the connection
	// is pinged, and replaced if it does not answer (30s if 0).
	Keepalive time.Duration
}

// Run listens until ctx is done, reconnecting with backoff whenever the
// connection is lost. It uses a connection of its own, outside the pool:
// it is held for as long as authd runs and must not count against (or
// wait for) the connections requests use.
func (l *Listener) Run(ctx context.Context) {
	maxBackoff := l.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		connected, err := l.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = 100 * time.Millisecond
		}
		l.Log.Warn("listening for changes from other replicas failed; retrying (periodic reloads continue meanwhile)",
			"error", err.Error(), "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listen runs one connection until it fails; connected reports whether
// LISTEN was established.
func (l *Listener) listen(ctx context.Context) (connected bool, err error) {
	cfg, err := pgx.ParseConfig(l.DSN)
	if err != nil {
		return false, errors.New("store: invalid database URL for listening")
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "authd-listen"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connecting: %w", mapErr(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+ChangesChannel); err != nil {
		return false, fmt.Errorf("LISTEN: %w", mapErr(err))
	}
	l.OnConnect()
	for {
		// A connection can die without a word (a frozen server, a dropped
		// network path): after a quiet spell, check it answers.
		wctx, cancel := context.WithTimeout(ctx, cmp.Or(l.Keepalive, 30*time.Second))
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			pctx, cancel := context.WithTimeout(ctx, keepaliveTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err == nil {
				continue
			}
		}
		if err != nil {
			return true, mapErr(err)
		}
		c, ok := parseChange(n.Payload)
		if !ok {
			l.Log.Warn("ignoring an unknown change notification", "payload", n.Payload)
			continue
		}
		l.OnChange(c)
	}
}
