package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/authd/authd/internal/config"
)

// envPrefix prefixes every environment variable authd reads.
const envPrefix = "AUTHD_"

// configFlags are the flags that override configuration keys, by key.
var configFlags = map[string]string{
	"dev":              "dev",
	"issuer":           "issuer",
	"listen":           "listen",
	"database_url":     "database-url",
	"migrate_on_start": "migrate",
	"log.level":        "log-level",
}

// addConfigFlags declares --config and every configuration flag on fs.
func addConfigFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "path to a YAML configuration file")
	addServeFlags(fs)
}

// loadConfig builds the effective configuration with the usual precedence,
// highest first: flags, environment (AUTHD_*), the YAML file, defaults.
// Every key has a default registered (spf13/viper#761: Unmarshal ignores
// keys viper has never heard of), and unknown keys in the file are errors.
func loadConfig(fs *pflag.FlagSet, getenv environ) (*config.Config, error) {
	v := viper.New()
	defaults := config.Defaults()
	keys := leafKeys(reflect.ValueOf(defaults), "")
	for _, k := range keys {
		v.SetDefault(k.name, k.value)
	}

	var problems []string
	// Variables the file refers to as ${AUTHD_…} (a secret kept out of
	// the file) are the file's, not unknown settings.
	referenced := map[string]bool{}
	if path, _ := fs.GetString("config"); path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		for _, m := range envRef.FindAllStringSubmatch(string(raw), -1) {
			referenced[m[1]] = true
		}
		expanded, err := expandEnvRefs(string(raw), getenv)
		if err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
		root, err := parseYAMLFile(path, expanded)
		if err != nil {
			return nil, err
		}
		problems = append(problems, checkFile(path, root)...)
		v.SetConfigType("yaml")
		if err := v.ReadConfig(strings.NewReader(expanded)); err != nil {
			return nil, fmt.Errorf("config file %s is not valid YAML: %w", path, err)
		}
	}
	problems = append(problems, checkEnv(getenv, keys, referenced)...)
	if len(problems) > 0 {
		return nil, fmt.Errorf("invalid configuration:\n  %s", strings.Join(problems, "\n  "))
	}

	// The environment is merged as a layer above the file and below flags.
	env := map[string]any{}
	for _, k := range keys {
		val, set := getenv.lookup(envName(k.name))
		if !set {
			continue
		}
		if val == "" {
			// Set but empty: the setting's default, overriding the file
			// (AUTHD_METRICS_LISTEN= turns off a listener the file opens).
			setNestedValue(env, strings.Split(k.name, "."), emptyValue(k.value))
			continue
		}
		if isStructured(k.value) {
			// Lists of objects (upstreams, clients, resources, scopes) cannot
			// be spelled as comma-separated strings: they come as JSON, so a
			// container can be configured from its environment alone.
			var parsed any
			if err := json.Unmarshal([]byte(val), &parsed); err != nil {
				return nil, fmt.Errorf("invalid configuration:\n  %s: not valid JSON (a list of objects, as in authd.example.yaml): %v", envName(k.name), err)
			}
			env = setNestedValue(env, strings.Split(k.name, "."), parsed)
			continue
		}
		setNested(env, strings.Split(k.name, "."), val)
	}
	if len(env) > 0 {
		if err := v.MergeConfigMap(env); err != nil {
			return nil, fmt.Errorf("environment: %w", err)
		}
	}

	for key, flag := range configFlags {
		if f := fs.Lookup(flag); f != nil && f.Changed {
			if err := v.BindPFlag(key, f); err != nil {
				return nil, err
			}
		}
	}

	var cfg config.Config
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	if err != nil {
		return nil, explainDecodeError(err)
	}
	cfg.ApplyDev()
	if err := cfg.Validate(); err != nil {
		return nil, &invalidConfigError{cfg: &cfg, err: fmt.Errorf("invalid configuration:\n%w", indent(err)), problems: splitJoined(err)}
	}
	return &cfg, nil
}

// invalidConfigError is a configuration that was read and decoded but did
// not validate. Commands that need only the database (migrate, purge,
// stats, clients) may still use it; a file that is not valid YAML, an
// unknown key or a malformed value fails them as it fails serve.
type invalidConfigError struct {
	cfg *config.Config
	err error
	// problems are Validate's, one per setting ("name: what is wrong").
	problems []error
}

