package register_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/store"
)

func TestSyncStaticClients(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newStore(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// bcrypt is slow under -race, so only the dashboard's secret is clear text;
	// the resource server's is pre-hashed.
	const dashSecret = "dashboard-secret-0123456789"
	preHashed := oauth.HashSecret("resource-server-secret")
	clients := []register.StaticClient{
		{
			ID: "dashboard", Name: "Dashboard", Secret: dashSecret,
			RedirectURIs: []string{"https://dash.example.com/cb"},
			Scopes:       []string{"mcp:read", "mcp:write"}, Resources: []string{"https://MCP.example.com/"},
			SkipConsent: true,
		},
		{ID: "mcp-server", Name: "MCP server", SecretHash: preHashed, Introspect: true},
		{ID: "cli", Name: "CLI", RedirectURIs: []string{"http://127.0.0.1/cb"}, ApplicationType: "native"},
	}
	if err := register.SyncStaticClients(ctx, st, clients, now); err != nil {
		t.Fatal(err)
	}

	get := func(id string) store.Client {
		t.Helper()
		c, err := st.GetClient(ctx, id, now)
		if err != nil {
			t.Fatalf("GetClient(%s): %v", id, err)
		}
		return c
	}
	dash := get("dashboard")
	if dash.Source != store.SourceConfig || !dash.SkipConsent || dash.CanIntrospect || dash.RegistrationTokenHash != "" || dash.ExpiresAt != nil {
		t.Errorf("dashboard stored as %+v", dash)
	}
	if !strings.HasPrefix(dash.SecretHash, "$2") || strings.Contains(dash.SecretHash, dashSecret) {
		t.Errorf("dashboard secret not bcrypt-hashed: %q", dash.SecretHash)
	}
	if dash.Metadata.TokenEndpointAuthMethod != "client_secret_basic" ||
		!slices.Equal(dash.Metadata.GrantTypes, []string{"authorization_code", "refresh_token"}) ||
		!slices.Equal(dash.Metadata.ResponseTypes, []string{"code"}) {
		t.Errorf("dashboard defaults: %+v", dash.Metadata)
	}
	if !slices.Equal(dash.AllowedScopes, []string{"mcp:read", "mcp:write"}) ||
		!slices.Equal(dash.AllowedResources, []string{"https://mcp.example.com"}) {
		t.Errorf("dashboard restrictions: scopes %v resources %v", dash.AllowedScopes, dash.AllowedResources)
	}
	rs := get("mcp-server")
	if rs.SecretHash != preHashed || !rs.CanIntrospect || rs.Metadata.TokenEndpointAuthMethod != "client_secret_basic" ||
		len(rs.Metadata.GrantTypes) != 0 || len(rs.Metadata.ResponseTypes) != 0 {
		t.Errorf("resource server stored as %+v", rs)
	}
	cli := get("cli")
	if cli.SecretHash != "" || cli.Metadata.TokenEndpointAuthMethod != "none" || cli.Metadata.ApplicationType != "native" {
		t.Errorf("cli stored as %+v", cli)
	}

	// Idempotent: a second start writes nothing. The bcrypt hash is kept,
	// which also proves it verifies the configured secret (a mismatch would
	// have produced a new hash with a new salt).
	if err := register.SyncStaticClients(ctx, st, clients, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"dashboard", "mcp-server", "cli"} {
		if got := get(id); !got.UpdatedAt.Equal(now) {
			t.Errorf("%s: unchanged client rewritten (UpdatedAt %v)", id, got.UpdatedAt)
		}
	}
	if got := get("dashboard"); got.SecretHash != dash.SecretHash {
		t.Error("unchanged clear-text secret re-hashed")
	}

	// A change is applied; creation time is kept.
	newHash := oauth.HashSecret("rotated-resource-server-secret")
	changed := []register.StaticClient{{ID: "mcp-server", Name: "MCP server v2", SecretHash: newHash, Introspect: true}}
	if err := register.SyncStaticClients(ctx, st, changed, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	rs = get("mcp-server")
	if rs.Metadata.ClientName != "MCP server v2" || rs.SecretHash != newHash || !rs.CreatedAt.Equal(now) || !rs.UpdatedAt.Equal(now.Add(2*time.Hour)) {
		t.Errorf("changed client: %+v", rs)
	}
	// Clients missing from the config are kept (the CLI creates config clients too).
	if n, err := st.CountClients(ctx, store.SourceConfig); err != nil || n != 3 {
		t.Fatalf("CountClients = %d, %v; want 3", n, err)
	}
}

func TestSyncStaticClientsRefusesDynamicIDAndInvalidConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, testPolicy(), nil)
	dyn := e.register(claudeMetadata()).mustStatus(t, http.StatusCreated).registration(t)
	now := e.clock.Now()

	err := register.SyncStaticClients(ctx, e.st, []register.StaticClient{{ID: dyn.ClientID, RedirectURIs: []string{"https://evil.example/cb"}}}, now)
	if err == nil {
		t.Fatal("a config client took over a dynamic client's id")
	}
	if got := e.client(dyn.ClientID); got.Source != store.SourceDynamic || !slices.Equal(got.Metadata.RedirectURIs, dyn.RedirectURIs) {
		t.Fatalf("dynamic client overwritten: %+v", got)
	}

	// One invalid client: nothing at all is written.
	err = register.SyncStaticClients(ctx, e.st, []register.StaticClient{
		{ID: "good", RedirectURIs: []string{"https://app.example.com/cb"}},
		{ID: "bad", RedirectURIs: []string{"javascript:alert(1)"}},
	}, now)
	if err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Fatalf("err = %v, want one naming client \"bad\"", err)
	}
	if n, _ := e.st.CountClients(ctx, store.SourceConfig); n != 0 {
		t.Fatalf("%d config clients written despite an invalid one", n)
	}
	err = register.SyncStaticClients(ctx, e.st, []register.StaticClient{
		{ID: "twice", RedirectURIs: []string{"https://app.example.com/cb"}},
		{ID: "twice", RedirectURIs: []string{"https://app.example.com/cb"}},
	}, now)
	if err == nil {
		t.Fatal("duplicate ids accepted")
	}
}

