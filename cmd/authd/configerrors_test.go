package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/authd/authd/internal/config"
)

// TestConfigErrorsReadLikeTheHandWrittenOnes: every problem the decoder
// finds names the setting, where the value came from (file and line, or
// the variable), the bad value and an example of a good one, and leaks no
// Go internals (strconv, mapstructure, time package wording).
func TestConfigErrorsReadLikeTheHandWrittenOnes(t *testing.T) {
	t.Parallel()
	leaks := []string{"strconv", "invalid syntax", "has invalid keys", "unconvertible", "interface {}", "time: ", "mapstructure", "decoding failed", "''"}
	for _, tc := range []struct {
		name string
		yaml string
		env  map[string]string
		want []string
	}{
		{"int in env", validYAML, map[string]string{"AUTHD_HTTP_MAX_BODY_BYTES": "64k"},
			[]string{"http.max_body_bytes", "AUTHD_HTTP_MAX_BODY_BYTES", `"64k"`, "whole number", "65536"}},
		{"int in file", validYAML + "http:\n  max_body_bytes: lots\n",
			nil, []string{"http.max_body_bytes", "line 17", `"lots"`, "whole number"}},
		{"duration in env", validYAML, map[string]string{"AUTHD_TOKENS_CODE_LIFETIME": "soon"},
			[]string{"tokens.code_lifetime", "AUTHD_TOKENS_CODE_LIFETIME", `"soon"`, "duration", "1m"}},
		{"duration without unit", validYAML + "session:\n  lifetime: 24\n",
			nil, []string{"session.lifetime", "line 17", `"24"`, "unit", "24h"}},
		{"duration unknown unit", validYAML + "session:\n  lifetime: 3d\n",
			nil, []string{"session.lifetime", "line 17", `"3d"`, "72h"}},
		{"bool in env", validYAML, map[string]string{"AUTHD_MIGRATE_ON_START": "perhaps"},
			[]string{"migrate_on_start", "AUTHD_MIGRATE_ON_START", `"perhaps"`, "true or false"}},
		{"list where a string belongs", validYAML + "listen: [a, b]\n",
			nil, []string{"listen", "line 16", "a single value", ":8080"}},
		{"unknown key at top", validYAML + "isuer: typo\n",
			nil, []string{"isuer", "line 16", "unknown setting", `did you mean "issuer"`}},
		{"unknown nested key", strings.Replace(validYAML, "keys:\n", "keys:\n  algoritm: ES256\n", 1),
			nil, []string{"keys.algoritm", "line 5", `did you mean "keys.algorithm"`}},
		{"unknown key in a list entry", strings.Replace(validYAML, "    client_id: gh-client\n", "    client_id: gh-client\n    clientsecret: x\n", 1),
			nil, []string{"upstreams[0].clientsecret", "line 10", `did you mean "upstreams[0].client_secret"`}},
		{"unknown key in env JSON", validYAML, map[string]string{"AUTHD_RESOURCES": `[{"uri":"https://mcp.example.com/mcp","nmae":"x"}]`},
			[]string{"resources[0].nmae", "AUTHD_RESOURCES", `did you mean "resources[0].name"`}},
		{"string in a list entry", validYAML + "resources:\n  - uri: https://mcp.example.com/mcp\n    scopes: {a: b}\n",
			nil, []string{"resources[0].scopes", "line 18", "list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, tc.yaml)
			_, err := loadConfig(flagsFor(t, "--config", path), envOf(tc.env))
			if err == nil {
				t.Fatal("want an error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not mention %q:\n%s", w, msg)
				}
			}
			for _, l := range leaks {
				if strings.Contains(msg, l) {
					t.Errorf("error leaks Go internals (%q):\n%s", l, msg)
				}
			}
		})
	}
}

