package register

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/ratelimit"
)

// Defaults used by DefaultPolicy, and by the Handler for size limits left 0.
const (
	DefaultMaxRedirectURIs    = 10
	DefaultMaxContacts        = 5
	DefaultMaxBodyBytes       = 16 << 10
	DefaultClientIdleLifetime = 30 * 24 * time.Hour
)

// Policy is the operator's registration policy (config key "registration").
type Policy struct {
	// Enabled turns on RFC 7591 registration and RFC 7592 management. When
	// off, Routes mounts nothing and discovery must not advertise
	// registration_endpoint.
	Enabled bool `mapstructure:"enabled"`
	// InitialAccessToken, when set, must be presented as a Bearer token to
	// register (RFC 7591 §3). Empty means open registration, which is what
	// MCP clients expect.
	InitialAccessToken string `mapstructure:"initial_access_token"`
	// MaxRedirectURIs and MaxContacts bound the lists a client may register
	// (0: the defaults).
	MaxRedirectURIs int `mapstructure:"max_redirect_uris"`
	MaxContacts     int `mapstructure:"max_contacts"`
	// MaxBodyBytes bounds a registration or update request; larger bodies
	// get 413 (0: DefaultMaxBodyBytes).
	MaxBodyBytes int64 `mapstructure:"max_body_bytes"`
	// ClientIdleLifetime is how long a dynamic client lives without being
	// used; every use (token requests, re-registration) slides it forward.
	// Expired clients are purged with everything issued to them. 0: never.
	ClientIdleLifetime time.Duration `mapstructure:"client_idle_lifetime"`
	// SecretLifetime is how long a generated client secret is valid
	// (client_secret_expires_at); the client renews it with an RFC 7592
	// PUT. 0: secrets do not expire.
	SecretLifetime time.Duration `mapstructure:"secret_lifetime"`
	// AllowedRedirectURIs restricts the redirect URIs dynamic clients may
	// register, and client ID metadata documents may list (as does
	// MaxRedirectURIs); empty allows any URI that passes the redirect URI
	// rules.
	// Each pattern is one of:
	//   - "loopback": any http redirect URI on 127.0.0.1, [::1] or localhost;
	//   - a prefix ending in "/*" or ":*", e.g. "https://claude.ai/api/mcp/*"
	//     or "cursor:*": any URI starting with the text before the "*";
	//     the "/" or ":" keeps "https://example.com/*" from matching
	//     "https://example.com.evil.net/";
	//   - anything else: that exact URI, e.g.
	//     "https://chatgpt.com/connector_platform_oauth_redirect".
	// Comparison is byte for byte, as at /authorize: no case folding.
	AllowedRedirectURIs []string `mapstructure:"allowed_redirect_uris"`
	// AllowClientCredentials lets dynamically registered confidential
	// clients use the client_credentials grant. Off by default: with open
	// registration, anyone could otherwise register a machine client and
	// obtain access tokens for the configured resources without ever
	// signing in (no upstream login, no allowlist). Machine clients are
	// normally configured by the operator (clients: in the config, or
	// authd clients create), with the resources and scopes they may use.
	AllowClientCredentials bool `mapstructure:"allow_client_credentials"`
	// RotateRegistrationToken issues a new registration access token on
	// every RFC 7592 PUT (the old one stops working).
	RotateRegistrationToken bool `mapstructure:"rotate_registration_token"`
	// RateLimit bounds registration and management requests per client
	// network and globally; build the Handler's Limiter from it.
	RateLimit ratelimit.Config `mapstructure:"rate_limit"`
}

// DefaultPolicy is open registration with generous limits: MCP clients
// register before their first login, claude.ai again on every connect and
// from shared egress addresses, so the per-IP limit is high. The global
// budget times the idle lifetime is what bounds the clients table (here
// 120/min for 30 days: at most about 5 million rows under a sustained flood
// from many addresses, far fewer in practice as identical public
// registrations share a row). The idle lifetime matches the default refresh
// token idle lifetime, so a client expires when its last token could have.
func DefaultPolicy() Policy {
	return Policy{
		Enabled:            true,
		MaxRedirectURIs:    DefaultMaxRedirectURIs,
		MaxContacts:        DefaultMaxContacts,
		MaxBodyBytes:       DefaultMaxBodyBytes,
		ClientIdleLifetime: DefaultClientIdleLifetime,
		RateLimit: ratelimit.Config{
			PerKeyPerMinute: 60,
			PerKeyBurst:     30,
			GlobalPerMinute: 120,
			GlobalBurst:     60,
		},
	}
}

