package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/store"
)

// allFeatures switches on every optional part of the public router:
// development mode (the dev login page), registration with RFC 7592
// management, client ID metadata documents, and an upstream besides the
// development login (its callback). The metrics listener is a separate
// server (serve.go), never this router, and the README documents it under
// its configuration key.
var allFeatures = map[string]string{
	"AUTHD_REGISTRATION_ENABLED":              "true",
	"AUTHD_CLIENT_METADATA_DOCUMENTS_ENABLED": "true",
	"AUTHD_METRICS_LISTEN":                    "127.0.0.1:0",
	"AUTHD_METRICS_PPROF":                     "true",
	"AUTHD_UPSTREAMS": `[{"id":"dev","type":"dev"},` +
		`{"id":"github","type":"github","client_id":"id","client_secret":"secret"}]`,
}

// mountedRoutes builds the application the way serve does, on the
// in-memory store, and lists every route of its router as
// "METHOD pattern".
func mountedRoutes(t *testing.T, issuer string) (http.Handler, map[string][]string) {
	t.Helper()
	vars := map[string]string{"AUTHD_ISSUER": issuer}
	for k, v := range allFeatures {
		vars[k] = v
	}
	cfg, err := loadConfig(flagsFor(t, "--dev"), envOf(vars))
	if err != nil {
		t.Fatal(err)
	}
	// serve also adds the --dev resource-server client
	// (withDevResourceServer): a client mounts no route, and hashing its
	// secret would cost seconds under -race.
	st := store.NewMemory()
	t.Cleanup(st.Close)
	a, err := buildApp(t.Context(), deps{
		cfg: cfg, store: st, log: slog.New(slog.DiscardHandler), now: time.Now, started: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	routes, ok := a.handler.(chi.Routes)
	if !ok {
		t.Fatalf("the application's handler is a %T, not a chi router", a.handler)
	}
	methods := map[string][]string{} // pattern -> methods
	err = chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		methods[route] = append(methods[route], method)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(methods) == 0 {
		t.Fatal("chi.Walk found no routes")
	}
	return a.handler, methods
}

// TestRoutesMatchMetadataAndREADME keeps three lists in step, so that a
// route cannot be added or dropped silently: the routes the server mounts
// (with every optional feature on), the endpoints the RFC 8414 metadata
// advertises (each must be mounted, for the method a client uses), and the
// README's endpoint table (each mounted route is there, and each path
// there is mounted).
func TestRoutesMatchMetadataAndREADME(t *testing.T) {
	t.Parallel()
	readme := readmeEndpoints(t)
	for _, tc := range []struct{ name, issuer string }{
		{"root issuer", "http://localhost:8080"},
		{"issuer with a path", "http://localhost:8080/tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, mounted := mountedRoutes(t, tc.issuer)
			prefix := strings.TrimPrefix(tc.issuer, "http://localhost:8080")

			// (a) Every endpoint the metadata advertises is mounted.
			for field, u := range advertisedEndpoints(t, h, tc.issuer) {
				p, err := url.Parse(u)
				if err != nil {
					t.Errorf("metadata %s: %q is not a URL", field, u)
					continue
				}
				method := endpointMethods[field]
				if method == "" {
					t.Errorf("metadata advertises %s (%s), which this test does not know: add the method clients use to endpointMethods", field, u)
					continue
				}
				if !routeServes(mounted, p.Path, method) {
					t.Errorf("metadata advertises %s %s, but no route serves %s %s", field, u, method, p.Path)
				}
			}

			// The metrics listener is a server of its own: neither
			// /metrics nor the profiler may leak onto the public port.
			for _, p := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/profile"} {
				for pattern := range mounted {
					if patternMatches(pattern, p) || patternMatches(pattern, prefix+p) {
						t.Errorf("public router serves %s (route %s); it belongs on metrics.listen only", p, pattern)
					}
				}
			}

			// (b) The README's table and the router agree, path by path.
			// The table writes paths relative to the issuer; the
			// path-inserted metadata of an issuer with a path (RFC 8414
			// §3.1) is described in its own section.
			if prefix != "" {
				return
			}
			for pattern, methods := range mounted {
				if !readme[normalizePattern(pattern)] {
					slices.Sort(methods)
					t.Errorf("route %s %s is mounted but missing from the README's \"## Endpoints\" table", strings.Join(methods, ","), pattern)
				}
			}
			normalized := map[string]bool{}
			for pattern := range mounted {
				normalized[normalizePattern(pattern)] = true
			}
			for p := range readme {
				if !normalized[p] {
					t.Errorf("README's \"## Endpoints\" table lists %s, but no route is mounted there", p)
				}
			}
		})
	}
}

// endpointMethods is the method a client uses at each endpoint the
// metadata may advertise.
var endpointMethods = map[string]string{
	"authorization_endpoint": http.MethodGet,
	"token_endpoint":         http.MethodPost,
	"jwks_uri":               http.MethodGet,
	"registration_endpoint":  http.MethodPost,
	"revocation_endpoint":    http.MethodPost,
	"introspection_endpoint": http.MethodPost,
}