// TestConfigRefusesUnknownEnvironmentVariables: a misspelt AUTHD_ variable
// is an unknown setting like a misspelt key in the file, not silently
// ignored.
func TestConfigRefusesUnknownEnvironmentVariables(t *testing.T) {
	t.Parallel()
	path := writeFile(t, validYAML)
	_, err := loadConfig(flagsFor(t, "--config", path), envOf(map[string]string{"AUTHD_ISSUERR": "https://a.example.com", "AUTHD_TOKENS_CODE_LIFETIM": "1m"}))
	if err == nil {
		t.Fatal("AUTHD_ISSUERR accepted")
	}
	for _, w := range []string{"AUTHD_ISSUERR", `did you mean AUTHD_ISSUER`, "AUTHD_TOKENS_CODE_LIFETIM", "did you mean AUTHD_TOKENS_CODE_LIFETIME", "unknown"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
	// Variables of the test suite and CI, and those Kubernetes sets for the
	// Services "authd" and "authd-metrics" in the pod's namespace, are not
	// settings, and not refused.
	if _, err := loadConfig(flagsFor(t, "--config", path), envOf(map[string]string{
		"AUTHD_TEST_DATABASE_URL": "postgres://x", "AUTHD_VULNDB": "file:///x",
		"AUTHD_SERVICE_HOST": "10.0.0.1", "AUTHD_SERVICE_PORT": "80", "AUTHD_SERVICE_PORT_HTTP": "80",
		"AUTHD_PORT": "tcp://10.0.0.1:80", "AUTHD_PORT_80_TCP": "tcp://10.0.0.1:80", "AUTHD_PORT_80_TCP_PROTO": "tcp",
		"AUTHD_PORT_80_TCP_PORT": "80", "AUTHD_PORT_80_TCP_ADDR": "10.0.0.1",
		"AUTHD_METRICS_SERVICE_HOST": "10.0.0.2", "AUTHD_METRICS_SERVICE_PORT": "9090", "AUTHD_METRICS_SERVICE_PORT_METRICS": "9090",
		"AUTHD_METRICS_PORT": "tcp://10.0.0.2:9090", "AUTHD_METRICS_PORT_9090_TCP_ADDR": "10.0.0.2",
	})); err != nil {
		t.Fatalf("non-setting variables refused: %v", err)
	}
	// A variable the file itself refers to (a secret kept out of it) is
	// the file's, not an unknown setting.
	withRef := writeFile(t, validYAML+"\n# the database password: ${AUTHD_DB_PASSWORD}\n")
	if _, err := loadConfig(flagsFor(t, "--config", withRef), envOf(map[string]string{"AUTHD_DB_PASSWORD": "s3cret"})); err != nil {
		t.Fatalf("a variable the config file refers to was refused: %v", err)
	}
	// But a setting's near miss still is.
	if _, err := loadConfig(flagsFor(t, "--config", path), envOf(map[string]string{"AUTHD_METRICS_LISTN": ":9090"})); err == nil {
		t.Fatal("AUTHD_METRICS_LISTN accepted")
	}
	// Through the binary: exit status non-zero.
	var out, logs strings.Builder
	if err := run(t.Context(), []string{"config", "--config", path}, envOf(map[string]string{"AUTHD_ISSUERR": "x"}), &out, &logs); err == nil {
		t.Fatalf("authd config succeeded with AUTHD_ISSUERR set:\n%s", out.String())
	}
}

// TestConfigYAMLErrorAtItsLine: a syntax error is reported at the line of
// the file where it is, not shifted.
func TestConfigYAMLErrorAtItsLine(t *testing.T) {
	t.Parallel()
	// validYAML ends with line 15; the mistake is on the line given.
	for name, tc := range map[string]struct {
		yaml string
		line string
	}{
		"tab indentation":  {validYAML + "http:\n\tread_timeout: 5s\n", "line 17"},
		"unclosed bracket": {validYAML + "trusted_proxies: [10.0.0.0/8\nlisten: :8080\n", "line 16"},
		"stray indent":     {validYAML + "log:\n  level: info\n format: json\n", "line 18"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, tc.yaml)
			_, err := loadConfig(flagsFor(t, "--config", path), envOf(nil))
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tc.line) {
				t.Fatalf("YAML error not reported at %s:\n%v", tc.line, err)
			}
		})
	}
}

// TestEmptyEnvironmentValueOverridesTheFile: AUTHD_METRICS_LISTEN= turns
// the file's metrics listener off (an empty variable is the setting's
// default), as with any other layer above the file.
func TestEmptyEnvironmentValueOverridesTheFile(t *testing.T) {
	t.Parallel()
	path := writeFile(t, validYAML+"metrics:\n  listen: 127.0.0.1:9090\nlog:\n  level: debug\n")
	cfg, err := loadConfig(flagsFor(t, "--config", path), envOf(map[string]string{"AUTHD_METRICS_LISTEN": "", "AUTHD_LOG_LEVEL": ""}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics.Listen != "" || cfg.Log.Level != "info" {
		t.Fatalf("empty variables did not override the file: metrics.listen=%q log.level=%q", cfg.Metrics.Listen, cfg.Log.Level)
	}
}

// TestNoSettingLooksLikeANonSettingVariable: the variables authd ignores
// (tests', CI's, Kubernetes service links) never shadow a setting.
func TestNoSettingLooksLikeANonSettingVariable(t *testing.T) {
	t.Parallel()
	for _, k := range leafKeys(reflect.ValueOf(config.Defaults()), "") {
		if isNonSettingVariable(envName(k.name)) {
			t.Errorf("%s (%s) would be ignored as a non-setting variable", envName(k.name), k.name)
		}
	}
}
