package allowlist_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/authd/authd/internal/allowlist"
	"github.com/authd/authd/internal/store"
)

func ghUser(id, login string, groups ...string) store.User {
	return store.User{Provider: "github", Subject: id, Login: login, Groups: groups}
}

func verified(email string) store.User {
	return store.User{Provider: "x", Subject: "sub-1", Email: email, EmailVerified: true}
}

func TestCheck(t *testing.T) {
	type tc struct {
		name     string
		provider string
		user     store.User
		allow    bool
	}
	tests := []struct {
		rule   string
		policy allowlist.Policy
		cases  []tc
	}{
		{"allow all users", allowlist.Policy{AllowAllUsers: true}, []tc{
			{"anyone", "oidc", store.User{Subject: "x"}, true},
			{"disabled user", "github", store.User{Subject: "1", Disabled: true}, false},
		}},
		{"empty policy denies", allowlist.Policy{}, []tc{
			{"github user", "github", ghUser("1", "a", "acme"), false},
			{"verified email", "google", verified("a@example.com"), false},
		}},
		{"github ids", allowlist.Policy{GitHubUsers: []string{"583231"}}, []tc{
			{"id matches", "github", ghUser("583231", "octocat"), true},
			// A changed login with the same id keeps passing.
			{"renamed, same id", "github", ghUser("583231", "octo-renamed"), true},
			// Someone who registers the freed login gets a new id.
			{"reused login, new id", "github", ghUser("99999999", "octocat"), false},
			{"login equal to the id string", "github", ghUser("7", "583231"), false},
			{"same subject at an OIDC provider", "oidc", store.User{Subject: "583231"}, false},
			{"same subject at Google", "google", store.User{Subject: "583231", Email: "a@b.com", EmailVerified: true}, false},
		}},
		{"github logins", allowlist.Policy{GitHubUsers: []string{"Octocat"}}, []tc{
			{"login matches case-insensitively", "github", ghUser("583231", "octocat"), true},
			{"other login", "github", ghUser("583231", "octocat2"), false},
			{"OIDC user with that preferred_username", "oidc", store.User{Subject: "s", Login: "octocat"}, false},
			{"dev user with that name", "dev", store.User{Subject: "dev:octocat", Login: "octocat"}, false},
		}},
		{"github orgs", allowlist.Policy{GitHubOrgs: []string{"Acme"}}, []tc{
			{"member", "github", ghUser("1", "a", "acme"), true},
			{"member of a team only", "github", ghUser("1", "a", "acme", "acme/platform"), true},
			{"other org", "github", ghUser("1", "a", "acme-evil", "evil"), false},
			{"team named like the org", "github", ghUser("1", "a", "other/acme"), false},
			{"no groups loaded", "github", ghUser("1", "a"), false},
			{"OIDC group named like the org", "oidc", store.User{Subject: "s", Groups: []string{"acme"}}, false},
		}},
		{"github teams", allowlist.Policy{GitHubTeams: []string{"ACME/platform"}}, []tc{
			{"team member", "github", ghUser("1", "a", "acme", "acme/platform"), true},
			{"org member, other team", "github", ghUser("1", "a", "acme", "acme/sre"), false},
			{"org member only", "github", ghUser("1", "a", "acme"), false},
			{"same team slug in another org", "github", ghUser("1", "a", "evil", "evil/platform"), false},
			{"OIDC group with that name", "oidc", store.User{Subject: "s", Groups: []string{"acme/platform"}}, false},
		}},
		{"emails", allowlist.Policy{Emails: []string{"Alice@Example.com"}}, []tc{
			{"verified, case differs", "google", verified("alice@example.COM"), true},
			{"verified at GitHub", "github", store.User{Subject: "1", Email: "alice@example.com", EmailVerified: true}, true},
			{"unverified", "oidc", store.User{Subject: "s", Email: "alice@example.com"}, false},
			{"other address", "google", verified("alice2@example.com"), false},
			{"prefix of the address", "google", verified("alice@example.com.evil"), false},
			{"Kelvin-sign look-alike", "google", verified("alice@example.co\u212A"), false},
		}},
		{"email domains", allowlist.Policy{EmailDomains: []string{"example.com"}}, []tc{
			{"verified in domain", "oidc", verified("bob@example.com"), true},
			{"upper-case domain", "oidc", verified("bob@EXAMPLE.com"), true},
			{"unverified in domain", "oidc", store.User{Subject: "s", Email: "bob@example.com"}, false},
			{"look-alike prefix", "oidc", verified("bob@evil-example.com"), false},
			{"look-alike suffix", "oidc", verified("bob@example.com.evil"), false},
			{"subdomain not listed", "oidc", verified("bob@mail.example.com"), false},
			{"domain in the local part", "oidc", verified(`"bob@example.com"@evil.com`), false},
			{"no email", "oidc", verified(""), false},
		}},
		{"google domains", allowlist.Policy{GoogleDomains: []string{"corp.example"}}, []tc{
			{"hd matches", "google", store.User{Subject: "s", Email: "c@corp.example", EmailVerified: true, Domain: "corp.example"}, true},
			{"hd matches via generic OIDC", "oidc", store.User{Subject: "s", Email: "c@corp.example", EmailVerified: true, Domain: "CORP.example"}, true},
			{"email domain matches but no hd (consumer account)", "google", verified("c@corp.example"), false},
			{"hd matches, email unverified", "google", store.User{Subject: "s", Email: "c@corp.example", Domain: "corp.example"}, false},
			{"other hd", "google", store.User{Subject: "s", Email: "c@corp.example.evil", EmailVerified: true, Domain: "corp.example.evil"}, false},
			{"hd from GitHub is meaningless", "github", store.User{Subject: "1", Email: "c@corp.example", EmailVerified: true, Domain: "corp.example"}, false},
		}},
		{"oidc groups", allowlist.Policy{Groups: []string{"admins"}}, []tc{
			{"member", "oidc", store.User{Subject: "s", Groups: []string{"users", "admins"}}, true},
			{"case differs", "oidc", store.User{Subject: "s", Groups: []string{"Admins"}}, false},
			{"not a member", "oidc", store.User{Subject: "s", Groups: []string{"users"}}, false},
			{"GitHub org named admins", "github", ghUser("1", "a", "admins"), false},
		}},
		{"several rules", allowlist.Policy{GitHubUsers: []string{"1"}, EmailDomains: []string{"example.com"}}, []tc{
			{"by id", "github", ghUser("1", "a"), true},
			{"by email", "github", store.User{Subject: "2", Email: "x@example.com", EmailVerified: true}, true},
			{"neither", "github", ghUser("2", "b"), false},
			{"disabled", "github", store.User{Subject: "1", Disabled: true}, false},
			{"no subject", "github", store.User{Email: "x@example.com", EmailVerified: true}, false},
		}},
	}
	for _, rt := range tests {
		if errs := rt.policy.Validate(); len(errs) > 0 {
			t.Fatalf("%s: policy invalid: %v", rt.rule, errs)
		}
		for _, c := range rt.cases {
			t.Run(rt.rule+"/"+c.name, func(t *testing.T) {
				err := rt.policy.Check(c.provider, c.user)
				if c.allow {
					if err != nil {
						t.Fatalf("denied: %v", err)
					}
					return
				}
				var d *allowlist.Denied
				if !errors.As(err, &d) || d.Reason == "" {
					t.Fatalf("err = %v, want *Denied with a reason", err)
				}
			})
		}
	}
}

