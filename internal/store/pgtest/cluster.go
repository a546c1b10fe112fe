package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/authd/authd/internal/store"
)

// Cluster is an ephemeral PostgreSQL cluster owned by the test process.
type Cluster struct {
	base string // temp dir holding everything below
	data string
	sock string // unix socket directory
	log  string
	bin  string // directory with initdb and postgres
	port int
	// extra are more "-c name=value" settings for postgres.
	extra []string
	cred  *syscall.Credential // whom to run as; nil: as ourselves

	// watchdog's stdin: closing it (explicitly, or by the kernel when the
	// process exits) makes the watchdog stop postgres and delete base.
	watchdog *os.File

	mu      sync.Mutex
	proc    *os.Process
	exited  chan struct{} // closed when proc has exited
	removed bool
}

// NewCluster starts a dedicated cluster for t, with a migrated database
// (DSN), for tests that stop and restart Postgres under a running server.
// It is stopped and removed when the test ends.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := startCluster(ctx, nil)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(c.remove)
	if err := c.exec(ctx, `CREATE DATABASE authd`); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := store.MigrateUp(ctx, c.DSN()); err != nil {
		t.Fatalf("pgtest: migrating: %v", err)
	}
	return c
}

// DSN is the URL of the cluster's migrated database "authd".
func (c *Cluster) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/authd?sslmode=disable", c.port)
}

// AdminDSN is the URL of the cluster's maintenance database.
func (c *Cluster) AdminDSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Port is the loopback TCP port the cluster listens on (the same after a
// restart).
func (c *Cluster) Port() int { return c.port }

// Stop shuts Postgres down (fast shutdown: sessions are disconnected) and
// waits until it has exited. Stopping a stopped cluster does nothing.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopLocked()
}

func (c *Cluster) stopLocked() error {
	if c.proc == nil {
		return nil
	}
	proc, exited := c.proc, c.exited
	c.proc = nil
	if err := proc.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping postgres: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(time.Minute):
		proc.Kill()
		<-exited
		return errors.New("postgres did not shut down within a minute; killed it")
	}
}

// Start starts a stopped cluster again, on the same port, and waits until it
// accepts connections.
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return errors.New("pgtest: cluster was removed")
	}
	if c.proc != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.startLocked(ctx)
}

// remove stops the cluster and deletes its files.
func (c *Cluster) remove() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked()
	c.removed = true
	c.watchdog.WriteString("done\n") // the files are ours to delete now
	c.watchdog.Close()
	os.RemoveAll(c.base)
}

// startCluster creates and starts a new cluster: an empty one, or a
// streaming standby of from (pg_basebackup) when from is not nil.
// extra are more "name=value" settings, after (and so over) the defaults.
func startCluster(ctx context.Context, from *Cluster, extra ...string) (_ *Cluster, err error) {
	bin, err := findBinaries(os.Getenv("PATH"), defaultGlobs)
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, extra: extra}
	if os.Geteuid() == 0 {
		// postgres refuses to run as root.
		if c.cred, err = unprivileged(); err != nil {
			return nil, err
		}
	}
	root, err := tempRoot(c.cred != nil)
	if err != nil {
		return nil, err
	}
	if c.base, err = os.MkdirTemp(root, "authd-pgtest-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(c.base)
		}
	}()
	c.data = filepath.Join(c.base, "data")
	c.sock = filepath.Join(c.base, "sock")
	c.log = filepath.Join(c.base, "postgres.log")
	if err := os.Mkdir(c.sock, 0o700); err != nil {
		return nil, err
	}
	if c.cred != nil {
		for _, p := range []string{c.base, c.sock} {
			if err := os.Chown(p, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				return nil, err
			}
		}
	}

	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", c.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	if from != nil {
		// -R: standby.signal and primary_conninfo, so it starts streaming.
		initdb = exec.CommandContext(ctx, filepath.Join(bin, "pg_basebackup"),
			"-h", "127.0.0.1", "-p", strconv.Itoa(from.port), "-U", "postgres",
			"-D", c.data, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	}
	initdb.Dir = c.base
	initdb.Env = childEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s failed: %v\n%s", filepath.Base(initdb.Path), err, out)
	}

	if err := c.startWatchdog(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.remove()
		}
	}()

	c.mu.Lock()
	defer c.mu.Unlock()
	// The port is free when we pick it but another process may take it
	// before postgres binds; pick again in that case.
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
		err = c.startLocked(ctx)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == 5 {
			return nil, err
		}
	}
}

var errPortInUse = errors.New("port in use")

