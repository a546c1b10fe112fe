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
	"github.com/authd/authd/internal/backchannel"
	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/discovery"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/metrics"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/ratelimit"
	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/server"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/token"
	"github.com/authd/authd/internal/tokens"
	"github.com/authd/authd/internal/tracing"
	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstreamtokens"
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
	// upstreamTokens keeps and hands out users' upstream grants
	// (upstreams[].store_tokens); nil when no upstream keeps tokens.
	upstreamTokens *upstreamtokens.Broker
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

		// Secrets rotated away from: stored keys they encrypted still
		// decrypt until `authd keys reencrypt` has moved them.
		PreviousEncryptionKeys: previousKEKs(cfg),
	}
}

// previousKEKs derives the keys of keys.previous_encryption_secrets.
func previousKEKs(cfg *config.Config) [][]byte {
	var out [][]byte
	for _, s := range cfg.Keys.PreviousEncryptionSecrets {
		out = append(out, keys.DeriveKEK(s))
	}
	return out
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
	// editGrants, when set, changes the grant registry the configuration
	// gives (grantRegistry); for tests.
	editGrants func(grants.Registry) grants.Registry
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

// buildApp wires every component from d.cfg over d.store, in the order a
// request meets them: what the endpoints share (signing keys, the bounded
// store, the resource policy, the grant registry, the client source,
// sign-in upstreams), the router, then each endpoint, mounted as it is
// built.
func buildApp(ctx context.Context, d deps) (*app, error) {
	if d.metrics == nil {
		d.metrics = newMetrics(d.store)
	}
	w, err := newWiring(ctx, d)
	if err != nil {
		return nil, err
	}
	root, r := w.router()
	w.mountDiscovery(root)
	w.mountRegister(r)
	w.mountAuthorize(r)
	w.mountBackChannel(r)
	clientAuth := w.clientAuthenticator()
	if err := pinConfiguredSecrets(ctx, w.store, clientAuth, w.cfg.Clients, w.now(), w.log); err != nil {
		return nil, err
	}
	w.mountToken(r, clientAuth)
	w.mountIntrospect(r, clientAuth)

	a := &app{cfg: w.cfg, log: w.log, store: w.store, keys: w.keys, handler: root, now: w.now, metrics: w.metrics, upstreamTokens: w.broker}
	if _, ok := w.store.(*store.Postgres); ok {
		a.listener = changeListener(w.cfg, w.log, w.keys, w.clients)
	}
	return a, nil
}

// wiring holds what several endpoints share, built once by newWiring.
type wiring struct {
	deps
	keys *keys.Manager
	// bst is what requests go through: a deadline per request and a bound
	// on the operations in flight, so a sick database costs a quick 503
	// rather than hung clients and piling goroutines (see store.Bounded).
	// Background work (key reloads, purges) has its own time limits.
	bst *store.Bounded
	// policy is the resource and scope policy, built once: every endpoint
	// that applies a rule about resources or scopes gets this one value.
	policy *policy.Policy
	// grants are the grant types served, for /token, registration,
	// metadata documents and the metadata alike (grantRegistry).
	grants  grants.Registry
	clients *clientSource
	// throttle is one budget of failed credential checks for /token,
	// /revoke, /introspect and RFC 7592.
	throttle   *clientauth.Throttle
	connectors []upstream.Connector
	// broker keeps and hands out users' upstream grants
	// (upstreams[].store_tokens); nil when no upstream keeps tokens.
	broker *upstreamtokens.Broker
	// userCheck re-applies the sign-in policy to a user at every use of a
	// grant (disabled users and the allowlist).
	userCheck func(context.Context, store.User) error
	// prefix is the issuer's path (oauth.IssuerPath).
	prefix string
	// pages are the sign-in pages' templates with the operator's branding
	// (pages.*), checked once here: a theme that would hide the consent
	// page's facts stops authd.
	pages *authorize.Pages
}

// newWiring loads the configured clients, the signing keys and the
// upstreams, and builds the shared parts.
func newWiring(ctx context.Context, d deps) (*wiring, error) {
	w := &wiring{deps: d, prefix: oauth.IssuerPath(d.cfg.Issuer)}
	if err := register.SyncStaticClients(ctx, d.store, d.cfg.Clients, d.now()); err != nil {
		return nil, fmt.Errorf("loading configured clients: %w", err)
	}
	var err error
	if w.keys, err = signingKeys(ctx, d); err != nil {
		return nil, err
	}
	w.bst = store.NewBounded(d.store, d.cfg.DatabaseTimeout, d.cfg.DatabaseMaxInFlight)
	w.bst.OnRefused = d.metrics.ObserveDBRefused
	w.policy = d.cfg.Policy()
	w.grants = grantRegistry(d.cfg)
	if d.editGrants != nil {
		w.grants = d.editGrants(w.grants)
	}
	if !w.grants.Serves(grants.AuthorizationCode) {
		// /authorize is always mounted and issues codes.
		return nil, errors.New("the grant registry must serve authorization_code: /authorize issues codes")
	}
	if err := token.CheckGrants(w.grants); err != nil {
		return nil, err
	}
	w.clients = newClientSource(d.cfg, w.bst, w.grants, d.cimdRoots, d.now, d.log)
	w.throttle = clientauth.NewThrottle(d.cfg.RateLimits.ClientAuthFailures, d.now)
	if w.connectors, w.userCheck, err = upstreams(ctx, d); err != nil {
		return nil, err
	}
	if w.broker, err = newBroker(d.cfg, w.bst, w.connectors, d.cfg.Allowlist.Check, d.now, d.log); err != nil {
		return nil, fmt.Errorf("upstream tokens: %w", err)
	}
	pg := d.cfg.Pages
	if w.pages, err = authorize.NewPages(authorize.Branding{ProductName: pg.ProductName, LogoURL: pg.LogoURL,
		AccentColor: pg.AccentColor, TemplateDir: pg.TemplateDir}); err != nil {
		return nil, fmt.Errorf("pages.%w", err)
	}
	return w, nil
}

// grantRegistry is the one place that decides which grant types authd
// serves and to which clients: /token dispatches, /register and client ID
// metadata documents accept, and the RFC 8414 metadata advertises exactly
// these. A new grant is an entry in grants.Default (or, when the
// configuration must switch it on, a With here) plus its function in
// internal/token.
func grantRegistry(cfg *config.Config) grants.Registry {
	r := grants.Default().
		// Open registration must not be a way around signing in.
		AllowDynamic(grants.ClientCredentials, cfg.Registration.AllowClientCredentials)
	if cfg.TokenExchangeEnabled() {
		// RFC 8693, served when a configured client has token_exchange;
		// never to registered or metadata-document clients.
		r = r.With(grants.Grant{Type: grants.TokenExchange, Confidential: true})
	}
	return r
}

// signingKeys loads (or creates) the signing keys.
func signingKeys(ctx context.Context, d deps) (*keys.Manager, error) {
	kopts := keyOptions(d.cfg, d.now, d.log)
	pems, err := readPEMFiles(d.cfg.Keys.PEMFiles)
	if err != nil {
		return nil, err
	}
	kopts.PEMKeys = pems
	if d.cfg.Dev && d.cfg.Keys.EncryptionSecret == "" {
		// Dev keys live in memory (or a dev database) only.
		kopts.EncryptionKey = keys.DeriveKEK("authd-development-mode-only")
	}
	km, err := keys.New(ctx, d.store, kopts)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	if err := recordEncryptionSecret(ctx, d); err != nil {
		return nil, err
	}
	return km, nil
}

// upstreams builds a connector per configured upstream, and the check the
// token endpoints re-apply to a user (still enabled, their upstream still
// configured, still allowed).
func upstreams(ctx context.Context, d deps) ([]upstream.Connector, func(context.Context, store.User) error, error) {
	cfg := d.cfg
	client := d.upstreamClient
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	client = tracing.Client(d.tracerProvider, client)
	var connectors []upstream.Connector
	providerTypes := map[string]string{}
	for _, uc := range cfg.Upstreams {
		uc.RedirectURL = cfg.Issuer + "/callback/" + uc.ID
		c, err := upstream.New(ctx, uc, client, d.log)
		if err != nil {
			return nil, nil, fmt.Errorf("upstreams[%s]: %w", uc.ID, err)
		}
		connectors = append(connectors, c)
		providerTypes[uc.ID] = uc.Type
	}
	allow := cfg.Allowlist
	userCheck := func(_ context.Context, u store.User) error {
		if u.Disabled {
			return fmt.Errorf("%w: user disabled", tokens.ErrUserNotAllowed)
		}
		// Users come only from sign-ins at configured upstreams (the
		// --dev login is one, id "dev"). One whose upstream is not
		// configured here cannot sign in here, so their tokens are
		// refused too, whatever the allowlist says; but their grants are
		// kept (tokens.ErrGrantKept): the upstream's absence may be a
		// typo, a rename, or a replica a rolling deploy has not reached.
		providerType, ok := providerTypes[u.Provider]
		if !ok {
			return fmt.Errorf("%w: %w: the user's upstream %q is not configured", tokens.ErrUserNotAllowed, tokens.ErrGrantKept, u.Provider)
		}
		if err := allow.Check(providerType, u); err != nil {
			return fmt.Errorf("%w: %w", tokens.ErrUserNotAllowed, err)
		}
		return nil
	}
	return connectors, userCheck, nil
}

// router builds the root router (the host root: /health, /ready, the
// well-known documents) and the one endpoints are mounted on.
//
// Every endpoint lives under the issuer's path (RFC 8414 §3.1: an issuer
// https://host/tenant serves https://host/tenant/token, ...). Endpoint
// routes share one group so that the per-address limit of the sign-in
// flow applies to them: /authorize and the sign-in pages share one budget
// (each costs a database write or an upstream round trip, and a person
// needs a handful). /register, /token, /revoke and /introspect apply their
// own limits inside their handlers.
func (w *wiring) router() (root, endpoints chi.Router) {
	cfg, m, prefix := w.cfg, w.metrics, w.prefix
	root = server.NewRouter(server.Options{
		Log:            w.log,
		TrustedProxies: mustPrefixes(cfg),
		MaxBodyBytes:   cfg.HTTP.MaxBodyBytes,
		Version:        version,
		Started:        w.started,
		// Readiness pings past bst: a replica that is busy (every slot of
		// database_max_in_flight taken) is still ready, and reporting it
		// not-ready would only push its load onto the others.
		Ready:          w.store.Ping,
		Now:            w.now,
		TracerProvider: w.tracerProvider,
		Observe: func(route, method string, status int, d time.Duration) {
			m.ObserveRequest(route, method, status, d)
			if route == prefix+"/register" && method == http.MethodPost {
				m.ObserveRegistration(registrationOutcome(status))
			}
		},
	})
	authorizeLimit := ratelimit.New(cfg.RateLimits.Authorize, w.now)
	var under chi.Router = root
	if prefix != "" {
		under = chi.NewRouter()
		root.Mount(prefix, under) // after NotFound: Mount hands it down
	}
	endpoints = under.With(limitPaths(prefix, map[string]*ratelimit.Limiter{
		"/authorize":  authorizeLimit,
		"/login":      authorizeLimit,
		"/callback/":  authorizeLimit,
		"/consent":    authorizeLimit,
		"/apps/login": authorizeLimit,
		"/upstream/":  authorizeLimit,
	}))
	return root, endpoints
}

// mountDiscovery serves the RFC 8414 metadata, the JWK set and the RFC
// 9728 documents at the host root: their paths are absolute (the
// path-inserted metadata of RFC 8414 §3.1 sits outside the issuer's path).
func (w *wiring) mountDiscovery(root chi.Router) {
	cfg, pol := w.cfg, w.policy
	scopeNames := pol.ScopeNames()
	features := discovery.Features{
		Registration:         cfg.Registration.Enabled,
		Introspection:        true,
		Revocation:           true,
		GrantTypes:           w.grants.Types(),
		Scopes:               scopeNames,
		ServiceDocumentation: cfg.ServiceDocumentation,
		CIMD:                 cfg.ClientMetadataDocuments.Enabled,
	}
	disc := &discovery.Handler{
		Metadata: discovery.NewMetadata(cfg.Issuer, features),
		JWKS:     w.keys.JWKS,
		Log:      w.log,
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
	disc.Routes(root)
}

// mountRegister serves RFC 7591 registration and RFC 7592 management,
// writing through the client source (so that changes are forgotten).
func (w *wiring) mountRegister(r chi.Router) {
	cfg, now := w.cfg, w.now
	reg := &register.Handler{
		Store:          w.clients.writeThrough(),
		Issuer:         cfg.Issuer,
		Policy:         cfg.Registration,
		Grants:         w.grants,
		ScopePolicy:    w.policy,
		Limiter:        ratelimit.New(cfg.Registration.RateLimit, now),
		Throttle:       w.throttle,
		TrustedProxies: mustPrefixes(cfg),
		Now:            now,
		Log:            w.log,
	}
	reg.Routes(r)
}

// mountAuthorize serves the sign-in flow: /authorize, the sign-in pages,
// upstream callbacks, consent and the connected-apps page.
func (w *wiring) mountAuthorize(r chi.Router) {
	cfg := w.cfg
	authz := &authorize.Handler{
		Pages:      w.pages,
		Store:      w.clients.signInStore(),
		Issuer:     cfg.Issuer,
		Connectors: w.connectors,
		Allowlist:  cfg.Allowlist,
		Policy:     w.policy,
		Lifetimes: authorize.Lifetimes{
			Request: cfg.Session.RequestLifetime,
			Code:    cfg.Tokens.CodeLifetime,
			Session: cfg.Session.Lifetime,
		},
		DevMode: cfg.Dev,
		OnEvent: w.metrics.ObserveAuthorizeEvent,
		Now:     w.now,
		Log:     w.log,
	}
	if w.broker != nil {
		authz.UpstreamGrants = w.broker
	}
	authz.Routes(r)
}

// mountBackChannel serves the OpenID Connect Back-Channel Logout
// receiver for the upstreams that send logout tokens.
func (w *wiring) mountBackChannel(r chi.Router) {
	(&backchannel.Handler{Store: w.bst, Connectors: w.connectors, OnEvent: w.metrics.ObserveAuthorizeEvent, Now: w.now, Log: w.log}).Routes(r)
}

// clientAuthenticator authenticates the clients of /token, /revoke and
// /introspect, looking them up in the client source.
func (w *wiring) clientAuthenticator() *clientauth.Authenticator {
	return &clientauth.Authenticator{Clients: w.clients.knownClients(), Now: w.now, Throttle: w.throttle, FailureFloor: clientauth.DefaultFailureFloor}
}

// mountToken serves /token (the grants of the registry) and /revoke.
func (w *wiring) mountToken(r chi.Router, clientAuth *clientauth.Authenticator) {
	cfg, now := w.cfg, w.now
	tok := &token.Handler{
		Store:                w.bst,
		Clients:              clientAuth,
		Keys:                 w.keys,
		Issuer:               cfg.Issuer,
		Policy:               w.policy,
		AccessTokenLifetime:  cfg.Tokens.AccessTokenLifetime,
		RefreshTokenLifetime: cfg.Tokens.RefreshTokenLifetime,
		RefreshRetryWindow:   cfg.Tokens.RefreshRetryWindow,
		GrantLifetime:        cfg.Tokens.GrantLifetime,
		ClientIdleLifetime:   cfg.Registration.ClientIdleLifetime,
		Grants:               w.grants,
		IdentityClaims:       cfg.Tokens.IdentityClaims,
		UserCheck:            grantCheck(w.userCheck, w.broker),
		Observe:              w.metrics.ObserveToken,
		MaxBodyBytes:         cfg.HTTP.MaxBodyBytes,
		// Applied inside the handler, after its CORS headers.
		TokenLimit:  ratelimit.New(cfg.RateLimits.Token, now),
		RevokeLimit: ratelimit.New(cfg.RateLimits.Revoke, now),
		Now:         now,
		Log:         w.log,
	}
	tok.Exchange = tokenExchange(cfg, w.broker, w.metrics)
	tok.Routes(r)
}

// mountIntrospect serves /introspect and /verify.
func (w *wiring) mountIntrospect(r chi.Router, clientAuth *clientauth.Authenticator) {
	cfg, now := w.cfg, w.now
	intro := &introspect.Handler{
		Store:        w.bst,
		Clients:      clientAuth,
		Keys:         w.keys,
		Issuer:       cfg.Issuer,
		Policy:       w.policy, // the resources /token issues for
		BearerTokens: cfg.Introspection.BearerTokens,
		// --dev: /verify?resource= protects any URL (allow_any_resource).
		AnyResource:    cfg.Dev && cfg.AllowAnyResource,
		IdentityClaims: cfg.Tokens.IdentityClaims,
		UserCheck:      w.userCheck,
		Limiter:        ratelimit.New(cfg.Introspection.RateLimit, now),
		MaxBodyBytes:   cfg.HTTP.MaxBodyBytes,
		Observe:        w.metrics.ObserveIntrospection,
		Now:            now,
		Log:            w.log,
	}
	warnForwardUpstreamTokens(w.policy, w.log)
	intro.UpstreamTokens = forwardedUpstreamTokens(w.broker)
	intro.FromTrustedProxy = server.FromTrustedProxy
	intro.ForwardAuthSecret = cfg.Introspection.ForwardAuthSecret
	intro.Routes(r)
}

// changeListener applies the changes other replicas (and the admin CLI)
// announce, within milliseconds of their commit: reload the signing keys,
// forget a changed client. Users are not cached, so their changes need
// nothing here. The periodic key reload and the client cache's TTL stay as
// the fallback for when the notifications are interrupted; after each
// reconnection everything is reloaded, since changes may have been missed.
func changeListener(cfg *config.Config, log *slog.Logger, km *keys.Manager, clients *clientSource) *store.Listener {
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
				clients.invalidate(c.ID)
			}
		},
		OnConnect: func() {
			reloadKeys()
			clients.invalidateAll()
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
				a.purgeOnce(ctx)
			}
		}
	})
}

// purgeOnce is one pass of the background purge.
func (a *app) purgeOnce(ctx context.Context) {
	now := a.now()
	res, err := a.store.Purge(ctx, now)
	if err != nil {
		a.log.Warn("purge failed", "error", err.Error())
		return
	}
	// Kept tokens of upstreams that no longer keep them (removed, or
	// store_tokens off) will never be used, but only once no replica has
	// written them for keptTokensGrace: another replica may keep that
	// upstream (a rolling deploy adding it, or this replica misconfigured).
	if n, err := a.store.DeleteUpstreamTokensExcept(ctx, keptUpstreams(a.cfg), now.Add(-keptTokensGrace)); err != nil {
		a.log.Warn("purge failed", "error", err.Error())
	} else {
		res["upstream_tokens"] += n
	}
	var total int64
	for _, n := range res {
		total += n
	}
	if total > 0 {
		a.log.Info("purged expired rows", "event", "purge", "deleted", total)
	}
}

// close stops the background work and waits for it, so that the store
// (and the listener's own connection) is closed after the last use.
func (a *app) close() {
	if a.stop != nil {
		a.stop()
	}
	a.done.Wait()
}
