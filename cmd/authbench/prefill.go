package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"

	// authbench is a development tool, not part of authd: it writes
	// synthetic rows straight into the schema with set-based SQL, which
	// the Store contract (one entity at a time) is not meant for.
	"github.com/jackc/pgx/v5"
)

// prefillSpec is how much synthetic data prefill writes.
type prefillSpec struct {
	clients, users, grants, expired int
}

const (
	maxPrefillRows = 10_000_000
	prefillBatch   = 50_000
)

func runPrefill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("authbench prefill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dsn := fs.String("database-url", os.Getenv("AUTHD_DATABASE_URL"), "PostgreSQL URL of a migrated authd database (default $AUTHD_DATABASE_URL)")
	var s prefillSpec
	fs.IntVar(&s.clients, "clients", 100_000, "dynamic clients")
	fs.IntVar(&s.users, "users", 10_000, "users")
	fs.IntVar(&s.grants, "grants", 1_000_000, "live grants, each with one live refresh token")
	fs.IntVar(&s.expired, "expired", 1_000_000, "expired rows awaiting purge (grants with their refresh tokens, opaque access tokens, codes)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dsn == "" {
		return errors.New("prefill: -database-url (or AUTHD_DATABASE_URL) is required")
	}
	if err := s.validate(); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("prefill: connecting: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return prefill(ctx, conn, s, time.Now(), stdout)
}

func (s prefillSpec) validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		n    int
	}{{"clients", s.clients}, {"users", s.users}, {"grants", s.grants}, {"expired", s.expired}} {
		if f.n < 0 || f.n > maxPrefillRows {
			errs = append(errs, fmt.Errorf("-%s must be between 0 and %d", f.name, maxPrefillRows))
		}
	}
	if (s.grants > 0 || s.expired > 0) && (s.clients == 0 || s.users == 0) {
		errs = append(errs, errors.New("grants and expired rows need at least one client and one user"))
	}
	return errors.Join(errs...)
}

// prefillSteps are the statements prefill runs, each over ids $1..$2
// (inclusive) of a batch; $3 is now, $4 the number of clients, $5 of users.
// Every id carries a "prefill-" prefix, and every insert ignores rows that
// exist, so a second run adds nothing and real data is never touched.
var prefillSteps = []struct {
	name  string
	count func(prefillSpec) int
	sql   string
}{
	{"clients", func(s prefillSpec) int { return s.clients }, `
		INSERT INTO clients (id, source, secret_hash, metadata, created_at, updated_at, last_used_at, expires_at)
		SELECT 'prefill-client-' || i, 'dynamic',
			'sha256$' || encode(sha256(('prefill-secret-' || i)::bytea), 'hex'),
			jsonb_build_object('client_name', 'prefill client ' || i,
				'redirect_uris', jsonb_build_array('http://127.0.0.1/callback'),
				'grant_types', jsonb_build_array('authorization_code', 'refresh_token'),
				'token_endpoint_auth_method', 'client_secret_basic'),
			$3, $3, $3, $3::timestamptz + interval '30 days'
		FROM generate_series($1::int, $2::int) AS i
		ON CONFLICT DO NOTHING`},
	{"users", func(s prefillSpec) int { return s.users }, `
		INSERT INTO users (id, provider, subject, login, email, email_verified, created_at, updated_at, last_login_at)
		SELECT 'prefill-user-' || i, 'prefill', i::text, 'user' || i, 'user' || i || '@prefill.invalid', true, $3, $3, $3
		FROM generate_series($1::int, $2::int) AS i
		ON CONFLICT DO NOTHING`},
	{"grants", func(s prefillSpec) int { return s.grants }, `
		INSERT INTO grants (id, client_id, user_id, scopes, resources, auth_time, created_at, last_used_at, expires_at)
		SELECT 'prefill-grant-' || i, 'prefill-client-' || (1 + i % $4), 'prefill-user-' || (1 + i % $5),
			ARRAY['mcp:tools'], ARRAY['https://mcp.example.com/mcp'], $3, $3, $3, $3::timestamptz + interval '90 days'
		FROM generate_series($1::int, $2::int) AS i
		ON CONFLICT DO NOTHING`},
	{"refresh_tokens", func(s prefillSpec) int { return s.grants }, `
		INSERT INTO refresh_tokens (digest, grant_id, client_id, created_at, expires_at)
		SELECT ` + digestSQL("prefill-rt-") + `, 'prefill-grant-' || i, 'prefill-client-' || (1 + i % $4),
			$3, $3::timestamptz + interval '30 days'
		FROM generate_series($1::int, $2::int) AS i
		ON CONFLICT DO NOTHING`},
	// Expired rows: a quarter each of grants and of their refresh tokens
	// (purge deletes the grants, cascading), opaque access tokens and codes.
	{"expired grants", func(s prefillSpec) int { return s.expired / 4 }, `
		INSERT INTO grants (id, client_id, user_id, scopes, resources, auth_time, created_at, last_used_at, expires_at)
		SELECT 'prefill-expired-grant-' || i, 'prefill-client-' || (1 + i % $4), 'prefill-user-' || (1 + i % $5),
			ARRAY['mcp:tools'], ARRAY['https://mcp.example.com/mcp'],
			$3::timestamptz - interval '91 days', $3::timestamptz - interval '91 days',
			$3::timestamptz - interval '2 days', $3::timestamptz - interval '1 day'
		FROM generate_series($1::int, $2::int) AS i
		ON CONFLICT DO NOTHING`},
	{"expired refresh_tokens", func(s prefillSpec) int { return s.expired / 4 }, `
		INSERT INTO refresh_tokens (digest, grant_id, client_id, created_at, expires_at)
		SELECT ` + digestSQL("prefill-expired-rt-") + `, 'prefill-expired-grant-' || i, 'prefill-client-' || (1 + i % $4),
			$3::timestamptz - interval '31 days', $3::timestamptz - interval '1 day'
		FROM generate_series($1::int, $2::int) AS i
		ON CONFLICT DO NOTHING`},
	{"expired access_tokens", func(s prefillSpec) int { return s.expired / 4 }, `
		INSERT INTO access_tokens (digest, client_id, scopes, resources, created_at, expires_at)
		SELECT ` + digestSQL("prefill-expired-at-") + `, 'prefill-client-' || (1 + i % $4),
			ARRAY['mcp:tools'], ARRAY['https://mcp.example.com/mcp'],
			$3::timestamptz - interval '2 hours', $3::timestamptz - interval '1 hour'
		FROM generate_series($1::int, $2::int) AS i
		ON CONFLICT DO NOTHING`},
	{"expired auth_codes", func(s prefillSpec) int { return s.expired - 3*(s.expired/4) }, `
		INSERT INTO auth_codes (digest, client_id, user_id, redirect_uri, scopes, resources,
			code_challenge, code_challenge_method, auth_time, created_at, expires_at)
		SELECT ` + digestSQL("prefill-expired-ac-") + `, 'prefill-client-' || (1 + i % $4), 'prefill-user-' || (1 + i % $5),
			'http://127.0.0.1/callback', ARRAY['mcp:tools'], ARRAY['https://mcp.example.com/mcp'],
			'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', 'S256',
			$3::timestamptz - interval '2 hours', $3::timestamptz - interval '2 hours', $3::timestamptz - interval '1 hour'
		FROM generate_series($1::int, $2::int) AS i
		ON CONFLICT DO NOTHING`},
}

