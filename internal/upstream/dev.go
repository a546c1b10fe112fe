package upstream

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/oauth2"
)

// DevLoginPath is where the development login form is served.
const DevLoginPath = "/dev/login"

// devConnector is the development-only sign-in (type dev): the "provider"
// is a form at /dev/login where anyone types a user name. It walks the
// same redirect, state and PKCE path as a real provider so that --dev
// exercises the real callback handling. authd refuses the type outside
// --dev (config validation).
type devConnector struct {
	cfg      Config
	loginURL string // issuer + /dev/login
	// key authenticates the codes the form hands out, so that only the
	// form (in this process) can mint them.
	key []byte
}

func newDev(c Config) (*devConnector, error) {
	suffix := "/callback/" + c.ID
	if !strings.HasSuffix(c.RedirectURL, suffix) {
		return nil, fmt.Errorf("upstream %s: redirect URL %q does not end in %s", c.ID, c.RedirectURL, suffix)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return &devConnector{
		cfg:      c,
		loginURL: strings.TrimSuffix(c.RedirectURL, suffix) + DevLoginPath,
		key:      key,
	}, nil
}

func (c *devConnector) ID() string          { return c.cfg.ID }
func (c *devConnector) Type() string        { return TypeDev }
func (c *devConnector) DisplayName() string { return c.cfg.Name }

// AuthCodeURL points at the dev login form, carrying state, the connector
// id and the PKCE challenge the code will be bound to. The form asks every
// time, so ForceLogin and MaxAge need nothing more.
func (c *devConnector) AuthCodeURL(state string, o LoginOptions) string {
	q := url.Values{
		"state":          {state},
		"upstream":       {c.cfg.ID},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(o.Verifier)},
	}
	if o.LoginHint != "" {
		q.Set("login_hint", o.LoginHint)
	}
	if o.ClientName != "" {
		q.Set("client_name", o.ClientName)
	}
	return c.loginURL + "?" + q.Encode()
}

// devCode is what the dev "authorization code" carries.
type devCode struct {
	Name      string `json:"n"`
	Email     string `json:"e,omitempty"`
	Challenge string `json:"c"`
}

func (c *devConnector) mintCode(dc devCode) string {
	payload, _ := json.Marshal(dc)
	p := base64.RawURLEncoding.EncodeToString(payload)
	return p + "." + base64.RawURLEncoding.EncodeToString(c.mac(p))
}

func (c *devConnector) mac(p string) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(p))
	return m.Sum(nil)
}

func (c *devConnector) readCode(code string) (devCode, error) {
	p, sig, ok := strings.Cut(code, ".")
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err != nil || !hmac.Equal(mac, c.mac(p)) {
		return devCode{}, errors.New("dev code not minted by this process")
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return devCode{}, err
	}
	var dc devCode
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&dc); err != nil {
		return devCode{}, err
	}
	return dc, nil
}

func (c *devConnector) HandleCallback(_ context.Context, r *http.Request, o LoginOptions) (Identity, error) {
	code, err := callbackCode(r, c.cfg.Name)
	if err != nil {
		return Identity{}, err
	}
	if o.Verifier == "" {
		return Identity{}, errors.New("upstream: HandleCallback needs the PKCE verifier")
	}
	bad := func(cause error) error {
		return &Error{Code: CodeUpstreamError, Message: "The development login answer was not valid. Please try again.", Err: cause}
	}
	dc, err := c.readCode(code)
	if err != nil {
		return Identity{}, bad(err)
	}
	want := oauth2.S256ChallengeFromVerifier(o.Verifier)
	if subtle.ConstantTimeCompare([]byte(dc.Challenge), []byte(want)) != 1 {
		return Identity{}, bad(errors.New("dev code issued for another PKCE challenge"))
	}
	if msg := checkDevUser(dc.Name, dc.Email); msg != "" {
		return Identity{}, bad(errors.New(msg))
	}
	email := dc.Email
	if email == "" {
		email = dc.Name + "@dev.local"
	}
	return Identity{
		Provider:      c.cfg.ID,
		Subject:       "dev:" + dc.Name,
		Login:         dc.Name,
		Name:          dc.Name,
		Email:         email,
		EmailVerified: true,
	}, nil
}

var devName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// checkDevUser returns what is wrong with the typed name and email, or "".
func checkDevUser(name, email string) string {
	if !devName.MatchString(name) {
		return "User name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."
	}
	if email != "" {
		a, err := mail.ParseAddress(email)
		if err != nil || a.Address != email || len(email) > 254 {
			return "Email: a plain address such as alice@example.com, or leave it empty."
		}
	}
	return ""
}

// DevLoginHandler serves DevLoginPath for the dev connectors among conns:
// GET shows the form, POST redirects (303) to the connector's callback
// with state and a code naming the typed user. With no dev connector it
// answers 404 to everything, so mounting it unconditionally is harmless.
//
// The page is for development only and says so. The POST is guarded by
// http.CrossOriginProtection; beyond that, a forged POST gains nothing
// because the callback accepts the code only with the state and PKCE
// verifier of the pending request bound to the browser's own cookie.
func DevLoginHandler(conns []Connector, log *slog.Logger, brand DevBrand) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	devs := map[string]*devConnector{}
	for _, c := range conns {
		if d, ok := c.(*devConnector); ok {
			devs[d.cfg.ID] = d
		}
	}
	if len(devs) == 0 {
		return http.NotFoundHandler()
	}
	if brand.ProductName == "" {
		brand.ProductName = "authd"
	}
	h := &devLogin{devs: devs, log: log, brand: brand}
	return http.NewCrossOriginProtection().Handler(h)
}

