package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// exported is every series name authd's registry exposes, with its labels:
// histograms as their _bucket (with le), _sum and _count series.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	m := New(func() PoolStats { return PoolStats{Max: 10} })
	// Vectors appear once they have a child.
	m.ObserveRequest("/token", "POST", 200, time.Millisecond)
	m.ObserveToken("refresh_token", "issued")
	m.ObserveRegistration("created")
	m.ObserveAuthorizeEvent("login", "github")
	m.ObserveIntrospection(true)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, f := range families {
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		if f.GetType().String() == "HISTOGRAM" {
			out[f.GetName()+"_bucket"] = append(slices.Clone(labels), "le")
			out[f.GetName()+"_sum"] = labels
			out[f.GetName()+"_count"] = labels
			continue
		}
		out[f.GetName()] = labels
	}
	return out
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// promqlFuncs are the functions and aggregations the deploy files may use
// (label_values is Grafana's template query).
var promqlFuncs = []string{"sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile", "label_values", "clamp_min", "topk"}

var (
	stringLit   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	rangeSel    = regexp.MustCompile(`\[[^\]]*\]`)
	selector    = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}`)
	matcherKey  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	grouping    = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	identifier  = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	labelValues = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	promqlWords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "e"}
)

// checkExpr returns what in a PromQL expression is not something authd
// exports: unknown series names, label names a series does not have,
// unknown functions. It is a lexical check (a PromQL parser would bring in
// all of Prometheus), enough to catch renamed or mistyped metrics and labels.
func checkExpr(expr string, series map[string][]string) []string {
	var problems []string
	e := stringLit.ReplaceAllString(expr, `""`)
	e = rangeSel.ReplaceAllString(e, "")
	var used []string
	hasLabel := func(name, label string) bool {
		return slices.Contains(series[name], label) || slices.Contains(targetLabels, label)
	}
	for _, m := range selector.FindAllStringSubmatch(e, -1) {
		if m[1] == "" {
			problems = append(problems, fmt.Sprintf("selector without a metric name: {%s}", m[2]))
			continue
		}
		for _, k := range matcherKey.FindAllStringSubmatch(m[2], -1) {
			if _, ok := series[m[1]]; ok && !hasLabel(m[1], k[1]) {
				problems = append(problems, fmt.Sprintf("%s has no label %q", m[1], k[1]))
			}
		}
	}
	e = selector.ReplaceAllString(e, "$1")
	var groupedBy []string
	for _, m := range grouping.FindAllStringSubmatch(e, -1) {
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				groupedBy = append(groupedBy, l)
			}
		}
	}
	e = grouping.ReplaceAllString(e, " ")
	for _, loc := range identifier.FindAllStringIndex(e, -1) {
		word := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		switch {
		case strings.HasPrefix(rest, "("):
			if !slices.Contains(promqlFuncs, word) {
				problems = append(problems, fmt.Sprintf("unknown function %s", word))
			}
		case slices.Contains(promqlWords, word):
		case loc[0] > 0 && (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9' || e[loc[0]-1] == '.'): // 1e3, 0.5
		default:
			if _, ok := series[word]; !ok {
				problems = append(problems, fmt.Sprintf("%s is not a metric authd exports", word))
			}
			used = append(used, word)
		}
	}
	if len(used) == 0 {
		problems = append(problems, "no metric")
	}
	for _, l := range groupedBy {
		ok := false
		for _, name := range used {
			ok = ok || hasLabel(name, l)
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("grouping by %q, which none of %v has", l, used))
		}
	}
	return problems
}

// The checker catches what it is for: a renamed metric, a label that does
// not exist, a mistyped function.
func TestCheckExprCatchesMistakes(t *testing.T) {
	series := exported(t)
	if p := checkExpr(`sum by (route) (rate(authd_http_requests_total{status=~"5..", job="x"}[5m]))`, series); len(p) != 0 {
		t.Fatalf("a correct expression: %v", p)
	}
	for _, bad := range []string{
		`rate(authd_http_request_total[5m])`,
		`sum by (grant) (rate(authd_token_requests_total[5m]))`,
		`rate(authd_token_requests_total{result="issued"}[5m])`,
		`rat(authd_http_requests_total[5m])`,
		`histogram_quantile(0.9, rate(authd_http_request_duration_seconds[5m]))`,
		`sum(rate({__name__="x"}[1m]))`,
	} {
		if p := checkExpr(bad, series); len(p) == 0 {
			t.Errorf("%s: no problem found", bad)
		}
	}
}

// TestDeployReferencesOnlyExportedMetrics: every query of the Grafana
// dashboard and every expression of the alerting rules uses only series
// and labels authd's registry exports, so a renamed metric breaks this
// test, not an operator's dashboard at 3 a.m.; and the rules are complete
// enough to page someone (severity, summary).
func TestDeployReferencesOnlyExportedMetrics(t *testing.T) {
	series := exported(t)

	raw, err := os.ReadFile("../../deploy/grafana/authd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var exprs int
	covered := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			for _, problem := range checkExpr(tg.Expr, series) {
				t.Errorf("dashboard panel %q: %s\n  %s", p.Title, problem, tg.Expr)
			}
			for name := range series {
				if strings.Contains(tg.Expr, name) {
					covered[strings.TrimSuffix(name, "_bucket")] = true
				}
			}
		}
	}
	for _, v := range dash.Templating.List {
		q, ok := v.Query.(string)
		if !ok || v.Type != "query" {
			continue
		}
		// Grafana's label_values(selector, label).
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("dashboard variable query %q: want label_values(selector, label)", q)
			continue
		}
		problems := checkExpr(m[1], series)
		if name := identifier.FindString(m[1]); !slices.Contains(series[name], m[2]) && !slices.Contains(targetLabels, m[2]) {
			problems = append(problems, fmt.Sprintf("%s has no label %q", name, m[2]))
		}
		for _, problem := range problems {
			t.Errorf("dashboard variable query %q: %s", q, problem)
		}
	}
	// The dashboard shows every authd metric family.
	for name := range series {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(name, "authd_") && !covered[name] && !covered[base] && !covered[base+"_bucket"] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}

	raw, err = os.ReadFile("../../deploy/prometheus/authd-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alerting rules: %v", err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			exprs++
			for _, problem := range checkExpr(r.Expr, series) {
				t.Errorf("alert %s: %s\n  %s", r.Alert, problem, r.Expr)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: needs labels.severity and annotations summary and description", r.Alert)
			}
		}
	}
	for _, want := range []string{"AuthdHigh5xxRate", "AuthdDatabaseUnavailable", "AuthdRefreshTokenReuseSpike"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
	if exprs < 20 {
		t.Fatalf("only %d expressions checked", exprs)
	}
}
