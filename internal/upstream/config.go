package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Connector types.
const (
	TypeGitHub = "github"
	TypeGoogle = "google"
	TypeOIDC   = "oidc"
	TypeDev    = "dev"
)

// Defaults for the public providers. GitHub Enterprise sets both GitHub URLs.
const (
	DefaultGitHubBaseURL = "https://github.com"
	DefaultGitHubAPIURL  = "https://api.github.com"
	DefaultGoogleIssuer  = "https://accounts.google.com"
)

// Config is one entry of the upstreams list.
type Config struct {
	// ID names the connector in URLs (/callback/{id}) and in stored users:
	// (ID, Subject) identifies a user, so changing it orphans its users.
	ID   string `mapstructure:"id"`
	Type string `mapstructure:"type"` // github, google, oidc or dev
	// Name is shown on the chooser page; defaults to the provider's name.
	Name         string   `mapstructure:"name"`
	ClientID     string   `mapstructure:"client_id"`
	ClientSecret string   `mapstructure:"client_secret"`
	Scopes       []string `mapstructure:"scopes"` // defaults per type
	// RedirectURL is set by the caller to issuer + "/callback/" + ID; it is
	// not read from configuration so it always agrees with the issuer.
	RedirectURL string `mapstructure:"-"`
	// Now is the clock ID tokens are checked against (exp, max_age); set
	// by the caller like RedirectURL. Nil: time.Now.
	Now func() time.Time `mapstructure:"-"`

	GitHub GitHubConfig `mapstructure:"github"`
	OIDC   OIDCConfig   `mapstructure:"oidc"`

	// StoreTokens keeps each user's access and refresh token from this
	// provider, encrypted under keys.encryption_secret, so that MCP
	// servers can get them by token exchange and authd can re-check the
	// memberships the allowlist depends on. Off by default: authd then
	// forgets the provider's tokens right after the sign-in.
	StoreTokens bool `mapstructure:"store_tokens"`
	// RevokeOnUpstreamRevocation (with store_tokens; default true): when
	// the provider refuses the kept refresh token (invalid_grant: the user
	// revoked authd there, or the grant expired), the user's grants at
	// authd end too, rather than at their next refresh.
	RevokeOnUpstreamRevocation *bool `mapstructure:"revoke_on_upstream_revocation"`
	// MembershipCheckInterval (with store_tokens; default 15m) is how
	// often, at most, the memberships the allowlist depends on are read
	// again from the provider when the user's grants are refreshed.
	MembershipCheckInterval time.Duration `mapstructure:"membership_check_interval"`
}

