package pgtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Without PgBouncer the tests that need it fail with the package to
// install; with it on the PATH (or in /usr/sbin) it is found.
func TestFindPgBouncer(t *testing.T) {
	saved := pgbouncerPaths
	t.Cleanup(func() { pgbouncerPaths = saved })
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	pgbouncerPaths = []string{filepath.Join(dir, "sbin", "pgbouncer")}
	_, err := findPgBouncer()
	if err == nil || !strings.Contains(err.Error(), "apt-get install pgbouncer") {
		t.Fatalf("no pgbouncer: %v, want instructions", err)
	}
	bin := filepath.Join(dir, "pgbouncer")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := findPgBouncer(); err != nil || got != bin {
		t.Fatalf("pgbouncer on the PATH: %q %v", got, err)
	}
}
