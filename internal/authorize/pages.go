package authorize

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/upstream"
)

//go:embed templates/*.html
var templateFS embed.FS

// pageCSS is the only style of every page. The CSP allows exactly this
// text (with the accent rules Branding adds) by its hash, so no other
// inline style can apply; a theme changes markup and words, never CSS,
// because CSS could hide the consent page's facts.
const pageCSS = `body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24}
main{max-width:36rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;border:1px solid #d0d7de;border-radius:8px}
h1{font-size:1.4rem;margin-top:0}h2{font-size:1.05rem;margin:1.2rem 0 .3rem}
.brand{display:flex;align-items:center;gap:.6rem;max-width:36rem;margin:1.5rem auto 0;padding:0 2rem;font-weight:600;color:#57606a}
.brand img{max-height:32px;max-width:160px}
.muted{color:#57606a;font-size:.9rem}.lead{font-size:1.1rem}
.host{font-size:1.4rem;font-weight:700;word-break:break-all;margin:.2rem 0}
.verified{color:#116329}.warning{color:#7d4e00;background:#fff8c5;padding:.4rem .6rem;border-radius:6px}
.dev{background:#ffebe9;color:#82071e;padding:.3rem .6rem;border-radius:6px}
.new{font-weight:600}.badge{background:#ddf4ff;color:#0550ae;border-radius:4px;padding:0 .3rem;font-size:.8rem}
ul{padding-left:1.2rem}ul.choices,ul.apps{list-style:none;padding:0}
ul.apps li{border-top:1px solid #d0d7de;padding:.5rem 0}dt{font-weight:600}dd{margin:0 0 .3rem}
button,.button{display:inline-block;font:inherit;padding:.5rem 1rem;margin:.3rem .3rem .3rem 0;border:1px solid #8c959f;border-radius:6px;background:#f6f8fa;color:#1b1f24;text-decoration:none;cursor:pointer}
.primary{background:#1f883d;border-color:#1a7f37;color:#fff}
button:focus,.button:focus{outline:3px solid #0969da;outline-offset:2px}`

// Branding is what an operator may change on the pages (config pages.*).
// config.Validate checks the values; NewPages checks them again, since a
// hostile value must never reach a header or a style.
type Branding struct {
	// ProductName replaces "authd" in titles and the page header; it is
	// text, escaped like every value.
	ProductName string
	// LogoURL is an https image shown in the header; the pages' CSP then
	// allows images from exactly its origin (img-src), nothing else.
	LogoURL string
	// AccentColor is a CSS hex colour (#1f6feb or #16b) for primary
	// buttons, links and the header.
	AccentColor string
	// TemplateDir holds templates that replace the embedded ones of the
	// same name (layout.html, error.html, chooser.html, apps.html,
	// signin.html, consent.html); each defines the same template ("layout" or
	// "content") as authd's own. The consent page's facts are not among
	// them: see consentFactsID.
	TemplateDir string
}

// DefaultProductName names the server on the pages unless branded.
const DefaultProductName = "authd"

