package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/server"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/tracing"
)

func newServeCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the authorization server",
		Long: "Run the authorization server. Settings come from flags, AUTHD_* variables and the\n" +
			"--config file, in that order of precedence; see authd.example.yaml.",
		Example: "  authd serve --dev                          # try it: in-memory store, dev login, http://localhost:8080\n" +
			"  authd serve --config authd.yaml            # production: PostgreSQL, upstreams, allowlist\n" +
			"  AUTHD_ISSUER=https://auth.example.com authd serve --config authd.yaml --migrate",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), e.getenv)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, e)
		},
	}
	addServeFlags(cmd.Flags())
	return cmd
}

func newLogger(cfg *config.Config, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.Log.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(reqlog.NewHandler(h))
}

// serve runs authd until ctx is cancelled. The listener comes up at once;
// until the database is reachable and the application is built, /health
// answers 200, /ready 503, and everything else 503 temporarily_unavailable.
func serve(ctx context.Context, cfg *config.Config, e *env) error {
	log := newLogger(cfg, e.stderr)
	started := e.now()
	if have, want := e.goVersion(), authd.RequiredGo(); authd.OlderGo(have, want) {
		// GOTOOLCHAIN=local builds with the installed Go whatever go.mod
		// says: say so loudly, the older release may lack security fixes.
		log.Warn("built with a Go release older than the one go.mod names: rebuild with GOTOOLCHAIN=auto (see SECURITY.md)",
			"go", have, "go_mod", want)
	}
	if cfg.Dev {
		log.Warn("DEVELOPMENT MODE: " + storeDescription(cfg) + ", development login, no allowlist. Never use --dev in production.")
	}
	cfg, devCred := withDevResourceServer(cfg)

	var current atomic.Pointer[http.Handler]
	starting := startingHandler(cfg, started, e.now)
	current.Store(&starting)
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*current.Load()).ServeHTTP(w, r)
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- server.Serve(ctx, server.Config{
			Addr:    cfg.Listen,
			Handler: root,
			Timeouts: server.Timeouts{
				ReadHeader: cfg.HTTP.ReadHeaderTimeout, Read: cfg.HTTP.ReadTimeout,
				Write: cfg.HTTP.WriteTimeout, Idle: cfg.HTTP.IdleTimeout, Shutdown: cfg.HTTP.ShutdownTimeout,
			},
			MaxHeaderBytes: cfg.HTTP.MaxHeaderBytes,
			CertFile:       cfg.TLS.CertFile,
			KeyFile:        cfg.TLS.KeyFile,
			Log:            log,
		}, addrc)
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-errc:
		return err
	}
	log.Info("listening", "addr", addr.String(), "issuer", cfg.Issuer, "version", readBuild().Version, "go", e.goVersion())

	tp := e.tracerProvider
	if tp == nil {
		var shutdown func(context.Context) error
		var err error
		if tp, shutdown, err = tracing.Setup(ctx, e.getenv.get, version); err != nil {
			cancel()
			<-errc
			return err
		}
		defer func() {
			// Flush the spans still queued; a collector that is gone
			// must not hold up the exit.
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer scancel()
			if err := shutdown(sctx); err != nil {
				log.Warn("flushing traces", "error", err.Error())
			}
		}()
		if !tracing.IsNoop(tp) {
			log.Info("tracing on: exporting spans with OTLP/HTTP")
		}
	}

	st, err := openStoreWithRetry(ctx, cfg, log, store.WithTracerProvider(tp))
	if err != nil {
		cancel()
		<-errc
		return err
	}
	defer st.Close()

	m := newMetrics(st)
	a, err := buildApp(ctx, deps{cfg: cfg, store: st, log: log, now: e.now, started: started, upstreamClient: e.upstreamClient, metrics: m, tracerProvider: tp})
	if err != nil {
		cancel()
		<-errc
		return err
	}
	metricsErr := make(chan error, 1)
	if cfg.Metrics.Listen != "" {
		// A separate listener, so /metrics is never exposed on the public port.
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		if cfg.Metrics.Pprof {
			mountPprof(mux)
		}
		metricsAddr := make(chan net.Addr, 1)
		go func() {
			metricsErr <- server.Serve(ctx, server.Config{
				Addr: cfg.Metrics.Listen, Handler: mux, Log: log,
				Timeouts: server.Timeouts{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second, Idle: time.Minute, Shutdown: 5 * time.Second},
			}, metricsAddr)
		}()
		// Bound, or failed, before "ready": an address in use stops authd
		// here rather than after it has announced itself.
		select {
		case a := <-metricsAddr:
			log.Info("metrics listening", "addr", a.String())
		case err := <-metricsErr:
			a.close()
			cancel()
			<-errc
			return fmt.Errorf("metrics listener: %w", err)
		}
	}
	defer a.close()
	h := databaseBudget(a.handler, cfg.DatabaseTimeout)
	current.Store(&h)
	a.startBackground(ctx)

	if cfg.Dev {
		printDevBanner(e.stdout, cfg, devCred)
	}
	log.Info("ready", "discovery", cfg.Issuer+"/.well-known/oauth-authorization-server")
	if e.ready != nil {
		e.ready <- addr.String()
	}
	select {
	case err := <-errc:
		return err
	case err := <-metricsErr:
		if err == nil { // shutting down
			return <-errc
		}
		cancel()
		<-errc
		return fmt.Errorf("metrics listener: %w", err)
	}
}

// startingHandler serves while the application is not built yet.
func startingHandler(cfg *config.Config, started time.Time, now func() time.Time) http.Handler {
	r := server.NewRouter(server.Options{
		Log:          slog.New(slog.DiscardHandler),
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes,
		Version:      version,
		Started:      started,
		Now:          now,
		Ready:        func(context.Context) error { return errors.New("starting: database not ready") },
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		oauth.WriteError(w, r, nil, oauth.TemporarilyUnavailable(nil))
	})
	return r
}

// openStoreWithRetry opens the configured store. Postgres may not be up yet
// (containers start in any order): retry with capped exponential backoff
// until it answers or ctx ends. The schema must match this binary unless
// migrate_on_start asks to migrate.
func openStoreWithRetry(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...store.Option) (store.Store, error) {
	if cfg.DatabaseURL == "" {
		log.Warn("using the in-memory store: data is lost on exit and not shared between replicas")
		return store.NewMemory(), nil
	}
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := prepareSchema(ctx, cfg)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) {
			return nil, err
		}
		log.Warn("database not reachable, retrying", "attempt", attempt, "retry_in", backoff.String(), "error", err.Error())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	return store.OpenPostgres(ctx, cfg.DatabaseDSN(), opts...)
}

func prepareSchema(ctx context.Context, cfg *config.Config) error {
	if cfg.MigrateOnStart {
		return store.MigrateUp(ctx, cfg.DatabaseDSN())
	}
	return store.CheckSchema(ctx, cfg.DatabaseDSN())
}

// storeOpener returns the store-opening function the admin commands use.
func storeOpener(e *env, flags *pflag.FlagSet) func(ctx context.Context) (store.Store, error) {
	return func(ctx context.Context) (store.Store, error) {
		cfg, err := loadDBConfig(flags, e.getenv)
		if err != nil {
			return nil, err
		}
		if err := store.CheckSchema(ctx, cfg.DatabaseDSN()); err != nil {
			return nil, err
		}
		return store.OpenPostgres(ctx, cfg.DatabaseDSN())
	}
}