// Validate lists every problem with p.
func (p Policy) Validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("registration: "+format, a...)) }
	if p.MaxRedirectURIs < 0 || p.MaxRedirectURIs > 100 {
		add("max_redirect_uris must be between 1 and 100 (0: default %d), got %d", DefaultMaxRedirectURIs, p.MaxRedirectURIs)
	}
	if p.MaxContacts < 0 || p.MaxContacts > 100 {
		add("max_contacts must be between 1 and 100 (0: default %d), got %d", DefaultMaxContacts, p.MaxContacts)
	}
	if p.MaxBodyBytes != 0 && (p.MaxBodyBytes < 1<<10 || p.MaxBodyBytes > 1<<20) {
		add("max_body_bytes must be between 1024 and 1048576 (0: default %d), got %d", DefaultMaxBodyBytes, p.MaxBodyBytes)
	}
	if p.ClientIdleLifetime < 0 {
		add("client_idle_lifetime must not be negative")
	} else if p.ClientIdleLifetime > 0 && p.ClientIdleLifetime < time.Hour {
		add("client_idle_lifetime must be 0 (never) or at least 1h, got %s", p.ClientIdleLifetime)
	}
	if p.SecretLifetime < 0 {
		add("secret_lifetime must not be negative")
	} else if p.SecretLifetime > 0 && p.SecretLifetime < time.Hour {
		add("secret_lifetime must be 0 (never) or at least 1h, got %s", p.SecretLifetime)
	}
	if t := p.InitialAccessToken; t != "" && (len(t) < 16 || strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r > '~' })) {
		add("initial_access_token must be at least 16 printable ASCII characters without spaces")
	}
	for _, pat := range p.AllowedRedirectURIs {
		if err := validatePattern(pat); err != nil {
			add("allowed_redirect_uris: %v", err)
		}
	}
	for _, err := range p.RateLimit.Validate() {
		add("rate_limit: %v", err)
	}
	return errs
}

func (p Policy) maxRedirectURIs() int { return cmpOr(p.MaxRedirectURIs, DefaultMaxRedirectURIs) }
func (p Policy) maxContacts() int     { return cmpOr(p.MaxContacts, DefaultMaxContacts) }
func (p Policy) maxBodyBytes() int64  { return cmpOr(p.MaxBodyBytes, DefaultMaxBodyBytes) }

func cmpOr[T int | int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

const loopbackPattern = "loopback"

func validatePattern(p string) error {
	switch {
	case p == loopbackPattern:
		return nil
	case strings.HasSuffix(p, "*"):
		prefix := p[:len(p)-1]
		if strings.Contains(prefix, "*") {
			return fmt.Errorf("%q: '*' is only allowed at the end", p)
		}
		if !strings.HasSuffix(prefix, "/") && !strings.HasSuffix(prefix, ":") {
			return fmt.Errorf("%q: '*' must follow '/' or ':' (e.g. https://host/*)", p)
		}
		if i := strings.Index(prefix, ":"); i < 1 {
			return fmt.Errorf("%q: a prefix pattern must start with a URI scheme", p)
		}
		return nil
	default:
		if err := oauth.ValidateRedirectURI(p, ""); err != nil {
			return errors.New(err.Description)
		}
		return nil
	}
}

// CheckRedirectURIs applies the policy to the redirect URIs of a client of
// application type appType: at most max_redirect_uris, each acceptable to
// oauth.ValidateRedirectURI and to allowed_redirect_uris. Registration
// uses it, and so do client ID metadata documents (cimd.Resolver's
// RedirectURIPolicy), so that neither way in bypasses the allowlist.
func (p Policy) CheckRedirectURIs(uris []string, appType string) *oauth.Error {
	if len(uris) > p.maxRedirectURIs() {
		return oauth.InvalidClientMetadata("too many redirect_uris (at most %d)", p.maxRedirectURIs())
	}
	for _, uri := range uris {
		if err := oauth.ValidateRedirectURI(uri, appType); err != nil {
			return err
		}
		if !p.redirectAllowed(uri) {
			return oauth.InvalidRedirectURI("redirect URI %q is not allowed by this server's registration policy", truncateURI(uri))
		}
	}
	return nil
}

// redirectAllowed applies the operator's allowlist to a redirect URI that
// has already passed oauth.ValidateRedirectURI.
func (p Policy) redirectAllowed(uri string) bool {
	if len(p.AllowedRedirectURIs) == 0 {
		return true
	}
	for _, pat := range p.AllowedRedirectURIs {
		switch {
		case pat == loopbackPattern:
			if isLoopbackHTTP(uri) {
				return true
			}
		case strings.HasSuffix(pat, "*"):
			if strings.HasPrefix(uri, pat[:len(pat)-1]) {
				return true
			}
		case uri == pat:
			return true
		}
	}
	return false
}
