package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/authd/authd/internal/config"
)

// This file checks the raw values of each configuration source (the YAML
// file, AUTHD_* variables) against the shape of config.Config before the
// decoder sees them, so that a misspelt key or a malformed value gets a
// message like Validate's: the setting, where the value came from (file and
// line, or variable), the bad value, and an example of a good one — not the
// decoder's Go wording.

var durationType = reflect.TypeOf(time.Duration(0))

// configChecker collects problems with the raw configuration.
type configChecker struct {
	problems []string
	// where names a value's origin from its key, e.g. "authd.yaml line 3"
	// or "AUTHD_LISTEN".
	where func(key string) string
}

func (c *configChecker) addf(key, format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf("%s (%s): %s", key, c.where(key), fmt.Sprintf(format, args...)))
}

// check checks v, the raw value of key, against t, the Go type it decodes
// into; def is the default value (for examples), if known.
func (c *configChecker) check(t reflect.Type, key string, v any, def reflect.Value) {
	if v == nil { // "key:" with nothing: the default
		return
	}
	shown := strconv.Quote(scalarString(v))
	example := func(fallback string) string {
		if def.IsValid() && !def.IsZero() {
			if d, ok := def.Interface().(time.Duration); ok {
				return shortDuration(d)
			}
			return fmt.Sprint(def.Interface())
		}
		return fallback
	}
	isScalar := func() bool {
		switch v.(type) {
		case map[string]any, []any:
			return false
		}
		return true
	}
	switch {
	case t == durationType:
		switch x := v.(type) {
		case int:
			if x != 0 {
				c.addf(key, "%s has no unit; write e.g. %dh, %dm or %ds", shown, x, x, x)
			}
		case string:
			if _, err := time.ParseDuration(x); err != nil {
				if n, err := strconv.Atoi(strings.TrimSuffix(x, "d")); err == nil && strings.HasSuffix(x, "d") {
					c.addf(key, "%s is not a duration (units are h, m, s, ms); write %dh", shown, n*24)
				} else if _, err := strconv.Atoi(x); err == nil {
					c.addf(key, "%s has no unit; write e.g. %ss or %sm", shown, x, x)
				} else {
					c.addf(key, "%s is not a duration; write e.g. %s (units h, m, s, ms)", shown, example("30s"))
				}
			}
		default:
			c.addf(key, "%s is not a duration; write e.g. %s", shown, example("30s"))
		}
	case t.Kind() == reflect.Bool:
		switch x := v.(type) {
		case bool:
		case string:
			if _, err := strconv.ParseBool(x); err != nil {
				c.addf(key, "%s is not true or false", shown)
			}
		default:
			c.addf(key, "%s is not true or false", shown)
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		ok := false
		switch x := v.(type) {
		case int:
			ok = x >= 0 || t.Kind() <= reflect.Int64
		case float64:
			ok = x == float64(int64(x))
		case string:
			_, err := strconv.ParseInt(x, 10, 64)
			ok = err == nil
		}
		if !ok {
			c.addf(key, "%s is not a whole number; write e.g. %s", shown, example("10"))
		}
	case t.Kind() == reflect.String:
		if !isScalar() {
			c.addf(key, "takes a single value, not a %s; e.g. %s", kindWord(v), example(`"…"`))
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		switch x := v.(type) {
		case string:
		case []any:
			for i, e := range x {
				switch e.(type) {
				case map[string]any, []any:
					c.addf(fmt.Sprintf("%s[%d]", key, i), "takes a single value, not a %s", kindWord(e))
				}
			}
		default:
			c.addf(key, "is a list: write [a, b] (in the environment: a,b), not a %s", kindWord(v))
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		list, ok := v.([]any)
		if !ok {
			c.addf(key, "is a list of objects (see authd.example.yaml), not a %s", kindWord(v))
			return
		}
		for i, e := range list {
			c.check(t.Elem(), fmt.Sprintf("%s[%d]", key, i), e, reflect.Value{})
		}
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			c.addf(key, "is a group of settings (%s.…), not a %s", key, kindWord(v))
			return
		}
		c.checkStruct(t, key, m, def)
	}
}

// checkStruct checks the keys and values of one group of settings.
func (c *configChecker) checkStruct(t reflect.Type, prefix string, m map[string]any, def reflect.Value) {
	fields := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("mapstructure"), ",")[0]
		if tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		i, ok := fields[strings.ToLower(k)]
		if !ok {
			known := make([]string, 0, len(fields))
			for f := range fields {
				known = append(known, f)
			}
			msg := "unknown setting"
			if s := closest(k, known); s != "" {
				if prefix != "" {
					s = prefix + "." + s
				}
				msg += fmt.Sprintf("; did you mean %q?", s)
			} else {
				msg += " (check its spelling against authd.example.yaml)"
			}
			c.addf(key, "%s", msg)
			continue
		}
		var fdef reflect.Value
		if def.IsValid() {
			fdef = def.Field(i)
		}
		c.check(t.Field(i).Type, key, m[k], fdef)
	}
}

