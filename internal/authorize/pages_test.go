package authorize

import (
	"html"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authd/authd/internal/store"
)

// theme writes a template directory with the given files.
func theme(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestHostileThemeRefused: a theme that drops, hides, moves into an
// unsafe element, repeats or imitates the consent page's facts (the
// verification badge, redirect host, resources, scopes, Approve/Deny), or
// claims verification of its own, stops authd at start-up (NewPages) with
// the file and the reason.
func TestHostileThemeRefused(t *testing.T) {
	t.Parallel()
	const facts = `{{.Facts}}`
	for name, tc := range map[string]struct {
		files map[string]string
		want  string
	}{
		"consent drops the facts": {map[string]string{"consent.html": `{{define "content"}}<p>Approve?</p>{{end}}`}, "does not show the consent facts"},
		"facts in an attribute":   {map[string]string{"consent.html": `{{define "content"}}<p title="{{.Facts}}">x</p>{{end}}`}, "does not show the consent facts"},
		"facts in a textarea":     {map[string]string{"consent.html": `{{define "content"}}<textarea>` + facts + `</textarea>{{end}}`}, "does not show the consent facts"},
		"facts hidden":            {map[string]string{"consent.html": `{{define "content"}}<div hidden>` + facts + `</div>{{end}}`}, "hidden"},
		"facts aria-hidden":       {map[string]string{"consent.html": `{{define "content"}}<div aria-hidden="true">` + facts + `</div>{{end}}`}, "aria-hidden"},
		"facts collapsed":         {map[string]string{"consent.html": `{{define "content"}}<details><summary>More</summary>` + facts + `</details>{{end}}`}, "<details>"},
		"facts in a template":     {map[string]string{"consent.html": `{{define "content"}}<template>` + facts + `</template>{{end}}`}, "<template>"},
		"facts in white font":     {map[string]string{"consent.html": `{{define "content"}}<font color="white">` + facts + `</font>{{end}}`}, "<font>"},
		"facts in a label":        {map[string]string{"consent.html": `{{define "content"}}<label for="x">` + facts + `</label>{{end}}`}, "<label>"},
		"facts twice":             {map[string]string{"consent.html": `{{define "content"}}` + facts + facts + `{{end}}`}, "2 elements"},
		"fake facts element":      {map[string]string{"consent.html": `{{define "content"}}<section id="authd-consent-facts">✔ Verified</section><div hidden>` + facts + `</div>{{end}}`}, "2 elements"},
		"fake badge":              {map[string]string{"consent.html": `{{define "content"}}<p class="verified">✔ Verified by Acme</p>` + facts + `{{end}}`}, "outside the consent facts"},
		"fake badge in an image":  {map[string]string{"consent.html": `{{define "content"}}<img alt="Verified application">` + facts + `{{end}}`}, "outside the consent facts"},
		"fake badge in layout": {map[string]string{"layout.html": `{{define "layout"}}<!doctype html><title>x</title><style>{{css}}</style><p>All apps here are verified.</p>{{template "content" .Data}}{{end}}`},
			"outside the consent facts"},
		"layout drops the content": {map[string]string{"layout.html": `{{define "layout"}}<!doctype html><title>{{.Title}}</title><p>Welcome</p>{{end}}`}, "does not show the consent facts"},
		"layout hides the content": {map[string]string{"layout.html": `{{define "layout"}}<!doctype html><title>{{.Title}}</title><noscript>{{template "content" .Data}}</noscript>{{end}}`}, "does not show the consent facts"},
		"facts replaced":           {map[string]string{"consent_facts.html": `{{define "consent_facts"}}<section id="authd-consent-facts">✔ Verified</section>{{end}}`}, "cannot be replaced"},
		"misspelt page":            {map[string]string{"consnet.html": `{{define "content"}}x{{end}}`}, "no page of that name"},
		"defines nothing":          {map[string]string{"apps.html": `<p>apps</p>`}, `must define the template "content"`},
		"does not parse":           {map[string]string{"error.html": `{{define "content"}}{{.Message}{{end}}`}, "error.html"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewPages(Branding{TemplateDir: theme(t, tc.files)})
			if err == nil {
				t.Fatal("NewPages accepted the theme")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "template_dir: ") {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestThemedConsentKeepsTheFacts: a theme that places the facts is used
// on every page; the consent page keeps authd's badge, redirect host,
// resources and scopes, and approving works. A theme that shows the facts
// only when the probe's data is used (here: only at the host root) is
// caught on the real request: 500, never a consent page without them.
func TestThemedConsentKeepsTheFacts(t *testing.T) {
	t.Parallel()
	good := theme(t, map[string]string{
		"layout.html": `{{define "layout"}}<!doctype html><html lang="en"><head><title>{{.Title}} – {{.Brand.Product}}</title><style>{{css}}</style></head>` +
			`<body><div class="acme-frame"><p>Acme corporate sign-in</p><main>{{template "content" .Data}}</main></div></body></html>{{end}}`,
		"consent.html": `{{define "content"}}<p>Please review carefully.</p><section class="acme">{{.Facts}}</section>{{end}}`,
		"error.html":   `{{define "content"}}<p>Acme says: {{.Message}}</p>{{end}}`,
	})
	p, err := NewPages(Branding{ProductName: "Acme <Sign-in>", TemplateDir: good})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, []string{"github"}, func(h *Handler) { h.Pages = p })
	dyn := e.addClient(store.Client{Metadata: store.ClientMetadata{ClientName: "Themed Agent", RedirectURIs: []string{appURI}}})
	b := e.browser(t)
	a := newAuthz(dyn.ID, appURI)
	consent := b.get(a.url(e))
	for _, want := range []string{"Acme corporate sign-in", "Please review carefully.", "Themed Agent", "⚠ Unverified", "app.example.com", "Example MCP", "Read your notes", "Acme <Sign-in>"} {
		e.expectPage(t, consent, http.StatusOK, want)
	}
	if strings.Contains(consent.body, "Acme <Sign-in>") {
		t.Fatal("the product name is not escaped")
	}
	e.expectCode(t, b.decide(consent, "approve"), a)
	e.expectPage(t, b.get("/authorize?client_id=nope"), http.StatusBadRequest, "Acme says:")

	// Evades the probe (Base is empty there) but not the per-page check.
	sly := theme(t, map[string]string{"consent.html": `{{define "content"}}{{if .Base}}<div hidden>{{.Facts}}</div>{{else}}{{.Facts}}{{end}}{{end}}`})
	p, err = NewPages(Branding{TemplateDir: sly})
	if err != nil {
		t.Fatalf("the probe should not see this theme: %v", err)
	}
	e2 := newEnvAt(t, newTestStore(t), "/tenant", []string{"github"}, func(h *Handler) { h.Pages = p })
	c2 := e2.addClient(store.Client{})
	r := e2.browser(t).get(newAuthz(c2.ID, appURI).url(e2))
	if r.status != http.StatusInternalServerError || strings.Contains(r.body, "authd-consent-facts") {
		t.Fatalf("a consent page with hidden facts was served: %d\n%s", r.status, excerpt(r.body))
	}
}

// TestBrandingValues: product name, logo and accent reach the pages and
// the CSP admits images from the logo's origin only; hostile values are
// refused before they reach a header or a style.
func TestBrandingValues(t *testing.T) {
	t.Parallel()
	p, err := NewPages(Branding{ProductName: "Acme Sign-in", LogoURL: "https://cdn.example.com/brand/logo.svg?v=2", AccentColor: "#fc0"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, []string{"github", "oidc"}, func(h *Handler) { h.Pages = p })
	c := e.addClient(store.Client{})
	r := e.browser(t).get(newAuthz(c.ID, appURI).url(e))
	e.expectPage(t, r, http.StatusOK, "Acme Sign-in")
	if csp := r.header.Get("Content-Security-Policy"); !strings.HasSuffix(csp, "; img-src https://cdn.example.com") || strings.Count(csp, "img-src") != 1 {
		t.Fatalf("CSP %q does not admit exactly the logo's origin", csp)
	}
	if !strings.Contains(html.UnescapeString(r.body), `<img src="https://cdn.example.com/brand/logo.svg?v=2"`) {
		t.Fatalf("no logo:\n%s", excerpt(r.body))
	}
	// A light accent gets dark button text.
	if !strings.Contains(r.body, ".primary{background:#fc0;border-color:#fc0;color:#1b1f24}") {
		t.Fatalf("accent colour not applied:\n%s", excerpt(r.body))
	}
	// Unbranded pages load no image at all.
	plain := newEnv(t, []string{"github", "oidc"})
	c = plain.addClient(store.Client{})
	if csp := plain.browser(t).get(newAuthz(c.ID, appURI).url(plain)).header.Get("Content-Security-Policy"); strings.Contains(csp, "img-src") {
		t.Fatalf("unbranded CSP %q admits images", csp)
	}

	for _, b := range []Branding{
		{AccentColor: "red"},
		{AccentColor: "#fc0;}body{display:none"},
		{AccentColor: "#12345"},
		{LogoURL: "http://cdn.example.com/logo.png"},
		{LogoURL: "javascript:alert(1)"},
		{LogoURL: "data:image/png;base64,iVBORw0KGgo="},
		{LogoURL: "//cdn.example.com/logo.png"},
		{LogoURL: "https://user@cdn.example.com/logo.png"},
		{ProductName: " Acme"},
		{ProductName: "Acme\u202eevil"},
		{ProductName: strings.Repeat("a", 61)},
	} {
		if _, err := NewPages(b); err == nil {
			t.Errorf("NewPages(%+v) accepted a bad value", b)
		}
	}
	if _, err := NewPages(Branding{LogoURL: "http://127.0.0.1:8080/logo.png"}); err != nil {
		t.Errorf("a loopback http logo (development) is refused: %v", err)
	}
}
