package resource

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultLeeway             = 10 * time.Second
	DefaultMinRefetchInterval = 10 * time.Second
	DefaultTimeout            = 10 * time.Second
)

// ErrInvalidToken is wrapped by every error [Protector.Check] returns for a
// token that is not valid here: malformed, forged, expired, revoked, for
// another resource, from another issuer. [Protector.Middleware] answers it
// with 401 error="invalid_token". Other errors mean the authorization server
// could not be asked (answered with 503).
var ErrInvalidToken = errors.New("invalid access token")

// Config says which authorization server to trust and which resource this
// server is.
type Config struct {
	// Issuer is the authorization server's issuer identifier, e.g.
	// https://auth.example.com. Its RFC 8414 metadata is fetched from the
	// well-known URL derived from it, and must name the same issuer.
	Issuer string
	// Resource is this server's resource identifier (RFC 8707), the URL MCP
	// clients connect to, e.g. https://mcp.example.com/mcp. Tokens must
	// carry it in aud.
	Resource string
	// Scopes are the scopes every request needs. They are the scope of the
	// 401 challenge, what an MCP client asks for when it first signs in.
	Scopes []string
	// ScopesSupported are published in the protected-resource metadata;
	// empty: Scopes.
	ScopesSupported []string
	// ResourceName and ResourceDocumentation are published in the
	// protected-resource metadata (RFC 9728 §2).
	ResourceName          string
	ResourceDocumentation string

	// Introspection, when set, checks every token with RFC 7662
	// introspection instead of verifying JWTs locally: opaque tokens work,
	// and a revocation is seen as soon as the cache allows.
	Introspection *Introspection

	// HTTPClient reaches the authorization server; nil: a client with a
	// DefaultTimeout timeout.
	HTTPClient *http.Client
	// Leeway tolerates clock differences in exp, nbf and iat; zero:
	// DefaultLeeway.
	Leeway time.Duration
	// MinRefetchInterval bounds how often a token signed by an unknown key
	// makes the JWK set be fetched again (a key rotated in at the
	// authorization server is found at once, a flood of forged key ids
	// costs one fetch per interval); zero: DefaultMinRefetchInterval.
	MinRefetchInterval time.Duration
	// Logger receives what an operator must know (the authorization server
	// unreachable, a refused JWK); nil: nothing is logged.
	Logger *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Introspection configures RFC 7662 token introspection.
type Introspection struct {
	// ClientID and ClientSecret authenticate this server to the
	// introspection endpoint (HTTP Basic, RFC 7662 §2.1). In authd: a
	// client configured with introspect: true.
	ClientID     string
	ClientSecret string
	// CacheTTL, when positive, remembers an active answer for that long (and
	// never past the token's exp), so a revocation takes up to CacheTTL to
	// be seen. Zero introspects on every request: a revocation is seen at
	// once. Inactive answers are never cached.
	CacheTTL time.Duration
	// VerifyJWTs verifies JWT access tokens locally before introspecting
	// them ("as well" rather than "instead"): a forged, expired or foreign
	// JWT is refused without a round trip to the authorization server, and
	// only tokens that pass are introspected, for revocation. Opaque tokens
	// are introspected alone.
	VerifyJWTs bool
}

// Protector checks access tokens for one resource and writes the
// challenges that lead MCP clients to sign in. It is safe for concurrent
// use; build one with [New] and share it.
type Protector struct {
	cfg         Config
	metadataURL string
	client      *http.Client
	leeway      time.Duration
	log         *slog.Logger

	as    *serverMetadata
	keys  *keySet
	intro *introspector
}

// New checks cfg and returns a Protector. It does not contact the
// authorization server: its metadata and keys are fetched when the first
// token is checked (and fetching is retried while it fails), so a resource
// server can start while the authorization server is down.
func New(cfg Config) (*Protector, error) {
	if err := checkIssuer(cfg.Issuer); err != nil {
		return nil, err
	}
	md, err := metadataURLFor(cfg.Resource)
	if err != nil {
		return nil, err
	}
	for _, s := range append(slices.Clone(cfg.Scopes), cfg.ScopesSupported...) {
		if !validScope(s) {
			return nil, fmt.Errorf("resource: scope %q is not a valid scope token (RFC 6749 §3.3)", s)
		}
	}
	if i := cfg.Introspection; i != nil && (i.ClientID == "" || i.ClientSecret == "") {
		return nil, errors.New("resource: Introspection needs ClientID and ClientSecret")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MinRefetchInterval <= 0 {
		cfg.MinRefetchInterval = DefaultMinRefetchInterval
	}
	p := &Protector{
		cfg:         cfg,
		metadataURL: md,
		client:      cfg.HTTPClient,
		leeway:      cfg.Leeway,
		log:         cfg.Logger,
	}
	if p.client == nil {
		p.client = &http.Client{Timeout: DefaultTimeout}
	}
	if p.leeway <= 0 {
		p.leeway = DefaultLeeway
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.as = &serverMetadata{issuer: cfg.Issuer, client: p.client, now: cfg.Now}
	p.keys = &keySet{client: p.client, now: cfg.Now, minRefetch: cfg.MinRefetchInterval, log: p.log}
	if cfg.Introspection != nil {
		p.intro = &introspector{cfg: *cfg.Introspection, client: p.client, now: cfg.Now, leeway: p.leeway}
	}
	return p, nil
}

// Resource is the resource identifier tokens must be for.
func (p *Protector) Resource() string { return p.cfg.Resource }

// ResourceMetadataURL is the URL of this resource's RFC 9728 metadata, the
// resource_metadata of every challenge.
func (p *Protector) ResourceMetadataURL() string { return p.metadataURL }

// Check decides whether raw is an access token valid for this resource
// now, and says who it speaks for. It does not check scopes. A token that
// is not valid gives an error wrapping [ErrInvalidToken]; any other error
// means the authorization server could not be asked.
func (p *Protector) Check(ctx context.Context, raw string) (*Identity, error) {
	if raw == "" || len(raw) > maxTokenLen {
		return nil, invalid("empty or oversized token")
	}
	if p.intro != nil {
		if p.cfg.Introspection.VerifyJWTs && isJWT(raw) {
			if _, err := p.verifyJWT(ctx, raw); err != nil {
				return nil, err
			}
		}
		md, err := p.as.get(ctx)
		if err != nil {
			return nil, err
		}
		return p.intro.check(ctx, md, p.cfg.Issuer, p.cfg.Resource, raw)
	}
	if !isJWT(raw) {
		// Not worth fetching keys for.
		return nil, invalid("not a JWT")
	}
	return p.verifyJWT(ctx, raw)
}

// isJWT reports whether s has the shape of a JWS compact serialization:
// three base64url segments, the last possibly empty only in unsigned
// tokens (which verification then refuses).
func isJWT(s string) bool {
	return strings.Count(s, ".") == 2 && !strings.ContainsAny(s, "+/=")
}

// maxTokenLen bounds what is parsed, hashed or sent on.
const maxTokenLen = 16 << 10

func invalid(why string) error { return fmt.Errorf("%w: %s", ErrInvalidToken, why) }

// Middleware lets through requests whose bearer token is valid for this
// resource and carries [Config.Scopes], with the [Identity] in their
// context ([IdentityFrom]). Others get the answers of RFC 6750 §3 and MCP:
//
//   - no bearer token: 401, WWW-Authenticate: Bearer scope="…",
//     resource_metadata="…" (no error code, §3.1);
//   - a malformed, invalid, expired, revoked token, or one for another
//     resource: 401 with error="invalid_token";
//   - a valid token without the scopes: 403 with error="insufficient_scope";
//   - the authorization server unreachable: 503, no challenge.
//
// The token is read from the Authorization header only (RFC 9700 §4.3.2:
// never from the query string).
func (p *Protector) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, presented := bearerToken(r)
		if !presented {
			p.writeChallenge(w, http.StatusUnauthorized, "", "the request carries no bearer token", p.cfg.Scopes)
			return
		}
		id, err := p.Check(r.Context(), raw)
		switch {
		case errors.Is(err, ErrInvalidToken):
			p.log.DebugContext(r.Context(), "access token refused", "reason", err.Error())
			p.writeChallenge(w, http.StatusUnauthorized, "invalid_token", "the access token is invalid, expired, revoked or not meant for this resource", p.cfg.Scopes)
			return
		case err != nil:
			p.log.WarnContext(r.Context(), "cannot check access tokens: the authorization server is unreachable", "error", err.Error())
			writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the authorization server cannot be reached; try again later")
			return
		case !id.HasScopes(p.cfg.Scopes...):
			p.writeChallenge(w, http.StatusForbidden, "insufficient_scope", "the access token lacks scopes this resource requires", p.cfg.Scopes)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// RequireScopes returns middleware for a handler behind
// [Protector.Middleware] that needs more scopes than every request does:
// a token without all of them gets 403 error="insufficient_scope" naming
// the scopes this request needs ([Config.Scopes] and scopes), so the
// client can ask the user for them (MCP step-up authorization).
func (p *Protector) RequireScopes(scopes ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := IdentityFrom(r.Context())
			if !ok {
				// Not behind Middleware: fail closed, as a missing token.
				p.writeChallenge(w, http.StatusUnauthorized, "", "the request carries no bearer token", p.cfg.Scopes)
				return
			}
			if !id.HasScopes(scopes...) {
				p.InsufficientScope(w, scopes...)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// InsufficientScope writes the 403 insufficient_scope answer for a request
// that needs scopes (in addition to [Config.Scopes]), for handlers that
// decide by themselves what a request needs.
func (p *Protector) InsufficientScope(w http.ResponseWriter, scopes ...string) {
	need := slices.Clone(p.cfg.Scopes)
	for _, s := range scopes {
		if !slices.Contains(need, s) {
			need = append(need, s)
		}
	}
	p.writeChallenge(w, http.StatusForbidden, "insufficient_scope", "the access token lacks scopes this request requires", need)
}

// Challenge is the WWW-Authenticate value for an answer with the RFC 6750
// error code (empty for a request without a token) and the scopes the
// request needs.
func (p *Protector) Challenge(code string, scopes []string) string {
	var b strings.Builder
	b.WriteString("Bearer ")
	if code != "" {
		b.WriteString(`error="` + code + `", `)
	}
	if len(scopes) > 0 {
		b.WriteString(`scope="` + strings.Join(scopes, " ") + `", `)
	}
	b.WriteString(`resource_metadata="` + p.metadataURL + `"`)
	return b.String()
}

func (p *Protector) writeChallenge(w http.ResponseWriter, status int, code, desc string, scopes []string) {
	w.Header().Set("WWW-Authenticate", p.Challenge(code, scopes))
	writeError(w, status, code, desc)
}

// writeError writes a JSON error body; without a code (a request that
// carried no token, RFC 6750 §3.1) only the description.
func writeError(w http.ResponseWriter, status int, code, desc string) {
	m := map[string]string{"error_description": desc}
	if code != "" {
		m["error"] = code
	}
	body, _ := json.Marshal(m)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// bearerToken returns the token of an "Authorization: Bearer" header (RFC
// 6750 §2.1). presented is false when the request carries no bearer
// credentials at all; raw is empty when it carries malformed ones (several
// Authorization headers, or a value that is not a token68), which Check
// refuses as invalid.
func bearerToken(r *http.Request) (raw string, presented bool) {
	vs := r.Header.Values("Authorization")
	if len(vs) == 0 {
		return "", false
	}
	if len(vs) > 1 {
		return "", true
	}
	scheme, tok, _ := strings.Cut(vs[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	if !isToken68(tok) {
		return "", true
	}
	return tok, true
}

// isToken68 checks RFC 9110 §11.2's token68 syntax.
func isToken68(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// validScope checks RFC 6749 §3.3's scope-token syntax.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// checkIssuer accepts an absolute https URL without query or fragment
// (RFC 8414 §2), or an http one on a loopback host (development, tests).
func checkIssuer(s string) error {
	u, err := url.Parse(s)
	ok := err == nil && u.Host != "" && u.User == nil && u.RawQuery == "" && !u.ForceQuery && u.Fragment == "" && !strings.HasSuffix(s, "/")
	if ok && u.Scheme == "http" {
		h := u.Hostname()
		ok = h == "localhost" || h == "127.0.0.1" || h == "::1"
	} else if ok {
		ok = u.Scheme == "https"
	}
	if !ok {
		return fmt.Errorf("resource: Issuer %q must be an absolute https URL (http only on localhost) without query, fragment or trailing slash", s)
	}
	return nil
}

// metadataURLFor is where the metadata of resource is published (RFC 9728
// §3.1): the well-known path inserted between the host and the resource's
// path, so https://mcp.example.com/mcp has
// https://mcp.example.com/.well-known/oauth-protected-resource/mcp.
func metadataURLFor(resource string) (string, error) {
	u, err := url.Parse(resource)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("resource: Resource %q must be an absolute http(s) URL without fragment", resource)
	}
	s := u.Scheme + "://" + u.Host + wellKnownProtectedResource + pathAfterHost(u.EscapedPath())
	if u.RawQuery != "" {
		s += "?" + u.RawQuery
	}
	return s, nil
}

func pathAfterHost(p string) string {
	if p == "/" {
		return ""
	}
	return p
}

// digest is the cache key of a token: its SHA-256, so no cache holds a
// usable token.
func digest(raw string) [sha256.Size]byte { return sha256.Sum256([]byte(raw)) }
