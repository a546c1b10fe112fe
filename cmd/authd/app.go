package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/authd/authd/internal/authorize"
	"github.com/authd/authd/internal/cimd"
	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/discovery"
	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/metrics"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/ratelimit"
	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/server"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/token"
	"github.com/authd/authd/internal/tracing"
	"github.com/authd/authd/internal/upstream"
)

// app is a fully wired authd: every handler built from one Config, mounted
// on one router. It is the only composition root.
type app struct {
	cfg     *config.Config
	log     *slog.Logger
	store   store.Store
	keys    *keys.Manager
	handler http.Handler
	now     func() time.Time
	metrics *metrics.Metrics
	// listener hears other replicas' changes (nil with the memory store).
	listener *store.Listener
	stop     context.CancelFunc
	done     sync.WaitGroup
}

// keyOptions maps the keys configuration, reading PEM files if any.
func keyOptions(cfg *config.Config, now func() time.Time, log *slog.Logger) keys.Options {
	return keys.Options{
		Algorithm:       cfg.Keys.Algorithm,
		EncryptionKey:   keys.DeriveKEK(cfg.Keys.EncryptionSecret),
		TokenLifetime:   cfg.Tokens.AccessTokenLifetime,
		Prepublish:      cfg.Keys.Prepublish,
		RefreshInterval: cfg.Keys.RefreshInterval,
		Now:             now,
		Log:             log,
	}
}

