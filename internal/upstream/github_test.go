package upstream_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

var octocat = upstreamtest.GitHubUser{
	ID: 583231, Login: "Octocat", Name: "The Octocat",
	Emails: []upstreamtest.GitHubEmail{
		{Email: "old@example.org", Verified: true},
		{Email: "octocat@example.com", Primary: true, Verified: true},
	},
}

func TestGitHubLogin(t *testing.T) {
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(octocat)
	conn := connect(t, gh.Config("github"), gh.Client())

	if conn.ID() != "github" || conn.Type() != upstream.TypeGitHub || conn.DisplayName() != "GitHub" {
		t.Errorf("ID/Type/DisplayName = %q/%q/%q", conn.ID(), conn.Type(), conn.DisplayName())
	}
	f := newFlow()
	r := authorize(t, conn, gh.Client(), f, "octocat")
	id, err := conn.HandleCallback(t.Context(), r, f.options(""))
	if err != nil {
		t.Fatalf("HandleCallback: %v", err)
	}
	want := upstream.Identity{
		Provider: "github", Subject: "583231", Login: "Octocat", Name: "The Octocat",
		Email: "octocat@example.com", EmailVerified: true,
	}
	if !equalIdentity(id, want) {
		t.Errorf("identity = %+v\nwant       %+v", id, want)
	}

	q := gh.AuthorizeRequests()[0]
	checks := map[string]string{
		"code_challenge":        oauth2.S256ChallengeFromVerifier(f.verifier),
		"code_challenge_method": "S256",
		"scope":                 "read:user user:email",
		"redirect_uri":          issuer + "/callback/github",
		"login":                 "octocat",
		"state":                 f.state,
	}
	for k, v := range checks {
		if q.Get(k) != v {
			t.Errorf("authorize %s = %q, want %q", k, q.Get(k), v)
		}
	}
	if q.Has("code_verifier") || q.Has("nonce") {
		t.Errorf("authorize request leaks verifier or sends a nonce: %v", q)
	}
}

// GitHub Enterprise: with only base_url set, the API is at base_url/api/v3.
func TestGitHubEnterpriseDefaultAPIURL(t *testing.T) {
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(octocat)
	c := gh.Config("ghe")
	c.GitHub.APIURL = ""
	id, err := login(t, connect(t, c, gh.Client()), gh.Client(), "")
	if err != nil || id.Subject != "583231" {
		t.Fatalf("login = %+v, %v", id, err)
	}
}

// The subject is the numeric id: a renamed account keeps it, and the
// account that later takes over the old login gets its own.
func TestGitHubSubjectIsImmutableID(t *testing.T) {
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(octocat)
	conn := connect(t, gh.Config("github"), gh.Client())

	before, err := login(t, conn, gh.Client(), "")
	if err != nil {
		t.Fatal(err)
	}
	gh.RenameUser("octocat", "octo-renamed")
	after, err := login(t, conn, gh.Client(), "")
	if err != nil {
		t.Fatal(err)
	}
	if after.Subject != before.Subject || after.Login != "octo-renamed" {
		t.Errorf("after rename: subject %q login %q, want subject %q login octo-renamed", after.Subject, after.Login, before.Subject)
	}

	gh.AddUser(upstreamtest.GitHubUser{ID: 99999999, Login: "Octocat"}) // squatter takes the freed login
	gh.SetNextUser("octocat")
	squatter, err := login(t, conn, gh.Client(), "")
	if err != nil {
		t.Fatal(err)
	}
	if squatter.Login != "Octocat" || squatter.Subject != "99999999" {
		t.Errorf("squatter = %+v, want subject 99999999", squatter)
	}
}

func TestGitHubEmailSelection(t *testing.T) {
	tests := []struct {
		name      string
		emails    []upstreamtest.GitHubEmail
		wantEmail string
	}{
		{"primary verified", octocat.Emails, "octocat@example.com"},
		{"primary unverified, other verified", []upstreamtest.GitHubEmail{
			{Email: "primary@example.com", Primary: true},
			{Email: "other@example.com", Verified: true},
		}, ""},
		{"only unverified", []upstreamtest.GitHubEmail{{Email: "a@example.com", Primary: true}}, ""},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gh := upstreamtest.NewGitHub(t)
			gh.AddUser(upstreamtest.GitHubUser{ID: 7, Login: "u", Emails: tt.emails})
			id, err := login(t, connect(t, gh.Config("github"), gh.Client()), gh.Client(), "")
			if err != nil {
				t.Fatal(err)
			}
			if id.Email != tt.wantEmail || id.EmailVerified != (tt.wantEmail != "") {
				t.Errorf("email %q verified %v, want %q verified %v", id.Email, id.EmailVerified, tt.wantEmail, tt.wantEmail != "")
			}
		})
	}
}