func TestStaticClientValidate(t *testing.T) {
	t.Parallel()
	ok := register.StaticClient{ID: "app", Name: "App", Secret: "0123456789abcdef", RedirectURIs: []string{"https://app.example.com/cb"}}
	if errs := ok.Validate(); len(errs) != 0 {
		t.Fatalf("valid client rejected: %v", errs)
	}
	mod := func(f func(*register.StaticClient)) register.StaticClient {
		c := ok
		c.RedirectURIs = slices.Clone(ok.RedirectURIs)
		f(&c)
		return c
	}
	for name, c := range map[string]register.StaticClient{
		"empty id":                    mod(func(c *register.StaticClient) { c.ID = "" }),
		"URL-like id":                 mod(func(c *register.StaticClient) { c.ID = "https://app.example.com" }),
		"id with space":               mod(func(c *register.StaticClient) { c.ID = "my app" }),
		"secret and hash":             mod(func(c *register.StaticClient) { c.SecretHash = oauth.HashSecret("x") }),
		"short secret":                mod(func(c *register.StaticClient) { c.Secret = "short" }),
		"bad hash":                    mod(func(c *register.StaticClient) { c.Secret, c.SecretHash = "", "plaintext" }),
		"none with secret":            mod(func(c *register.StaticClient) { c.TokenEndpointAuthMethod = "none" }),
		"basic without secret":        mod(func(c *register.StaticClient) { c.Secret, c.TokenEndpointAuthMethod = "", "client_secret_basic" }),
		"unknown auth method":         mod(func(c *register.StaticClient) { c.TokenEndpointAuthMethod = "tls_client_auth" }),
		"implicit":                    mod(func(c *register.StaticClient) { c.GrantTypes = []string{"implicit"} }),
		"public client_credentials":   mod(func(c *register.StaticClient) { c.Secret, c.GrantTypes = "", []string{"client_credentials"} }),
		"code without redirect":       mod(func(c *register.StaticClient) { c.GrantTypes, c.RedirectURIs = []string{"authorization_code"}, nil }),
		"bad redirect":                mod(func(c *register.StaticClient) { c.RedirectURIs = []string{"http://app.example.com/cb"} }),
		"bad scope":                   mod(func(c *register.StaticClient) { c.Scopes = []string{"a b"} }),
		"bad resource":                mod(func(c *register.StaticClient) { c.Resources = []string{"https://mcp.example.com/#x"} }),
		"public introspection client": mod(func(c *register.StaticClient) { c.Secret, c.Introspect = "", true }),
		"bad application type":        mod(func(c *register.StaticClient) { c.ApplicationType = "desktop" }),
		"name with control character": mod(func(c *register.StaticClient) { c.Name = "App\x07" }),
	} {
		if errs := c.Validate(); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	if errs := register.DefaultPolicy().Validate(); len(errs) != 0 {
		t.Fatalf("default policy invalid: %v", errs)
	}
	p := register.DefaultPolicy()
	p.MaxBodyBytes = 10
	p.ClientIdleLifetime = time.Minute
	p.SecretLifetime = -time.Hour
	p.InitialAccessToken = "short"
	p.AllowedRedirectURIs = []string{"https://*.example.com/*", "https://example.com*", "http://evil.example/cb", "loopback"}
	p.RateLimit.PerKeyBurst = 0
	if errs := p.Validate(); len(errs) != 8 {
		t.Fatalf("got %d errors, want 8: %v", len(errs), errs)
	}
}
