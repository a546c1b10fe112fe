package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/config"
)

func envOf(m map[string]string) environ { return environ(m) }

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "authd.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const validYAML = `
issuer: https://auth.example.com
database_url: postgres://authd:pw@db:5432/authd
keys:
  encryption_secret: 0123456789abcdef0123456789abcdef
upstreams:
  - id: github
    type: github
    client_id: gh-client
    client_secret: gh-secret
    github: {load_teams: true}
allowlist:
  github_orgs: [acme]
tokens:
  access_token_lifetime: 15m
`

func flagsFor(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	addConfigFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestLoadConfigPrecedence(t *testing.T) {
	t.Parallel()
	path := writeFile(t, validYAML+"listen: \":9000\"\n")

	// File over defaults.
	cfg, err := loadConfig(flagsFor(t, "--config", path), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":9000" || cfg.Tokens.AccessTokenLifetime != 15*time.Minute || cfg.Tokens.CodeLifetime != time.Minute {
		t.Fatalf("file/defaults not applied: listen=%q at=%v code=%v", cfg.Listen, cfg.Tokens.AccessTokenLifetime, cfg.Tokens.CodeLifetime)
	}

	// Environment over file, including nested keys and durations.
	env := envOf(map[string]string{
		"AUTHD_LISTEN":                       ":9100",
		"AUTHD_TOKENS_ACCESS_TOKEN_LIFETIME": "5m",
		"AUTHD_TRUSTED_PROXIES":              "10.0.0.0/8,192.168.1.1",
	})
	cfg, err = loadConfig(flagsFor(t, "--config", path), env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":9100" || cfg.Tokens.AccessTokenLifetime != 5*time.Minute || len(cfg.TrustedProxies) != 2 {
		t.Fatalf("env not applied: listen=%q at=%v proxies=%v", cfg.Listen, cfg.Tokens.AccessTokenLifetime, cfg.TrustedProxies)
	}

	// Flags over environment.
	cfg, err = loadConfig(flagsFor(t, "--config", path, "--listen", ":9200"), env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":9200" {
		t.Fatalf("flag not applied: %q", cfg.Listen)
	}
}

func TestLoadConfigEnvOnly(t *testing.T) {
	t.Parallel()
	// 12-factor: no file at all.
	cfg, err := loadConfig(flagsFor(t), envOf(map[string]string{
		"AUTHD_ISSUER":                      "https://auth.example.com",
		"AUTHD_DATABASE_URL":                "postgres://db/authd",
		"AUTHD_KEYS_ENCRYPTION_SECRET":      strings.Repeat("k", 40),
		"AUTHD_ALLOWLIST_ALLOW_ALL_USERS":   "true",
		"AUTHD_REGISTRATION_ENABLED":        "false",
		"AUTHD_DEV":                         "true", // dev supplies the upstream
		"AUTHD_SESSION_LIFETIME":            "2h",
		"AUTHD_KEYS_ALGORITHM":              "RS256",
		"AUTHD_HTTP_MAX_BODY_BYTES":         "2048",
		"AUTHD_INTROSPECTION_BEARER_TOKENS": strings.Repeat("t", 40),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer != "https://auth.example.com" || cfg.Session.Lifetime != 2*time.Hour || cfg.Keys.Algorithm != "RS256" ||
		cfg.HTTP.MaxBodyBytes != 2048 || !cfg.Allowlist.AllowAllUsers || cfg.Registration.Enabled || len(cfg.Introspection.BearerTokens) != 1 {
		t.Fatalf("env-only config not applied: %+v", cfg)
	}
}

func TestLoadConfigErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		yaml string
		env  map[string]string
		want []string
	}{
		{"malformed yaml", "issuer: [unclosed\n", nil, []string{"not valid YAML"}},
		{"unknown key", validYAML + "isuer: typo\n", nil, []string{"isuer", "unknown setting"}},
		{"unknown nested key", strings.Replace(validYAML, "keys:\n", "keys:\n  colour: red\n", 1), nil, []string{"colour"}},
		{"bad env duration", validYAML, map[string]string{"AUTHD_TOKENS_CODE_LIFETIME": "soon"}, []string{"code_lifetime"}},
		{"bad env bool", validYAML, map[string]string{"AUTHD_MIGRATE_ON_START": "perhaps"}, []string{"migrate_on_start"}},
		{"missing issuer", strings.Replace(validYAML, "issuer: https://auth.example.com", "", 1), nil, []string{"issuer: required", "AUTHD_ISSUER"}},
		{"http issuer not loopback", validYAML, map[string]string{"AUTHD_ISSUER": "http://auth.example.com"}, []string{"issuer", "https"}},
		{"issuer with query", validYAML, map[string]string{"AUTHD_ISSUER": "https://auth.example.com?x=1"}, []string{"issuer", "query"}},
		{"issuer with fragment", validYAML, map[string]string{"AUTHD_ISSUER": "https://auth.example.com#x"}, []string{"issuer", "fragment"}},
		{"issuer path trailing slash", validYAML, map[string]string{"AUTHD_ISSUER": "https://example.com/auth/"}, []string{"issuer", "slash"}},
		{"issuer path dot segment", validYAML, map[string]string{"AUTHD_ISSUER": "https://example.com/a/../b"}, []string{"issuer", "path"}},
		{"issuer path empty segment", validYAML, map[string]string{"AUTHD_ISSUER": "https://example.com/a//b"}, []string{"issuer", "path"}},
		{"issuer trailing slash", validYAML, map[string]string{"AUTHD_ISSUER": "https://auth.example.com/"}, []string{"issuer", "slash"}},
		{"missing database", strings.Replace(validYAML, "database_url: postgres://authd:pw@db:5432/authd", "", 1), nil, []string{"database_url: required"}},
		{"short encryption secret", validYAML, map[string]string{"AUTHD_KEYS_ENCRYPTION_SECRET": "short"}, []string{"keys.encryption_secret"}},
		{"bad algorithm", validYAML, map[string]string{"AUTHD_KEYS_ALGORITHM": "HS256"}, []string{"keys.algorithm"}},
		{"bad proxy", validYAML, map[string]string{"AUTHD_TRUSTED_PROXIES": "10.0.0.0/33"}, []string{"trusted_proxies"}},
		{"no allowlist", strings.Replace(validYAML, "  github_orgs: [acme]", "  allow_all_users: false", 1), nil, []string{"allowlist", "allow_all_users"}},
		{"no upstreams", "issuer: https://a.example\ndatabase_url: postgres://db/a\nkeys: {encryption_secret: 0123456789abcdef0123456789abcdef}\nallowlist: {allow_all_users: true}\n", nil, []string{"upstreams"}},
		{"org rules without load_teams", strings.Replace(validYAML, "github: {load_teams: true}", "github: {load_teams: false}", 1), nil, []string{"upstreams[0].github.load_teams"}},
		{"dev login outside --dev", strings.Replace(validYAML, "    type: github\n", "    type: dev\n", 1), nil, []string{"upstreams[0].type", "--dev"}},
		{"membership check without store_tokens", strings.Replace(validYAML, "    github: {load_teams: true}\n", "    github: {load_teams: true}\n    membership_check_interval: 5m\n", 1), nil, []string{"upstreams[github].membership_check_interval", "store_tokens"}},
		{"membership check too often", strings.Replace(validYAML, "    github: {load_teams: true}\n", "    github: {load_teams: true}\n    store_tokens: true\n    membership_check_interval: 10s\n", 1), nil, []string{"upstreams[github].membership_check_interval", "minimum of 1m"}},
		{"store_tokens with pem files only", strings.Replace(strings.Replace(validYAML, "  encryption_secret: 0123456789abcdef0123456789abcdef", "  pem_files: [/nonexistent.pem]", 1), "    github: {load_teams: true}\n", "    github: {load_teams: true}\n    store_tokens: true\n", 1), nil, []string{"upstreams[0].store_tokens", "keys.encryption_secret"}},
		{"upstream scopes of an unknown upstream", validYAML + "resources:\n  - {uri: https://mcp.example.com/, upstream_scopes: {gitlab: [api]}}\n", nil, []string{"resources[0].upstream_scopes.gitlab", "no upstream"}},
		{"upstream scopes without store_tokens", validYAML + "resources:\n  - {uri: https://mcp.example.com/, upstream_scopes: {github: [repo]}}\n", nil, []string{"resources[0].upstream_scopes.github", "store_tokens: true"}},
		{"bad upstream scope", strings.Replace(validYAML, "    github: {load_teams: true}\n", "    github: {load_teams: true}\n    store_tokens: true\n", 1) + "resources:\n  - {uri: https://mcp.example.com/, upstream_scopes: {github: [\"repo,gist\"]}}\n", nil, []string{"resources[0].upstream_scopes.github[0]", "not a valid scope"}},
		{"duplicate upstream id", strings.Replace(validYAML, "allowlist:", "  - {id: github, type: github, client_id: b, client_secret: c, github: {load_teams: true}}\nallowlist:", 1), nil, []string{"upstreams[1].id", "used twice"}},
		{"client auth failure burst missing", validYAML, map[string]string{"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_IP_BURST": "0"}, []string{"rate_limits.client_auth_failures.per_ip_burst"}},
		{"negative client auth failure rate", validYAML, map[string]string{"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_CLIENT_PER_MINUTE": "-1"}, []string{"rate_limits.client_auth_failures.per_client_per_minute"}},
		{"negative purge interval", validYAML, map[string]string{"AUTHD_PURGE_INTERVAL": "-1m"}, []string{"purge_interval"}},
		{"database timeout beyond the write timeout", validYAML, map[string]string{"AUTHD_DATABASE_TIMEOUT": "30s"}, []string{"database_timeout", "http.write_timeout"}},
		{"negative database max in flight", validYAML, map[string]string{"AUTHD_DATABASE_MAX_IN_FLIGHT": "-1"}, []string{"database_max_in_flight"}},
		{"listen url not postgres", validYAML, map[string]string{"AUTHD_DATABASE_LISTEN_URL": "mysql://db/a"}, []string{"database_listen_url"}},
		{"retry window too long", validYAML, map[string]string{"AUTHD_TOKENS_REFRESH_RETRY_WINDOW": "1h"}, []string{"tokens.refresh_retry_window"}},
		{"query exec mode that breaks jsonb", validYAML, map[string]string{"AUTHD_DATABASE_QUERY_EXEC_MODE": "exec"}, []string{"database_query_exec_mode", "cache_describe"}},
		{"query exec mode unsafe behind PgBouncer in the URL", validYAML, map[string]string{"AUTHD_DATABASE_URL": "postgres://authd@db/authd?default_query_exec_mode=describe_exec"}, []string{"database_url", "default_query_exec_mode=describe_exec"}},
		{"bad unknown_scopes", validYAML, map[string]string{"AUTHD_UNKNOWN_SCOPES": "drop"}, []string{"unknown_scopes", "ignore or reject"}},
		{"offline_access declared", validYAML, map[string]string{"AUTHD_SCOPES": `[{"name":"offline_access"}]`}, []string{"scopes[0].name", "offline_access"}},
		{"openid as a default scope", validYAML, map[string]string{"AUTHD_DEFAULT_SCOPES": "openid"}, []string{"default_scopes", "openid"}},
		{"accent colour not a hex colour", validYAML, map[string]string{"AUTHD_PAGES_ACCENT_COLOR": "red;}body{display:none"}, []string{"pages.accent_color", "red;}body{display:none", `"#1f6feb"`}},
		{"logo over http", validYAML, map[string]string{"AUTHD_PAGES_LOGO_URL": "http://cdn.example.com/logo.png"}, []string{"pages.logo_url", "http://cdn.example.com/logo.png", "https://cdn.example.com/logo.svg"}},
		{"logo as a data URL", validYAML, map[string]string{"AUTHD_PAGES_LOGO_URL": "data:image/png;base64,AAAA"}, []string{"pages.logo_url", "data:"}},
		{"product name with control characters", validYAML, map[string]string{"AUTHD_PAGES_PRODUCT_NAME": "Acme\u202e"}, []string{"pages.product_name"}},
		{"template dir missing", validYAML, map[string]string{"AUTHD_PAGES_TEMPLATE_DIR": "/nonexistent/theme"}, []string{"pages.template_dir", "/nonexistent/theme", "/etc/authd/theme"}},
		{"back-channel logout mode unknown", validYAML, map[string]string{"AUTHD_UPSTREAMS": `[{"id":"sso","type":"oidc","client_id":"a","oidc":{"issuer":"https://sso.example.com","backchannel_logout":"all"}}]`}, []string{"upstreams[sso].oidc.backchannel_logout", `"all"`, "sessions"}},
		{"back-channel logout for google", validYAML, map[string]string{"AUTHD_UPSTREAMS": `[{"id":"g","type":"google","client_id":"a","client_secret":"b","oidc":{"backchannel_logout":"grants"}}]`}, []string{"upstreams[g].oidc.backchannel_logout", "only to type oidc"}},
		{"several problems at once", validYAML, map[string]string{"AUTHD_ISSUER": "ftp://x", "AUTHD_LOG_LEVEL": "loud"}, []string{"issuer", "log.level"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.yaml)
			_, err := loadConfig(flagsFor(t, "--config", path), envOf(tc.env))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoopbackHTTPIssuerAllowedWithoutDev(t *testing.T) {
	t.Parallel()
	for _, iss := range []string{"http://localhost:8080", "http://127.0.0.1:9000", "http://[::1]:8080"} {
		path := writeFile(t, validYAML)
		if _, err := loadConfig(flagsFor(t, "--config", path), envOf(map[string]string{"AUTHD_ISSUER": iss})); err != nil {
			t.Errorf("%s rejected: %v", iss, err)
		}
	}
}

// An issuer with a path (RFC 8414 §3.1) is accepted as written.
func TestIssuerWithPathAccepted(t *testing.T) {
	t.Parallel()
	for _, iss := range []string{"https://example.com/auth", "https://example.com/org/tenant-1", "http://127.0.0.1:9000/tenant"} {
		path := writeFile(t, validYAML)
		cfg, err := loadConfig(flagsFor(t, "--config", path), envOf(map[string]string{"AUTHD_ISSUER": iss}))
		if err != nil {
			t.Errorf("%s rejected: %v", iss, err)
			continue
		}
		if cfg.Issuer != iss {
			t.Errorf("issuer %q, want %q", cfg.Issuer, iss)
		}
	}
}

func TestConfigCommandMasksSecrets(t *testing.T) {
	t.Parallel()
	path := writeFile(t, validYAML)
	var out, errOut bytes.Buffer
	env := envOf(map[string]string{"AUTHD_INTROSPECTION_FORWARD_AUTH_SECRET": "proxy-forward-auth-secret-0123456789",
		"AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS": "previous-secret-one-0123456789abcdef,previous-secret-two-0123456789abcdef"})
	err := run(context.Background(), []string{"config", "--config", path}, env, &out, &errOut)
	if err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	s := out.String()
	for _, secret := range []string{"gh-secret", "0123456789abcdef0123456789abcdef", ":pw@", "proxy-forward-auth-secret", "previous-secret-one", "previous-secret-two"} {
		if strings.Contains(s, secret) {
			t.Errorf("secret %q printed:\n%s", secret, s)
		}
	}
	for _, want := range []string{"issuer: https://auth.example.com", "access_token_lifetime: 15m0s", "client_id: gh-client", "********"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestInvalidConfigExitsWithError(t *testing.T) {
	t.Parallel()
	path := writeFile(t, validYAML+"bogus_key: 1\n")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"serve", "--config", path}, envOf(nil), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "bogus_key") {
		t.Fatalf("serve with an unknown key: %v", err)
	}
}

func TestVersionCommand(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, envOf(nil), &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"authd ", "revision: ", "go:       " + runtime.Version(), "go.mod names " + authd.RequiredGo()} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestServeWarnsWhenBuiltWithAnOlderGo: GOTOOLCHAIN=local builds with the
// installed Go whatever go.mod says; the binary says so at start-up.
func TestServeWarnsWhenBuiltWithAnOlderGo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		builtWith string
		warn      bool
	}{{"go1.26.8", true}, {authd.RequiredGo(), false}} {
		addr := freeAddr(t)
		ready := make(chan string, 1)
		logs := &syncBuffer{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		e := &env{getenv: envOf(map[string]string{"AUTHD_LISTEN": addr}), stdout: &syncBuffer{}, stderr: logs, now: time.Now, ready: ready, builtWith: tc.builtWith}
		go func() { done <- newRootCmd(e).ExecuteContextC(ctx, []string{"serve", "--dev"}) }()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("serve: %v\n%s", err, logs.String())
		}
		cancel()
		<-done
		if got := strings.Contains(logs.String(), "older than the one go.mod names"); got != tc.warn {
			t.Errorf("built with %s: warning logged %v, want %v\n%s", tc.builtWith, got, tc.warn, logs.String())
		}
	}
}

// TestExampleConfigIsValid keeps authd.example.yaml loadable: the shipped
// example must pass validation once the secrets it leaves to the
// environment are set.
func TestExampleConfigIsValid(t *testing.T) {
	t.Parallel()
	environ := map[string]string{
		"AUTHD_KEYS_ENCRYPTION_SECRET": strings.Repeat("s", 48),
		"DB_PASSWORD":                  "db-pw",
		"MCP_SERVER_CLIENT_SECRET":     "resource-server-secret-0123456789",
		"GITHUB_CLIENT_SECRET":         "gh-secret", "GOOGLE_CLIENT_SECRET": "g-secret", "SSO_CLIENT_SECRET": "sso-secret",
	}
	cfg, err := loadConfig(flagsFor(t, "--config", "../../authd.example.yaml"), envOf(environ))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Upstreams[0].ClientSecret != "gh-secret" || cfg.Clients[0].Secret != "resource-server-secret-0123456789" {
		t.Fatal("${VAR} references not expanded")
	}
	// An unset reference is an error naming the variable.
	delete(environ, "GOOGLE_CLIENT_SECRET")
	if _, err := loadConfig(flagsFor(t, "--config", "../../authd.example.yaml"), envOf(environ)); err == nil ||
		!strings.Contains(err.Error(), "GOOGLE_CLIENT_SECRET") {
		t.Fatalf("unset reference: %v", err)
	}
	if len(cfg.Upstreams) != 3 || len(cfg.Resources) != 1 || len(cfg.Clients) != 2 {
		t.Fatalf("example not fully loaded: %d upstreams, %d resources, %d clients", len(cfg.Upstreams), len(cfg.Resources), len(cfg.Clients))
	}
}

func TestLoadConfigStructuredEnvAsJSON(t *testing.T) {
	t.Parallel()
	// A container configured from its environment alone still needs
	// upstreams and resources: lists of objects come as JSON.
	env := map[string]string{
		"AUTHD_ISSUER":                 "https://auth.example.com",
		"AUTHD_DATABASE_URL":           "postgres://db/authd",
		"AUTHD_KEYS_ENCRYPTION_SECRET": strings.Repeat("k", 40),
		"AUTHD_ALLOWLIST_GITHUB_USERS": "octocat,hubot",
		"AUTHD_UPSTREAMS":              `[{"id":"github","type":"github","client_id":"Iv1.abc","client_secret":"s3cret"}]`,
		"AUTHD_RESOURCES":              `[{"uri":"https://mcp.example.com/mcp","name":"Tools","scopes":["tools:read"]}]`,
	}
	cfg, err := loadConfig(flagsFor(t), envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Upstreams) != 1 || cfg.Upstreams[0].ClientSecret != "s3cret" || cfg.Upstreams[0].Type != "github" {
		t.Fatalf("upstreams from env: %+v", cfg.Upstreams)
	}
	if len(cfg.Resources) != 1 || cfg.Resources[0].URI != "https://mcp.example.com/mcp" || len(cfg.Allowlist.GitHubUsers) != 2 {
		t.Fatalf("resources/allowlist from env: %+v %+v", cfg.Resources, cfg.Allowlist)
	}

	env["AUTHD_UPSTREAMS"] = `[{"id":"github",`
	_, err = loadConfig(flagsFor(t), envOf(env))
	if err == nil || !strings.Contains(err.Error(), "AUTHD_UPSTREAMS") || !strings.Contains(err.Error(), "JSON") {
		t.Fatalf("malformed JSON must name the variable, got %v", err)
	}
	env["AUTHD_UPSTREAMS"] = `[{"id":"github","type":"github","client_id":"x","client_secret":"y","colour":"red"}]`
	_, err = loadConfig(flagsFor(t), envOf(env))
	if err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown nested key from env must be refused, got %v", err)
	}
}

// TestExampleConfigShowsTheDefaults: where authd.example.yaml sets a setting
// that has a default, it shows that default (the README's and Defaults'),
// so an operator copying it changes nothing by accident. Settings without a
// default (issuer, upstreams, …) are examples.
func TestExampleConfigShowsTheDefaults(t *testing.T) {
	t.Parallel()
	environ := map[string]string{
		"AUTHD_KEYS_ENCRYPTION_SECRET": strings.Repeat("s", 48), "DB_PASSWORD": "db-pw",
		"MCP_SERVER_CLIENT_SECRET": "resource-server-secret-0123456789",
		"GITHUB_CLIENT_SECRET":     "gh-secret", "GOOGLE_CLIENT_SECRET": "g-secret", "SSO_CLIENT_SECRET": "sso-secret",
	}
	cfg, err := loadConfig(flagsFor(t, "--config", "../../authd.example.yaml"), envOf(environ))
	if err != nil {
		t.Fatal(err)
	}
	example := leafKeys(reflect.ValueOf(*cfg), "")
	defaults := leafKeys(reflect.ValueOf(config.Defaults()), "")
	for i, d := range defaults {
		if reflect.ValueOf(d.value).IsZero() {
			continue
		}
		if !reflect.DeepEqual(example[i].value, d.value) {
			t.Errorf("authd.example.yaml sets %s to %v; the default is %v", d.name, example[i].value, d.value)
		}
	}
}

// database_query_exec_mode becomes pgx's default_query_exec_mode in the URL
// every store connection is opened with (a multi-host URL keeps its hosts
// and parameters); without it the URL is used as written.
func TestDatabaseDSNCarriesQueryExecMode(t *testing.T) {
	t.Parallel()
	const multi = "postgres://authd:p%40ss@db1:5432,db2:5432/authd?target_session_attrs=read-write"
	for _, tc := range []struct{ url, mode, want string }{
		{multi, "", multi},
		{multi, "cache_describe", "postgres://authd:p%40ss@db1:5432,db2:5432/authd?default_query_exec_mode=cache_describe&target_session_attrs=read-write"},
		{"postgres://db/a?default_query_exec_mode=cache_statement", "cache_describe", "postgres://db/a?default_query_exec_mode=cache_describe"},
	} {
		cfg, err := loadConfig(flagsFor(t, "--config", writeFile(t, validYAML)), envOf(map[string]string{
			"AUTHD_DATABASE_URL": tc.url, "AUTHD_DATABASE_QUERY_EXEC_MODE": tc.mode,
		}))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.DatabaseDSN(); got != tc.want {
			t.Errorf("url %s, mode %q: DatabaseDSN %s, want %s", tc.url, tc.mode, got, tc.want)
		}
	}
}
