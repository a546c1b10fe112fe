package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authd/authd/internal/store"
)

// Parallel first users of the shared server must all get it, and each its
// own database.
func TestParallelDatabasesAreIsolated(t *testing.T) {
	const n = 6
	var mu sync.Mutex
	seen := map[string]bool{}
	for i := range n {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			dsn := DSN(t)
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var db string
			var clients int
			if err := conn.QueryRow(ctx, `SELECT current_database(), (SELECT count(*) FROM clients)`).Scan(&db, &clients); err != nil {
				t.Fatalf("database is not migrated: %v", err)
			}
			if clients != 0 {
				t.Errorf("fresh database has %d clients", clients)
			}
			// Writes stay in this test's database.
			if _, err := conn.Exec(ctx, `INSERT INTO clients (id, source, created_at, updated_at, last_used_at) VALUES ('c', 'config', now(), now(), now())`); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[db] {
				t.Errorf("database %s handed out twice", db)
			}
			seen[db] = true
		})
	}
}

func TestNewGivesAWorkingStore(t *testing.T) {
	s := New(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestEmptyDSNHasNoSchema(t *testing.T) {
	ctx := context.Background()
	dsn := EmptyDSN(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("empty database has %d tables", tables)
	}
	if err := store.CheckSchema(ctx, dsn); err == nil {
		t.Error("CheckSchema accepted an empty database")
	}
}

// The test databases go away at cleanup.
func TestDatabaseDroppedAtCleanup(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		dsn := DSN(t)
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := conn.QueryRow(context.Background(), `SELECT current_database()`).Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	srv := sharedServer(t)
	var exists bool
	if err := srv.admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if name == "" || exists {
		t.Errorf("database %q still exists after its test ended", name)
	}
}

// Dedicated clusters: several start at once (parallel tests calling
// NewCluster), each on its own port, as an unprivileged user when the tests
// run as root; they stop and start again; and their files are gone when
// their test ends.
func TestClusters(t *testing.T) {
	var mu sync.Mutex
	ports := map[int]bool{}
	var bases []string
	t.Run("group", func(t *testing.T) {
		for i := range 3 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				c := NewCluster(t)
				mu.Lock()
				if ports[c.port] {
					t.Errorf("port %d used twice", c.port)
				}
				ports[c.port] = true
				bases = append(bases, c.base)
				mu.Unlock()
				checkUnprivileged(t, c)
				switch i {
				case 0:
					checkStopStart(t, c)
				case 1:
					checkExternalServer(t, c)
				}
				if err := store.CheckSchema(context.Background(), c.DSN()); err != nil {
					t.Error(err)
				}
			})
		}
	})
	if len(bases) != 3 {
		t.Fatalf("%d clusters started, want 3", len(bases))
	}
	for _, base := range bases {
		if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cluster directory %s survives its test (stat: %v)", base, err)
		}
	}
}

// checkUnprivileged checks that postgres runs as, and its files belong to,
// the user we are, or "nobody" when we are root.
func checkUnprivileged(t *testing.T, c *Cluster) {
	t.Helper()
	want := uint32(os.Geteuid())
	if want == 0 {
		if c.cred == nil || c.cred.Uid == 0 {
			t.Fatal("running as root but the cluster has no unprivileged credentials")
		}
		want = c.cred.Uid
	}
	fi, err := os.Stat(c.data)
	if err != nil {
		t.Fatal(err)
	}
	if owner := fi.Sys().(*syscall.Stat_t).Uid; owner != want {
		t.Errorf("data directory owned by uid %d, want %d", owner, want)
	}
	b, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for line := range strings.Lines(string(st)) {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "Uid:" {
			uids = f[1:]
		}
	}
	// Real, effective, saved, filesystem: all unprivileged.
	for _, uid := range uids {
		if uid != fmt.Sprint(want) {
			t.Errorf("postgres runs with uids %v, want all %d", uids, want)
			break
		}
	}
	if len(uids) == 0 {
		t.Error("no Uid line in /proc/<postmaster>/status")
	}
}