func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// loadConfigFor loads the configuration for a command that uses only some
// settings: problems with settings it does not use (an admin command needs
// no upstreams or issuer) do not stop it. uses lists setting names, or
// prefixes ending in "." for groups. A file or variable that cannot be read
// or decoded fails every command.
func loadConfigFor(fs *pflag.FlagSet, getenv environ, uses ...string) (*config.Config, error) {
	cfg, err := loadConfig(fs, getenv)
	var invalid *invalidConfigError
	if err == nil || !errors.As(err, &invalid) {
		return cfg, err
	}
	var kept []string
	for _, p := range invalid.problems {
		name, _, _ := strings.Cut(p.Error(), ":")
		for _, u := range uses {
			if name == u || (strings.HasSuffix(u, ".") && strings.HasPrefix(name, u)) || strings.HasPrefix(name, u+"[") {
				kept = append(kept, p.Error())
				break
			}
		}
	}
	if len(kept) > 0 {
		return nil, fmt.Errorf("invalid configuration:\n%w", indent(errors.New(strings.Join(kept, "\n"))))
	}
	return invalid.cfg, nil
}

func (e *invalidConfigError) Error() string { return e.err.Error() }
func (e *invalidConfigError) Unwrap() error { return e.err }

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnvRefs replaces ${NAME} in the config file with the environment
// variable NAME, so secrets inside lists (upstream client secrets, client
// secrets) need not be written in the file. Only the braced form is
// expanded: a bare "$" stays, as secrets may contain one. An unset
// variable is an error rather than a silent empty secret.
func expandEnvRefs(s string, getenv environ) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		v := getenv.get(name)
		if v == "" {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variables referenced but not set: %s", strings.Join(missing, ", "))
	}
	return out, nil
}

type leafKey struct {
	name  string
	value any
}

// leafKeys lists every configuration key (dotted) with its default value,
// walking nested structs by their mapstructure tags.
func leafKeys(v reflect.Value, prefix string) []leafKey {
	var out []leafKey
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + tag
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			out = append(out, leafKeys(fv, name+".")...)
			continue
		}
		out = append(out, leafKey{name, fv.Interface()})
	}
	return out
}

// emptyValue is what an empty variable sets: the key's default, with a
// non-nil empty list for a list (viper would treat nil as unset and keep
// the file's value).
func emptyValue(def any) any {
	rv := reflect.ValueOf(def)
	if rv.Kind() == reflect.Slice && rv.IsNil() {
		return reflect.MakeSlice(rv.Type(), 0, 0).Interface()
	}
	return def
}

func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func setNested(m map[string]any, path []string, val string) {
	setNestedValue(m, path, val)
}

func setNestedValue(root map[string]any, path []string, val any) map[string]any {
	m := root
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = val
	return root
}

// isStructured reports whether a configuration value is a list of objects
// (or a map), which the environment spells as JSON.
func isStructured(v any) bool {
	t := reflect.TypeOf(v)
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Map:
		return true
	case reflect.Slice:
		e := t.Elem()
		return e.Kind() == reflect.Struct || e.Kind() == reflect.Map
	}
	return false
}

// explainDecodeError rewrites mapstructure's messages so each names the
// setting, its environment variable, and what was wrong.
func explainDecodeError(err error) error {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "decoding failed due to the following error(s):\n\n", "")
	var lines []string
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.Contains(line, "has invalid keys:") {
			line += " (unknown setting: check its spelling against authd.example.yaml)"
		}
		lines = append(lines, "  "+line)
	}
	return fmt.Errorf("invalid configuration:\n%s", strings.Join(lines, "\n"))
}

func indent(err error) error {
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		lines = append(lines, "  "+l)
	}
	return errors.New(strings.Join(lines, "\n"))
}

// environ is the process environment by name: os.Environ() in production,
// a map in tests. A variable set to "" is present (and overrides the file).
type environ map[string]string

func environFrom(kv []string) environ {
	m := environ{}
	for _, s := range kv {
		if k, v, ok := strings.Cut(s, "="); ok {
			m[k] = v
		}
	}
	return m
}

func (e environ) get(name string) string { return e[name] }

func (e environ) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}
