// Package config is authd's typed configuration: the Config struct, its
// defaults, and Validate, which lists every problem at once with the
// setting's name and how to fix it. Loading (viper: file, environment,
// flags) lives in cmd/authd, the only place that knows about viper; nothing
// below cmd reads the environment.
package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/authd/authd/internal/allowlist"
	"github.com/authd/authd/internal/authorize"
	"github.com/authd/authd/internal/cimd"
	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/ratelimit"
	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/upstream"
)

// Config is everything authd can be told. Field tags name the YAML keys;
// the environment variable of a key is AUTHD_ + the key upper-cased with
// "." replaced by "_" (e.g. keys.encryption_secret → AUTHD_KEYS_ENCRYPTION_SECRET).
type Config struct {
	// Dev turns on development mode (--dev): in-memory store (unless
	// DatabaseURL is set), dev login, http://localhost issuer, any resource.
	// Never set in production.
	Dev bool `mapstructure:"dev"`

	Issuer         string   `mapstructure:"issuer"`
	Listen         string   `mapstructure:"listen"`
	DatabaseURL    string   `mapstructure:"database_url"`
	MigrateOnStart bool     `mapstructure:"migrate_on_start"`
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// DatabaseQueryExecMode is how pgx sends queries: "" or cache_statement
	// (pgx's default: named prepared statements cached per connection) for
	// direct connections, cache_describe (unnamed statements, descriptions
	// cached) behind PgBouncer's transaction pooling, which does not carry
	// a connection's prepared statements from one transaction to the next.
	// DatabaseDSN writes it into the URL as pgx's default_query_exec_mode.
	DatabaseQueryExecMode string `mapstructure:"database_query_exec_mode"`
	// ServiceDocumentation is advertised in the server metadata.
	ServiceDocumentation string `mapstructure:"service_documentation"`
	// PurgeInterval is how often each replica deletes expired rows (the
	// purge is safe on several replicas at once); 0 turns it off, for
	// deployments that run `authd purge` from a scheduler instead.
	PurgeInterval time.Duration `mapstructure:"purge_interval"`
	// DatabaseListenURL is where each replica LISTENs for the changes
	// other replicas make (key rotations, client and user changes); empty
	// means DatabaseURL. It must reach PostgreSQL directly or through a
	// PgBouncer in session mode: transaction pooling does not keep a
	// session's LISTEN.
	DatabaseListenURL string `mapstructure:"database_listen_url"`
	// DatabaseTimeout bounds the database work of one request; past it the
	// client gets 503 temporarily_unavailable with Retry-After and the
	// running statement is cancelled. Keep it well below
	// http.write_timeout, or the answer could not be written any more.
	DatabaseTimeout time.Duration `mapstructure:"database_timeout"`
	// DatabaseMaxInFlight bounds the database operations in flight
	// (running or waiting for a connection) per replica; beyond it a
	// request gets 503 at once instead of queueing behind a sick database.
	// 0: no limit.
	DatabaseMaxInFlight int `mapstructure:"database_max_in_flight"`

	Log     LogConfig     `mapstructure:"log"`
	TLS     TLSConfig     `mapstructure:"tls"`
	HTTP    HTTPConfig    `mapstructure:"http"`
	Metrics MetricsConfig `mapstructure:"metrics"`
	// RateLimits bound requests per client address on the public
	// endpoints (registration has its own under registration.rate_limit).
	RateLimits RateLimitsConfig `mapstructure:"rate_limits"`
	Keys       KeysConfig       `mapstructure:"keys"`
	Tokens     TokensConfig     `mapstructure:"tokens"`
	Session    SessionConfig    `mapstructure:"session"`

	Scopes []ScopeConfig `mapstructure:"scopes"`
	// UnknownScopes is what happens to a requested scope not declared in
	// Scopes: "ignore" (the default) drops it and the token response says
	// what was granted (RFC 6749 §3.3); "reject" answers invalid_scope.
	// offline_access and openid are never unknown (oauth.ProtocolScope).
	UnknownScopes    string           `mapstructure:"unknown_scopes"`
	DefaultScopes    []string         `mapstructure:"default_scopes"`
	Resources        []ResourceConfig `mapstructure:"resources"`
	AllowAnyResource bool             `mapstructure:"allow_any_resource"`
	// DefaultResource is the audience of requests that name no resource
	// (clients before RFC 8707); empty: the only configured resource, if
	// exactly one, else such requests are refused.
	DefaultResource string `mapstructure:"default_resource"`

	Registration  register.Policy         `mapstructure:"registration"`
	Clients       []register.StaticClient `mapstructure:"clients"`
	Upstreams     []upstream.Config       `mapstructure:"upstreams"`
	Allowlist     allowlist.Policy        `mapstructure:"allowlist"`
	Introspection IntrospectionConfig     `mapstructure:"introspection"`
	// ClientMetadataDocuments configures URL client_ids (client ID
	// metadata documents): fetching, caching, and which hosts to accept.
	ClientMetadataDocuments cimd.Config `mapstructure:"client_metadata_documents"`
	// Pages brands the sign-in, consent and connected-apps pages.
	Pages PagesConfig `mapstructure:"pages"`
}