var hexColor = regexp.MustCompile(`^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

// CheckAccentColor returns what is wrong with an accent colour, or "".
func CheckAccentColor(s string) string {
	if s != "" && !hexColor.MatchString(s) {
		return fmt.Sprintf("%q is not a CSS hex colour such as \"#1f6feb\" or \"#16b\"", s)
	}
	return ""
}

// LogoOrigin checks a logo URL and returns its origin (the CSP img-src
// source), e.g. https://cdn.example.com. https only; http only for a
// loopback host (development). data: URLs are refused: img-src data:
// would admit any inline image, not just the logo.
func LogoOrigin(s string) (string, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return "", fmt.Errorf("%q is not an absolute https URL such as \"https://cdn.example.com/logo.svg\"", s)
	case u.User != nil:
		return "", fmt.Errorf("%q must not contain user information", s)
	case u.Scheme == "https", u.Scheme == "http" && oauth.IsLoopbackHost(u.Hostname()):
	default:
		return "", fmt.Errorf("%q must be an https URL such as \"https://cdn.example.com/logo.svg\" (data: and http URLs are refused: the pages' CSP admits images from the logo's origin only)", s)
	}
	// Host comes from url.Parse: no space, quote, ';' or ',' that could
	// end the CSP source expression.
	if strings.ContainsAny(u.Host, " ;,'\"") {
		return "", fmt.Errorf("%q has a host that cannot be named in a Content-Security-Policy", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// CheckProductName returns what is wrong with a product name, or "".
func CheckProductName(s string) string {
	switch {
	case strings.TrimSpace(s) != s || s == "":
		return fmt.Sprintf("%q must be a name without leading or trailing space, such as \"Example Sign-in\"", s)
	case len([]rune(s)) > 60:
		return fmt.Sprintf("%q is longer than 60 characters", s)
	case strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || !strconv.IsPrint(r) && r != ' ' }) >= 0:
		return fmt.Sprintf("%q contains control or invisible characters", s)
	}
	return ""
}

// pageNames are the pages a theme may replace, besides layout.html.
var pageNames = []string{"error", "chooser", "consent", "apps", "signin"}

// Pages are the parsed templates of the pages, with the style and the
// Content-Security-Policy that go with them.
type Pages struct {
	brand     Branding
	templates map[string]*template.Template
	facts     *template.Template // never from the theme
	// themedConsent is set when the theme replaces the consent page or the
	// layout around it: only then can a rendered consent page differ from
	// what authd's own templates make of the data, so only then is each
	// one checked (checkConsentFacts) before it is served. authd's own
	// consent page escapes what it shows and is checked at start-up.
	themedConsent bool
	css           string
	imgSrc        string // "" or "; img-src <origin>"
	cssHash       string
}

// NewPages parses the embedded templates and, with a TemplateDir, the
// theme's. It refuses (with the file and the reason) a theme whose
// consent page does not show the consent facts as authd renders them.
func NewPages(b Branding) (*Pages, error) {
	if b.ProductName == "" {
		b.ProductName = DefaultProductName
	}
	if msg := CheckProductName(b.ProductName); msg != "" {
		return nil, fmt.Errorf("product_name: %s", msg)
	}
	if msg := CheckAccentColor(b.AccentColor); msg != "" {
		return nil, fmt.Errorf("accent_color: %s", msg)
	}
	p := &Pages{brand: b, templates: map[string]*template.Template{}, css: pageCSS}
	if b.LogoURL != "" {
		origin, err := LogoOrigin(b.LogoURL)
		if err != nil {
			return nil, fmt.Errorf("logo_url: %v", err)
		}
		p.imgSrc = "; img-src " + origin
	}
	if c := b.AccentColor; c != "" {
		p.css += accentCSS(c)
	}
	sum := sha256.Sum256([]byte(p.css))
	p.cssHash = "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"

	funcs := template.FuncMap{"css": func() template.CSS { return template.CSS(p.css) }}
	p.facts = template.Must(template.New("facts").ParseFS(templateFS, "templates/consent_facts.html"))

	theme, err := readTheme(b.TemplateDir)
	if err != nil {
		return nil, fmt.Errorf("template_dir: %v", err)
	}
	_, themedLayout := theme["layout.html"]
	_, themedPage := theme["consent.html"]
	p.themedConsent = themedLayout || themedPage
	for _, name := range pageNames {
		t := template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS,
			"templates/layout.html", "templates/"+name+".html"))
		for _, file := range []string{"layout.html", name + ".html"} {
			src, ok := theme[file]
			if !ok {
				continue
			}
			// Parsing into t redefines "layout" or "content" (allowed
			// before the first Execute).
			if t, err = t.New(file).Parse(src); err != nil {
				return nil, fmt.Errorf("template_dir: %v", err)
			}
		}
		p.templates[name] = t
	}
	if err := p.probeConsent(); err != nil {
		return nil, fmt.Errorf("template_dir: %v", err)
	}
	return p, nil
}

// readTheme reads the theme's templates, refusing files authd would not
// use (a misspelt name would otherwise be ignored silently) and a
// template that does not define what the file it replaces defines.
func readTheme(dir string) (map[string]string, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%q cannot be read: %v", dir, errors.Unwrap(err))
	}
	theme := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".html") {
			continue // images, a README: not templates
		}
		page := strings.TrimSuffix(name, ".html")
		switch {
		case page == "consent_facts":
			return nil, fmt.Errorf("%s: the consent page's facts (verification badge, redirect host, resources, scopes, the Approve and Deny form) cannot be replaced by a theme; remove the file and place {{.Facts}} in consent.html", filepath.Join(dir, name))
		case page != "layout" && !slices.Contains(pageNames, page):
			return nil, fmt.Errorf("%s: no page of that name; a theme may replace layout.html, %s.html", filepath.Join(dir, name), strings.Join(pageNames, ".html, "))
		}
		src, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("%s: %v", filepath.Join(dir, name), errors.Unwrap(err))
		}
		want := "content"
		if page == "layout" {
			want = "layout"
		}
		t, err := template.New(name).Funcs(template.FuncMap{"css": func() template.CSS { return "" }}).Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("%s: %v", filepath.Join(dir, name), err)
		}
		if t.Lookup(want) == nil {
			return nil, fmt.Errorf("%s: must define the template %q like authd's own (internal/authorize/templates/%s): {{define %q}}…{{end}}", filepath.Join(dir, name), want, name, want)
		}
		theme[name] = string(src)
	}
	return theme, nil
}

// accentCSS colours primary buttons, links, focus rings and the header
// with c, and picks black or white button text for contrast.
func accentCSS(c string) string {
	text := "#fff"
	if luminance(c) > 0.5 {
		text = "#1b1f24"
	}
	return "\n.primary{background:" + c + ";border-color:" + c + ";color:" + text + "}a{color:" + c + "}" +
		".brand{border-bottom:3px solid " + c + ";padding-bottom:.4rem}" +
		"button:focus,.button:focus{outline-color:" + c + "}"
}

// luminance is the relative luminance (WCAG 2) of a hex colour checked by
// CheckAccentColor.
func luminance(c string) float64 {
	h := c[1:]
	if len(h) == 3 {
		h = string([]byte{h[0], h[0], h[1], h[1], h[2], h[2]})
	}
	var l float64
	for i, w := range []float64{0.2126, 0.7152, 0.0722} {
		v, _ := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		s := float64(v) / 255
		if s <= 0.03928 {
			s /= 12.92
		} else {
			s = math.Pow((s+0.055)/1.055, 2.4)
		}
		l += w * s
	}
	return l
}

var defaultPages = sync.OnceValues(func() (*Pages, error) { return NewPages(Branding{}) })

func (h *Handler) pages() *Pages {
	if h.Pages != nil {
		return h.Pages
	}
	p, err := defaultPages()
	if err != nil {
		panic(err) // the embedded templates are broken: a build defect
	}
	return p
}

// Content-Security-Policy of the pages. Nothing loads from anywhere (but
// the logo, from its origin) and no page may be framed (RFC 9700 §4.16).
//
// The consent page has no form-action directive: Chrome and Safari apply
// form-action to every redirect that follows a form submission, and
// approving ends in a redirect to the client's redirect URI, which may be a
// private-use scheme, a loopback port, or an https URL that redirects on to
// an app (w3c/webappsec-csp#8). The consent form posts to authd itself and
// no script can run to alter it, so the directive would add nothing there.
const (
	cspPage    = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; style-src "
	cspConsent = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; style-src "
)

// setPageHeaders sets the security headers of an authd HTML page.
func (p *Pages) setPageHeaders(w http.ResponseWriter, consent bool) {
	hd := w.Header()
	csp := cspPage
	if consent {
		csp = cspConsent
	}
	hd.Set("Content-Security-Policy", csp+p.cssHash+p.imgSrc)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Pragma", "no-cache")
}

// devBrand is the branding for the development login's header.
func (p *Pages) devBrand() upstream.DevBrand {
	b := upstream.DevBrand{ProductName: p.brand.ProductName, LogoURL: p.brand.LogoURL, LogoOrigin: strings.TrimPrefix(p.imgSrc, "; img-src ")}
	if c := p.brand.AccentColor; c != "" {
		b.AccentCSS = template.CSS(accentCSS(c))
	}
	return b
}

// brandData is what the layout knows of the branding.
type brandData struct {
	Product string
	LogoURL string
}

// execute renders page name into a buffer. The consent page's facts are
// rendered from the embedded consent_facts.html alone and handed to the
// (possibly themed) consent template as HTML, then the whole page is
// checked to show them (checkConsentFacts).
func (p *Pages) execute(name, title string, devMode bool, data any) ([]byte, error) {
	var facts template.HTML
	if d, ok := data.(consentData); ok {
		var fb bytes.Buffer
		if err := p.facts.ExecuteTemplate(&fb, "consent_facts", d); err != nil {
			return nil, err
		}
		facts = template.HTML(fb.String())
		data = struct {
			Facts template.HTML
			Base  string
		}{facts, d.Base}
	}
	var buf bytes.Buffer
	err := p.templates[name].ExecuteTemplate(&buf, "layout", struct {
		Title   string
		DevMode bool
		Brand   brandData
		Data    any
	}{title, devMode, brandData{p.brand.ProductName, p.brand.LogoURL}, data})
	if err != nil {
		return nil, err
	}
	if facts != "" && p.themedConsent {
		if err := checkConsentFacts(buf.Bytes(), false); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// render writes an HTML page. The template is executed into a buffer first
// so that a template error becomes a clean 500, not half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	p := h.pages()
	page, err := p.execute(name, title, h.DevMode, data)
	p.setPageHeaders(w, name == "consent")
	if err != nil {
		h.log().ErrorContext(r.Context(), "rendering page failed", "page", name, "error", err.Error())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("internal server error\n"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(page)
}

type errorData struct {
	Message string
	Hint    string
}
