// Package pgtest gives tests real, isolated PostgreSQL databases.
//
// If AUTHD_TEST_DATABASE_URL is set, databases are created on that server
// (the role needs CREATEDB). Otherwise the first test that asks starts one
// ephemeral cluster for the whole test binary, from the PostgreSQL binaries
// on PATH or in /usr/lib/postgresql/*/bin, in a temp dir, on a free loopback
// port; when run as root, the cluster runs as the unprivileged user "nobody".
// A watchdog process stops the cluster and removes its directory when the
// test binary exits, however it exits, so no TestMain is needed.
//
// Migrations run once per schema version into a template database; every
// test then gets its own copy (CREATE DATABASE … TEMPLATE), dropped at the
// end of the test. Tests may run in parallel.
//
// Missing PostgreSQL binaries fail the test with instructions; they never
// skip it.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/migrations"
)

// EnvURL names the variable pointing at an existing server to use instead of
// an ephemeral cluster, e.g. postgres://postgres@localhost:5432/postgres.
const EnvURL = "AUTHD_TEST_DATABASE_URL"

// New returns a Postgres store on a fresh, migrated database of its own,
// closed and dropped when the test ends.
func New(t testing.TB) *store.Postgres {
	t.Helper()
	dsn := DSN(t)
	s, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatalf("pgtest: opening the store: %v", err)
	}
	t.Cleanup(s.Close) // runs before the database is dropped (cleanups are LIFO)
	return s
}

// DSN returns the URL of a fresh, migrated database, dropped when the test
// ends.
func DSN(t testing.TB) string {
	t.Helper()
	srv := sharedServer(t)
	return srv.createDatabase(t, srv.template)
}

// EmptyDSN returns the URL of a fresh database with no schema at all, for
// migration tests. It is dropped when the test ends.
func EmptyDSN(t testing.TB) string {
	t.Helper()
	srv := sharedServer(t)
	return srv.createDatabase(t, "template0")
}

// server is a Postgres server on which pgtest may create databases.
type server struct {
	admin    *pgxpool.Pool // connected to the maintenance database
	adminDSN string
	template string // migrated template database
	// cloneOptions for CREATE DATABASE: FILE_COPY (PostgreSQL 15+) copies
	// a small template several times faster than the default WAL_LOG.
	cloneOptions string

	// CREATE DATABASE … TEMPLATE fails if another session is connected to
	// the template, and two clones from one process gain nothing from racing.
	cloneMu sync.Mutex
}

var (
	sharedOnce sync.Once
	shared     *server
	sharedErr  error
	// sharedCluster is kept reachable for the life of the process: it holds
	// the pipe whose closing (at process exit) tells the watchdog to stop
	// the cluster.
	//lint:ignore U1000 written, never read: holding it is the point
	sharedCluster *Cluster
)

func sharedServer(t testing.TB) *server {
	t.Helper()
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		shared, sharedErr = startShared(ctx)
	})
	if sharedErr != nil {
		t.Fatalf("pgtest: %v", sharedErr)
	}
	return shared
}

func startShared(ctx context.Context) (*server, error) {
	adminDSN := os.Getenv(EnvURL)
	if adminDSN == "" {
		c, err := startCluster(ctx, nil)
		if err != nil {
			return nil, err
		}
		sharedCluster = c
		adminDSN = c.AdminDSN()
	}
	return newServer(ctx, adminDSN)
}

func newServer(ctx context.Context, adminDSN string) (*server, error) {
	cfg, err := pgxpool.ParseConfig(adminDSN)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", EnvURL, err)
	}
	cfg.MaxConns = 4
	admin, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := admin.Ping(ctx); err != nil {
		admin.Close()
		return nil, fmt.Errorf("connecting to the test server: %w", err)
	}
	srv := &server{admin: admin, adminDSN: adminDSN}
	var version int
	if err := admin.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		admin.Close()
		return nil, err
	}
	if version >= 150000 {
		srv.cloneOptions = " STRATEGY FILE_COPY"
	}
	if srv.template, err = srv.ensureTemplate(ctx); err != nil {
		admin.Close()
		return nil, err
	}
	return srv, nil
}

// ensureTemplate creates and migrates the template database unless it
// exists already. Its name carries a hash of the migrations, so a long-lived
// server (AUTHD_TEST_DATABASE_URL) gets a new template when the schema
// changes, and test binaries running at the same time share one.
func (s *server) ensureTemplate(ctx context.Context) (string, error) {
	sum, err := migrationsHash()
	if err != nil {
		return "", err
	}
	name := "authd_template_" + sum[:12]

	conn, err := s.admin.Acquire(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Release()
	// Several test binaries (go test ./...) may get here at once.
	const lockKey = 0x61757468640001 // "authd" + 1
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(lockKey)); err != nil {
		return "", err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(lockKey)) //nolint:errcheck

	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	// Build under another name and rename at the end, so that a run killed
	// half-way never leaves a half-migrated template behind.
	building := name + "_building"
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{building}.Sanitize()); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{building}.Sanitize()+` TEMPLATE template0`); err != nil {
		return "", fmt.Errorf("creating the template database: %w", err)
	}
	if err := store.MigrateUp(ctx, withDatabase(s.adminDSN, building)); err != nil {
		return "", fmt.Errorf("migrating the template database: %w", err)
	}
	if _, err := conn.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{building}.Sanitize()+` RENAME TO `+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("finishing the template database: %w", err)
	}
	return name, nil
}

// createDatabase clones template into a new database dropped at cleanup.
func (s *server) createDatabase(t testing.TB, template string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var b [6]byte
	rand.Read(b[:])
	name := "authd_test_" + hex.EncodeToString(b[:])
	s.cloneMu.Lock()
	_, err := s.admin.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()+` TEMPLATE `+pgx.Identifier{template}.Sanitize()+s.cloneOptions)
	s.cloneMu.Unlock()
	if err != nil {
		t.Fatalf("pgtest: creating a test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE (PostgreSQL 13+) ends sessions a test left open.
		if _, err := s.admin.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: dropping test database %s: %v", name, err)
		}
	})
	return withDatabase(s.adminDSN, name)
}

// migrationsHash identifies the embedded schema.
func migrationsHash() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hashing migrations: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// withDatabase returns dsn pointing at database name instead.
func withDatabase(dsn, name string) string {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err == nil {
			u.Path = "/" + name
			u.RawPath = ""
			return u.String()
		}
	}
	// key=value form: a later key overrides an earlier one.
	return dsn + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name) + "'"
}

var errNoBinaries = errors.New("PostgreSQL server binaries (initdb and postgres) were not found on PATH " +
	"or in /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `apt-get install postgresql`; " +
	"Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql`), " +
	"or set " + EnvURL + " to a server where the tests may create databases")
