package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// FailOnce makes the database at dsn fail, once, the first statement that
// does op ("INSERT", "UPDATE" or "DELETE") to a row of table for which
// when holds (an SQL condition on NEW, or OLD for DELETE; "true" for any
// row): a trigger raises SQLSTATE 25006 (read_only_sql_transaction, what a
// primary demoted by a failover answers), which the store reports as
// unavailable, in the middle of whatever transaction ran the statement.
// Later statements succeed. The returned func reports whether it fired.
//
// It counts with a sequence, which a rollback does not undo: the failure
// rolls back everything else its transaction did.
func FailOnce(t testing.TB, dsn, table, op, when string) (fired func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: FailOnce: %v", err)
	}
	defer conn.Close(context.Background())
	var b [6]byte
	rand.Read(b[:])
	name := "pgtest_fail_" + hex.EncodeToString(b[:])
	for _, stmt := range []string{
		`CREATE SEQUENCE ` + name,
		`CREATE FUNCTION ` + name + `() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF nextval('` + name + `') = 1 THEN
				RAISE EXCEPTION 'pgtest: injected failure (FailOnce)' USING ERRCODE = '25006';
			END IF;
			RETURN NULL;
		END $$`,
		fmt.Sprintf(`CREATE TRIGGER %s AFTER %s ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s()`,
			name, op, pgx.Identifier{table}.Sanitize(), when, name),
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("pgtest: FailOnce: %v", err)
		}
	}
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("pgtest: FailOnce: %v", err)
		}
		defer conn.Close(context.Background())
		var called bool
		if err := conn.QueryRow(ctx, `SELECT is_called FROM `+name).Scan(&called); err != nil {
			t.Fatalf("pgtest: FailOnce: %v", err)
		}
		return called
	}
}