// checkFile checks the YAML configuration file, reporting its lines.
func checkFile(path string, root *yaml.Node) []string {
	lines := map[string]int{}
	yamlLines(root, "", lines)
	var raw any
	if err := root.Decode(&raw); err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	if raw == nil {
		return nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return []string{fmt.Sprintf("%s: the file must be a mapping of settings (key: value), as in authd.example.yaml", path)}
	}
	c := &configChecker{where: func(key string) string {
		if l, ok := lines[key]; ok {
			return fmt.Sprintf("%s line %d", path, l)
		}
		return path
	}}
	defaults := config.Defaults()
	c.checkStruct(reflect.TypeOf(defaults), "", m, reflect.ValueOf(defaults))
	return c.problems
}

// yamlLines records the line of every key (and list entry) under n.
func yamlLines(n *yaml.Node, prefix string, out map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			yamlLines(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if prefix != "" {
				key = prefix + "." + key
			}
			out[key] = n.Content[i].Line
			yamlLines(n.Content[i+1], key, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			key := fmt.Sprintf("%s[%d]", prefix, i)
			out[key] = c.Line
			yamlLines(c, key, out)
		}
	}
}

// yamlLine matches the position in a YAML parse error.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAMLFile parses the configuration file. yaml.v3 reports a parser
// error (an unclosed bracket, a key where none is expected) at the 0-based
// line of the construct it was in (often the top of the file), not where
// the mistake is; scanner errors (tabs, bad characters) are already right.
func parseYAMLFile(path, content string) (*yaml.Node, error) {
	var root yaml.Node
	err := yaml.Unmarshal([]byte(content), &root)
	if err == nil {
		return &root, nil
	}
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if strings.HasPrefix(m[2], "did not find expected") || strings.HasPrefix(m[2], "found duplicate") || strings.HasPrefix(m[2], "found incompatible") {
			// The construct's line may be far above the mistake (the
			// mapping that a stray indent breaks starts at the top): the
			// first line at which the file so far stops parsing is it.
			line++
			lines := strings.SplitAfter(content, "\n")
			for k := 1; k <= len(lines); k++ {
				var n yaml.Node
				if yaml.Unmarshal([]byte(strings.Join(lines[:k], "")), &n) != nil {
					line = k
					break
				}
			}
		}
		return nil, fmt.Errorf("config file %s line %d is not valid YAML: %s", path, line, m[2])
	}
	return nil, fmt.Errorf("config file %s is not valid YAML: %s", path, strings.TrimPrefix(msg, "yaml: "))
}