// startLocked starts postgres and waits until it accepts connections.
func (c *Cluster) startLocked(ctx context.Context) error {
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	logStart, _ := logf.Seek(0, 2)
	cmd := exec.Command(filepath.Join(c.bin, "postgres"),
		"-D", c.data,
		"-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+c.sock,
		// Durability is worthless for throwaway test data; speed is not.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=32MB",
		"-c", "log_min_messages=warning",
	)
	for _, kv := range c.extra {
		cmd.Args = append(cmd.Args, "-c", kv)
	}
	cmd.Dir = c.base
	cmd.Env = childEnv()
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group: a ^C at the terminal goes to the test binary,
	// whose exit lets the watchdog shut postgres down in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	c.proc, c.exited = cmd.Process, exited

	// Probe through the unix socket, which only our postgres serves: a TCP
	// probe could reach another server holding the port.
	probe := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres connect_timeout=2", c.sock, c.port)
	for {
		conn, err := pgconn.Connect(ctx, probe)
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			c.proc = nil
			out := readFrom(c.log, logStart)
			if strings.Contains(out, "Address already in use") {
				return errPortInUse
			}
			return fmt.Errorf("postgres exited during start-up:\n%s", out)
		case <-ctx.Done():
			c.stopLocked()
			return fmt.Errorf("postgres did not accept connections in time: %w\n%s", err, readFrom(c.log, logStart))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// watchdogScript waits for its stdin to close. "done" means the test
// process cleaned up itself; anything else (normally EOF because the test
// process exited) makes it stop postgres and delete the cluster's files.
const watchdogScript = `read -r line || line=
[ "$line" = done ] && exit 0
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
	kill -INT "$pid" 2>/dev/null
	i=0
	while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i+1)); done
	kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$2"
`

func (c *Cluster) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "pgtest-watchdog", c.data, c.base)
	cmd.Dir = "/"
	cmd.Stdin = r
	// Same user as postgres, so it may signal it and delete its files; own
	// process group, so a ^C does not kill it before it has cleaned up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting the cluster watchdog: %w", err)
	}
	go cmd.Wait() // reap it
	c.watchdog = w
	return nil
}

func (c *Cluster) exec(ctx context.Context, sql string) error {
	conn, err := pgconn.Connect(ctx, c.AdminDSN())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql).ReadAll()
	return err
}

var defaultGlobs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin"}

// findBinaries returns the directory holding initdb and postgres: the one
// on PATH, else the newest installed version in one of globs.
func findBinaries(path string, globs []string) (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	for _, dir := range filepath.SplitList(path) {
		if dir != "" && has(dir) {
			// Links on the PATH (/usr/local/bin/initdb) lead to the
			// installation's directory, which has the other tools
			// (pg_basebackup) too.
			if real, err := filepath.EvalSymlinks(filepath.Join(dir, "initdb")); err == nil && has(filepath.Dir(real)) {
				return filepath.Dir(real), nil
			}
			return dir, nil
		}
	}
	var found []string
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		for _, dir := range m {
			if has(dir) {
				found = append(found, dir)
			}
		}
	}
	if len(found) == 0 {
		return "", errNoBinaries
	}
	// Newest first: compare the version component numerically (…/9.6/bin
	// is older than …/16/bin).
	version := func(dir string) []int {
		var v []int
		for _, part := range strings.FieldsFunc(dir, func(r rune) bool { return r < '0' || r > '9' }) {
			n, _ := strconv.Atoi(part)
			v = append(v, n)
		}
		return v
	}
	slices.SortFunc(found, func(a, b string) int { return slices.Compare(version(b), version(a)) })
	return found[0], nil
}

// unprivileged returns the credentials of the user to run postgres as when
// the tests run as root.
func unprivileged() (*syscall.Credential, error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("running as root, and no user \"nobody\" to run postgres as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user nobody has a non-numeric uid/gid %s/%s", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// tempRoot is where cluster directories go. When postgres runs as another
// user, that user must be able to reach it, which a private TMPDIR (say,
// under /root) does not allow.
func tempRoot(otherUser bool) (string, error) {
	candidates := []string{os.TempDir()}
	if !otherUser {
		return candidates[0], nil
	}
	candidates = append(candidates, "/tmp", "/var/tmp")
	for _, dir := range candidates {
		if reachableByOthers(dir) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no temp directory that user nobody can reach (tried %s)", strings.Join(candidates, ", "))
}

func reachableByOthers(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	dir, err = filepath.EvalSymlinks(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// childEnv is the environment without PG* variables, which would otherwise
// redirect initdb and postgres (PGDATA, PGPORT, …).
func childEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PG") })
	return append(env, "LC_ALL=C")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func readFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return ""
	}
	return string(bytes.TrimSpace(b[offset:]))
}