func TestGitHubOrgsAndTeamsPaginated(t *testing.T) {
	gh := upstreamtest.NewGitHub(t)
	gh.SetPerPage(1) // every org and team on its own page
	gh.AddUser(upstreamtest.GitHubUser{
		ID: 1, Login: "dev",
		Orgs:  []string{"Acme", "Widgets", "third-ORG"},
		Teams: map[string][]string{"Acme": {"platform", "sre"}, "Hidden": {"x"}},
	})
	c := gh.Config("github")
	c.GitHub.LoadTeams = true
	id, err := login(t, connect(t, c, gh.Client()), gh.Client(), "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"acme", "acme/platform", "acme/sre", "hidden", "hidden/x", "third-org", "widgets"}
	if !slices.Equal(id.Groups, want) {
		t.Errorf("groups = %q, want %q", id.Groups, want)
	}
	if scope := gh.AuthorizeRequests()[0].Get("scope"); scope != "read:user user:email read:org" {
		t.Errorf("scope = %q, want read:org added", scope)
	}
}

func TestGitHubGroupsOnlyWhenAsked(t *testing.T) {
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(upstreamtest.GitHubUser{ID: 1, Login: "dev", Orgs: []string{"acme"}})
	gh.FailAPI("/user/orgs", http.StatusInternalServerError) // must not even be called
	id, err := login(t, connect(t, gh.Config("github"), gh.Client()), gh.Client(), "")
	if err != nil || id.Groups != nil {
		t.Fatalf("login = %+v, %v; want no groups and no call to /user/orgs", id, err)
	}
}

// A wrong PKCE verifier, a bogus code and wrong client credentials all
// come back from GitHub as HTTP 200 with an "error" member.
func TestGitHubTokenErrorsWith200(t *testing.T) {
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(octocat)
	conn := connect(t, gh.Config("github"), gh.Client())

	t.Run("wrong verifier", func(t *testing.T) {
		f := newFlow()
		r := authorize(t, conn, gh.Client(), f, "")
		id, err := conn.HandleCallback(t.Context(), r, upstream.LoginOptions{Verifier: oauth2.GenerateVerifier(), Nonce: f.nonce})
		ue := wantError(t, id, err, upstream.CodeUpstreamError)
		if !strings.Contains(ue.Err.Error(), "bad_verification_code") || !strings.Contains(ue.Err.Error(), "HTTP 200") {
			t.Errorf("cause = %v, want GitHub's 200 bad_verification_code", ue.Err)
		}
	})
	t.Run("bogus code", func(t *testing.T) {
		f := newFlow()
		r := callbackRequest(conn, url.Values{"code": {"made-up"}, "state": {f.state}})
		id, err := conn.HandleCallback(t.Context(), r, f.options(""))
		wantError(t, id, err, upstream.CodeUpstreamError)
	})
	t.Run("code replay", func(t *testing.T) {
		f := newFlow()
		r := authorize(t, conn, gh.Client(), f, "")
		if _, err := conn.HandleCallback(t.Context(), r, f.options("")); err != nil {
			t.Fatal(err)
		}
		id, err := conn.HandleCallback(t.Context(), r, f.options(""))
		wantError(t, id, err, upstream.CodeUpstreamError)
	})
	t.Run("wrong client secret", func(t *testing.T) {
		c := gh.Config("github")
		c.ClientSecret = "wrong"
		bad := connect(t, c, gh.Client())
		f := newFlow()
		r := authorize(t, bad, gh.Client(), f, "")
		id, err := bad.HandleCallback(t.Context(), r, f.options(""))
		ue := wantError(t, id, err, upstream.CodeUpstreamError)
		if !strings.Contains(ue.Err.Error(), "incorrect_client_credentials") {
			t.Errorf("cause = %v", ue.Err)
		}
	})
}

// Any non-2xx from the API fails the login: never fail open.
func TestGitHubAPIFailures(t *testing.T) {
	tests := []struct {
		path   string
		status int
		code   string
	}{
		{"/user", http.StatusInternalServerError, upstream.CodeUnavailable},
		{"/user", http.StatusUnauthorized, upstream.CodeUpstreamError},
		{"/user", http.StatusNotFound, upstream.CodeUpstreamError},
		{"/user/emails", http.StatusForbidden, upstream.CodeUpstreamError},
		{"/user/emails", http.StatusBadGateway, upstream.CodeUnavailable},
		{"/user/orgs", http.StatusForbidden, upstream.CodeUpstreamError},
		{"/user/teams", http.StatusServiceUnavailable, upstream.CodeUnavailable},
		{"/user/teams", http.StatusTooManyRequests, upstream.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+http.StatusText(tt.status), func(t *testing.T) {
			gh := upstreamtest.NewGitHub(t)
			gh.AddUser(octocat)
			gh.FailAPI(tt.path, tt.status)
			c := gh.Config("github")
			c.GitHub.LoadTeams = true
			id, err := login(t, connect(t, c, gh.Client()), gh.Client(), "")
			wantError(t, id, err, tt.code)
		})
	}
}

func TestGitHubTokenEndpointDown(t *testing.T) {
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(octocat)
	c := gh.Config("github")
	conn := connect(t, c, gh.Client())
	f := newFlow()
	r := authorize(t, conn, gh.Client(), f, "")
	c.GitHub.BaseURL = "https://127.0.0.1:1" // nothing listens there
	c.GitHub.APIURL = gh.APIURL()
	down := connect(t, c, gh.Client())
	id, err := down.HandleCallback(t.Context(), r, f.options(""))
	wantError(t, id, err, upstream.CodeUnavailable)
}

func equalIdentity(a, b upstream.Identity) bool {
	return a.Provider == b.Provider && a.Subject == b.Subject && a.Login == b.Login &&
		a.Email == b.Email && a.EmailVerified == b.EmailVerified && a.Name == b.Name &&
		a.Domain == b.Domain && slices.Equal(a.Groups, b.Groups)
}