// checkExternalServer uses c as AUTHD_TEST_DATABASE_URL would point at a
// server: test binaries running one after the other (or side by side)
// share the template.
func checkExternalServer(t *testing.T, c *Cluster) {
	t.Helper()
	ctx := context.Background()
	first, err := newServer(ctx, c.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer first.admin.Close()
	second, err := newServer(ctx, c.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer second.admin.Close()
	if first.template != second.template || !strings.HasPrefix(first.template, "authd_template_") {
		t.Errorf("templates %q and %q, want one shared authd_template_<hash>", first.template, second.template)
	}
	var dbs []string
	rows, err := first.admin.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'authd_template%' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	if dbs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if len(dbs) != 1 {
		t.Errorf("template databases %v, want exactly one", dbs)
	}
	var name string
	t.Run("clone", func(t *testing.T) {
		dsn := second.createDatabase(t, second.template)
		if err := store.CheckSchema(ctx, dsn); err != nil {
			t.Errorf("clone of the template: %v", err)
		}
		name = strings.TrimPrefix(dsn[strings.LastIndex(dsn, "/"):], "/")
		name, _, _ = strings.Cut(name, "?")
	})
	var exists bool
	if err := first.admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil || exists {
		t.Errorf("clone %q still exists after its test: %v, %v", name, exists, err)
	}
}

// checkStopStart stops and restarts c under an open store, which must
// report unavailability meanwhile and recover by itself.
func checkStopStart(t *testing.T, c *Cluster) {
	t.Helper()
	ctx := context.Background()
	s, err := store.OpenPostgres(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping before stop: %v", err)
	}
	port := c.Port()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping with postgres stopped = %v, want ErrUnavailable", err)
	}
	if _, err := s.GetClient(ctx, "x", time.Now()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("GetClient with postgres stopped = %v, want ErrUnavailable", err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if c.Port() != port {
		t.Errorf("restarted on port %d, want %d", c.Port(), port)
	}
	// The pool may hand out a connection that died with the old server
	// once; it must recover within a few attempts, without reopening.
	var pingErr error
	for range 5 {
		if pingErr = s.Ping(ctx); pingErr == nil {
			break
		}
	}
	if pingErr != nil {
		t.Fatalf("Ping after restart: %v", pingErr)
	}
	if err := store.CheckSchema(ctx, c.DSN()); err != nil {
		t.Fatalf("data lost across restart: %v", err)
	}
}

func TestFindBinaries(t *testing.T) {
	dir := t.TempDir()
	mk := func(d string) string {
		d = filepath.Join(dir, d)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"initdb", "postgres", "pg_ctl"} {
			if err := os.WriteFile(filepath.Join(d, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	v9 := mk("lib/9.6/bin")
	v16 := mk("lib/16/bin")
	mk("lib/13/bin")
	onPath := mk("path")
	glob := []string{filepath.Join(dir, "lib/*/bin")}

	if got, err := findBinaries(filepath.Join(dir, "nothing")+":"+onPath, glob); err != nil || got != onPath {
		t.Errorf("with binaries on PATH: %q, %v; want %q", got, err, onPath)
	}
	if got, err := findBinaries(filepath.Join(dir, "nothing"), glob); err != nil || got != v16 {
		t.Errorf("newest installed: %q, %v; want %q (not %q)", got, err, v16, v9)
	}
	_, err := findBinaries(filepath.Join(dir, "nothing"), []string{filepath.Join(dir, "none/*/bin")})
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("without binaries: %v; want an error telling what to install", err)
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@h:5/postgres?sslmode=disable", "postgres://u:p@h:5/x_1?sslmode=disable"},
		{"postgres://u@h", "postgres://u@h/x_1"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname='x_1'"},
	} {
		if got := withDatabase(tc.in, "x_1"); got != tc.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