// now is the connector's clock.
func (c Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// DefaultMembershipCheckInterval is membership_check_interval's default.
const DefaultMembershipCheckInterval = 15 * time.Minute

// RevokesOnUpstreamRevocation is revoke_on_upstream_revocation with its
// default (true).
func (c Config) RevokesOnUpstreamRevocation() bool {
	return c.RevokeOnUpstreamRevocation == nil || *c.RevokeOnUpstreamRevocation
}

// MembershipInterval is membership_check_interval with its default.
func (c Config) MembershipInterval() time.Duration {
	if c.MembershipCheckInterval == 0 {
		return DefaultMembershipCheckInterval
	}
	return c.MembershipCheckInterval
}

// GitHubConfig holds the GitHub-specific settings (type github).
type GitHubConfig struct {
	// BaseURL serves /login/oauth/authorize and /login/oauth/access_token.
	// Default https://github.com; GitHub Enterprise: https://ghe.example.com.
	BaseURL string `mapstructure:"base_url"`
	// APIURL is the REST API root. Default https://api.github.com, or
	// BaseURL + "/api/v3" when only BaseURL is set (GitHub Enterprise).
	APIURL string `mapstructure:"api_url"`
	// LoadTeams fetches org and team memberships (scope read:org) so that
	// allowlist.github_orgs / github_teams can match.
	LoadTeams bool `mapstructure:"load_teams"`
}

// OIDCConfig holds the OpenID Connect settings (types google and oidc).
//
// There is deliberately no switch to treat unverified emails as verified:
// an email the provider did not verify proves nothing about who signed in.
// For providers that never send email_verified (e.g. Entra ID), allowlist
// by groups or Google domain instead.
type OIDCConfig struct {
	// Issuer is the OpenID Provider's issuer URL; discovery is fetched from
	// Issuer + "/.well-known/openid-configuration". Google: default
	// https://accounts.google.com.
	Issuer string `mapstructure:"issuer"`
	// Claim names in the ID token (type oidc). Defaults: email, name,
	// groups, preferred_username.
	ClaimEmail    string `mapstructure:"claim_email"`
	ClaimName     string `mapstructure:"claim_name"`
	ClaimGroups   string `mapstructure:"claim_groups"`
	ClaimUsername string `mapstructure:"claim_username"`
	// HostedDomain (type google) asks Google to offer only accounts of this
	// Workspace domain, and rejects ID tokens whose hd claim differs: the
	// request parameter alone is only a hint the user can strip.
	HostedDomain string `mapstructure:"hosted_domain"`
	// BackChannelLogout (type oidc) accepts OpenID Connect Back-Channel
	// Logout 1.0 logout tokens at /upstream/{id}/backchannel-logout:
	// "sessions" ends the user's sign-in at authd (browser sessions and
	// pending sign-ins), "grants" also revokes the user's grants and
	// tokens; "" or "off": the endpoint refuses every token.
	BackChannelLogout string `mapstructure:"backchannel_logout"`
}

// Values of oidc.backchannel_logout.
const (
	BackChannelLogoutOff      = "off"
	BackChannelLogoutSessions = "sessions"
	BackChannelLogoutGrants   = "grants"
)

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Validate lists every problem in c, each naming its setting as
// upstreams[<id>].<key>.
func (c Config) Validate() []error {
	name := c.ID
	if name == "" {
		name = "?"
	}
	var errs []error
	add := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("upstreams[%s].%s %s", name, key, fmt.Sprintf(format, a...)))
	}

	switch {
	case c.ID == "":
		add("id", "is required (e.g. github); it appears in the callback URL /callback/{id}")
	case !idPattern.MatchString(c.ID):
		add("id", "%q must be 1-32 lowercase letters, digits, '-' or '_', starting with a letter or digit", c.ID)
	}

	switch c.Type {
	case TypeGitHub, TypeGoogle, TypeOIDC, TypeDev:
	case "":
		add("type", "is required: github, google, oidc or dev")
		return errs
	default:
		add("type", "%q is not one of github, google, oidc, dev", c.Type)
		return errs
	}

	if c.Type != TypeDev {
		if c.ClientID == "" {
			add("client_id", "is required: the OAuth client id registered at the provider")
		}
		// Public OIDC clients (PKCE only) exist; GitHub and Google always
		// issue a secret to web applications.
		if c.ClientSecret == "" && c.Type != TypeOIDC {
			add("client_secret", "is required: the OAuth client secret issued by the provider")
		}
	}
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\n\"\\") {
			add(fmt.Sprintf("scopes[%d]", i), "%q is not a valid scope token", s)
		}
	}

	if c.StoreTokens && c.Type == TypeDev {
		add("store_tokens", "does not apply to the dev login: it has no tokens to keep")
	}
	if !c.StoreTokens {
		if c.RevokeOnUpstreamRevocation != nil {
			add("revoke_on_upstream_revocation", "applies only with store_tokens: true")
		}
		if c.MembershipCheckInterval != 0 {
			add("membership_check_interval", "applies only with store_tokens: true (without kept tokens memberships are read at sign-in only)")
		}
	}
	if c.MembershipCheckInterval < 0 {
		add("membership_check_interval", "%v must not be negative", c.MembershipCheckInterval)
	} else if c.MembershipCheckInterval > 0 && c.MembershipCheckInterval < time.Minute {
		add("membership_check_interval", "%v is below the minimum of 1m (each check calls the provider)", c.MembershipCheckInterval)
	}

	gh, oc := c.GitHub, c.OIDC
	if c.Type == TypeGitHub {
		if gh.BaseURL != "" {
			if err := checkEndpointURL(gh.BaseURL); err != nil {
				add("github.base_url", "%v", err)
			}
		}
		if gh.APIURL != "" {
			if err := checkEndpointURL(gh.APIURL); err != nil {
				add("github.api_url", "%v", err)
			}
		}
	} else if gh != (GitHubConfig{}) {
		add("github", "applies only to type github")
	}

	switch c.Type {
	case TypeOIDC:
		if oc.Issuer == "" {
			add("oidc.issuer", "is required for type oidc (e.g. https://login.example.com/realms/main)")
		} else if err := checkEndpointURL(oc.Issuer); err != nil {
			add("oidc.issuer", "%v", err)
		}
		if oc.HostedDomain != "" {
			add("oidc.hosted_domain", "applies only to type google")
		}
		switch oc.BackChannelLogout {
		case "", BackChannelLogoutOff, BackChannelLogoutSessions, BackChannelLogoutGrants:
		default:
			add("oidc.backchannel_logout", "%q is not off, sessions or grants (e.g. sessions: a logout at the provider ends the user's sign-in at authd)", oc.BackChannelLogout)
		}
	case TypeGoogle:
		if oc.BackChannelLogout != "" && oc.BackChannelLogout != BackChannelLogoutOff {
			add("oidc.backchannel_logout", "applies only to type oidc (Google sends no logout tokens)")
		}
		if oc.Issuer != "" {
			if err := checkEndpointURL(oc.Issuer); err != nil {
				add("oidc.issuer", "%v", err)
			}
		}
		if oc.ClaimEmail != "" || oc.ClaimName != "" || oc.ClaimGroups != "" || oc.ClaimUsername != "" {
			add("oidc", "claim mapping applies only to type oidc; Google's claims are fixed")
		}
		if oc.HostedDomain != "" && !validDomain(oc.HostedDomain) {
			add("oidc.hosted_domain", "%q is not a domain name such as example.com", oc.HostedDomain)
		}
	default:
		if oc != (OIDCConfig{}) {
			add("oidc", "applies only to types google and oidc")
		}
	}
	return errs
}