func readPEMFiles(paths []string) ([][]byte, error) {
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("keys.pem_files: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

// deps are what buildApp wires together.
type deps struct {
	cfg     *config.Config
	store   store.Store
	log     *slog.Logger
	now     func() time.Time
	started time.Time
	// upstreamClient is the HTTP client for identity providers (nil: a
	// default with timeouts).
	upstreamClient *http.Client
	metrics        *metrics.Metrics
	// cimdRoots verifies the servers of client ID metadata documents (nil:
	// the system roots; tests trust their document server's certificate).
	cimdRoots *x509.CertPool
	// tracerProvider traces requests and upstream calls (nil: none).
	tracerProvider trace.TracerProvider
}

// newMetrics creates the registry, with pool statistics for Postgres.
func newMetrics(st store.Store) *metrics.Metrics {
	pg, ok := st.(*store.Postgres)
	if !ok {
		return metrics.New(nil)
	}
	return metrics.New(func() metrics.PoolStats {
		s := pg.PoolStats()
		return metrics.PoolStats{
			Acquired: s.Acquired, Idle: s.Idle, Total: s.Total, Max: s.Max,
			AcquireCount: s.AcquireCount, NewConns: s.NewConns, AcquireWait: s.AcquireDuration,
		}
	})
}

// buildApp wires every component from d.cfg over d.store.
func buildApp(ctx context.Context, d deps) (*app, error) {
	cfg, st, log, now, started, upstreamClient, m := d.cfg, d.store, d.log, d.now, d.started, d.upstreamClient, d.metrics
	if m == nil {
		m = newMetrics(st)
	}
	if err := register.SyncStaticClients(ctx, st, cfg.Clients, now()); err != nil {
		return nil, fmt.Errorf("loading configured clients: %w", err)
	}

	kopts := keyOptions(cfg, now, log)
	pems, err := readPEMFiles(cfg.Keys.PEMFiles)
	if err != nil {
		return nil, err
	}
	kopts.PEMKeys = pems
	if cfg.Dev && cfg.Keys.EncryptionSecret == "" {
		// Dev keys live in memory (or a dev database) only.
		kopts.EncryptionKey = keys.DeriveKEK("authd-development-mode-only")
	}
	km, err := keys.New(ctx, st, kopts)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	// What requests do goes through bst: a deadline per request and a
	// bound on the operations in flight, so a sick database costs a quick
	// 503 rather than hung clients and piling goroutines (see
	// store.Bounded). Background work (key reloads, purges) has its own
	// time limits.
	bst := store.NewBounded(st, cfg.DatabaseTimeout, cfg.DatabaseMaxInFlight)
	bst.OnRefused = m.ObserveDBRefused

	if upstreamClient == nil {
		upstreamClient = &http.Client{Timeout: 15 * time.Second}
	}
	upstreamClient = tracing.Client(d.tracerProvider, upstreamClient)
	var connectors []upstream.Connector
	providerTypes := map[string]string{}
	for _, uc := range cfg.Upstreams {
		uc.RedirectURL = cfg.Issuer + "/callback/" + uc.ID
		c, err := upstream.New(ctx, uc, upstreamClient, log)
		if err != nil {
			return nil, fmt.Errorf("upstreams[%s]: %w", uc.ID, err)
		}
		connectors = append(connectors, c)
		providerTypes[uc.ID] = uc.Type
	}
	policy := cfg.Allowlist
	userCheck := func(_ context.Context, u store.User) error {
		if u.Disabled {
			return errors.New("user disabled")
		}
		return policy.Check(providerTypes[u.Provider], u)
	}

	// Every endpoint lives under the issuer's path (RFC 8414 §3.1: an issuer
	// https://host/tenant serves https://host/tenant/token, ...); /health,
	// /ready and the well-known documents stay at the host root.
	prefix := oauth.IssuerPath(cfg.Issuer)
	root := server.NewRouter(server.Options{
		Log:            log,
		TrustedProxies: mustPrefixes(cfg),
		MaxBodyBytes:   cfg.HTTP.MaxBodyBytes,
		Version:        version,
		Started:        started,
		// Readiness pings past bst: a replica that is busy (every slot of
		// database_max_in_flight taken) is still ready, and reporting it
		// not-ready would only push its load onto the others.
		Ready:          st.Ping,
		Now:            now,
		TracerProvider: d.tracerProvider,
		Observe: func(route, method string, status int, d time.Duration) {
			m.ObserveRequest(route, method, status, d)
			if route == prefix+"/register" && method == http.MethodPost {
				m.ObserveRegistration(registrationOutcome(status))
			}
		},
	})
	// Endpoint routes share one group so that the per-address limit of the
	// sign-in flow applies to them: /authorize and the sign-in pages share
	// one budget (each costs a database write or an upstream round trip,
	// and a person needs a handful). /register, /token, /revoke and
	// /introspect apply their own limits inside their handlers.
	authorizeLimit := ratelimit.New(cfg.RateLimits.Authorize, now)
	endpoints := root
	if prefix != "" {
		endpoints = chi.NewRouter()
		root.Mount(prefix, endpoints) // after NotFound: Mount hands it down
	}
	var r chi.Router = endpoints.With(limitPaths(prefix, map[string]*ratelimit.Limiter{
		"/authorize": authorizeLimit,
		"/login":     authorizeLimit,
		"/callback/": authorizeLimit,
		"/consent":   authorizeLimit,
	}))

	// Client ID metadata documents: URL client_ids are resolved by store
	// decorators handed to every endpoint that looks clients up. Only
	// /authorize fetches documents of clients not seen before.
	var authzClients, clients store.Store = bst, bst
	if cimdCfg := cfg.ClientMetadataDocuments; cimdCfg.Enabled {
		if cimdCfg.AllowLoopback && !cfg.Dev {
			log.Warn("client_metadata_documents.allow_loopback is set: client metadata documents may be fetched from this host's loopback interface; never set it in production")
		}
		resolver := cimd.New(bst, cimdCfg, d.cimdRoots, log)
		resolver.RedirectURIPolicy = cfg.Registration.CheckRedirectURIs // documents obey registration.allowed_redirect_uris too
		authzClients, clients = cimd.Wrap(bst, resolver), cimd.WrapKnown(bst, resolver)
	}

	// The resource and scope policy, built once: every endpoint below that
	// applies a rule about resources or scopes gets this one value.
	pol := cfg.Policy()
	scopeNames := pol.ScopeNames()
	features := discovery.Features{
		Registration:         cfg.Registration.Enabled,
		Introspection:        true,
		Revocation:           true,
		ClientCredentials:    true,
		RefreshTokens:        true,
		Scopes:               scopeNames,
		ServiceDocumentation: cfg.ServiceDocumentation,
		CIMD:                 cfg.ClientMetadataDocuments.Enabled,
	}
	disc := &discovery.Handler{
		Metadata: discovery.NewMetadata(cfg.Issuer, features),
		JWKS:     km.JWKS,
		Log:      log,
		// --dev: every URL is a resource (/verify?resource= protects it).
		AnyResource:       cfg.Dev && cfg.AllowAnyResource,
		AnyResourceScopes: scopeNames,
	}
	for _, res := range pol.Resources {
		disc.Resources = append(disc.Resources, discovery.ProtectedResource{
			Resource:              res.URI,
			AuthorizationServers:  []string{cfg.Issuer},
			ScopesSupported:       pol.Offered(res.URI),
			ResourceDocumentation: res.Documentation,
			ResourceName:          res.Name,
		})
	}
	// At the host root: the documents' paths are absolute (the path-inserted
	// metadata of RFC 8414 §3.1 sits outside the issuer's path).
	disc.Routes(root)

	// One client cache for /token, /revoke and /introspect (the hot paths
	// read no client row), one for the sign-in flow, which looks its client
	// up on every step (/authorize, login, callback, consent): a flow reads
	// the row once. Registration changes invalidate both at once.
	clientCache := clientauth.NewCachedClients(clients, clientauth.DefaultCacheTTL, now)
	authzCache := clientauth.NewCachedClients(authzClients, clientauth.DefaultCacheTTL, now)
	// One budget of failed credential checks for /token, /revoke,
	// /introspect and RFC 7592.
	throttle := clientauth.NewThrottle(cfg.RateLimits.ClientAuthFailures, now)
	reg := &register.Handler{
		Store:          invalidatingStore{Store: bst, caches: []*clientauth.CachedClients{clientCache, authzCache}},
		Issuer:         cfg.Issuer,
		Policy:         cfg.Registration,
		ScopePolicy:    pol,
		Limiter:        ratelimit.New(cfg.Registration.RateLimit, now),
		Throttle:       throttle,
		TrustedProxies: mustPrefixes(cfg),
		Now:            now,
		Log:            log,
	}
	reg.Routes(r)

	authz := &authorize.Handler{
		Store:      cachedClientStore{Store: authzClients, clients: authzCache},
		Issuer:     cfg.Issuer,
		Connectors: connectors,
		Allowlist:  policy,
		Policy:     pol,
		Lifetimes: authorize.Lifetimes{
			Request: cfg.Session.RequestLifetime,
			Code:    cfg.Tokens.CodeLifetime,
			Session: cfg.Session.Lifetime,
		},
		DevMode: cfg.Dev,
		OnEvent: m.ObserveAuthorizeEvent,
		Now:     now,
		Log:     log,
	}
	authz.Routes(r)

	clientAuth := &clientauth.Authenticator{Clients: clientCache, Now: now, Throttle: throttle, FailureFloor: clientauth.DefaultFailureFloor}
	if err := pinConfiguredSecrets(ctx, st, clientAuth, cfg.Clients, now(), log); err != nil {
		return nil, err
	}
	tok := &token.Handler{
		Store:                    clients,
		Clients:                  clientAuth,
		Keys:                     km,
		Issuer:                   cfg.Issuer,
		Policy:                   pol,
		AccessTokenLifetime:      cfg.Tokens.AccessTokenLifetime,
		RefreshTokenLifetime:     cfg.Tokens.RefreshTokenLifetime,
		RefreshRetryWindow:       cfg.Tokens.RefreshRetryWindow,
		GrantLifetime:            cfg.Tokens.GrantLifetime,
		ClientIdleLifetime:       cfg.Registration.ClientIdleLifetime,
		DynamicClientCredentials: cfg.Registration.AllowClientCredentials,
		IdentityClaims:           cfg.Tokens.IdentityClaims,
		UserCheck:                userCheck,
		Observe:                  m.ObserveToken,
		MaxBodyBytes:             cfg.HTTP.MaxBodyBytes,
		// Applied inside the handler, after its CORS headers.
		TokenLimit:  ratelimit.New(cfg.RateLimits.Token, now),
		RevokeLimit: ratelimit.New(cfg.RateLimits.Revoke, now),
		Now:         now,
		Log:         log,
	}
	tok.Routes(r)

	intro := &introspect.Handler{
		Store:        clients,
		Clients:      clientAuth,
		Keys:         km,
		Issuer:       cfg.Issuer,
		BearerTokens: cfg.Introspection.BearerTokens,
		// --dev: /verify?resource= protects any URL (allow_any_resource).
		AnyResource:    cfg.Dev && cfg.AllowAnyResource,
		IdentityClaims: cfg.Tokens.IdentityClaims,
		UserCheck:      userCheck,
		Limiter:        ratelimit.New(cfg.Introspection.RateLimit, now),
		MaxBodyBytes:   cfg.HTTP.MaxBodyBytes,
		Observe:        m.ObserveIntrospection,
		Now:            now,
		Log:            log,
	}
	for _, res := range cfg.Resources {
		ids, _ := idclaims.Parse(res.Claims) // validated at load
		ir := introspect.Resource{URI: res.URI, RequiredScopes: res.RequiredScopes, Claims: ids}
		for _, rs := range res.RouteScopes {
			ir.RouteScopes = append(ir.RouteScopes, introspect.RouteScope{Method: rs.Method, Path: rs.Path, Scopes: rs.Scopes})
		}
		intro.Resources = append(intro.Resources, ir)
	}
	intro.Routes(r)

	a := &app{cfg: cfg, log: log, store: st, keys: km, handler: root, now: now, metrics: m}
	if _, ok := st.(*store.Postgres); ok {
		a.listener = changeListener(cfg, log, km, clientCache, authzCache)
	}
	return a, nil
}

// changeListener applies the changes other replicas (and the admin CLI)
// announce, within milliseconds of their commit: reload the signing keys,
// forget a changed client. Users are not cached, so their changes need
// nothing here. The periodic key reload and the client cache's TTL stay as
// the fallback for when the notifications are interrupted; after each
// reconnection everything is reloaded, since changes may have been missed.
func changeListener(cfg *config.Config, log *slog.Logger, km *keys.Manager, caches ...*clientauth.CachedClients) *store.Listener {
	reloadKeys := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := km.Reload(ctx); err != nil {
			log.Warn("reloading signing keys on a change notification failed; the periodic reload will retry", "error", err.Error())
		}
	}
	return &store.Listener{
		DSN: cmp.Or(cfg.DatabaseListenURL, cfg.DatabaseURL),
		Log: log,
		OnChange: func(c store.Change) {
			switch c.Kind {
			case store.ChangeKeys:
				reloadKeys()
			case store.ChangeClient:
				for _, cc := range caches {
					cc.Invalidate(c.ID)
				}
			}
		},
		OnConnect: func() {
			reloadKeys()
			for _, cc := range caches {
				cc.InvalidateAll()
			}
			log.Debug("listening for changes from other replicas", "channel", store.ChangesChannel)
		},
	}
}

// pinConfiguredSecrets gives the authenticator the clear-text secrets of
// configured clients, so that checking them never needs bcrypt at request
// time (see clientauth.Authenticator.Pin): a wrong guess then costs what a
// guess at an unknown id costs. A client configured with a bcrypt
// secret_hash instead cannot be pinned; its failed checks cost a bcrypt
// comparison until its first success, which the operator is told.
func pinConfiguredSecrets(ctx context.Context, st store.Store, a *clientauth.Authenticator, clients []register.StaticClient, now time.Time, log *slog.Logger) error {
	for _, s := range clients {
		c, err := st.GetClient(ctx, s.ID, now)
		if err != nil {
			return fmt.Errorf("configured client %q: %w", s.ID, err)
		}
		switch {
		case s.Secret != "":
			if !a.Pin(c.ID, c.SecretHash, s.Secret) {
				log.Warn("configured client's stored secret differs from its configured secret", "client_id", c.ID)
			}
		case oauth.IsBcryptHash(c.SecretHash):
			log.Warn("configured client has a bcrypt secret_hash: until its first successful authentication, "+
				"each failed one costs a bcrypt comparison and tells by its timing that the client exists; "+
				"configure its secret (e.g. from the environment) instead", "client_id", c.ID)
		}
	}
	return nil
}

func registrationOutcome(status int) string {
	switch {
	case status == http.StatusCreated:
		return "created"
	case status == http.StatusOK:
		return "reused"
	case status == http.StatusTooManyRequests:
		return "rate_limited"
	case status >= 500:
		return "error"
	}
	return "rejected"
}

// limitPaths rate-limits requests to the given paths under prefix (the
// issuer's path) by client address (r.RemoteAddr, already rewritten from
// trusted proxies). A path is exact, or covers a first segment when it
// ends in "/" ("/callback/" limits /callback/github).
func limitPaths(prefix string, limiters map[string]*ratelimit.Limiter) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		mws := map[string]http.Handler{}
		for path, l := range limiters {
			mws[path] = ratelimit.Middleware(l, ratelimit.RemoteIPKey)(next)
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, under := strings.CutPrefix(r.URL.Path, prefix)
			h, ok := mws[p]
			if !ok && under {
				if i := strings.Index(p[min(1, len(p)):], "/"); i >= 0 {
					h, ok = mws[p[:i+2]]
				}
			}
			ok = ok && under
			if ok && r.Method != http.MethodOptions {
				h.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// databaseBudget gives each request timeout of database time in all
// (store.Bounded spends it): past it the request answers 503, well before
// http.write_timeout would cut it off unanswered. Time the request spends
// elsewhere (waiting for an upstream provider) does not count.
func databaseBudget(next http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(store.WithBudget(r.Context(), timeout)))
	})
}

