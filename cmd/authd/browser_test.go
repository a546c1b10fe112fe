//go:build browser

// The pages in a real browser: headless Chromium (Debian's `chromium`),
// driven over the DevTools protocol by chromedp. Run with
//
//	go test -race -tags browser -run TestBrowser ./cmd/authd
//
// (.ci/run does, after the README's `apt-get install chromium` line). The
// browser is required: without it the test fails, it never skips. Each
// page's screenshot is saved under the test's artifact directory (go test
// -artifacts keeps them); -update-screenshots also writes them to
// docs/screenshots/.

package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"golang.org/x/oauth2"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "also write the browser tests' screenshots to docs/screenshots")

// chromiumPath finds Debian's chromium (or Chrome) and fails the test with
// the install line when there is none.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium not found: the browser tests need it. Install it (Debian: apt-get install -y --no-install-recommends chromium) " +
		"and run `go test -tags browser ./cmd/authd` again.")
	return ""
}

// page is one headless Chromium tab that records console messages and
// browser log entries (CSP violations are reported there).
type page struct {
	ctx  context.Context
	mu   sync.Mutex
	logs []string
}

func newPage(t *testing.T) *page {
	t.Helper()
	// Not t.TempDir: Chromium's helpers may still write to the profile
	// for a moment after the browser is stopped.
	profile, err := os.MkdirTemp("", "authd-browser-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(profile) })
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(900, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	p := &page{ctx: ctx}
	chromedp.ListenTarget(ctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range e.Args {
				args = append(args, string(a.Value))
			}
			msg = fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			msg = "exception: " + e.ExceptionDetails.Text
		case *log.EventEntryAdded:
			msg = fmt.Sprintf("log %s/%s: %s %s", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL)
		default:
			return
		}
		p.mu.Lock()
		p.logs = append(p.logs, msg)
		p.mu.Unlock()
	})
	if err := chromedp.Run(ctx, log.Enable(), runtime.Enable()); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return p
}

func (p *page) run(t *testing.T, what string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(p.ctx, actions...); err != nil {
		t.Fatalf("%s: %v\nbrowser log:\n%s", what, err, strings.Join(p.takeLogs(), "\n"))
	}
}

func (p *page) takeLogs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.logs
	p.logs = nil
	return out
}

// clean asserts the page logged nothing: no console error, no CSP
// violation, no failed load. expected are log lines that must be there
// (an error page's own 4xx status, which Chromium logs), and are not
// complaints.
func (p *page) clean(t *testing.T, what string, expected ...string) {
	t.Helper()
	// Log entries arrive asynchronously; a round trip lets them in.
	var ignored string
	p.run(t, "settling", chromedp.Evaluate(`document.readyState`, &ignored))
	var reported []string
	seen := map[string]bool{}
	for _, l := range p.takeLogs() {
		switch {
		case strings.HasSuffix(l, "/favicon.ico"):
			// The browser asks for /favicon.ico by itself; authd has none.
		case slices.Contains(expected, l):
			seen[l] = true
		default:
			reported = append(reported, l)
		}
	}
	for _, e := range expected {
		if !seen[e] {
			t.Errorf("%s: the browser did not report %q", what, e)
		}
	}
	if len(reported) > 0 {
		t.Errorf("%s: the browser reported:\n%s", what, strings.Join(reported, "\n"))
	}
}

