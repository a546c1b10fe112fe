package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/authd/authd/internal/store"
)

// NewReplicatedCluster starts a primary with a migrated database "authd"
// and a streaming standby cloned from it with pg_basebackup, for failover
// tests. Replication is synchronous (synchronous_standby_names = '*'): a
// commit the primary acknowledges is on the standby, so a failover loses
// no acknowledged write. Both are stopped and removed when the test ends.
func NewReplicatedCluster(t testing.TB) (primary, standby *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// synchronous_commit on: the throwaway default (off) returns before
	// the commit is flushed, let alone replicated.
	primary, err := startCluster(ctx, nil, "synchronous_commit=on")
	if err != nil {
		t.Fatalf("pgtest: primary: %v", err)
	}
	t.Cleanup(primary.remove)
	if err := primary.exec(ctx, `CREATE DATABASE authd`); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := store.MigrateUp(ctx, primary.DSN()); err != nil {
		t.Fatalf("pgtest: migrating: %v", err)
	}
	if standby, err = startCluster(ctx, primary); err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	t.Cleanup(standby.remove)
	// Only now: with no standby connected, synchronous commits would wait.
	// The standby was cloned before, so it does not wait for one itself
	// once promoted.
	for _, q := range []string{`ALTER SYSTEM SET synchronous_standby_names = '*'`, `SELECT pg_reload_conf()`} {
		if err := primary.exec(ctx, q); err != nil {
			t.Fatalf("pgtest: %s: %v", q, err)
		}
	}
	for {
		n, err := primary.queryInt(ctx, `SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync' AND state = 'streaming'`)
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if n == 1 {
			return primary, standby
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pgtest: the standby did not become a synchronous streaming replica:\n%s", readFrom(standby.log, 0))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// MultiHostDSN is the libpq multi-host URL of database "authd" on clusters,
// tried in order, accepting only a server that takes writes
// (target_session_attrs=read-write): what authd is given for failover.
func MultiHostDSN(clusters ...*Cluster) string {
	hosts := make([]string, len(clusters))
	for i, c := range clusters {
		hosts[i] = fmt.Sprintf("127.0.0.1:%d", c.port)
	}
	return "postgres://postgres@" + strings.Join(hosts, ",") + "/authd?sslmode=disable&target_session_attrs=read-write&connect_timeout=2"
}

// Kill ends postgres with SIGKILL, as a crash or a lost machine does, and
// waits until the postmaster has exited. Its backends notice and exit on
// their own.
func (c *Cluster) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return nil
	}
	proc, exited := c.proc, c.exited
	c.proc = nil
	if err := proc.Kill(); err != nil && err != os.ErrProcessDone {
		return err
	}
	<-exited
	return nil
}

// Promote makes a standby the primary (pg_promote) and waits until it
// accepts writes.
func (c *Cluster) Promote() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.exec(ctx, `SELECT pg_promote(true, 60)`); err != nil {
		return fmt.Errorf("pgtest: promoting: %w", err)
	}
	n, err := c.queryInt(ctx, `SELECT CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END`)
	if err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("pgtest: still in recovery after pg_promote")
	}
	return nil
}

// queryInt runs a query returning one integer in the maintenance database.
func (c *Cluster) queryInt(ctx context.Context, sql string) (int, error) {
	conn, err := pgconn.Connect(ctx, c.AdminDSN())
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return 0, err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return 0, fmt.Errorf("pgtest: %s: unexpected result", sql)
	}
	var n int
	_, err = fmt.Sscan(string(res[0].Rows[0][0]), &n)
	return n, err
}