func mustPrefixes(cfg *config.Config) []netip.Prefix {
	p, _ := cfg.TrustedProxyPrefixes() // validated at load
	return p
}

// startBackground starts the jobs every replica runs: purging expired rows
// every purge_interval (safe on several replicas at once: rows another
// replica is deleting are skipped), and listens for other replicas'
// changes. Signing keys also reload on use.
func (a *app) startBackground(ctx context.Context) {
	ctx, a.stop = context.WithCancel(ctx)
	if a.listener != nil {
		a.done.Go(func() { a.listener.Run(ctx) })
	}
	if a.cfg.PurgeInterval <= 0 {
		return
	}
	a.done.Go(func() {
		t := time.NewTicker(a.cfg.PurgeInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				res, err := a.store.Purge(ctx, a.now())
				if err != nil {
					a.log.Warn("purge failed", "error", err.Error())
					continue
				}
				var total int64
				for _, n := range res {
					total += n
				}
				if total > 0 {
					a.log.Info("purged expired rows", "event", "purge", "deleted", total)
				}
			}
		}
	})
}

// close stops the background work and waits for it, so that the store
// (and the listener's own connection) is closed after the last use.
func (a *app) close() {
	if a.stop != nil {
		a.stop()
	}
	a.done.Wait()
}
