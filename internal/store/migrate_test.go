package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// Up, down to nothing, and up again: the down migrations must drop all
// that the up migrations create, and CheckSchema must follow along.
func TestMigrateUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.EmptyDSN(t)

	err := store.CheckSchema(ctx, dsn)
	if err == nil || !strings.Contains(err.Error(), "authd migrate up") {
		t.Fatalf("CheckSchema on an empty database = %v, want advice to migrate", err)
	}
	if err := store.MigrateUp(ctx, dsn); err != nil {
		t.Fatalf("MigrateUp: %v", err)
	}
	cur, latest, err := store.MigrationStatus(ctx, dsn)
	if err != nil || cur != latest || latest < 1 {
		t.Fatalf("MigrationStatus after up = %d, %d, %v; want current = latest >= 1", cur, latest, err)
	}
	if err := store.CheckSchema(ctx, dsn); err != nil {
		t.Fatalf("CheckSchema after up: %v", err)
	}
	// Migrating an up-to-date database is a no-op.
	if err := store.MigrateUp(ctx, dsn); err != nil {
		t.Fatalf("second MigrateUp: %v", err)
	}
	schema := dumpSchema(t, dsn)

	// One step down per migration; versions may have gaps (a branch
	// without another's migration), so count down by what is applied.
	for v := latest; v > 0; {
		if err := store.MigrateDown(ctx, dsn); err != nil {
			t.Fatalf("MigrateDown from %d: %v", v, err)
		}
		next, _, err := store.MigrationStatus(ctx, dsn)
		if err != nil || next >= v {
			t.Fatalf("MigrationStatus after MigrateDown from %d = %d, %v", v, next, err)
		}
		v = next
	}
	if cur, _, err := store.MigrationStatus(ctx, dsn); err != nil || cur != 0 {
		t.Fatalf("MigrationStatus after down = %d, %v; want 0", cur, err)
	}
	if left := dumpSchema(t, dsn); len(left) != 1 || left[0] != "table goose_db_version" {
		t.Fatalf("after migrating down, the schema still has %q", left)
	}
	if err := store.MigrateDown(ctx, dsn); err == nil {
		t.Error("MigrateDown on an empty schema succeeded")
	}
	if err := store.CheckSchema(ctx, dsn); err == nil {
		t.Error("CheckSchema accepted a migrated-down database")
	}

	if err := store.MigrateUp(ctx, dsn); err != nil {
		t.Fatalf("MigrateUp again: %v", err)
	}
	if again := dumpSchema(t, dsn); strings.Join(again, "\n") != strings.Join(schema, "\n") {
		t.Errorf("schema after up/down/up differs:\n%s\nwant:\n%s", strings.Join(again, "\n"), strings.Join(schema, "\n"))
	}
	// The store works on it.
	s, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CountClients(ctx, ""); err != nil {
		t.Errorf("CountClients on the re-migrated database: %v", err)
	}
}

// A schema newer than the binary knows must stop the server with a message
// saying so.
func TestCheckSchemaNewer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	if err := store.CheckSchema(ctx, dsn); err != nil {
		t.Fatalf("CheckSchema on a migrated database: %v", err)
	}
	_, latest, err := store.MigrationStatus(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, latest+1); err != nil {
		t.Fatal(err)
	}
	err = store.CheckSchema(ctx, dsn)
	if err == nil || !strings.Contains(err.Error(), "newer authd") {
		t.Fatalf("CheckSchema on a newer schema = %v, want an error naming a newer authd", err)
	}
}

func TestCheckSchemaUnreachable(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: nothing listens there.
	err := store.CheckSchema(context.Background(), "postgres://u@127.0.0.1:1/db?connect_timeout=2")
	if err == nil {
		t.Fatal("CheckSchema succeeded against no database")
	}
	if !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("CheckSchema error %q does not say the database is unavailable", err)
	}
}

// dumpSchema lists the relations, columns, indexes and constraints of the
// public schema, one per line, in a stable order.
func dumpSchema(t *testing.T, dsn string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT 'table ' || tablename FROM pg_tables WHERE schemaname = 'public'
		UNION ALL
		SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
		FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'goose_db_version'
		UNION ALL
		SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'goose_db_version'
		UNION ALL
		SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid)
		FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'goose_db_version'
		UNION ALL
		SELECT 'sequence ' || sequencename FROM pg_sequences WHERE schemaname = 'public' AND sequencename NOT LIKE 'goose%'
		UNION ALL
		SELECT 'type ' || typname FROM pg_type WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'd', 'c') AND typrelid = 0
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}