func TestDeniedReason(t *testing.T) {
	p := allowlist.Policy{GitHubUsers: []string{"1"}, Emails: []string{"secret-admin@example.com"}}
	cases := map[string]struct {
		provider string
		user     store.User
		want     string
	}{
		"github":     {"github", ghUser("2", "x"), "Your GitHub account is not in this server's allowlist"},
		"unverified": {"oidc", store.User{Subject: "s", Email: "a@example.com"}, "Only verified email addresses count"},
		"disabled":   {"github", store.User{Subject: "1", Disabled: true}, "disabled"},
	}
	for name, c := range cases {
		err := p.Check(c.provider, c.user)
		var d *allowlist.Denied
		if !errors.As(err, &d) || !strings.Contains(d.Reason, c.want) {
			t.Errorf("%s: %v, want reason containing %q", name, err, c.want)
		}
		if d != nil && strings.Contains(d.Reason, "secret-admin") {
			t.Errorf("%s: reason reveals the policy: %q", name, d.Reason)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		policy allowlist.Policy
		want   []string
	}{
		{"empty", allowlist.Policy{}, nil},
		{"all valid", allowlist.Policy{
			GitHubUsers: []string{"583231", "octocat", "some-user"}, GitHubOrgs: []string{"Acme"},
			GitHubTeams: []string{"acme/platform"}, Emails: []string{"a@example.com"},
			EmailDomains: []string{"example.com", "mail.Example.org"}, GoogleDomains: []string{"corp.example"},
			Groups: []string{"admins", "/realm/Dev Team"},
		}, nil},
		{"allow all with rules", allowlist.Policy{AllowAllUsers: true, Emails: []string{"a@example.com"}}, []string{"allow_all_users"}},
		{"github users", allowlist.Policy{GitHubUsers: []string{"", "0123", "0", "99999999999999999999", "octo cat", "-x"}},
			[]string{"github_users[0]", "github_users[1]", "github_users[2]", "github_users[3]", "github_users[4]", "github_users[5]"}},
		{"github orgs", allowlist.Policy{GitHubOrgs: []string{"acme/team", ""}}, []string{"github_orgs[0]", "github_orgs[1]"}},
		{"github teams", allowlist.Policy{GitHubTeams: []string{"acme", "acme/", "/team", "a/b/c"}},
			[]string{"github_teams[0]", "github_teams[1]", "github_teams[2]", "github_teams[3]"}},
		{"emails", allowlist.Policy{Emails: []string{"Alice <a@example.com>", "example.com", "a@localhost", " a@example.com"}},
			[]string{"emails[0]", "emails[1]", "emails[2]", "emails[3]"}},
		{"email domains", allowlist.Policy{EmailDomains: []string{"@example.com", "*.example.com", ".example.com", "com", "exa mple.com", "example.com."}},
			[]string{"email_domains[0]", "email_domains[1]", "email_domains[2]", "email_domains[3]", "email_domains[4]", "email_domains[5]"}},
		{"google domains", allowlist.Policy{GoogleDomains: []string{"https://corp.example"}}, []string{"google_domains[0]"}},
		{"groups", allowlist.Policy{Groups: []string{"", " admins"}}, []string{"groups[0]", "groups[1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.policy.Validate()
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors %v, want %q", len(errs), errs, tt.want)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want prefix %q", i, errs[i], w)
				}
			}
		})
	}
}

func TestEmptyAndNeedsGitHubTeams(t *testing.T) {
	if !(allowlist.Policy{AllowAllUsers: true}).Empty() {
		t.Error("AllowAllUsers alone is not a rule")
	}
	if (allowlist.Policy{Groups: []string{"g"}}).Empty() {
		t.Error("a groups rule is a rule")
	}
	if (allowlist.Policy{GitHubUsers: []string{"1"}}).NeedsGitHubTeams() {
		t.Error("user rules need no memberships")
	}
	if !(allowlist.Policy{GitHubTeams: []string{"a/b"}}).NeedsGitHubTeams() || !(allowlist.Policy{GitHubOrgs: []string{"a"}}).NeedsGitHubTeams() {
		t.Error("org and team rules need memberships")
	}
}
