package authorize

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/authd/authd/internal/store"
)

func TestBasePathFromIssuer(t *testing.T) {
	for issuer, want := range map[string]string{
		"https://auth.example.com":          "",
		"https://auth.example.com/tenant":   "/tenant",
		"https://auth.example.com/a/b":      "/a/b",
		"http://127.0.0.1:8080/tenant":      "/tenant",
		"https://auth.example.com/tenant/":  "/tenant",
		"https://auth.example.com/x%20y":    "/x%20y",
		"https://auth.example.com:8443/t-1": "/t-1",
	} {
		h := &Handler{Issuer: issuer}
		if got := h.basePath(); got != want {
			t.Errorf("basePath(%s) = %q, want %q", issuer, got, want)
		}
		if got := h.path("/consent?req=x"); got != want+"/consent?req=x" {
			t.Errorf("path(%s) = %q", issuer, got)
		}
	}
}

var anyHref = regexp.MustCompile(`href="([^"]*)"`)

// TestFlowUnderBasePath: with an issuer that has a path, every page, link,
// form and redirect of the flow stays under that path: the chooser, the
// development login, the callback, consent, the connected-apps page,
// revocation and sign-out.
func TestFlowUnderBasePath(t *testing.T) {
	t.Parallel()
	e := newEnvAt(t, newTestStore(t), "/tenant", []string{"github", "dev"}, func(h *Handler) { h.DevMode = true })
	client := e.addClient(store.Client{})
	b := e.browser(t)
	a := newAuthz(client.ID, appURI)

	chooser := b.get(a.url(e))
	if chooser.status != http.StatusOK || chooser.url.Path != "/tenant/login" {
		t.Fatalf("want the chooser at /tenant/login, got %d %s\n%s", chooser.status, chooser.url, excerpt(chooser.body))
	}
	var devLink string
	for _, m := range anyHref.FindAllStringSubmatch(chooser.body, -1) {
		link := html.UnescapeString(m[1])
		if !strings.HasPrefix(link, "/tenant/login?") {
			t.Errorf("chooser link %q is not under /tenant", link)
		}
		if strings.Contains(link, "idp=dev") {
			devLink = link
		}
	}
	if devLink == "" {
		t.Fatalf("no dev link on the chooser:\n%s", excerpt(chooser.body))
	}

	form := b.get(devLink)
	if form.status != http.StatusOK || form.url.Path != "/tenant/dev/login" {
		t.Fatalf("want the dev login form at /tenant/dev/login, got %d %s", form.status, form.url)
	}
	q := form.url.Query()
	page := b.post("/tenant/dev/login", url.Values{
		"upstream": {q.Get("upstream")}, "state": {q.Get("state")}, "code_challenge": {q.Get("code_challenge")},
		"name": {"dave"},
	})
	if page.url.Path != "/tenant/consent" || !strings.Contains(page.body, `action="/tenant/consent"`) || !strings.Contains(page.body, `href="/tenant/apps"`) {
		t.Fatalf("consent page at %s does not post and link under /tenant:\n%s", page.url, excerpt(page.body))
	}
	e.expectCode(t, b.decide(page, "approve"), a)

	apps := b.get("/tenant/apps")
	if apps.status != http.StatusOK || !strings.Contains(apps.body, `action="/tenant/apps/revoke"`) || !strings.Contains(apps.body, `action="/tenant/logout"`) {
		t.Fatalf("apps page %d:\n%s", apps.status, excerpt(apps.body))
	}
	csrf := html.UnescapeString(csrfRe.FindStringSubmatch(apps.body)[1])
	if r := b.post("/tenant/apps/revoke", url.Values{"client_id": {client.ID}, "csrf": {csrf}}); r.status != http.StatusOK || r.url.Path != "/tenant/apps" {
		t.Fatalf("revoke ended at %d %s", r.status, r.url)
	}
	if r := b.post("/tenant/logout", url.Values{"csrf": {csrf}}); r.url.Path != "/tenant/apps" {
		t.Fatalf("logout ended at %d %s", r.status, r.url)
	}
}
