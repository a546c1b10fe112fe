package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeVar matches Compose's ${NAME}, ${NAME:-default} and ${NAME:?message}.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}`)

// TestComposeEnvironmentIsValid loads the authd service's environment from
// docker-compose.yml, with Compose's interpolation, and checks it is a valid
// configuration on its own (no config file), as the image is 12-factor.
func TestComposeEnvironmentIsValid(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	shell := map[string]string{ // what the operator exports
		"AUTHD_KEYS_ENCRYPTION_SECRET": strings.Repeat("x", 48),
		"GITHUB_CLIENT_ID":             "Iv1.0123456789abcdef",
		"GITHUB_CLIENT_SECRET":         "0123456789abcdef0123456789abcdef01234567",
		"AUTHD_ALLOWLIST_GITHUB_USERS": "octocat",
	}
	env := map[string]string{}
	for name, val := range compose.Services["authd"].Environment {
		env[name] = composeVar.ReplaceAllStringFunc(val, func(ref string) string {
			m := composeVar.FindStringSubmatch(ref)
			if v := shell[m[1]]; v != "" {
				return v
			}
			if m[2] == "?" {
				t.Errorf("%s requires %s to be set", name, m[1])
			}
			return m[3]
		})
	}
	if len(env) == 0 {
		t.Fatal("no authd service environment in docker-compose.yml")
	}
	cfg, err := loadConfig(flagsFor(t), envOf(env))
	if err != nil {
		t.Fatalf("docker-compose.yml environment is not a valid configuration: %v", err)
	}
	if len(cfg.Upstreams) != 1 || cfg.Upstreams[0].ClientSecret != shell["GITHUB_CLIENT_SECRET"] ||
		len(cfg.Resources) != 1 || !cfg.MigrateOnStart || cfg.Dev {
		t.Fatalf("compose configuration not as documented: %+v", cfg)
	}
}

// TestComposeFilesRestartAndKeepSecretsOffDisk: every service of both
// Compose files comes back after a crash or reboot (restart policy), and no
// secret is interpolated by Compose into a config file it writes to disk:
// a config's content may only reference variables as $${NAME}, which
// Compose leaves for authd to expand from its environment. The Traefik
// example's config plus its authd environment is a valid configuration.
func TestComposeFilesRestartAndKeepSecretsOffDisk(t *testing.T) {
	t.Parallel()
	type service struct {
		Restart     string            `yaml:"restart"`
		Environment map[string]string `yaml:"environment"`
	}
	type composeFile struct {
		Services map[string]service `yaml:"services"`
		Configs  map[string]struct {
			Content string `yaml:"content"`
		} `yaml:"configs"`
	}
	interpolated := regexp.MustCompile(`(^|[^$])\$\{`)
	for _, path := range []string{"../../docker-compose.yml", "../../deploy/traefik/docker-compose.yml"} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var c composeFile
		if err := yaml.Unmarshal(raw, &c); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(c.Services) == 0 {
			t.Fatalf("%s: no services", path)
		}
		for name, s := range c.Services {
			if s.Restart != "unless-stopped" && s.Restart != "always" {
				t.Errorf("%s: service %s has restart %q, want unless-stopped or always", path, name, s.Restart)
			}
		}
		for name, cfg := range c.Configs {
			if interpolated.MatchString(cfg.Content) {
				t.Errorf("%s: config %s has a ${…} that Compose would expand into the file on disk; write $${…} and pass the variable in authd's environment", path, name)
			}
		}
		if cfg, ok := c.Configs["authd"]; ok {
			content := strings.ReplaceAll(cfg.Content, "$$", "$")
			env := map[string]string{"AUTHD_DATABASE_URL": "postgres://authd:authd@db:5432/authd", "AUTHD_ISSUER": "https://auth.example.com", "AUTHD_KEYS_ENCRYPTION_SECRET": strings.Repeat("x", 48)}
			for k := range c.Services["authd"].Environment {
				if _, set := env[k]; !set {
					env[k] = "0123456789abcdef0123456789abcdef01234567"
				}
			}
			env["AUTHD_TRUSTED_PROXIES"] = "172.30.0.2"
			env["AUTHD_MIGRATE_ON_START"] = "true"
			if _, err := loadConfig(flagsFor(t, "--config", writeFile(t, content)), envOf(env)); err != nil {
				t.Errorf("%s: config authd with the service's environment: %v", path, err)
			}
		}
	}
}
