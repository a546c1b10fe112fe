package authorize

import (
	"net/http"
	"testing"

	"github.com/authd/authd/internal/allowlist"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

// TestGitHubIdentityIsTheNumericID: a renamed GitHub account stays the
// same authd user; someone who later registers the freed login is a
// different user and does not pass an id-based allowlist.
func TestGitHubIdentityIsTheNumericID(t *testing.T) {
	t.Parallel()
	policy := &allowlist.Policy{GitHubUsers: []string{"1001"}}
	e := newEnv(t, []string{"github"}, func(h *Handler) { h.Allowlist = policy })
	client := e.addClient(store.Client{SkipConsent: true})

	signIn := func(t *testing.T) store.User {
		t.Helper()
		a := newAuthz(client.ID, appURI)
		_, c := e.expectCode(t, e.browser(t).get(a.url(e)), a)
		u, err := e.st.GetUser(t.Context(), c.UserID)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	first := signIn(t)
	if first.Subject != "1001" || first.Login != "alice" {
		t.Fatalf("first sign-in: %+v", first)
	}

	e.gh.RenameUser("alice", "alice-renamed")
	renamed := signIn(t)
	if renamed.ID != first.ID || renamed.Login != "alice-renamed" {
		t.Fatalf("renamed account: id %s login %s, want id %s", renamed.ID, renamed.Login, first.ID)
	}

	// The old login is taken by a new account.
	e.gh.DeleteUser("alice-renamed")
	e.gh.AddUser(upstreamtest.GitHubUser{ID: 2002, Login: "alice",
		Emails: []upstreamtest.GitHubEmail{{Email: "impostor@example.net", Primary: true, Verified: true}}})
	e.st.Writes()
	e.expectPage(t, e.browser(t).get(newAuthz(client.ID, appURI).url(e)), http.StatusForbidden, "not in this server's allowlist")
	if w := e.st.Writes(); w["UpsertUser"] != 0 || w["CreateSession"] != 0 || w["CreateAuthCode"] != 0 {
		t.Fatalf("denied impostor wrote %v", w)
	}

	// Even where the policy lets them in, they are someone else.
	policy.GitHubUsers = nil
	policy.AllowAllUsers = true
	impostor := signIn(t)
	if impostor.ID == first.ID || impostor.Subject != "2002" {
		t.Fatalf("reused login mapped to %+v, first user %s", impostor, first.ID)
	}
}

// TestAllowlistRulesEndToEnd applies one rule kind at a time through the
// real connectors and policy.
func TestAllowlistRulesEndToEnd(t *testing.T) {
	t.Parallel()
	type rule struct {
		name    string
		policy  allowlist.Policy
		allowed bool
	}
	for connector, rules := range map[string][]rule{
		"github": {
			{"id", allowlist.Policy{GitHubUsers: []string{"1001"}}, true},
			{"other id", allowlist.Policy{GitHubUsers: []string{"1002"}}, false},
			{"login", allowlist.Policy{GitHubUsers: []string{"Alice"}}, true},
			{"verified email", allowlist.Policy{Emails: []string{"alice@example.com"}}, true},
			{"google domain does not apply", allowlist.Policy{GoogleDomains: []string{"example.com"}}, false},
			{"nothing", allowlist.Policy{}, false},
		},
		"google": {
			{"hd", allowlist.Policy{GoogleDomains: []string{"example.com"}}, true},
			{"other hd", allowlist.Policy{GoogleDomains: []string{"example.org"}}, false},
			{"email domain", allowlist.Policy{EmailDomains: []string{"example.com"}}, true},
		},
		"oidc": {
			{"group", allowlist.Policy{Groups: []string{"mcp-users"}}, true},
			{"other group", allowlist.Policy{Groups: []string{"admins"}}, false},
			{"email domain", allowlist.Policy{EmailDomains: []string{"corp.example"}}, true},
			{"allow all", allowlist.Policy{AllowAllUsers: true}, true},
		},
	} {
		t.Run(connector, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, []string{connector})
			client := e.addClient(store.Client{SkipConsent: true})
			for _, tc := range rules {
				t.Run(tc.name, func(t *testing.T) {
					e.setAllow(tc.policy.Check)
					e.st.Writes()
					a := newAuthz(client.ID, appURI)
					r := e.browser(t).get(a.url(e))
					if tc.allowed {
						e.expectCode(t, r, a)
						return
					}
					e.expectPage(t, r, http.StatusForbidden, "not in this server's allowlist")
					if w := e.st.Writes(); w["UpsertUser"] != 0 || w["CreateSession"] != 0 || w["CreateAuthCode"] != 0 {
						t.Fatalf("writes %v", w)
					}
				})
			}
		})
	}
}
