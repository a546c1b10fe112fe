package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// pgbouncerPaths are where PgBouncer is looked for after PATH: Debian's
// package installs it in /usr/sbin, which is not on every user's PATH.
var pgbouncerPaths = []string{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"}

// PgBouncer is a PgBouncer process in transaction-pooling mode in front of
// a test database server, stopped when the test ends.
type PgBouncer struct {
	port   int
	dir    string
	log    string
	proc   *os.Process
	exited chan struct{}
}

// NewPgBouncer starts PgBouncer in front of the server that dsn points to
// (any database on it: the [databases] entry is a wildcard), in
// transaction-pooling mode with at most poolSize server connections per
// database and user, and waits until it accepts connections. A missing
// pgbouncer binary fails the test with the package to install.
func NewPgBouncer(t testing.TB, dsn string, poolSize int) *PgBouncer {
	t.Helper()
	bin, err := findPgBouncer()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	server, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgtest: parsing %q: %v", dsn, err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 { // pgbouncer refuses to run as root
		if cred, err = unprivileged(); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	root, err := tempRoot(cred != nil)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	dir, err := os.MkdirTemp(root, "authd-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	b := &PgBouncer{dir: dir, log: filepath.Join(dir, "pgbouncer.log")}
	conn := fmt.Sprintf("host=%s port=%d user=%s", server.Host, server.Port, server.User)
	if server.Password != "" {
		conn += " password=" + server.Password
	}
	for attempt := 0; ; attempt++ {
		if b.port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		ini := fmt.Sprintf(`[databases]
* = %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = %d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
server_reset_query =
logfile = %s
pidfile = %s
`, conn, b.port, poolSize, b.log, filepath.Join(dir, "pgbouncer.pid"))
		cfg := filepath.Join(dir, "pgbouncer.ini")
		if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
			t.Fatal(err)
		}
		err = b.start(bin, cfg, cred)
		if err == nil {
			break
		}
		if !errors.Is(err, errPortInUse) || attempt == 5 {
			t.Fatalf("pgtest: %v", err)
		}
	}
	t.Cleanup(b.stop)
	return b
}

// DSN is the URL of database on the server behind PgBouncer, through it,
// with extra query parameters (e.g. "default_query_exec_mode=exec").
func (b *PgBouncer) DSN(database string, params ...string) string {
	q := append([]string{"sslmode=disable"}, params...)
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?%s", b.port, database, strings.Join(q, "&"))
}

// Log is what PgBouncer has logged so far.
func (b *PgBouncer) Log() string { return readFrom(b.log, 0) }

func (b *PgBouncer) start(bin, cfg string, cred *syscall.Credential) error {
	cmd := exec.Command(bin, cfg)
	cmd.Dir = b.dir
	cmd.Env = childEnv()
	out, err := os.Create(filepath.Join(b.dir, "stderr"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting pgbouncer: %w", err)
	}
	b.proc, b.exited = cmd.Process, make(chan struct{})
	go func() {
		cmd.Wait()
		close(b.exited)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// SHOW VERSION on the admin console answers only when pgbouncer (not
	// another process that took the port) is listening.
	probe := fmt.Sprintf("host=127.0.0.1 port=%d user=pgbouncer dbname=pgbouncer connect_timeout=2 sslmode=disable", b.port)
	for {
		conn, err := pgconn.Connect(ctx, probe)
		if err == nil {
			_, qerr := conn.Exec(ctx, "SHOW VERSION").ReadAll()
			conn.Close(ctx)
			if qerr == nil {
				return nil
			}
			err = qerr
		}
		select {
		case <-b.exited:
			logs := readFrom(filepath.Join(b.dir, "stderr"), 0) + "\n" + b.Log()
			if strings.Contains(logs, "Address already in use") {
				return errPortInUse
			}
			return fmt.Errorf("pgbouncer exited during start-up:\n%s", logs)
		case <-ctx.Done():
			b.stop()
			return fmt.Errorf("pgbouncer did not accept connections in time: %w\n%s", err, b.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *PgBouncer) stop() {
	if b.proc == nil {
		return
	}
	b.proc.Signal(syscall.SIGINT) // immediate shutdown
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		b.proc.Kill()
		<-b.exited
	}
	b.proc = nil
}

func findPgBouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	for _, p := range pgbouncerPaths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("pgbouncer not found on PATH or in %s: the PgBouncer tests need it. Install it (Debian: apt-get install pgbouncer; .ci/run does) and run the tests again", strings.Join(pgbouncerPaths, ", "))
}

// Port is the loopback port PgBouncer listens on.
func (b *PgBouncer) Port() int { return b.port }
