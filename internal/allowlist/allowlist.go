// Package allowlist decides which upstream users may sign in to authd. It
// denies by default: a user passes only by matching a rule, or when the
// operator set allow_all_users. Every rule is built to fail closed against
// the usual upstream-identity mistakes: emails and domains count only when
// the provider verified the address, domains match exactly (no suffix or
// look-alike matching), and provider-specific rules apply only to users of
// that kind of provider.
package allowlist

import (
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream"
)

// Policy is the allowlist section of the configuration. The rules are
// global: with several upstreams configured, a rule of a given kind
// applies to every upstream of the matching type.
type Policy struct {
	// AllowAllUsers lets every user of every configured upstream in. It
	// must be set explicitly to run without rules (outside --dev), and
	// may not be combined with rules, which it would make moot.
	AllowAllUsers bool `mapstructure:"allow_all_users"`

	// GitHubUsers are GitHub users, by numeric id (e.g. "583231") or by
	// login (e.g. "octocat", case-insensitive). Prefer ids: a login can be
	// renamed and then registered by someone else, who would pass a login
	// rule, whereas an id never changes hands. An all-digit entry is
	// always read as an id. Find an id at https://api.github.com/users/LOGIN.
	GitHubUsers []string `mapstructure:"github_users"`
	// GitHubOrgs are organization logins (case-insensitive); members pass.
	// Needs load_teams on the GitHub upstream.
	GitHubOrgs []string `mapstructure:"github_orgs"`
	// GitHubTeams are "org/team-slug" entries; team members pass. Needs
	// load_teams on the GitHub upstream.
	GitHubTeams []string `mapstructure:"github_teams"`

	// Emails are exact addresses (case-insensitive), matched only when the
	// provider verified the user's address.
	Emails []string `mapstructure:"emails"`
	// EmailDomains match the domain of a verified address exactly:
	// "example.com" admits alice@example.com, not alice@sub.example.com
	// (list subdomains separately), nor alice@evil-example.com.
	EmailDomains []string `mapstructure:"email_domains"`
	// GoogleDomains are Google Workspace domains, matched against the hd
	// claim of Google (or OIDC) ID tokens with a verified email. Unlike an
	// email domain, hd proves the account is managed by that Workspace.
	GoogleDomains []string `mapstructure:"google_domains"`
	// Groups are OIDC groups-claim values (exact, case-sensitive) for
	// upstreams of type oidc.
	Groups []string `mapstructure:"groups"`
}

// Denied is the answer for a user the policy does not admit. Reason is
// safe to show the user; it never reveals the policy's rules.
type Denied struct {
	Reason string
}

func (d *Denied) Error() string { return "allowlist: denied: " + d.Reason }

// Empty reports whether p has no rules (whatever AllowAllUsers says).
// Outside --dev, an empty policy requires AllowAllUsers.
func (p Policy) Empty() bool {
	return len(p.GitHubUsers)+len(p.GitHubOrgs)+len(p.GitHubTeams)+len(p.Emails)+
		len(p.EmailDomains)+len(p.GoogleDomains)+len(p.Groups) == 0
}

// NeedsGitHubTeams reports whether org or team rules exist, so GitHub
// upstreams must load memberships (GitHubConfig.LoadTeams).
func (p Policy) NeedsGitHubTeams() bool {
	return len(p.GitHubOrgs)+len(p.GitHubTeams) > 0
}

var (
	githubLogin = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,99})$`)
	githubSlug  = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,99})$`)
	domainLabel = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)
)

// Validate lists every problem, each naming its key (e.g. "emails[2]: …");
// the caller prefixes "allowlist.".
func (p Policy) Validate() []error {
	var errs []error
	add := func(key string, i int, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s[%d]: %s", key, i, fmt.Sprintf(format, a...)))
	}
	if p.AllowAllUsers && !p.Empty() {
		errs = append(errs, fmt.Errorf("allow_all_users: true lets everyone in, so the other allowlist rules would have no effect; remove one or the other"))
	}
	for i, e := range p.GitHubUsers {
		if isDigits(e) {
			if n, err := strconv.ParseInt(e, 10, 64); err != nil || n <= 0 || strconv.FormatInt(n, 10) != e {
				add("github_users", i, "%q is not a GitHub user id (a positive number without leading zeros)", e)
			}
		} else if !githubLogin.MatchString(e) {
			add("github_users", i, "%q is neither a numeric GitHub user id nor a GitHub login", e)
		}
	}
	for i, e := range p.GitHubOrgs {
		if !githubLogin.MatchString(e) {
			add("github_orgs", i, "%q is not a GitHub organization login (use github_teams for \"org/team\")", e)
		}
	}
	for i, e := range p.GitHubTeams {
		org, team, ok := strings.Cut(e, "/")
		if !ok || !githubLogin.MatchString(org) || !githubSlug.MatchString(team) {
			add("github_teams", i, "%q is not \"org/team-slug\" (e.g. acme/platform)", e)
		}
	}
	for i, e := range p.Emails {
		if a, err := mail.ParseAddress(e); err != nil || a.Address != e || !validDomain(domainOf(e)) {
			add("emails", i, "%q is not a plain email address such as alice@example.com", e)
		}
	}
	for i, e := range p.EmailDomains {
		if !validDomain(e) {
			add("email_domains", i, "%q is not a domain name such as example.com (no @, no wildcards; list each subdomain)", e)
		}
	}
	for i, e := range p.GoogleDomains {
		if !validDomain(e) {
			add("google_domains", i, "%q is not a domain name such as example.com", e)
		}
	}
	for i, e := range p.Groups {
		if e == "" || strings.TrimSpace(e) != e {
			add("groups", i, "%q must be a non-empty group name without surrounding spaces", e)
		}
	}
	return errs
}

