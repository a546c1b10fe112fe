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
