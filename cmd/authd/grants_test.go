package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// grantsApp runs authd (in-memory store) with the grant registry the
// configuration gives changed by edit (nil: unchanged), open registration with
// client_credentials allowed to dynamic clients, and a configured machine
// client "machine" that may use every grant.
func grantsApp(t *testing.T, edit func(grants.Registry) grants.Registry) (*httptest.Server, error) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	t.Cleanup(ts.Close)
	issuer := "http://" + ts.Listener.Addr().String()
	cfg, err := loadConfig(flagsFor(t, "--dev"), envOf(map[string]string{
		"AUTHD_ISSUER":                                issuer,
		"AUTHD_REGISTRATION_ENABLED":                  "true",
		"AUTHD_REGISTRATION_ALLOW_CLIENT_CREDENTIALS": "true",
		"AUTHD_RESOURCES":                             `[{"uri":"https://mcp.example.com/mcp","name":"MCP"}]`,
		"AUTHD_CLIENTS": fmt.Sprintf(`[{"id":"machine","name":"Machine","secret_hash":%q,`+
			`"grant_types":["authorization_code","refresh_token","client_credentials"],"redirect_uris":["http://127.0.0.1/cb"]}]`,
			oauth.HashSecret("machine-secret-0123456789")),
	}))
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory()
	t.Cleanup(st.Close)
	a, err := buildApp(t.Context(), deps{
		cfg: cfg, store: st, log: slog.New(slog.DiscardHandler), now: time.Now, started: time.Now(), editGrants: edit,
	})
	if err != nil {
		return nil, err
	}
	ts.Config.Handler = a.handler
	ts.Start()
	return ts, nil
}

// TestGrantRegistryDrivesTokenRegistrationAndMetadata: the grant registry
// is the one switch for a grant type. With a grant taken out of it, the
// RFC 8414 metadata stops advertising it, registration refuses it and
// /token answers unsupported_grant_type even to a client configured with
// it; with the registry the configuration gives, all three serve it. A
// grant in the registry that /token does not implement, or a registry
// without authorization_code (which /authorize always issues), stops
// start-up.
func TestGrantRegistryDrivesTokenRegistrationAndMetadata(t *testing.T) {
	t.Parallel()
	without := func(typ string) func(grants.Registry) grants.Registry {
		return func(r grants.Registry) grants.Registry { return r.Without(typ) }
	}
	for _, tc := range []struct {
		name string
		edit func(grants.Registry) grants.Registry
		// served lists the grant types all three must agree on.
		served []string
	}{
		{"configured", nil, []string{"authorization_code", "refresh_token", "client_credentials"}},
		{"without client_credentials", without(grants.ClientCredentials), []string{"authorization_code", "refresh_token"}},
		{"without refresh_token", without(grants.RefreshToken), []string{"authorization_code", "client_credentials"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts, err := grantsApp(t, tc.edit)
			if err != nil {
				t.Fatal(err)
			}
			// The metadata.
			var md struct {
				GrantTypes []string `json:"grant_types_supported"`
				Scopes     []string `json:"scopes_supported"`
			}
			grantsGetJSON(t, ts.URL+"/.well-known/oauth-authorization-server", &md)
			if !slices.Equal(md.GrantTypes, tc.served) {
				t.Errorf("grant_types_supported = %v, want %v", md.GrantTypes, tc.served)
			}
			if got, want := slices.Contains(md.Scopes, oauth.ScopeOfflineAccess), slices.Contains(tc.served, grants.RefreshToken); got != want {
				t.Errorf("offline_access advertised: %v, want %v (with refresh_token)", got, want)
			}

			// Registration (RFC 7591): a client for each grant type.
			for _, gt := range []string{grants.ClientCredentials, grants.RefreshToken} {
				gts := []string{gt}
				if gt == grants.RefreshToken {
					gts = []string{grants.AuthorizationCode, gt}
				}
				status, body := grantsPostJSON(t, ts.URL+"/register", map[string]any{
					"client_name": "app", "redirect_uris": []string{"http://127.0.0.1/cb"},
					"grant_types": gts, "token_endpoint_auth_method": "client_secret_basic",
				})
				if served := slices.Contains(tc.served, gt); served {
					if status != http.StatusCreated {
						t.Errorf("register for %s: %d %s, want 201", gt, status, body)
					}
				} else if status != http.StatusBadRequest || body["error"] != oauth.CodeInvalidClientMetadata {
					t.Errorf("register for %s (not served): %d %v, want 400 invalid_client_metadata", gt, status, body)
				}
			}

			// /token, by the configured client registered for every grant.
			for _, gt := range []string{grants.ClientCredentials, grants.RefreshToken} {
				form := url.Values{"grant_type": {gt}, "refresh_token": {"rt_unknown"}}
				status, body := grantsPostToken(t, ts.URL+"/token", form, "machine", "machine-secret-0123456789")
				switch served := slices.Contains(tc.served, gt); {
				case !served && (status != http.StatusBadRequest || body["error"] != oauth.CodeUnsupportedGrantType):
					t.Errorf("/token %s (not served): %d %v, want 400 unsupported_grant_type", gt, status, body)
				case served && gt == grants.ClientCredentials && status != http.StatusOK:
					t.Errorf("/token %s: %d %v, want 200", gt, status, body)
				case served && gt == grants.RefreshToken && body["error"] != oauth.CodeInvalidGrant:
					t.Errorf("/token %s with an unknown token: %d %v, want invalid_grant (the grant ran)", gt, status, body)
				}
			}
		})
	}

	t.Run("without authorization_code", func(t *testing.T) {
		t.Parallel()
		if _, err := grantsApp(t, without(grants.AuthorizationCode)); err == nil || !strings.Contains(err.Error(), "authorization_code") {
			t.Fatalf("buildApp without authorization_code: %v, want an error (/authorize always issues codes)", err)
		}
	})

	t.Run("grant without a /token implementation", func(t *testing.T) {
		t.Parallel()
		_, err := grantsApp(t, func(r grants.Registry) grants.Registry {
			return r.With(grants.Grant{Type: "urn:example:params:oauth:grant-type:unimplemented", Confidential: true})
		})
		if err == nil || !strings.Contains(err.Error(), "urn:example:params:oauth:grant-type:unimplemented") {
			t.Fatalf("buildApp with a grant /token does not implement: %v, want an error naming it", err)
		}
	})
}

func grantsGetJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func grantsPostJSON(t *testing.T, u string, v any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(v)
	resp, err := http.Post(u, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return grantsDecode(t, resp)
}

func grantsPostToken(t *testing.T, u string, form url.Values, id, secret string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return grantsDecode(t, resp)
}

func grantsDecode(t *testing.T, resp *http.Response) (int, map[string]any) {
	t.Helper()
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("%d %s: %v", resp.StatusCode, raw, err)
	}
	return resp.StatusCode, body
}