// params is the highest $n placeholder in sql: the server insists on as
// many arguments as the statement has parameters.
func params(sql string) int {
	n := 0
	for _, m := range placeholder.FindAllStringSubmatch(sql, -1) {
		if v, _ := strconv.Atoi(m[1]); v > n {
			n = v
		}
	}
	return n
}

var placeholder = regexp.MustCompile(`\$([0-9]+)`)

// digestSQL is an SQL expression shaped like oauth.Digest's output
// (unpadded base64url of a SHA-256) of prefix||i.
func digestSQL(prefix string) string {
	return `translate(rtrim(encode(sha256(('` + prefix + `' || i)::bytea), 'base64'), '='), '+/', '-_')`
}

// prefill writes s's rows in batches (each its own transaction, so the
// database never holds one huge one) and analyses the tables afterwards,
// as autovacuum would soon do on a real system.
func prefill(ctx context.Context, conn *pgx.Conn, s prefillSpec, now time.Time, out io.Writer) error {
	var migrated bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('refresh_tokens') IS NOT NULL`).Scan(&migrated); err != nil {
		return fmt.Errorf("prefill: %w", err)
	}
	if !migrated {
		return errors.New("prefill: the database has no authd schema; run `authd migrate up` first")
	}
	start := time.Now()
	for _, step := range prefillSteps {
		n := step.count(s)
		var inserted int64
		t0 := time.Now()
		for lo := 1; lo <= n; lo += prefillBatch {
			hi := min(lo+prefillBatch-1, n)
			args := []any{lo, hi, now, max(s.clients, 1), max(s.users, 1)}
			tag, err := conn.Exec(ctx, step.sql, args[:params(step.sql)]...)
			if err != nil {
				return fmt.Errorf("prefill %s (rows %d-%d): %w", step.name, lo, hi, err)
			}
			inserted += tag.RowsAffected()
		}
		fmt.Fprintf(out, "%-24s %9d inserted in %s\n", step.name, inserted, time.Since(t0).Round(time.Millisecond))
	}
	if _, err := conn.Exec(ctx, `ANALYZE`); err != nil {
		return fmt.Errorf("prefill: analyze: %w", err)
	}
	fmt.Fprintf(out, "done in %s\n", time.Since(start).Round(time.Second))
	return nil
}
