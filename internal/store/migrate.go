package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/authd/authd/migrations"
)

// versionTable is goose's bookkeeping table. It is named explicitly because
// CheckSchema reads it directly (without creating it).
const versionTable = "goose_db_version"

// MigrateUp applies every pending migration. Replicas starting together are
// serialised by a Postgres session advisory lock, so each migration runs once.
func MigrateUp(ctx context.Context, dsn string) error {
	_, err := ApplyMigrations(ctx, dsn)
	return err
}

// AppliedMigration is one migration that ApplyMigrations ran.
type AppliedMigration struct {
	Version  int64         `json:"version"`
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

// ApplyMigrations is MigrateUp, reporting which migrations it applied (none
// when the schema was up to date), for `authd migrate up` to say so.
func ApplyMigrations(ctx context.Context, dsn string) ([]AppliedMigration, error) {
	var applied []AppliedMigration
	err := withProvider(ctx, dsn, func(p *goose.Provider) error {
		res, err := p.Up(ctx)
		for _, r := range res {
			if r != nil && r.Source != nil && r.Error == nil {
				applied = append(applied, AppliedMigration{Version: r.Source.Version, Name: path.Base(r.Source.Path), Duration: r.Duration})
			}
		}
		return err
	})
	return applied, err
}

// MigrateDown rolls back the most recently applied migration.
func MigrateDown(ctx context.Context, dsn string) error {
	return withProvider(ctx, dsn, func(p *goose.Provider) error {
		_, err := p.Down(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) {
			return errors.New("no migration to roll back: the schema is empty")
		}
		return err
	})
}

// MigrationStatus reports the schema version of the database and the latest
// version this binary knows.
func MigrationStatus(ctx context.Context, dsn string) (current, latest int64, err error) {
	err = withProvider(ctx, dsn, func(p *goose.Provider) error {
		current, latest, err = p.GetVersions(ctx)
		return err
	})
	return current, latest, err
}

// CheckSchema returns nil when the database schema is exactly the version
// this binary expects, and an error telling the operator what to do
// otherwise. It only reads, so it works with a role that cannot run DDL.
func CheckSchema(ctx context.Context, dsn string) error {
	latest, err := latestVersion()
	if err != nil {
		return err
	}
	db, err := openSQL(dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	var current int64
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, versionTable).Scan(&exists); err != nil {
		return fmt.Errorf("reading the database schema version: %w", mapErr(err))
	}
	if exists {
		// goose deletes the row of a migration it rolls back, so the newest
		// applied version is the highest one recorded.
		q := `SELECT coalesce(max(version_id), 0) FROM ` + versionTable + ` WHERE is_applied`
		if err := db.QueryRowContext(ctx, q).Scan(&current); err != nil {
			return fmt.Errorf("reading the database schema version: %w", mapErr(err))
		}
	}
	switch {
	case current < latest:
		return fmt.Errorf("database schema is at version %d, this authd needs %d: run `authd migrate up` or start with --migrate", current, latest)
	case current > latest:
		return fmt.Errorf("database schema is at version %d but this authd knows only up to %d: it was migrated by a newer authd; run that version (or roll the schema back with the newer binary's `authd migrate down`)", current, latest)
	}
	return nil
}

// latestVersion is the highest migration version embedded in the binary.
func latestVersion() (int64, error) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return 0, err
	}
	var latest int64
	for _, name := range names {
		v, err := goose.NumericComponent(name)
		if err != nil {
			return 0, fmt.Errorf("migration %s: %w", name, err)
		}
		latest = max(latest, v)
	}
	if latest == 0 {
		return 0, errors.New("no migrations embedded")
	}
	return latest, nil
}

func withProvider(ctx context.Context, dsn string, fn func(*goose.Provider) error) error {
	db, err := openSQL(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	// Fail fast with a clear error when the database is unreachable rather
	// than from deep inside the lock's retry loop.
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("connecting to the database: %w", mapErr(err))
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithSessionLocker(locker),
		goose.WithTableName(versionTable),
	)
	if err != nil {
		return fmt.Errorf("loading migrations: %w", err)
	}
	if err := fn(p); err != nil {
		return fmt.Errorf("migrating: %w", mapErr(err))
	}
	return nil
}

// openSQL opens a database/sql handle over pgx for goose, which speaks
// database/sql.
func openSQL(dsn string) (*sql.DB, error) {
	cfg, err := parseConfig(dsn)
	if err != nil {
		return nil, err
	}
	return stdlib.OpenDB(*cfg.ConnConfig), nil
}
