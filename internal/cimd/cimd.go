// Package cimd implements OAuth Client ID Metadata Documents
// (draft-ietf-oauth-client-id-metadata-document): a client identifies itself
// with an https URL as its client_id, and authd fetches the JSON document at
// that URL to learn the client's name and redirect URIs instead of relying on
// a prior registration. The MCP authorization spec prefers this to dynamic
// registration.
//
// Three parts:
//
//   - Fetcher: an SSRF-safe HTTP client. https only, no redirects, no
//     proxies; every address it connects to is checked at dial time (after
//     DNS resolution, on the very address dialled), so DNS rebinding cannot
//     reach loopback, private, link-local or other special-use addresses;
//     response size and total time are capped; the answer must be JSON.
//   - Resolver: decides whether a client_id is a metadata-document URL,
//     applies the operator's host and URL rules, validates the document,
//     caches it in the store (so every replica and restart shares it) for a
//     lifetime taken from the HTTP caching headers within a floor and a
//     ceiling, and keeps a stable store.Client record (Source
//     SourceMetadata) that grants and tokens reference.
//   - ClientStore: a store.Store decorator whose GetClient resolves URL
//     client_ids, so endpoint packages need no change to accept such
//     clients. Wrap (for /authorize) fetches documents of new clients;
//     WrapKnown (for /token, /revoke, /introspect) only refreshes those of
//     clients that already have a record.
package cimd

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxDocumentBytes = 5 << 10 // the draft's recommended 5 KB
	DefaultFetchTimeout     = 5 * time.Second
	DefaultMinCache         = 5 * time.Minute
	DefaultMaxCache         = 24 * time.Hour
)

// maxClientIDLen bounds what is parsed, fetched and stored as a client_id.
const maxClientIDLen = 2000

// Config is the operator's configuration (config key
// client_metadata_documents).
type Config struct {
	// Enabled turns on URL client_ids; discovery then advertises
	// client_id_metadata_document_supported.
	Enabled bool `mapstructure:"enabled"`
	// AllowedHosts, when not empty, are the only hosts whose documents are
	// accepted. An entry is a host name ("claude.ai", matching exactly) or
	// a suffix starting with a dot (".example.com", matching any subdomain
	// of example.com but not example.com itself).
	AllowedHosts []string `mapstructure:"allowed_hosts"`
	// DeniedHosts are refused even when AllowedHosts would accept them;
	// same syntax.
	DeniedHosts []string `mapstructure:"denied_hosts"`
	// BlockedClients are client_id URLs refused outright (compared exactly).
	BlockedClients []string `mapstructure:"blocked_clients"`
	// MaxDocumentBytes caps the size of a document; larger ones are refused.
	MaxDocumentBytes int64 `mapstructure:"max_document_bytes"`
	// FetchTimeout caps a whole fetch: connecting, TLS, headers and body.
	FetchTimeout time.Duration `mapstructure:"fetch_timeout"`
	// MinCache and MaxCache bound how long a fetched document is used
	// before it is fetched again, whatever its caching headers say.
	MinCache time.Duration `mapstructure:"min_cache"`
	MaxCache time.Duration `mapstructure:"max_cache"`
	// AllowLoopback lets documents be fetched from loopback addresses
	// (127.0.0.0/8, ::1): for development and tests only. Development mode
	// turns it on; never set it in production, where it would let anyone
	// make authd send requests to services on its own host.
	AllowLoopback bool `mapstructure:"allow_loopback"`
}

// DefaultConfig is CIMD on, with the draft's recommended limits.
func DefaultConfig() Config {
	return Config{
		Enabled:          true,
		MaxDocumentBytes: DefaultMaxDocumentBytes,
		FetchTimeout:     DefaultFetchTimeout,
		MinCache:         DefaultMinCache,
		MaxCache:         DefaultMaxCache,
	}
}

