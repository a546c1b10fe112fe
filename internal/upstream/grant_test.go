package upstream_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

// The scopes a sign-in needs for its resources go to the provider on top
// of the configured ones; Google with store_tokens also gets offline
// access and include_granted_scopes (incremental authorization).
func TestLoginAsksForUpstreamScopes(t *testing.T) {
	t.Parallel()
	gh := upstreamtest.NewGitHub(t)
	op := upstreamtest.NewOIDC(t)
	google := op.Config("google", upstream.TypeGoogle)
	google.StoreTokens = true
	plainGoogle := op.Config("google", upstream.TypeGoogle)
	for name, c := range map[string]struct {
		conn       upstream.Connector
		extra      []string
		want       []string
		wantParams map[string]string
	}{
		"github":               {connect(t, gh.Config("github"), gh.Client()), []string{"repo", "read:user"}, []string{"read:user", "user:email", "repo"}, nil},
		"google store_tokens":  {connect(t, google, op.Client()), []string{"https://www.googleapis.com/auth/drive.readonly"}, []string{"openid", "email", "profile", "https://www.googleapis.com/auth/drive.readonly"}, map[string]string{"access_type": "offline", "include_granted_scopes": "true"}},
		"google without store": {connect(t, plainGoogle, op.Client()), nil, []string{"openid", "email", "profile"}, map[string]string{"access_type": "", "include_granted_scopes": ""}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFlow()
			o := f.options("")
			o.Scopes = c.extra
			u, err := url.Parse(c.conn.AuthCodeURL(f.state, o))
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			if got := strings.Fields(q.Get("scope")); !slices.Equal(got, c.want) {
				t.Errorf("scope %q, want %q", got, c.want)
			}
			for k, v := range c.wantParams {
				if q.Get(k) != v {
					t.Errorf("%s=%q, want %q", k, q.Get(k), v)
				}
			}
		})
	}
}

// The grant of a sign-in carries the tokens, the expiry counted from
// expires_in on the connector's clock, and the granted scopes (GitHub's
// comma-separated scope); it never prints a token.
func TestSignInReturnsTheGrant(t *testing.T) {
	t.Parallel()
	at := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	gh := upstreamtest.NewGitHub(t)
	gh.SetTokenLifetime(8 * time.Hour)
	gh.AddUser(upstreamtest.GitHubUser{ID: 7, Login: "octo", Emails: []upstreamtest.GitHubEmail{{Email: "o@example.com", Primary: true, Verified: true}}})
	cfg := gh.Config("github")
	cfg.Now = func() time.Time { return at }
	conn := connect(t, cfg, gh.Client())
	f := newFlow()
	id, err := conn.HandleCallback(t.Context(), authorize(t, conn, gh.Client(), f, ""), f.options(""))
	if err != nil {
		t.Fatal(err)
	}
	g := id.Grant
	if g == nil || !strings.HasPrefix(g.AccessToken, "ghu_") || !strings.HasPrefix(g.RefreshToken, "ghr_") {
		t.Fatalf("grant %v: want a ghu_ access and a ghr_ refresh token", g)
	}
	if !g.Expiry.Equal(at.Add(8*time.Hour)) || g.ExpiresIn != 8*time.Hour {
		t.Fatalf("expiry %v (in %v), want 8h after the connector's now", g.Expiry, g.ExpiresIn)
	}
	if !slices.Equal(g.Scopes, []string{"read:user", "user:email"}) {
		t.Fatalf("scopes %q", g.Scopes)
	}
	for _, printed := range []string{fmt.Sprint(g), fmt.Sprintf("%+v %#v %v", *g, *g, id)} {
		if strings.Contains(printed, g.AccessToken) || strings.Contains(printed, g.RefreshToken) {
			t.Fatalf("the grant prints a token: %s", printed)
		}
	}
}