// screenshot saves the page as name.png.
func (p *page) screenshot(t *testing.T, name string) {
	t.Helper()
	var png []byte
	p.run(t, "screenshot "+name, chromedp.FullScreenshot(&png, 100)) // 100: PNG, not JPEG
	dirs := []string{t.ArtifactDir()}
	if *updateScreenshots {
		dirs = append(dirs, "../../docs/screenshots")
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tabTo presses Tab until the focused element's text is label, as a
// keyboard user would, and fails if it never gets there.
func (p *page) tabTo(t *testing.T, label string) {
	t.Helper()
	for range 20 {
		var focused string
		p.run(t, "reading focus", chromedp.KeyEvent(kb.Tab), chromedp.Evaluate(`document.activeElement ? document.activeElement.textContent.trim() : ""`, &focused))
		if focused == label {
			return
		}
	}
	t.Fatalf("Tab never reached %q", label)
}

// redirectCatcher is the client's redirect URI: it records the query the
// browser arrives with.
type redirectCatcher struct {
	srv *httptest.Server
	got chan url.Values
}

func newRedirectCatcher(t *testing.T) *redirectCatcher {
	c := &redirectCatcher{got: make(chan url.Values, 4)}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" { // the browser's own /favicon.ico
			http.NotFound(w, r)
			return
		}
		c.got <- r.URL.Query()
		fmt.Fprint(w, "<!doctype html><title>client</title><p>back at the client</p>")
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *redirectCatcher) wait(t *testing.T, p *page) url.Values {
	t.Helper()
	select {
	case q := <-c.got:
		// And the browser has finished loading the client's page (while
		// it navigates, evaluating may fail: ask again).
		deadline := time.Now().Add(30 * time.Second)
		for {
			var done bool
			err := chromedp.Run(p.ctx, chromedp.Evaluate(`document.title === "client" && document.readyState === "complete"`, &done))
			if err == nil && done {
				return q
			}
			if time.Now().After(deadline) {
				t.Fatalf("the client's page never finished loading: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the browser never reached the client's redirect URI")
		return nil
	}
}

// TestBrowserPages walks the pages a person sees, in Chromium, with the
// keyboard only: /apps signed out, the upstream chooser, the development
// login, the consent page (approve, then deny, in a second flow), /apps with
// a revoke, and an error page. Every page renders under its
// Content-Security-Policy with nothing reported on the console.
func TestBrowserPages(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	inst := startAuthd(t, addr, map[string]string{
		// A second upstream, so that the chooser is shown.
		"AUTHD_UPSTREAMS": `[{"id":"dev","type":"dev","name":"Development login"},` +
			`{"id":"github","type":"github","name":"GitHub","client_id":"Iv1.example","client_secret":"example-secret-0123456789"}]`,
		"AUTHD_SCOPES":         `[{"name":"mcp:tools","description":"Use the tools of the MCP server"}]`,
		"AUTHD_DEFAULT_SCOPES": "mcp:tools",
		"AUTHD_RESOURCES":      `[{"uri":"https://mcp.example.com/mcp","name":"Example MCP server"}]`,
	}, "--dev")
	catcher := newRedirectCatcher(t)
	redirect := catcher.srv.URL + "/callback"
	reg := registerClient(t, inst.URL, map[string]any{
		"client_name":                "Browser Test Client",
		"redirect_uris":              []string{redirect},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{ClientID: reg["client_id"].(string), RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token"}, Scopes: []string{"mcp:tools"}}
	authURL := func(state string, extra ...oauth2.AuthCodeOption) string {
		return conf.AuthCodeURL(state, append(extra, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
			oauth2.SetAuthURLParam("resource", "https://mcp.example.com/mcp"))...)
	}

	p := newPage(t)

	// /apps signed out offers a sign-in at each upstream.
	p.run(t, "apps signed out", chromedp.Navigate(inst.URL+"/apps"), chromedp.WaitVisible("h1", chromedp.ByQuery))
	var signedOut string
	p.run(t, "apps signed out text", chromedp.Text("main", &signedOut, chromedp.ByQuery))
	for _, want := range []string{"You are not signed in", "Sign in with Development login", "Sign in with GitHub"} {
		if !strings.Contains(signedOut, want) {
			t.Errorf("signed-out /apps lacks %q:\n%s", want, signedOut)
		}
	}
	p.clean(t, "/apps signed out")
	p.screenshot(t, "apps-signed-out")

	// The chooser, then the development login, by keyboard.
	p.run(t, "authorize", chromedp.Navigate(authURL("approve-state")), chromedp.WaitVisible("h1", chromedp.ByQuery))
	p.clean(t, "upstream chooser")
	p.screenshot(t, "chooser")
	p.tabTo(t, "Sign in with Development login")
	p.run(t, "choose dev", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible("#name", chromedp.ByQuery))
	p.clean(t, "development login")
	p.screenshot(t, "dev-login")
	var devText string
	p.run(t, "dev login text", chromedp.Text("main", &devText, chromedp.ByQuery))
	if !strings.Contains(devText, "Browser Test Client") {
		t.Errorf("the development login does not name the application asking:\n%s", devText)
	}
	p.run(t, "sign in", chromedp.Focus("#name", chromedp.ByQuery), chromedp.SendKeys("#name", "alice", chromedp.ByQuery), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(`button[value="approve"]`, chromedp.ByQuery))

	// Consent: security-critical parts visible, approved with the keyboard.
	var consent string
	p.run(t, "consent text", chromedp.Text("main", &consent, chromedp.ByQuery))
	for _, want := range []string{"Browser Test Client", "Unverified", "127.0.0.1", "Example MCP server", "Use the tools of the MCP server"} {
		if !strings.Contains(consent, want) {
			t.Errorf("consent page lacks %q:\n%s", want, consent)
		}
	}
	p.clean(t, "consent page")
	p.screenshot(t, "consent")
	p.tabTo(t, "Approve")
	p.run(t, "approve", chromedp.KeyEvent(kb.Enter))
	q := catcher.wait(t, p)
	if q.Get("code") == "" || q.Get("state") != "approve-state" {
		t.Fatalf("approve by keyboard: redirect query %v", q)
	}

	// A second flow, denied with the keyboard (the session is reused;
	// prompt=consent asks again although the client was approved).
	p.run(t, "authorize again", chromedp.Navigate(authURL("deny-state", oauth2.SetAuthURLParam("prompt", "consent"))), chromedp.WaitVisible(`button[value="deny"]`, chromedp.ByQuery))
	p.tabTo(t, "Deny")
	p.run(t, "deny", chromedp.KeyEvent(kb.Enter))
	q = catcher.wait(t, p)
	if q.Get("error") != "access_denied" || q.Get("state") != "deny-state" {
		t.Fatalf("deny by keyboard: redirect query %v", q)
	}

	// /apps lists the approved client; revoke it with the keyboard.
	p.run(t, "apps", chromedp.Navigate(inst.URL+"/apps"), chromedp.WaitVisible("h1", chromedp.ByQuery))
	var apps string
	p.run(t, "apps text", chromedp.Text("main", &apps, chromedp.ByQuery))
	if !strings.Contains(apps, "Browser Test Client") || !strings.Contains(apps, "Last used") {
		t.Errorf("/apps does not list the approved client:\n%s", apps)
	}
	p.clean(t, "/apps")
	p.screenshot(t, "apps")
	p.tabTo(t, "Revoke access")
	p.run(t, "revoke", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible("h1", chromedp.ByQuery))
	p.run(t, "apps after revoke", chromedp.Text("main", &apps, chromedp.ByQuery))
	if strings.Contains(apps, "Browser Test Client") {
		t.Errorf("/apps still lists the client after revoking:\n%s", apps)
	}
	p.clean(t, "/apps after revoke")

	// An error page: an unknown client, shown without redirecting.
	bad := inst.URL + "/authorize?response_type=code&client_id=no-such-client&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"
	p.run(t, "error page", chromedp.Navigate(bad), chromedp.WaitVisible("h1", chromedp.ByQuery))
	var errText string
	p.run(t, "error text", chromedp.Text("main", &errText, chromedp.ByQuery))
	if strings.Contains(errText, "evil.example") {
		t.Errorf("the error page names the unconfirmed redirect URI:\n%s", errText)
	}
	p.clean(t, "error page", "log network/error: Failed to load resource: the server responded with a status of 400 (Bad Request) "+bad)
	p.screenshot(t, "error")

	// Sign out, then sign in again from /apps, by keyboard: the sign-in
	// returns to /apps.
	p.run(t, "apps", chromedp.Navigate(inst.URL+"/apps"), chromedp.WaitVisible("h1", chromedp.ByQuery))
	p.tabTo(t, "Sign out")
	p.run(t, "sign out", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(`a.button`, chromedp.ByQuery))
	p.tabTo(t, "Sign in with Development login")
	p.run(t, "sign in from /apps", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible("#name", chromedp.ByQuery))
	p.clean(t, "development login from /apps")
	p.run(t, "dev sign in", chromedp.Focus("#name", chromedp.ByQuery), chromedp.SendKeys("#name", "bob", chromedp.ByQuery), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(`form[action="/logout"]`, chromedp.ByQuery))
	var location string
	p.run(t, "apps after sign-in", chromedp.Text("main", &apps, chromedp.ByQuery), chromedp.Location(&location))
	if !strings.HasSuffix(location, "/apps") || !strings.Contains(apps, "Signed in as bob") {
		t.Errorf("the sign-in from /apps ended at %s:\n%s", location, apps)
	}
	p.clean(t, "/apps after its sign-in")
}

// TestBrowserPagesBranded: an operator's branding (product name, logo,
// accent colour) and theme (its own layout and consent wording) in
// Chromium: the logo loads under the CSP (img-src of its origin), nothing
// is reported on the console, and the consent page still shows authd's
// badge, redirect host, resources and scopes, approved by keyboard.
func TestBrowserPagesBranded(t *testing.T) {
	t.Parallel()
	logo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/logo.svg" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "image/svg+xml")
		fmt.Fprint(w, `<svg xmlns="http://www.w3.org/2000/svg" width="96" height="32" viewBox="0 0 96 32">`+
			`<rect width="32" height="32" rx="6" fill="#8250df"/><path d="M8 24 16 8 24 24z" fill="#fff"/>`+
			`<text x="38" y="22" font-family="sans-serif" font-size="16" font-weight="700" fill="#8250df">Acme</text></svg>`)
	}))
	t.Cleanup(logo.Close)
	theme := t.TempDir()
	for name, src := range map[string]string{
		"layout.html": `{{define "layout"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · {{.Brand.Product}}</title><style>{{css}}</style></head>
<body><header class="brand">{{with .Brand.LogoURL}}<img src="{{.}}" alt="">{{end}}<span>{{.Brand.Product}}</span></header>
<main>{{if .DevMode}}<p class="dev" role="note">Development server: not for real accounts.</p>{{end}}<h1>{{.Title}}</h1>{{template "content" .Data}}</main>
<footer class="brand"><p class="muted">Acme Corp IT · Questions? Ask the service desk.</p></footer>
</body></html>{{end}}`,
		"consent.html": `{{define "content"}}<p class="muted">Acme policy: approve only tools you started yourself.</p>{{.Facts}}{{end}}`,
	} {
		if err := os.WriteFile(filepath.Join(theme, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inst := startAuthd(t, freeAddr(t), map[string]string{
		"AUTHD_SCOPES":             `[{"name":"mcp:tools","description":"Use the tools of the MCP server"}]`,
		"AUTHD_DEFAULT_SCOPES":     "mcp:tools",
		"AUTHD_RESOURCES":          `[{"uri":"https://mcp.example.com/mcp","name":"Example MCP server"}]`,
		"AUTHD_PAGES_PRODUCT_NAME": "Acme Sign-in",
		"AUTHD_PAGES_LOGO_URL":     logo.URL + "/logo.svg",
		"AUTHD_PAGES_ACCENT_COLOR": "#8250df",
		"AUTHD_PAGES_TEMPLATE_DIR": theme,
	}, "--dev")
	catcher := newRedirectCatcher(t)
	redirect := catcher.srv.URL + "/callback"
	reg := registerClient(t, inst.URL, map[string]any{
		"client_name":                "Branded Test Client",
		"redirect_uris":              []string{redirect},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{ClientID: reg["client_id"].(string), RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token"}, Scopes: []string{"mcp:tools"}}

	p := newPage(t)
	p.run(t, "apps signed out", chromedp.Navigate(inst.URL+"/apps"), chromedp.WaitVisible("header img", chromedp.ByQuery))
	var logoWidth int
	p.run(t, "logo", chromedp.Evaluate(`document.querySelector("header img").complete ? document.querySelector("header img").naturalWidth : -1`, &logoWidth))
	if logoWidth <= 0 {
		t.Errorf("the logo did not load (naturalWidth %d)", logoWidth)
	}
	p.clean(t, "branded /apps signed out")
	p.screenshot(t, "branded-apps-signed-out")

	authURL := conf.AuthCodeURL("branded", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", "https://mcp.example.com/mcp"))
	p.run(t, "authorize", chromedp.Navigate(authURL), chromedp.WaitVisible("#name", chromedp.ByQuery), chromedp.WaitVisible("header img", chromedp.ByQuery))
	var devHeader, accent string
	p.run(t, "dev login header", chromedp.Text("header", &devHeader, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector("header img").complete ? document.querySelector("header img").naturalWidth : -1`, &logoWidth))
	if !strings.Contains(devHeader, "Acme Sign-in") || logoWidth <= 0 {
		t.Errorf("the development login is not branded like the other pages: header %q, logo width %d", devHeader, logoWidth)
	}
	p.run(t, "dev login accent", chromedp.Evaluate(`getComputedStyle(document.querySelector('button[type="submit"]')).backgroundColor`, &accent))
	if accent != "rgb(130, 80, 223)" {
		t.Errorf("the development login's button colour is %s, want the accent #8250df", accent)
	}
	p.clean(t, "branded development login")
	p.screenshot(t, "branded-dev-login")
	p.run(t, "sign in", chromedp.Focus("#name", chromedp.ByQuery), chromedp.SendKeys("#name", "carol", chromedp.ByQuery), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(`button[value="approve"]`, chromedp.ByQuery))
	var consent, title string
	p.run(t, "consent text", chromedp.Text("body", &consent, chromedp.ByQuery), chromedp.Title(&title))
	for _, want := range []string{"Acme Sign-in", "Acme policy", "Acme Corp IT", "Branded Test Client", "Unverified", "127.0.0.1", "Example MCP server", "Use the tools of the MCP server"} {
		if !strings.Contains(consent, want) {
			t.Errorf("branded consent page lacks %q:\n%s", want, consent)
		}
	}
	if !strings.HasSuffix(title, "· Acme Sign-in") {
		t.Errorf("title %q does not name the product", title)
	}
	p.run(t, "accent", chromedp.Evaluate(`getComputedStyle(document.querySelector('button[value="approve"]')).backgroundColor`, &accent))
	if accent != "rgb(130, 80, 223)" {
		t.Errorf("the Approve button's colour is %s, want the accent #8250df", accent)
	}
	p.clean(t, "branded consent page")
	p.screenshot(t, "branded-consent")
	p.tabTo(t, "Approve")
	p.run(t, "approve", chromedp.KeyEvent(kb.Enter))
	if q := catcher.wait(t, p); q.Get("code") == "" || q.Get("state") != "branded" {
		t.Fatalf("approve on the branded page: redirect query %v", q)
	}
}
