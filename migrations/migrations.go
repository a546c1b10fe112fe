// Package migrations holds authd's Postgres schema as goose SQL migrations,
// embedded so that the binary can migrate without files on disk. It lives in
// its own directory because go:embed cannot reach parent directories.
package migrations

import "embed"

// FS holds the migration files (NNNNN_name.sql, goose format).
//
//go:embed *.sql
var FS embed.FS
