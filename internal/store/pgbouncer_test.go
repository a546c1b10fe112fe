package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/store/storetest"
)

// pgbouncerModes are pgx's query exec modes that keep no prepared
// statement on a server connection between transactions, so they work
// through PgBouncer's transaction pooling (README: database_query_exec_mode).
var pgbouncerModes = []string{"cache_describe"}

// The Postgres store passes the whole conformance suite through PgBouncer
// in transaction-pooling mode, in every mode documented for it: each test's
// pool (up to 20 client connections) shares two server connections, so
// consecutive transactions of one client run on different server
// connections and the race cases interleave on the same ones.
func TestPostgresConformanceThroughPgBouncer(t *testing.T) {
	t.Parallel()
	bouncer := pgtest.NewPgBouncer(t, pgtest.DSN(t), 2)
	for _, mode := range pgbouncerModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(t *testing.T) store.Store {
				direct := pgtest.DSN(t)
				s, err := store.OpenPostgres(context.Background(), bouncer.DSN(databaseOf(t, direct), "default_query_exec_mode="+mode))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(s.Close)
				return s
			})
		})
	}
}

// Why the setting exists: with pgx's default mode (cache_statement, named
// prepared statements cached per connection) two authd replicas behind one
// PgBouncer server connection collide on the first query they share —
// PgBouncer 1.18 (Debian 12) does not track prepared statements.
func TestPostgresDefaultModeBreaksUnderPgBouncer(t *testing.T) {
	t.Parallel()
	direct := pgtest.DSN(t)
	bouncer := pgtest.NewPgBouncer(t, direct, 1)
	ctx := context.Background()
	var errs []error
	for range 2 {
		s, err := store.OpenPostgres(ctx, bouncer.DSN(databaseOf(t, direct)))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.GetClient(ctx, "no-such-client", time.Now())
		errs = append(errs, err)
	}
	if errs[0] != store.ErrNotFound {
		t.Fatalf("first replica: %v, want ErrNotFound", errs[0])
	}
	if errs[1] == nil || errs[1] == store.ErrNotFound {
		t.Fatalf("second replica on the same server connection: %v; want the prepared-statement clash that database_query_exec_mode avoids", errs[1])
	}
	if !strings.Contains(errs[1].Error(), "prepared statement") {
		t.Fatalf("second replica: %v, want a prepared-statement error", errs[1])
	}
}

func databaseOf(t *testing.T, dsn string) string {
	t.Helper()
	i := strings.LastIndex(dsn, "/")
	j := strings.Index(dsn, "?")
	if i < 0 || j < i {
		t.Fatalf("unexpected DSN %q", dsn)
	}
	return dsn[i+1 : j]
}