// checkEndpointURL accepts absolute https URLs without query or fragment,
// and plain http only for loopback hosts (local test servers).
func checkEndpointURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q must be an absolute https URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q must not contain a query, fragment or user info", s)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q must use https (plain http only for localhost)", s)
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isGitHubDotCom(base string) bool {
	u, err := url.Parse(base)
	return err == nil && strings.EqualFold(u.Hostname(), "github.com")
}

var domainLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func validDomain(d string) bool {
	d = strings.ToLower(d)
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for l := range strings.SplitSeq(d, ".") {
		if !domainLabel.MatchString(l) {
			return false
		}
	}
	return true
}

// withDefaults fills in the per-type defaults. It assumes Validate passed.
func (c Config) withDefaults() Config {
	c.Scopes = slices.Clone(c.Scopes)
	switch c.Type {
	case TypeGitHub:
		if c.Name == "" {
			c.Name = "GitHub"
		}
		if c.GitHub.BaseURL == "" {
			c.GitHub.BaseURL = DefaultGitHubBaseURL
		}
		if c.GitHub.APIURL == "" {
			if isGitHubDotCom(c.GitHub.BaseURL) {
				c.GitHub.APIURL = DefaultGitHubAPIURL
			} else {
				c.GitHub.APIURL = strings.TrimSuffix(c.GitHub.BaseURL, "/") + "/api/v3"
			}
		}
		c.GitHub.BaseURL = strings.TrimSuffix(c.GitHub.BaseURL, "/")
		c.GitHub.APIURL = strings.TrimSuffix(c.GitHub.APIURL, "/")
		if len(c.Scopes) == 0 {
			c.Scopes = []string{"read:user", "user:email"}
		}
		if c.GitHub.LoadTeams && !slices.Contains(c.Scopes, "read:org") {
			c.Scopes = append(c.Scopes, "read:org")
		}
	case TypeGoogle:
		if c.Name == "" {
			c.Name = "Google"
		}
		if c.OIDC.Issuer == "" {
			c.OIDC.Issuer = DefaultGoogleIssuer
		}
		if len(c.Scopes) == 0 {
			c.Scopes = []string{"openid", "email", "profile"}
		}
	case TypeOIDC:
		if c.Name == "" {
			if u, err := url.Parse(c.OIDC.Issuer); err == nil {
				c.Name = u.Hostname()
			}
		}
		if len(c.Scopes) == 0 {
			c.Scopes = []string{"openid", "profile", "email"}
		}
		c.OIDC.ClaimEmail = orDefault(c.OIDC.ClaimEmail, "email")
		c.OIDC.ClaimName = orDefault(c.OIDC.ClaimName, "name")
		c.OIDC.ClaimGroups = orDefault(c.OIDC.ClaimGroups, "groups")
		c.OIDC.ClaimUsername = orDefault(c.OIDC.ClaimUsername, "preferred_username")
	case TypeDev:
		if c.Name == "" {
			c.Name = "Development login"
		}
	}
	if (c.Type == TypeGoogle || c.Type == TypeOIDC) && !slices.Contains(c.Scopes, "openid") {
		// Without openid there is no ID token to verify.
		c.Scopes = append([]string{"openid"}, c.Scopes...)
	}
	return c
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

var errNoRedirectURL = errors.New("upstream: Config.RedirectURL must be set (issuer + \"/callback/\" + id)")
