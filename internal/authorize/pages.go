package authorize

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"net/http"
)

//go:embed templates/*.html
var templateFS embed.FS

// pageCSS is the only style of every page. The CSP allows exactly this
// text by its hash, so no other inline style can apply.
const pageCSS = `body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24}
main{max-width:36rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;border:1px solid #d0d7de;border-radius:8px}
h1{font-size:1.4rem;margin-top:0}h2{font-size:1.05rem;margin:1.2rem 0 .3rem}
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

var cssHash = func() string {
	sum := sha256.Sum256([]byte(pageCSS))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// Content-Security-Policy of the pages. Nothing loads from anywhere and no
// page may be framed (RFC 9700 §4.16).
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

var pages = func() map[string]*template.Template {
	funcs := template.FuncMap{"css": func() template.CSS { return template.CSS(pageCSS) }}
	m := map[string]*template.Template{}
	for _, name := range []string{"error", "chooser", "consent", "apps"} {
		m[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS,
			"templates/layout.html", "templates/"+name+".html"))
	}
	return m
}()

// setPageHeaders sets the security headers of an authd HTML page.
func setPageHeaders(w http.ResponseWriter, consent bool) {
	hd := w.Header()
	csp := cspPage
	if consent {
		csp = cspConsent
	}
	hd.Set("Content-Security-Policy", csp+cssHash)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Pragma", "no-cache")
}

// render writes an HTML page. The template is executed into a buffer first
// so that a template error becomes a clean 500, not half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	var buf bytes.Buffer
	err := pages[name].ExecuteTemplate(&buf, "layout", struct {
		Title   string
		DevMode bool
		Data    any
	}{title, h.DevMode, data})
	setPageHeaders(w, name == "consent")
	if err != nil {
		h.log().ErrorContext(r.Context(), "rendering page failed", "page", name, "error", err.Error())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("internal server error\n"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorData struct {
	Message string
	Hint    string
}
