package upstream_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/authd/authd/internal/upstream"
)

func TestConfigValidate(t *testing.T) {
	gh := func(mod func(*upstream.Config)) upstream.Config {
		c := upstream.Config{ID: "github", Type: "github", ClientID: "id", ClientSecret: "secret"}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	tests := []struct {
		name string
		c    upstream.Config
		want []string // substrings, one per expected error
	}{
		{"github ok", gh(nil), nil},
		{"github enterprise ok", gh(func(c *upstream.Config) {
			c.GitHub = upstream.GitHubConfig{BaseURL: "https://ghe.example.com", APIURL: "https://ghe.example.com/api/v3", LoadTeams: true}
		}), nil},
		{"google ok", upstream.Config{ID: "google", Type: "google", ClientID: "id", ClientSecret: "s", OIDC: upstream.OIDCConfig{HostedDomain: "example.com"}}, nil},
		{"oidc public client ok", upstream.Config{ID: "kc", Type: "oidc", ClientID: "id", OIDC: upstream.OIDCConfig{Issuer: "https://sso.example.com/realms/x", ClaimGroups: "roles"}}, nil},
		{"dev ok", upstream.Config{ID: "dev", Type: "dev"}, nil},
		{"loopback http issuer ok", upstream.Config{ID: "kc", Type: "oidc", ClientID: "id", OIDC: upstream.OIDCConfig{Issuer: "http://127.0.0.1:5556/dex"}}, nil},

		{"missing everything", upstream.Config{}, []string{"upstreams[?].id is required", "upstreams[?].type is required"}},
		{"github missing credentials", gh(func(c *upstream.Config) { c.ClientID, c.ClientSecret = "", "" }),
			[]string{"upstreams[github].client_id is required", "upstreams[github].client_secret is required"}},
		{"bad id", gh(func(c *upstream.Config) { c.ID = "Git Hub" }), []string{"upstreams[Git Hub].id"}},
		{"bad type", gh(func(c *upstream.Config) { c.Type = "gitlab" }), []string{`upstreams[github].type "gitlab"`}},
		{"http base url", gh(func(c *upstream.Config) { c.GitHub.BaseURL = "http://ghe.example.com" }), []string{"upstreams[github].github.base_url"}},
		{"api url with query", gh(func(c *upstream.Config) { c.GitHub.APIURL = "https://api.example.com/?x=1" }), []string{"upstreams[github].github.api_url"}},
		{"oidc settings on github", gh(func(c *upstream.Config) { c.OIDC.Issuer = "https://x.example" }), []string{"upstreams[github].oidc applies only"}},
		{"bad scope", gh(func(c *upstream.Config) { c.Scopes = []string{"read:user user:email"} }), []string{"upstreams[github].scopes[0]"}},
		{"oidc without issuer", upstream.Config{ID: "kc", Type: "oidc", ClientID: "id"}, []string{"upstreams[kc].oidc.issuer is required"}},
		{"oidc hosted domain", upstream.Config{ID: "kc", Type: "oidc", ClientID: "id", OIDC: upstream.OIDCConfig{Issuer: "https://x.example", HostedDomain: "a.com"}},
			[]string{"upstreams[kc].oidc.hosted_domain applies only to type google"}},
		{"google claim mapping", upstream.Config{ID: "g", Type: "google", ClientID: "id", ClientSecret: "s", OIDC: upstream.OIDCConfig{ClaimGroups: "groups"}},
			[]string{"upstreams[g].oidc claim mapping"}},
		{"google bad domain", upstream.Config{ID: "g", Type: "google", ClientID: "id", ClientSecret: "s", OIDC: upstream.OIDCConfig{HostedDomain: "@example.com"}},
			[]string{"upstreams[g].oidc.hosted_domain"}},
		{"github settings on google", upstream.Config{ID: "g", Type: "google", ClientID: "id", ClientSecret: "s", GitHub: upstream.GitHubConfig{LoadTeams: true}},
			[]string{"upstreams[g].github applies only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.c.Validate()
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors %v, want %d %q", len(errs), errs, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i], w)
				}
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	ok := upstream.Config{ID: "github", Type: "github", ClientID: "id", ClientSecret: "s", RedirectURL: issuer + "/callback/github"}
	for name, mod := range map[string]func(*upstream.Config){
		"invalid config":    func(c *upstream.Config) { c.ClientID = "" },
		"no redirect URL":   func(c *upstream.Config) { c.RedirectURL = "" },
		"http redirect URL": func(c *upstream.Config) { c.RedirectURL = "http://authd.example/callback/github" },
		"dev redirect URL off": func(c *upstream.Config) {
			*c = upstream.Config{ID: "dev", Type: "dev", RedirectURL: issuer + "/elsewhere"}
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := ok
			mod(&c)
			conn, err := upstream.New(t.Context(), c, nil, nil)
			if err == nil || conn != nil {
				t.Fatalf("New = %v, %v; want an error", conn, err)
			}
		})
	}
	if _, err := upstream.New(t.Context(), ok, nil, nil); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func TestErrorUnwraps(t *testing.T) {
	cause := errors.New("cause")
	e := &upstream.Error{Code: upstream.CodeUpstreamError, Message: "m", Err: cause}
	if !errors.Is(e, cause) || !strings.Contains(e.Error(), "cause") {
		t.Errorf("Error %q does not wrap its cause", e)
	}
}