// Validate lists every problem with c, each naming its key.
func (c Config) Validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.MaxDocumentBytes < 512 || c.MaxDocumentBytes > 1<<20 {
		add("max_document_bytes must be between 512 and 1048576 (default %d), got %d", DefaultMaxDocumentBytes, c.MaxDocumentBytes)
	}
	if c.FetchTimeout <= 0 || c.FetchTimeout > time.Minute {
		add("fetch_timeout must be a positive duration of at most 1m (default %s), got %s", DefaultFetchTimeout, c.FetchTimeout)
	}
	if c.MinCache <= 0 {
		add("min_cache must be a positive duration (default %s)", DefaultMinCache)
	}
	if c.MaxCache < c.MinCache {
		add("max_cache must be at least min_cache (%s), got %s", c.MinCache, c.MaxCache)
	}
	for name, list := range map[string][]string{"allowed_hosts": c.AllowedHosts, "denied_hosts": c.DeniedHosts} {
		for _, h := range list {
			if err := validHostPattern(h); err != nil {
				add("%s: %q %v", name, h, err)
			}
		}
	}
	for _, id := range c.BlockedClients {
		if _, err := ParseClientID(id); err != nil {
			add("blocked_clients: %q is not a client ID metadata document URL: %v", id, err)
		}
	}
	return errs
}

func validHostPattern(p string) error {
	h := strings.TrimPrefix(p, ".")
	switch {
	case h == "":
		return errors.New("is empty")
	case strings.ContainsAny(h, "/:@*?# ") || strings.Contains(h, ".."):
		return errors.New("must be a host name such as claude.ai, or a suffix such as .example.com (no scheme, port, path or wildcard)")
	case h != strings.ToLower(h):
		return errors.New("must be lower case")
	}
	return nil
}

// LooksLikeClientIDURL reports whether id is meant as a metadata-document
// client_id: it starts with https://. Such ids are never issued by authd
// (they are uuids), so the prefix alone routes the id; ParseClientID then
// says whether it is a valid one.
func LooksLikeClientIDURL(id string) bool { return strings.HasPrefix(id, "https://") }

// ParseClientID checks a client identifier URL against the draft's rules
// (section 3): https, a host, a path other than "/", no userinfo, no
// fragment, no "." or ".." path segments. Comparison elsewhere is by exact
// string, so nothing is normalised here.
func ParseClientID(id string) (*url.URL, error) {
	if len(id) > maxClientIDLen {
		return nil, errors.New("the URL is too long")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= 0x20 || c >= 0x7f {
			return nil, errors.New("the URL contains whitespace, control or non-ASCII characters")
		}
	}
	if !strings.HasPrefix(id, "https://") {
		return nil, errors.New("the URL must use https")
	}
	if strings.Contains(id, "#") {
		return nil, errors.New("the URL must not contain a fragment")
	}
	u, err := url.Parse(id)
	if err != nil {
		return nil, errors.New("the URL cannot be parsed")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return nil, errors.New("the URL must not contain user information")
	}
	if u.Hostname() == "" {
		return nil, errors.New("the URL must name a host")
	}
	if p := u.Port(); p != "" && strings.Trim(p, "0123456789") != "" {
		return nil, errors.New("the URL's port is not numeric")
	}
	if u.EscapedPath() == "" || u.EscapedPath() == "/" {
		return nil, errors.New("the URL must have a path (the document cannot be the site's root)")
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if s := strings.ToLower(seg); s == "." || s == ".." || s == "%2e" || s == "%2e%2e" || s == ".%2e" || s == "%2e." {
			return nil, errors.New("the URL must not contain . or .. path segments")
		}
	}
	return u, nil
}

// Policy is the operator's choice of which metadata-document clients are
// accepted at all (checked before anything is fetched).
type Policy struct {
	AllowedHosts   []string
	DeniedHosts    []string
	BlockedClients []string
}

// check returns why u (a parsed client_id) is refused, or "".
func (p Policy) check(id string, u *url.URL) string {
	for _, b := range p.BlockedClients {
		if b == id {
			return "this application has been blocked by the operator of this server"
		}
	}
	host := strings.ToLower(u.Hostname())
	if matchHost(p.DeniedHosts, host) {
		return "applications from " + host + " are blocked by the operator of this server"
	}
	if len(p.AllowedHosts) > 0 && !matchHost(p.AllowedHosts, host) {
		return "this server accepts metadata documents only from hosts its operator allows, and " + host + " is not one of them"
	}
	return ""
}

func matchHost(patterns []string, host string) bool {
	for _, p := range patterns {
		if strings.HasPrefix(p, ".") {
			if strings.HasSuffix(host, p) && len(host) > len(p) {
				return true
			}
		} else if host == p {
			return true
		}
	}
	return false
}