type devLogin struct {
	devs  map[string]*devConnector
	log   *slog.Logger
	brand DevBrand
}

// DevBrand is the operator's branding of the other pages (config pages.*,
// checked there), shown in the development login's header so that it
// matches them.
type DevBrand struct {
	ProductName string
	LogoURL     string
	// LogoOrigin is the CSP img-src source of LogoURL.
	LogoOrigin string
	// AccentCSS is the style rules of the accent colour, built by the
	// pages from a checked colour (never operator text as such).
	AccentCSS template.CSS
}

type devForm struct {
	Brand                      DevBrand
	Upstream, State, Challenge string
	// ClientName is the application asking (display only: it comes from
	// the link, like everything on this development page).
	ClientName  string
	Name, Email string
	Problem     string
}

var challengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func (h *devLogin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		q := r.URL.Query()
		f := devForm{Upstream: q.Get("upstream"), State: q.Get("state"), Challenge: q.Get("code_challenge"), Name: q.Get("login_hint"), ClientName: q.Get("client_name")}
		if _, ok := h.parse(w, f); !ok {
			return
		}
		h.render(w, http.StatusOK, f)
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			status := http.StatusBadRequest
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				status = http.StatusRequestEntityTooLarge
			}
			http.Error(w, http.StatusText(status), status)
			return
		}
		f := devForm{
			Upstream:   r.PostForm.Get("upstream"),
			State:      r.PostForm.Get("state"),
			Challenge:  r.PostForm.Get("code_challenge"),
			ClientName: r.PostForm.Get("client_name"),
			Name:       strings.TrimSpace(r.PostForm.Get("name")),
			Email:      strings.TrimSpace(r.PostForm.Get("email")),
		}
		d, ok := h.parse(w, f)
		if !ok {
			return
		}
		if f.Problem = checkDevUser(f.Name, f.Email); f.Problem != "" {
			h.render(w, http.StatusBadRequest, f)
			return
		}
		code := d.mintCode(devCode{Name: f.Name, Email: f.Email, Challenge: f.Challenge})
		// 303 so the browser follows with GET (RFC 9700 §4.12).
		http.Redirect(w, r, d.cfg.RedirectURL+"?"+url.Values{"state": {f.State}, "code": {code}}.Encode(), http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
	}
}

// parse checks the request parameters that came from AuthCodeURL.
func (h *devLogin) parse(w http.ResponseWriter, f devForm) (*devConnector, bool) {
	d, ok := h.devs[f.Upstream]
	if !ok || f.State == "" || len(f.State) > 512 || !challengePattern.MatchString(f.Challenge) {
		http.Error(w, "This development login link is incomplete; start again from the application.", http.StatusBadRequest)
		return nil, false
	}
	return d, true
}

func (h *devLogin) render(w http.ResponseWriter, status int, f devForm) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	csp := "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	if h.brand.LogoURL != "" && h.brand.LogoOrigin != "" {
		csp += "; img-src " + h.brand.LogoOrigin
	}
	hdr.Set("Content-Security-Policy", csp)
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	f.Brand = h.brand
	if err := devPage.Execute(w, f); err != nil {
		h.log.Error("dev login page", "err", err)
	}
}

var devPage = template.Must(template.New("dev").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Development login · {{.Brand.ProductName}}</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24}
main{max-width:36rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;border:1px solid #d0d7de;border-radius:8px}
h1{font-size:1.4rem;margin-top:0}
.brand{display:flex;align-items:center;gap:.6rem;max-width:36rem;margin:1.5rem auto 0;padding:0 2rem;font-weight:600;color:#57606a}
.brand img{max-height:32px;max-width:160px}
.dev{background:#ffebe9;color:#82071e;padding:.3rem .6rem;border-radius:6px}
.problem{color:#82071e}
label{display:block;margin-top:1rem;font-weight:600}
input{font:inherit;width:100%;padding:.4rem;box-sizing:border-box;border:1px solid #8c959f;border-radius:6px}
button{display:inline-block;font:inherit;padding:.5rem 1rem;margin:1rem 0 0;border:1px solid #1a7f37;border-radius:6px;background:#1f883d;color:#fff;cursor:pointer}
button:focus,input:focus{outline:3px solid #0969da;outline-offset:2px}
{{.Brand.AccentCSS}}
</style>
</head>
<body>
<header class="brand">{{if .Brand.LogoOrigin}}{{with .Brand.LogoURL}}<img src="{{.}}" alt="">{{end}}{{end}}<span>{{.Brand.ProductName}}</span></header>
<main>
<p class="dev" role="alert">Development server: anyone can sign in as anyone. Never expose it to real users.</p>
<h1>Development login</h1>
<p>Sign in{{with .ClientName}} to continue to <strong>{{.}}</strong>{{end}} with any user name.</p>
{{if .Problem}}<p class="problem" role="alert">{{.Problem}}</p>{{end}}
<form method="post" action="">
<input type="hidden" name="upstream" value="{{.Upstream}}">
<input type="hidden" name="state" value="{{.State}}">
<input type="hidden" name="code_challenge" value="{{.Challenge}}">
<input type="hidden" name="client_name" value="{{.ClientName}}">
<label for="name">User name</label>
<input id="name" name="name" value="{{.Name}}" required autofocus autocomplete="username" maxlength="64">
<label for="email">Email (optional; default name@dev.local)</label>
<input id="email" name="email" type="email" value="{{.Email}}" autocomplete="email" maxlength="254">
<button type="submit" class="primary">Sign in</button>
</form>
</main>
</body>
</html>
`))
