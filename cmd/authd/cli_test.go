package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/authd/authd/internal/store/pgtest"
)

// cliResult runs one authd command in-process.
func cliResult(environ map[string]string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, envOf(environ), &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestAdminCommandsAskOnlyForWhatTheyUse: with nothing but the database URL
// (and, for keys, the encryption secret), every admin command works — no
// issuer, upstreams or allowlist demanded — and each prints JSON with -o
// json. Without a database URL a database command says so, once, and
// nothing about settings it does not use.
func TestAdminCommandsAskOnlyForWhatTheyUse(t *testing.T) {
	t.Parallel()
	dsn := pgtest.EmptyDSN(t)
	db := map[string]string{"AUTHD_DATABASE_URL": dsn}

	// migrate up says what it applied, then that there is nothing to apply.
	out, logs, err := cliResult(db, "migrate", "up")
	if err != nil {
		t.Fatalf("migrate up: %v\n%s", err, logs)
	}
	if !strings.Contains(out, "applied 00001_init.sql (version 1)") || !strings.Contains(out, "up to date") {
		t.Fatalf("migrate up does not say what it applied:\n%s", out)
	}
	var up migrationStatus
	out, logs, err = cliResult(db, "migrate", "up", "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &up) != nil || len(up.Applied) != 0 || up.Pending != 0 || up.Current != up.Latest {
		t.Fatalf("second migrate up -o json: %v %+v\n%s%s", err, up, out, logs)
	}

	keysEnv := map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_KEYS_ENCRYPTION_SECRET": "test-encryption-secret-0123456789abcdef"}
	for _, args := range [][]string{
		{"migrate", "status", "-o", "json"},
		{"stats", "-o", "json"},
		{"purge", "-o", "json"},
		{"keys", "list", "-o", "json"},
		{"keys", "reencrypt", "-o", "json"},
		{"clients", "list", "-o", "json"},
		{"users", "list", "-o", "json"},
	} {
		out, logs, err := cliResult(keysEnv, args...)
		if err != nil {
			t.Errorf("authd %s with only the database (and keys secret): %v\n%s", strings.Join(args, " "), err, logs)
			continue
		}
		if !json.Valid([]byte(out)) {
			t.Errorf("authd %s printed no JSON:\n%s", strings.Join(args, " "), out)
		}
	}
	if _, logs, err := cliResult(keysEnv, "keys", "rotate"); err != nil {
		t.Errorf("keys rotate with only the database and keys secret: %v\n%s", err, logs)
	}
	// --database-url on the command itself.
	if _, logs, err := cliResult(nil, "stats", "--database-url", dsn); err != nil {
		t.Errorf("stats --database-url: %v\n%s", err, logs)
	}

	// keys without its secret: that problem alone.
	_, _, err = cliResult(db, "keys", "list")
	if err == nil || !strings.Contains(err.Error(), "keys.encryption_secret") || strings.Contains(err.Error(), "issuer") || strings.Contains(err.Error(), "upstreams") {
		t.Errorf("keys list without keys.encryption_secret: %v", err)
	}
	// No database URL: one clear problem.
	_, _, err = cliResult(nil, "migrate", "status")
	if err == nil || !strings.Contains(err.Error(), "database_url") || strings.Count(err.Error(), "\n") > 0 {
		t.Errorf("migrate status without a database URL: %v", err)
	}
	// config prints JSON too.
	out, logs, err = cliResult(nil, "config", "--dev", "-o", "json")
	var cfg map[string]any
	if err != nil || json.Unmarshal([]byte(out), &cfg) != nil || cfg["dev"] != true {
		t.Errorf("config --dev -o json: %v\n%s%s", err, out, logs)
	}
}

// TestHealthcheckHonoursConfigAndListen: the probe goes where serve
// listens, from --listen, AUTHD_LISTEN or the --config file alike, without
// the rest of the configuration.
func TestHealthcheckHonoursConfigAndListen(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	startAuthd(t, addr, nil, "--dev")
	if out, logs, err := cliResult(nil, "healthcheck", "--listen", addr); err != nil || out != "ok\n" {
		t.Errorf("healthcheck --listen %s: %v %q %s", addr, err, out, logs)
	}
	path := writeFile(t, "listen: "+addr+"\n")
	if out, logs, err := cliResult(nil, "healthcheck", "--config", path); err != nil || out != "ok\n" {
		t.Errorf("healthcheck --config (listen: %s): %v %q %s", addr, err, out, logs)
	}
	// And it really probes that address: elsewhere nothing answers.
	if _, _, err := cliResult(nil, "healthcheck", "--listen", freeAddr(t)); err == nil {
		t.Error("healthcheck passed against an address where nothing listens")
	}
}

// TestFlagsLiveWhereTheyApply: server flags are serve's (and config's),
// not every command's; each command's help has an example.
func TestFlagsLiveWhereTheyApply(t *testing.T) {
	t.Parallel()
	root := newRootCmd(&env{getenv: envOf(nil), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}})
	for _, c := range root.Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		for _, flag := range []string{"dev", "migrate", "issuer"} {
			has := c.Flags().Lookup(flag) != nil || c.InheritedFlags().Lookup(flag) != nil
			want := c.Name() == "serve" || c.Name() == "config"
			if has != want {
				t.Errorf("authd %s has --%s: %v, want %v", c.Name(), flag, has, want)
			}
		}
		check := append(c.Commands(), c)
		for _, sub := range check {
			if sub.Runnable() && sub.Example == "" {
				t.Errorf("authd %s: help has no example", sub.CommandPath())
			}
		}
	}
}
