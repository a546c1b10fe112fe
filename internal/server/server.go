// Package server is authd's HTTP plumbing: the chi router with the
// middleware every request passes (request id, trusted-proxy client
// address, access log, panic recovery, body limit), the health and
// readiness endpoints, and a server with timeouts and graceful shutdown.
// Endpoint handlers are mounted by the composition root (cmd/authd).
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/tracing"
)

// Options configures the router and server.
type Options struct {
	Log            *slog.Logger
	TrustedProxies []netip.Prefix
	MaxBodyBytes   int64
	Version        string
	// Started is when the process started (uptime in /health).
	Started time.Time
	// Ready reports whether dependencies (the database) are reachable.
	Ready func(ctx context.Context) error
	// Observe, when set, receives every finished request (metrics).
	Observe RouteObserver
	Now     func() time.Time
	// TracerProvider, when it records, gets a span per request (tracing).
	TracerProvider trace.TracerProvider
}

// NewRouter returns a router with authd's middleware and /health and
// /ready mounted; callers mount the endpoint handlers on it.
func NewRouter(o Options) chi.Router {
	if o.Now == nil {
		o.Now = time.Now
	}
	r := chi.NewRouter()
	r.Use(requestID(o.TrustedProxies), trustProxies(o.TrustedProxies, o.Log), tracing.Middleware(o.TracerProvider), accessLog(o.Log, o.Observe),
		recoverer(o.Log), limitBody(o.MaxBodyBytes), baseHeaders)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		oauth.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		oauth.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
	})
	r.Get("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		oauth.WriteJSON(w, http.StatusOK, map[string]any{
			"status":         "ok",
			"version":        o.Version,
			"uptime_seconds": int64(o.Now().Sub(o.Started).Seconds()),
		})
	})
	r.Get("/ready", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if o.Ready != nil {
			if err := o.Ready(ctx); err != nil {
				o.Log.WarnContext(r.Context(), "readiness check failed", "error", err.Error())
				oauth.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{
					"status": "unavailable",
					"checks": map[string]string{"database": "unreachable"},
				})
				return
			}
		}
		oauth.WriteJSON(w, http.StatusOK, map[string]any{
			"status": "ready",
			"checks": map[string]string{"database": "ok"},
		})
	})
	return r
}

// Timeouts bound how long a client may hold a connection at each stage.
type Timeouts struct {
	ReadHeader time.Duration
	Read       time.Duration
	Write      time.Duration
	Idle       time.Duration
	Shutdown   time.Duration
}

// Config for Serve.
type Config struct {
	Addr           string
	Handler        http.Handler
	Timeouts       Timeouts
	MaxHeaderBytes int
	CertFile       string // TLS when both are set
	KeyFile        string
	Log            *slog.Logger
}

// Serve listens on c.Addr and serves until ctx is cancelled, then drains
// in-flight requests for up to Timeouts.Shutdown. ready, if non-nil,
// receives the bound address once listening (useful with ":0").
func Serve(ctx context.Context, c Config, ready chan<- net.Addr) error {
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Addr, err)
	}
	srv := &http.Server{
		Handler:           c.Handler,
		ReadHeaderTimeout: c.Timeouts.ReadHeader,
		ReadTimeout:       c.Timeouts.Read,
		WriteTimeout:      c.Timeouts.Write,
		IdleTimeout:       c.Timeouts.Idle,
		MaxHeaderBytes:    c.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(c.Log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if c.CertFile != "" {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if ready != nil {
		ready <- ln.Addr()
	}
	errc := make(chan error, 1)
	go func() {
		if c.CertFile != "" {
			errc <- srv.ServeTLS(ln, c.CertFile, c.KeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	c.Log.Info("shutting down, draining in-flight requests", "timeout", c.Timeouts.Shutdown.String())
	sctx, cancel := context.WithTimeout(context.Background(), c.Timeouts.Shutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