// Check decides whether u, signed in through an upstream of type
// providerType ("github", "google", "oidc", "dev"), may sign in. It
// returns nil or a *Denied.
func (p Policy) Check(providerType string, u store.User) error {
	if u.Disabled {
		return &Denied{Reason: "This account has been disabled on this server."}
	}
	if u.Subject == "" {
		return p.deny(providerType, u)
	}
	if p.AllowAllUsers {
		return nil
	}
	if providerType == upstream.TypeGitHub && p.matchGitHub(u) {
		return nil
	}
	if providerType == upstream.TypeOIDC && containsAny(p.Groups, u.Groups) {
		return nil
	}
	if u.EmailVerified && u.Email != "" {
		email := asciiLower(u.Email)
		for _, e := range p.Emails {
			if asciiLower(e) == email {
				return nil
			}
		}
		domain := domainOf(email)
		for _, d := range p.EmailDomains {
			if asciiLower(d) == domain {
				return nil
			}
		}
		// hd is Google's claim; a generic OIDC upstream pointed at Google
		// carries it too. Elsewhere no Workspace vouches for it.
		if u.Domain != "" && (providerType == upstream.TypeGoogle || providerType == upstream.TypeOIDC) {
			hd := asciiLower(u.Domain)
			for _, d := range p.GoogleDomains {
				if asciiLower(d) == hd {
					return nil
				}
			}
		}
	}
	return p.deny(providerType, u)
}

// matchGitHub applies the GitHub rules. u.Subject is GitHub's numeric id
// and u.Groups holds "org" and "org/team" (org lower-cased by the
// connector; compared case-insensitively anyway).
func (p Policy) matchGitHub(u store.User) bool {
	for _, e := range p.GitHubUsers {
		if isDigits(e) {
			if e == u.Subject {
				return true
			}
		} else if u.Login != "" && asciiLower(e) == asciiLower(u.Login) {
			return true
		}
	}
	groups := make([]string, len(u.Groups))
	for i, g := range u.Groups {
		groups[i] = asciiLower(g)
	}
	for _, o := range p.GitHubOrgs {
		if slices.Contains(groups, asciiLower(o)) {
			return true
		}
	}
	for _, t := range p.GitHubTeams {
		if strings.Contains(t, "/") && slices.Contains(groups, asciiLower(t)) {
			return true
		}
	}
	return false
}

func (p Policy) deny(providerType string, u store.User) *Denied {
	account := "Your account"
	switch providerType {
	case upstream.TypeGitHub:
		account = "Your GitHub account"
	case upstream.TypeGoogle:
		account = "Your Google account"
	}
	reason := account + " is not in this server's allowlist. Ask the server's administrator for access."
	if !u.EmailVerified && len(p.Emails)+len(p.EmailDomains)+len(p.GoogleDomains) > 0 {
		reason += " Only verified email addresses count: if yours is not verified at the provider, verify it there and sign in again."
	}
	return &Denied{Reason: reason}
}

func containsAny(rules, have []string) bool {
	for _, h := range have {
		if slices.Contains(rules, h) {
			return true
		}
	}
	return false
}

// asciiLower folds ASCII letters only. strings.EqualFold would also fold
// e.g. the Kelvin sign into "k", letting a look-alike address match.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// domainOf is what follows the last "@" ("" if none).
func domainOf(email string) string {
	i := strings.LastIndexByte(email, '@')
	if i < 0 {
		return ""
	}
	return email[i+1:]
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func validDomain(d string) bool {
	d = asciiLower(d)
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