// PagesConfig is the operator's branding of the pages (authorize.Branding).
type PagesConfig struct {
	ProductName string `mapstructure:"product_name"` // default "authd"
	LogoURL     string `mapstructure:"logo_url"`     // https; the CSP admits its origin
	AccentColor string `mapstructure:"accent_color"` // CSS hex colour
	// TemplateDir holds templates replacing the embedded ones (a theme);
	// the consent page's facts stay authd's (authorize.NewPages).
	TemplateDir string `mapstructure:"template_dir"`
}

type LogConfig struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // json or text
}

type TLSConfig struct {
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

type HTTPConfig struct {
	ReadHeaderTimeout time.Duration `mapstructure:"read_header_timeout"`
	ReadTimeout       time.Duration `mapstructure:"read_timeout"`
	WriteTimeout      time.Duration `mapstructure:"write_timeout"`
	IdleTimeout       time.Duration `mapstructure:"idle_timeout"`
	ShutdownTimeout   time.Duration `mapstructure:"shutdown_timeout"`
	MaxBodyBytes      int64         `mapstructure:"max_body_bytes"`
	MaxHeaderBytes    int           `mapstructure:"max_header_bytes"`
}

type MetricsConfig struct {
	// Listen is the address of the Prometheus /metrics listener, kept
	// apart from the public one; empty disables it.
	Listen string `mapstructure:"listen"`
	// Pprof adds Go's profiling endpoints (/debug/pprof/) to the metrics
	// listener, for taking CPU profiles under load. Off by default: a
	// profile shows what the process is doing, so only enable it where the
	// metrics listener is private.
	Pprof bool `mapstructure:"pprof"`
}

// RateLimitsConfig holds per-endpoint limits; a rate of 0 disables one.
type RateLimitsConfig struct {
	Authorize ratelimit.Config `mapstructure:"authorize"`
	Token     ratelimit.Config `mapstructure:"token"`
	Revoke    ratelimit.Config `mapstructure:"revoke"`
	// ClientAuthFailures bounds failed client authentications (/token,
	// /revoke, /introspect) and registration access token checks (RFC
	// 7592) per network and per client id, checked before any secret is
	// compared. Only failures count.
	ClientAuthFailures clientauth.ThrottleConfig `mapstructure:"client_auth_failures"`
}

type KeysConfig struct {
	Algorithm string `mapstructure:"algorithm"` // ES256 or RS256
	// EncryptionSecret encrypts signing keys and kept upstream tokens
	// (upstreams[].store_tokens) at rest (AES-256-GCM).
	EncryptionSecret string `mapstructure:"encryption_secret"`
	// PreviousEncryptionSecrets are secrets EncryptionSecret replaced:
	// what they encrypted still decrypts, nothing new is encrypted with
	// them. Keep them until `authd keys reencrypt` has run.
	PreviousEncryptionSecrets []string `mapstructure:"previous_encryption_secrets"`
	// PEMFiles, when set, are the signing keys (not stored in the database).
	PEMFiles []string `mapstructure:"pem_files"`
	// Prepublish is how long a new key is published before it signs.
	Prepublish time.Duration `mapstructure:"prepublish"`
	// RefreshInterval is how often each replica reloads keys from the
	// database (so a rotation anywhere is seen everywhere within it).
	RefreshInterval time.Duration `mapstructure:"refresh_interval"`
}

type TokensConfig struct {
	AccessTokenLifetime  time.Duration `mapstructure:"access_token_lifetime"`
	RefreshTokenLifetime time.Duration `mapstructure:"refresh_token_lifetime"` // idle
	GrantLifetime        time.Duration `mapstructure:"grant_lifetime"`         // absolute
	CodeLifetime         time.Duration `mapstructure:"code_lifetime"`
	// RefreshRetryWindow is how long after a refresh token's rotation its
	// client may present it again and still get tokens, as long as no
	// newer token of the chain was used (a lost response, two processes
	// refreshing at once); 0 turns it off (any second use revokes).
	RefreshRetryWindow time.Duration `mapstructure:"refresh_retry_window"`
	// IdentityClaims adds preferred_username and email to access tokens.
	IdentityClaims bool `mapstructure:"identity_claims"`
	// Format is the default access token format: jwt or opaque.
	Format string `mapstructure:"format"`
}

type SessionConfig struct {
	Lifetime        time.Duration `mapstructure:"lifetime"`         // browser SSO session
	RequestLifetime time.Duration `mapstructure:"request_lifetime"` // pending /authorize request
}

// ScopeConfig declares a scope the server knows, with the words shown on
// the consent page.
type ScopeConfig struct {
	Name        string `mapstructure:"name"`
	Description string `mapstructure:"description"`
}

// ResourceConfig declares a protected resource (an MCP server) that tokens
// may be bound to (RFC 8707).
type ResourceConfig struct {
	URI            string   `mapstructure:"uri"`
	Name           string   `mapstructure:"name"`
	Scopes         []string `mapstructure:"scopes"`          // allowed; empty = all server scopes
	RequiredScopes []string `mapstructure:"required_scopes"` // enforced by /verify
	TokenFormat    string   `mapstructure:"token_format"`    // jwt (default) or opaque
	Documentation  string   `mapstructure:"documentation"`
	// Claims are the identity claims about the user that tokens for this
	// resource, introspection answers about them and /verify's headers
	// carry: email, name, login, groups, upstream (idclaims.Names). None
	// by default.
	Claims []string `mapstructure:"claims"`
	// RouteScopes are scopes /verify requires of requests with a given
	// method and/or path, on top of RequiredScopes (step-up for
	// unmodified servers).
	RouteScopes []RouteScopeConfig `mapstructure:"route_scopes"`
	// UpstreamScopes are, per upstream id, the scopes this resource's
	// server needs at the upstream when it calls it as the user (e.g.
	// github: [repo, read:org]). Sign-in for the resource asks for them;
	// a later one for a resource needing more asks again. Needs
	// store_tokens on that upstream.
	UpstreamScopes map[string][]string `mapstructure:"upstream_scopes"`
	// ForwardUpstreamToken names an upstream (upstreams[].id, with
	// store_tokens) whose access token for the user /verify adds in the
	// X-Forwarded-Access-Token header, for an unmodified server behind
	// ForwardAuth that calls that upstream as the user. Empty (the
	// default): never. See the README's warning before setting it.
	ForwardUpstreamToken string `mapstructure:"forward_upstream_token"`
}

// RouteScopeConfig: requests to the resource matching Method (empty: any)
// and Path (exact, or a prefix when it ends in "*"; empty: any) need Scopes.
type RouteScopeConfig struct {
	Method string   `mapstructure:"method"`
	Path   string   `mapstructure:"path"`
	Scopes []string `mapstructure:"scopes"`
}

type IntrospectionConfig struct {
	// BearerTokens are static tokens that may call /introspect (simple
	// deployments); prefer resource-server clients with secrets.
	BearerTokens []string `mapstructure:"bearer_tokens"`
	// RateLimit bounds /introspect per caller (client id or static token).
	RateLimit ratelimit.Config `mapstructure:"rate_limit"`
	// ForwardAuthSecret is what the reverse proxy adds, as the
	// X-Authd-Forward-Secret header, to its /verify auth subrequest; only
	// such a request gets resources[].forward_upstream_token's upstream
	// token (clients reach /verify through the same trusted proxy).
	// Required with forward_upstream_token.
	ForwardAuthSecret string `mapstructure:"forward_auth_secret"`
}

// Defaults returns the value of every key before file, env and flags.
func Defaults() Config {
	return Config{
		Listen:        ":8080",
		PurgeInterval: 5 * time.Minute,
		Log:           LogConfig{Level: "info", Format: "json"},
		HTTP: HTTPConfig{
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			ShutdownTimeout:   20 * time.Second,
			MaxBodyBytes:      64 << 10,
			MaxHeaderBytes:    16 << 10,
		},
		// A healthy query takes milliseconds: 5 s means the database is
		// sick, and leaves 25 s of http.write_timeout to answer so.
		DatabaseTimeout: 5 * time.Second,
		// Five requests per pooled connection (20 by default): in a healthy
		// database they wait milliseconds; beyond that the queue only grows.
		DatabaseMaxInFlight: 100,

		Keys: KeysConfig{Algorithm: "ES256", Prepublish: time.Hour, RefreshInterval: 30 * time.Second},
		// Generous per-address limits: they stop floods, not clients. A
		// NAT'ed office or a busy resource server shares one address.
		RateLimits: RateLimitsConfig{
			Authorize: ratelimit.Config{PerKeyPerMinute: 120, PerKeyBurst: 60},
			Token:     ratelimit.Config{PerKeyPerMinute: 3000, PerKeyBurst: 1000},
			Revoke:    ratelimit.Config{PerKeyPerMinute: 600, PerKeyBurst: 200},
			// Small: a legitimate client fails rarely.
			ClientAuthFailures: clientauth.DefaultThrottle,
		},
		Tokens: TokensConfig{
			AccessTokenLifetime:  time.Hour,
			RefreshTokenLifetime: 30 * 24 * time.Hour,
			GrantLifetime:        90 * 24 * time.Hour,
			CodeLifetime:         60 * time.Second,
			// Long enough for a client to time out on a lost response
			// (30 s is common) and retry after a back-off; short enough that
			// a stolen spent token is only worth anything right after the
			// client used it, and even then is found out at the next refresh.
			RefreshRetryWindow: 60 * time.Second,
			Format:             "jwt",
		},
		Session: SessionConfig{Lifetime: 24 * time.Hour, RequestLifetime: 10 * time.Minute},
		// A resource server introspects on every request it serves: the
		// per-caller limit only stops a runaway caller.
		Introspection:           IntrospectionConfig{RateLimit: ratelimit.Config{PerKeyPerMinute: 600000, PerKeyBurst: 20000}},
		Registration:            register.DefaultPolicy(),
		UnknownScopes:           UnknownScopesIgnore,
		ClientMetadataDocuments: cimd.DefaultConfig(),
	}
}

// Values of unknown_scopes.
const (
	UnknownScopesIgnore = "ignore"
	UnknownScopesReject = "reject"
)

// ApplyDev fills in what development mode provides when not set explicitly.
func (c *Config) ApplyDev() {
	if !c.Dev {
		return
	}
	if c.Issuer == "" {
		port := "8080"
		if _, p, err := net.SplitHostPort(c.Listen); err == nil && p != "" && p != "0" {
			port = p
		}
		c.Issuer = "http://localhost:" + port
	}
	if c.Log.Format == "json" {
		c.Log.Format = "text"
	}
	if len(c.Upstreams) == 0 {
		c.Upstreams = []upstream.Config{{ID: "dev", Type: "dev", Name: "Development login"}}
	}
	if c.Allowlist.Empty() {
		c.Allowlist.AllowAllUsers = true
	}
	if len(c.Resources) == 0 {
		// Any MCP server on the developer's machine may be named as resource.
		c.AllowAnyResource = true
		// A client that names no resource (one pointed at authd itself, as
		// the README suggests) gets tokens for the issuer's URL rather than
		// invalid_target.
		if c.DefaultResource == "" {
			if canon, err := oauth.CanonicalResource(c.Issuer); err == nil {
				c.DefaultResource = canon
			}
		}
	}
	// Clients under development publish their metadata documents on the
	// developer's machine (the draft allows this exception for a server
	// that itself runs on loopback). Outside --dev, loopback stays refused
	// unless client_metadata_documents.allow_loopback is set explicitly.
	c.ClientMetadataDocuments.AllowLoopback = true
}

// Validate reports every problem in c, each naming its setting.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if err := validateIssuer(c.Issuer); err != nil {
		add("issuer: %v", err)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen: %q is not host:port (e.g. \":8080\" or \"127.0.0.1:8080\")", c.Listen)
	}
	if c.PurgeInterval < 0 {
		add("purge_interval: must be 0 (off) or positive, got %s", c.PurgeInterval)
	}
	if c.DatabaseURL == "" && !c.Dev {
		add("database_url: required (e.g. postgres://authd:pw@db:5432/authd); set AUTHD_DATABASE_URL, or use --dev for an in-memory store")
	}
	if c.DatabaseURL != "" {
		if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			add("database_url: must be a postgres:// or postgresql:// URL")
		} else if m := u.Query().Get(queryExecModeParam); m != "" && !slices.Contains(QueryExecModes, m) {
			add("database_url: %s=%s is not supported; use %s", queryExecModeParam, m, strings.Join(QueryExecModes, " or "))
		}
	}
	if c.DatabaseTimeout <= 0 || (c.HTTP.WriteTimeout > 0 && c.DatabaseTimeout >= c.HTTP.WriteTimeout) {
		add("database_timeout: must be positive and below http.write_timeout (%s), e.g. 5s", c.HTTP.WriteTimeout)
	}
	if c.DatabaseMaxInFlight < 0 {
		add("database_max_in_flight: must be 0 (no limit) or positive, got %d", c.DatabaseMaxInFlight)
	}
	if c.DatabaseListenURL != "" {
		if u, err := url.Parse(c.DatabaseListenURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			add("database_listen_url: must be a postgres:// or postgresql:// URL (a direct connection, not through transaction pooling)")
		}
	}
	if m := c.DatabaseQueryExecMode; m != "" && !slices.Contains(QueryExecModes, m) {
		add("database_query_exec_mode: must be %s (behind PgBouncer in transaction pooling mode), got %q", strings.Join(QueryExecModes, " or "), m)
	}
	if _, err := c.TrustedProxyPrefixes(); err != nil {
		add("trusted_proxies: %v", err)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		add("log.format: %q is not json or text", c.Log.Format)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls: set both tls.cert_file and tls.key_file, or neither")
	}
	for name, d := range map[string]time.Duration{
		"http.read_header_timeout": c.HTTP.ReadHeaderTimeout, "http.read_timeout": c.HTTP.ReadTimeout,
		"http.write_timeout": c.HTTP.WriteTimeout, "http.idle_timeout": c.HTTP.IdleTimeout,
		"http.shutdown_timeout":        c.HTTP.ShutdownTimeout,
		"tokens.access_token_lifetime": c.Tokens.AccessTokenLifetime, "tokens.refresh_token_lifetime": c.Tokens.RefreshTokenLifetime,
		"tokens.grant_lifetime": c.Tokens.GrantLifetime, "tokens.code_lifetime": c.Tokens.CodeLifetime,
		"session.lifetime": c.Session.Lifetime, "session.request_lifetime": c.Session.RequestLifetime,
		"keys.prepublish": c.Keys.Prepublish, "keys.refresh_interval": c.Keys.RefreshInterval,
	} {
		if d <= 0 {
			add("%s: must be a positive duration such as 30s, 10m or 24h", name)
		}
	}
	if c.Tokens.RefreshRetryWindow < 0 || c.Tokens.RefreshRetryWindow > 10*time.Minute {
		add("tokens.refresh_retry_window: must be between 0 (off) and 10m; 60s is recommended")
	}
	if c.Tokens.CodeLifetime > 10*time.Minute {
		add("tokens.code_lifetime: at most 10m (RFC 6749 section 4.1.2); 60s is recommended")
	}
	if c.HTTP.MaxBodyBytes < 1024 {
		add("http.max_body_bytes: at least 1024")
	}
	if c.HTTP.MaxHeaderBytes < 4096 {
		add("http.max_header_bytes: at least 4096")
	}
	if c.Tokens.Format != "jwt" && c.Tokens.Format != "opaque" {
		add("tokens.format: %q is not jwt or opaque", c.Tokens.Format)
	}
	if c.Keys.Algorithm != "ES256" && c.Keys.Algorithm != "RS256" {
		add("keys.algorithm: %q is not ES256 or RS256", c.Keys.Algorithm)
	}
	if !c.Dev && len(c.Keys.PEMFiles) == 0 && len(c.Keys.EncryptionSecret) < 32 {
		add("keys.encryption_secret: required, at least 32 characters (e.g. `openssl rand -base64 48`); set AUTHD_KEYS_ENCRYPTION_SECRET")
	}
	for i, p := range c.Keys.PreviousEncryptionSecrets {
		switch {
		case strings.TrimSpace(p) != p:
			// Rejected rather than trimmed: a secret is used byte for byte.
			add("keys.previous_encryption_secrets[%d]: begins or ends with whitespace (a space after a comma in AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS?); separate secrets with a bare comma, and give a secret that contains a comma in the file, as a YAML list", i)
		case len(p) < 32:
			add("keys.previous_encryption_secrets[%d]: at least 32 characters, as keys.encryption_secret was (is a comma in AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS splitting one secret?)", i)
		case c.Keys.EncryptionSecret == "":
			add("keys.previous_encryption_secrets[%d]: needs keys.encryption_secret, the current secret, which encrypts from now on", i)
		case p == c.Keys.EncryptionSecret:
			add("keys.previous_encryption_secrets[%d]: is keys.encryption_secret itself; list only the secrets it replaced", i)
		case slices.Contains(c.Keys.PreviousEncryptionSecrets[:i], p):
			add("keys.previous_encryption_secrets[%d]: listed twice", i)
		}
	}

	scopeNames := map[string]bool{}
	for i, s := range c.Scopes {
		if toks, err := oauth.ParseScope(s.Name); err != nil || len(toks) != 1 {
			add("scopes[%d].name: %q is not a single valid scope token", i, s.Name)
		}
		if scopeNames[s.Name] {
			add("scopes[%d].name: %q declared twice", i, s.Name)
		}
		if oauth.ProtocolScope(s.Name) {
			add("scopes[%d].name: %q is understood by authd itself and never granted (see Connecting MCP clients in the README); remove it", i, s.Name)
		}
		scopeNames[s.Name] = true
	}
	if c.UnknownScopes != UnknownScopesIgnore && c.UnknownScopes != UnknownScopesReject {
		add("unknown_scopes: %q is not ignore or reject", c.UnknownScopes)
	}
	for _, s := range c.DefaultScopes {
		if len(c.Scopes) > 0 && !scopeNames[s] {
			add("default_scopes: %q is not declared in scopes", s)
		}
		if oauth.ProtocolScope(s) {
			add("default_scopes: %q is never granted (authd understands it itself); remove it", s)
		}
	}
	seen := map[string]bool{}
	for i, r := range c.Resources {
		canon, err := oauth.CanonicalResource(r.URI)
		if err != nil {
			add("resources[%d].uri: %s", i, err.Description)
			continue
		}
		if canon != r.URI {
			add("resources[%d].uri: write it in canonical form %q", i, canon)
		}
		if seen[canon] {
			add("resources[%d].uri: %q declared twice", i, r.URI)
		}
		seen[canon] = true
		if r.TokenFormat != "" && r.TokenFormat != "jwt" && r.TokenFormat != "opaque" {
			add("resources[%d].token_format: %q is not jwt or opaque", i, r.TokenFormat)
		}
		for _, s := range append(slices.Clone(r.Scopes), r.RequiredScopes...) {
			if len(c.Scopes) > 0 && !scopeNames[s] {
				add("resources[%d]: scope %q is not declared in scopes", i, s)
			}
			if oauth.ProtocolScope(s) {
				add("resources[%d]: scope %q is no resource scope (authd understands it itself and never grants it); remove it", i, s)
			}
		}
		if _, err := idclaims.Parse(r.Claims); err != nil {
			add("resources[%d].claims: %v", i, err)
		}
		for _, id := range slices.Sorted(maps.Keys(r.UpstreamScopes)) {
			j := slices.IndexFunc(c.Upstreams, func(u upstream.Config) bool { return u.ID == id })
			switch {
			case j < 0:
				add("resources[%d].upstream_scopes.%s: no upstream has id %q", i, id, id)
			case !c.Upstreams[j].StoreTokens:
				add("resources[%d].upstream_scopes.%s: upstream %q does not keep tokens; set upstreams[%d].store_tokens: true (without it nothing could use these scopes)", i, id, id, j)
			}
			for k, s := range r.UpstreamScopes[id] {
				if s == "" || strings.ContainsAny(s, " \t\n\"\\,") {
					add("resources[%d].upstream_scopes.%s[%d]: %q is not a valid scope token", i, id, k, s)
				}
			}
		}
		for j, rs := range r.RouteScopes {
			if rs.Method != "" && !isMethod(rs.Method) {
				add("resources[%d].route_scopes[%d].method: %q is not an HTTP method such as POST", i, j, rs.Method)
			}
			if rs.Path != "" && !strings.HasPrefix(rs.Path, "/") {
				add("resources[%d].route_scopes[%d].path: %q must start with \"/\" (e.g. /mcp/admin or /mcp/admin/*)", i, j, rs.Path)
			}
			if len(rs.Scopes) == 0 {
				add("resources[%d].route_scopes[%d].scopes: list the scopes these requests need", i, j)
			}
			for _, s := range rs.Scopes {
				if toks, err := oauth.ParseScope(s); err != nil || len(toks) != 1 {
					add("resources[%d].route_scopes[%d].scopes: %q is not a single valid scope token", i, j, s)
				} else if len(c.Scopes) > 0 && !scopeNames[s] {
					add("resources[%d].route_scopes[%d].scopes: scope %q is not declared in scopes", i, j, s)
				} else if oauth.ProtocolScope(s) {
					add("resources[%d].route_scopes[%d].scopes: scope %q is no resource scope (authd never grants it); remove it", i, j, s)
				}
			}
		}
	}
	if c.DefaultResource != "" {
		if canon, err := oauth.CanonicalResource(c.DefaultResource); err != nil || canon != c.DefaultResource {
			add("default_resource: %q must be a resource URI in canonical form", c.DefaultResource)
		} else if !seen[canon] && !c.AllowAnyResource {
			add("default_resource: %q is not one of the configured resources", c.DefaultResource)
		}
	}

	for name, rl := range map[string]ratelimit.Config{
		"rate_limits.authorize": c.RateLimits.Authorize, "rate_limits.token": c.RateLimits.Token,
		"rate_limits.revoke": c.RateLimits.Revoke, "introspection.rate_limit": c.Introspection.RateLimit,
	} {
		for _, err := range rl.Validate() {
			add("%s.%v", name, err)
		}
	}
	for _, err := range c.RateLimits.ClientAuthFailures.Validate() {
		add("rate_limits.client_auth_failures.%v", err)
	}
	if c.Metrics.Pprof && c.Metrics.Listen == "" {
		add("metrics.pprof: needs metrics.listen (profiles are served on the private metrics listener only)")
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			add("metrics.listen: %q is not host:port (e.g. \"127.0.0.1:9090\")", c.Metrics.Listen)
		} else if c.Metrics.Listen == c.Listen {
			add("metrics.listen: must differ from listen, so /metrics stays private")
		}
	}
	for _, err := range c.Registration.Validate() {
		add("registration.%v", err)
	}
	for i, cl := range c.Clients {
		for _, err := range cl.Validate() {
			add("clients[%d].%v", i, err)
		}
		for _, err := range c.validateTokenExchange(cl.TokenExchange) {
			add("clients[%d].token_exchange.%v", i, err)
		}
	}
	for _, err := range c.validateForwardUpstreamTokens() {
		add("%v", err)
	}
	if len(c.Upstreams) == 0 {
		add("upstreams: configure at least one identity provider (github, google or oidc), or use --dev")
	}
	ids := map[string]bool{}
	for i, u := range c.Upstreams {
		if ids[u.ID] {
			add("upstreams[%d].id: %q used twice", i, u.ID)
		}
		ids[u.ID] = true
		if u.Type == "dev" && !c.Dev {
			add("upstreams[%d].type: the dev login is only available with --dev", i)
		}
		for _, err := range u.Validate() {
			add("%v", err)
		}
		// Kept upstream tokens are encrypted under the same secret as
		// signing keys; PEM files do not provide one.
		if u.StoreTokens && !c.Dev && len(c.Keys.PEMFiles) > 0 && len(c.Keys.EncryptionSecret) < 32 {
			add("upstreams[%d].store_tokens: needs keys.encryption_secret (at least 32 characters) to encrypt the kept tokens, also when keys.pem_files provide the signing keys", i)
		}
	}
	if c.Allowlist.NeedsGitHubTeams() {
		for i, u := range c.Upstreams {
			if u.Type == "github" && !u.GitHub.LoadTeams {
				add("upstreams[%d].github.load_teams: must be true because allowlist.github_orgs or github_teams is set (otherwise those rules can never match)", i)
			}
		}
	}
	for _, err := range c.Allowlist.Validate() {
		add("allowlist.%v", err)
	}
	if !c.Dev && c.Allowlist.Empty() && !c.Allowlist.AllowAllUsers {
		add("allowlist: no rule allows anyone; list users, orgs, emails or domains, or set allowlist.allow_all_users: true to let every upstream user in")
	}
	for _, err := range c.ClientMetadataDocuments.Validate() {
		add("client_metadata_documents.%v", err)
	}
	if c.Pages.ProductName != "" {
		if msg := authorize.CheckProductName(c.Pages.ProductName); msg != "" {
			add("pages.product_name: %s", msg)
		}
	}
	if c.Pages.LogoURL != "" {
		if _, err := authorize.LogoOrigin(c.Pages.LogoURL); err != nil {
			add("pages.logo_url: %v", err)
		}
	}
	if msg := authorize.CheckAccentColor(c.Pages.AccentColor); msg != "" {
		add("pages.accent_color: %s", msg)
	}
	if d := c.Pages.TemplateDir; d != "" {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			add("pages.template_dir: %q is not a readable directory; name a directory of templates such as /etc/authd/theme (see Branding the pages in the README)", d)
		}
	}
	for i, t := range c.Introspection.BearerTokens {
		if len(t) < 32 {
			add("introspection.bearer_tokens[%d]: at least 32 characters", i)
		}
	}
	return errors.Join(errs...)
}