// nonSettingVariables are AUTHD_ variables that are not configuration:
// the test suite's database and CI's vulnerability database. They may be
// in a developer's environment and are not refused.
func isNonSettingVariable(name string) bool {
	return strings.HasPrefix(name, "AUTHD_TEST_") || name == "AUTHD_VULNDB" || serviceLinkVariable.MatchString(name)
}

// serviceLinkVariable matches the variables Kubernetes gives every pod for
// each Service of its namespace (unless enableServiceLinks is false): for a
// Service "authd", AUTHD_SERVICE_HOST, AUTHD_SERVICE_PORT(_NAME),
// AUTHD_PORT and AUTHD_PORT_80_TCP(_PROTO|_PORT|_ADDR); for
// "authd-metrics", AUTHD_METRICS_SERVICE_HOST and so on. They are not
// settings, and no setting ends like them.
var serviceLinkVariable = regexp.MustCompile(`^AUTHD_([A-Z0-9_]+_)?(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$`)

// checkEnv checks the AUTHD_* variables: each names a setting, and its
// value has the setting's shape. Lists of objects are JSON. Variables in
// referenced (named by the config file as ${NAME}) need not be settings.
func checkEnv(getenv environ, keys []leafKey, referenced map[string]bool) []string {
	byEnv := map[string]leafKey{}
	names := make([]string, 0, len(keys))
	for _, k := range keys {
		byEnv[envName(k.name)] = k
		names = append(names, envName(k.name))
	}
	var vars []string
	for name := range getenv {
		if strings.HasPrefix(name, envPrefix) {
			vars = append(vars, name)
		}
	}
	sort.Strings(vars)
	var problems []string
	for _, name := range vars {
		val := getenv[name]
		k, ok := byEnv[name]
		if !ok {
			if isNonSettingVariable(name) || referenced[name] {
				continue
			}
			msg := fmt.Sprintf("%s: unknown setting (environment variable)", name)
			if s := closest(name, names); s != "" {
				msg += "; did you mean " + s + "?"
			} else {
				msg += "; every setting's variable is listed in the README's configuration reference"
			}
			problems = append(problems, msg)
			continue
		}
		if val == "" {
			continue // the setting's default
		}
		c := &configChecker{where: func(string) string { return name }}
		t := reflect.TypeOf(k.value)
		var v any = val
		if isStructured(k.value) {
			if err := json.Unmarshal([]byte(val), &v); err != nil {
				problems = append(problems, fmt.Sprintf("%s (%s): not valid JSON (a list of objects, as in authd.example.yaml): %s", k.name, name, jsonProblem(err)))
				continue
			}
			v = jsonInts(v)
		}
		c.check(t, k.name, v, reflect.ValueOf(k.value))
		problems = append(problems, c.problems...)
	}
	return problems
}

// jsonInts turns JSON's float64 numbers that are whole into ints, as YAML
// decodes them, so both sources are checked alike.
func jsonInts(v any) any {
	switch x := v.(type) {
	case float64:
		if x == float64(int(x)) {
			return int(x)
		}
	case []any:
		for i := range x {
			x[i] = jsonInts(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = jsonInts(x[k])
		}
	}
	return v
}

func jsonProblem(err error) string {
	if se, ok := err.(*json.SyntaxError); ok {
		return fmt.Sprintf("%s at character %d", strings.TrimPrefix(se.Error(), "invalid character "), se.Offset)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func kindWord(v any) string {
	switch v.(type) {
	case map[string]any:
		return "group of keys (map)"
	case []any:
		return "list"
	}
	return "single value"
}

func scalarString(v any) string {
	switch x := v.(type) {
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

// shortDuration prints d as an operator writes it: 1h, 30m, 720h.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// closest returns the candidate nearest to s by edit distance, if near
// enough to be a typo.
func closest(s string, candidates []string) string {
	best, bestD := "", -1
	ls := strings.ToLower(s)
	for _, c := range candidates {
		d := editDistance(ls, strings.ToLower(c))
		if bestD < 0 || d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD > max(2, len(s)/4) {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
