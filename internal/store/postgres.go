package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the production Store. It is the only code in authd that knows
// about pgx; no pgx type or error leaves this package.
type Postgres struct {
	pool *pgxpool.Pool
	// Inserts that concurrent requests make one at a time, coalesced into
	// multi-row statements under load (batch.go).
	clientBatch *batcher[Client]
	tokenBatch  *batcher[AccessToken]
}

var _ Store = (*Postgres)(nil)

// querier is what both *pgxpool.Pool and pgx.Tx offer, so that a helper can
// run inside or outside a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	_ querier = (*pgxpool.Pool)(nil)
	_ querier = (pgx.Tx)(nil)
)

// OpenPostgres creates a connection pool for dsn (a postgres:// URL or a
// key=value string; pool_* parameters such as pool_max_conns are honoured).
// It does not connect: the pool dials on first use, so authd can start while
// the database is still coming up. Use Ping to check reachability.
func OpenPostgres(ctx context.Context, dsn string, opts ...Option) (*Postgres, error) {
	cfg, err := parseConfig(dsn)
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: creating the connection pool: %w", mapErr(err))
	}
	p := &Postgres{pool: pool}
	p.initBatchers()
	return p, nil
}

// parseConfig parses dsn and fills in defaults the DSN did not set.
func parseConfig(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the DSN, password included.
		return nil, errors.New("store: invalid database URL (expected postgres://user:password@host:port/dbname?sslmode=...)")
	}
	set := func(param string) bool { return strings.Contains(dsn, param) }
	if !set("pool_max_conns") {
		// pgx's default (the number of CPUs, at least 4) is small for a
		// server whose every request touches the database.
		cfg.MaxConns = 20
	}
	if !set("connect_timeout") {
		// Fail a request with 503 in seconds when the database is gone,
		// instead of hanging until the client gives up.
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	// Recycle connections now and then so that a failover or a DNS change
	// is picked up. (pgx also pings connections that sat idle before
	// handing them out, which weeds out most killed by a server restart.)
	if !set("pool_max_conn_lifetime") {
		cfg.MaxConnLifetime = 30 * time.Minute
	}
	if !set("pool_max_conn_lifetime_jitter") {
		cfg.MaxConnLifetimeJitter = 5 * time.Minute
	}
	if !set("pool_max_conn_idle_time") {
		cfg.MaxConnIdleTime = 5 * time.Minute
	}
	// A cancelled context (a request past its deadline, a client gone)
	// sends the server a cancel request at once, so the statement stops
	// (instead of running, or waiting for a lock, for nobody) and the
	// connection stays usable. pgx's default drops the connection and
	// cancels in the background: a reconnection per time-out, which a
	// struggling database can least afford. If the server does not answer
	// within a second (it is frozen), the connection is closed after all.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Second}
	}
	// Times come back in UTC whatever the server's or the host's zone.
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		conn.TypeMap().RegisterType(&pgtype.Type{
			Name: "timestamptz", OID: pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC},
		})
		return nil
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "authd"
	}
	return cfg, nil
}

// Ping checks that the database answers (for /ready).
func (p *Postgres) Ping(ctx context.Context) error {
	return mapErr(p.pool.Ping(ctx))
}

// Close closes every connection; in-flight queries finish first.
func (p *Postgres) Close() { p.pool.Close() }

// PoolStats is a snapshot of the connection pool for metrics.
type PoolStats struct {
	Acquired     int32 // connections in use
	Idle         int32
	Constructing int32 // being dialled
	Total        int32
	Max          int32
	// Cumulative counters.
	AcquireCount         int64
	AcquireDuration      time.Duration // total time spent waiting in Acquire
	EmptyAcquireCount    int64         // acquires that had to wait for a connection
	CanceledAcquireCount int64
	NewConns             int64
}

// PoolStats reports the state of the connection pool.
func (p *Postgres) PoolStats() PoolStats {
	s := p.pool.Stat()
	return PoolStats{
		Acquired:             s.AcquiredConns(),
		Idle:                 s.IdleConns(),
		Constructing:         s.ConstructingConns(),
		Total:                s.TotalConns(),
		Max:                  s.MaxConns(),
		AcquireCount:         s.AcquireCount(),
		AcquireDuration:      s.AcquireDuration(),
		EmptyAcquireCount:    s.EmptyAcquireCount(),
		CanceledAcquireCount: s.CanceledAcquireCount(),
		NewConns:             s.NewConnsCount(),
	}
}

// withTx runs fn in a transaction, committing if it returns nil. The error
// fn returns is passed through as is (it is already mapped by fn's queries).
func (p *Postgres) withTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return mapErr(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	return mapErr(tx.Commit(ctx))
}

// mapErr turns a pgx error into a store error: ErrNotFound, ErrConflict,
// Unavailable(...) or a plain error carrying the message. Context
// cancellation stays recognisable with errors.Is.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrAlreadyUsed) || errors.Is(err, ErrUnavailable) {
		return err // already ours
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			return fmt.Errorf("%w: %s", ErrConflict, pgErr.ConstraintName)
		case pgErr.Code == "23503": // foreign_key_violation: the parent is gone
			return fmt.Errorf("%w: %s", ErrNotFound, pgErr.ConstraintName)
		case isUnavailableCode(pgErr.Code):
			return Unavailable(errors.New(pgErr.Error()))
		}
		return fmt.Errorf("store: %s", pgErr.Error())
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("store: %w", context.Canceled)
	}
	if isConnectionFailure(err) {
		return Unavailable(errors.New(err.Error()))
	}
	return fmt.Errorf("store: %s", err.Error())
}

// isUnavailableCode reports SQLSTATEs that mean "the server cannot serve
// you right now" rather than "your query is wrong".
func isUnavailableCode(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"): // connection_exception
		return true
	case code == "57P01", // admin_shutdown
		code == "57P02", // crash_shutdown
		code == "57P03", // cannot_connect_now (starting up, recovering)
		code == "53300", // too_many_connections
		code == "25006": // read_only_sql_transaction (a standby after failover)
		return true
	}
	return false
}

func isConnectionFailure(err error) bool {
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr),
		errors.As(err, &netErr),
		errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded), // acquire or query timed out: the database is too slow or gone
		pgconn.Timeout(err),
		strings.Contains(err.Error(), "closed pool"): // puddle.ErrClosedPool: the pool is shut down

		return true
	}
	return false
}

// nullString stores "" as NULL, for columns in a foreign key or a unique index.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