// QueryExecModes are the pgx query exec modes authd supports. pgx's exec,
// simple_protocol and describe_exec are left out: the first two cannot
// encode authd's jsonb arguments, and describe_exec prepares in one round
// trip and executes in the next, which PgBouncer may send to different
// server connections (store tests TestPostgresConformanceThroughPgBouncer).
var QueryExecModes = []string{"cache_statement", "cache_describe"}

const queryExecModeParam = "default_query_exec_mode"

// DatabaseDSN is database_url with database_query_exec_mode applied as
// pgx's default_query_exec_mode parameter, the URL every store connection
// (pool, migrations, schema check) is opened with. Without the setting the
// URL is used as written.
func (c *Config) DatabaseDSN() string {
	if c.DatabaseQueryExecMode == "" || c.DatabaseURL == "" {
		return c.DatabaseURL
	}
	u, err := url.Parse(c.DatabaseURL)
	if err != nil {
		return c.DatabaseURL // Validate reports it
	}
	q := u.Query()
	q.Set(queryExecModeParam, c.DatabaseQueryExecMode)
	u.RawQuery = q.Encode()
	return u.String()
}

// validateIssuer applies RFC 8414 §2 and OAuth 2.1 §1.5: an https URL
// without query or fragment, optionally with a path (https://host/tenant:
// every endpoint is then served under /tenant); plain http only for a
// loopback host.
func validateIssuer(s string) error {
	if s == "" {
		return errors.New("required: the public URL of this server, e.g. https://auth.example.com (AUTHD_ISSUER)")
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("%q must be an absolute URL such as https://auth.example.com", s)
	}
	switch {
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(s, "#"):
		return fmt.Errorf("%q must not have a query or fragment", s)
	case u.User != nil:
		return fmt.Errorf("%q must not contain user information", s)
	case strings.HasSuffix(s, "/"):
		return fmt.Errorf("%q must not end with a slash (write %q)", s, strings.TrimRight(s, "/"))
	case !plainPath(u):
		// A path (https://host/tenant) is fine: every endpoint is served
		// under it (RFC 8414 §3.1). It becomes a route prefix, so it must be
		// plain.
		return fmt.Errorf("%q: the path may contain only segments of letters, digits, '-', '.', '_' or '~', such as /tenant", s)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && oauth.IsLoopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%q must use https; plain http is accepted only for localhost, 127.0.0.1 or [::1]", s)
	}
	return fmt.Errorf("%q must be an https URL", s)
}

// plainPath reports whether the path of u is empty or made of non-empty
// segments of RFC 3986 unreserved characters, none of them "." or "..".
func plainPath(u *url.URL) bool {
	if u.Path == "" {
		return true
	}
	if u.RawPath != "" || !strings.HasPrefix(u.Path, "/") {
		return false
	}
	for _, seg := range strings.Split(u.Path[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
				return false
			}
		}
	}
	return true
}

// isMethod reports whether s is an HTTP method token in upper case.
func isMethod(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return s != ""
}

// TrustedProxyPrefixes parses trusted_proxies (CIDRs or single addresses).
func (c *Config) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