// advertisedEndpoints fetches the metadata from the router and returns
// the URLs on this server among its RFC 8414 §2 fields ending in
// _endpoint or _uri, by field.
func advertisedEndpoints(t *testing.T, h http.Handler, issuer string) map[string]string {
	t.Helper()
	u, _ := url.Parse(issuer)
	rec := httptest.NewRecorder()
	// RFC 8414 §3.1: the well-known suffix goes between host and path.
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/oauth-authorization-server"+u.Path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("metadata: %d %s", rec.Code, rec.Body)
	}
	var md map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &md); err != nil {
		t.Fatal(err)
	}
	if md["issuer"] != issuer {
		t.Fatalf("metadata issuer %v, want %s", md["issuer"], issuer)
	}
	out := map[string]string{}
	for k, v := range md {
		s, ok := v.(string)
		if !ok || !(strings.HasSuffix(k, "_endpoint") || strings.HasSuffix(k, "_uri")) {
			continue
		}
		if !strings.HasPrefix(s, u.Scheme+"://"+u.Host+"/") {
			// A document elsewhere (a policy or terms URI) is fine; an
			// endpoint or the key set must be served here.
			if strings.HasSuffix(k, "_endpoint") || k == "jwks_uri" {
				t.Errorf("metadata %s = %q is not on this server", k, s)
			}
			continue
		}
		out[k] = s
	}
	for _, want := range []string{"authorization_endpoint", "token_endpoint", "jwks_uri", "registration_endpoint", "revocation_endpoint", "introspection_endpoint"} {
		if out[want] == "" {
			t.Errorf("metadata lacks %s with every feature on", want)
		}
	}
	return out
}

// routeServes reports whether some mounted pattern matches path for
// method (a route mounted for every method counts).
func routeServes(mounted map[string][]string, path, method string) bool {
	for pattern, methods := range mounted {
		if patternMatches(pattern, path) && (slices.Contains(methods, method) || slices.Contains(methods, "*")) {
			return true
		}
	}
	return false
}

// patternMatches matches a chi pattern against a path: {param} matches
// one segment, a trailing * the rest.
func patternMatches(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	for i, seg := range ps {
		if seg == "*" && i == len(ps)-1 {
			return true
		}
		if i >= len(xs) {
			return false
		}
		if !(strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") && xs[i] != "") && seg != xs[i] {
			return false
		}
	}
	return len(ps) == len(xs)
}

var chiParam = regexp.MustCompile(`\{[^/}]*\}`)

// normalizePattern makes a chi pattern comparable with the README's
// spelling: parameter names do not matter (/callback/{provider} is
// /callback/{id}).
func normalizePattern(p string) string {
	return chiParam.ReplaceAllString(p, "{}")
}

// readmeEndpoints parses the first column of the README's "## Endpoints"
// table: every path in backticks, normalized. A path ending in [/path]
// (an optional suffix) stands for the path itself and everything below it
// (/*).
func readmeEndpoints(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section, ok := markdownSection(string(raw), "## Endpoints")
	if !ok {
		t.Fatal(`README has no "## Endpoints" section`)
	}
	paths := map[string]bool{}
	rows := 0
	for line := range strings.SplitSeq(section, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		first := strings.TrimSpace(cells[0])
		if first == "path" || strings.Trim(first, "-: ") == "" {
			continue // header and separator
		}
		rows++
		spans := backticked.FindAllStringSubmatch(first, -1)
		if len(spans) == 0 {
			t.Errorf("README endpoint row names no path in backticks: %s", line)
		}
		for _, m := range spans {
			p := m[1]
			if !strings.HasPrefix(p, "/") {
				t.Errorf("README endpoint row: %q is not a path", p)
				continue
			}
			if base, ok := strings.CutSuffix(p, "[/path]"); ok {
				paths[normalizePattern(base)] = true
				paths[normalizePattern(base+"/*")] = true
				continue
			}
			if strings.ContainsAny(p, "[] ") {
				t.Errorf("README endpoint path %q: only a [/path] suffix is understood", p)
				continue
			}
			paths[normalizePattern(p)] = true
		}
	}
	if rows == 0 || len(paths) == 0 {
		t.Fatal(`README's "## Endpoints" section has no table rows`)
	}
	return paths
}

var backticked = regexp.MustCompile("`([^`]+)`")

// markdownSection returns the text under heading, up to the next heading
// of the same or a higher level.
func markdownSection(doc, heading string) (string, bool) {
	level := strings.Count(strings.Fields(heading)[0], "#")
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != heading {
			continue
		}
		end := len(lines)
		for j := i + 1; j < len(lines); j++ {
			if f := strings.Fields(lines[j]); len(f) > 0 && strings.Trim(f[0], "#") == "" && len(f[0]) <= level {
				end = j
				break
			}
		}
		return strings.Join(lines[i+1:end], "\n"), true
	}
	return "", false
}
