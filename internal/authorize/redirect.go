package authorize

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// target is where errors and the code go once the client and its redirect
// URI are confirmed (RFC 6749 §4.1.2.1). client is the client as read
// while serving the current request: every redirect re-checks against it
// that the URI is still registered (stillRegistered).
type target struct {
	client      store.Client
	redirectURI string
	state       string
}

// targetOf is the target of a pending request whose client was read while
// serving the current request.
func targetOf(client store.Client, req store.AuthRequest) target {
	return target{client: client, redirectURI: req.RedirectURI, state: req.State}
}

// stillRegistered reports whether t's client is enabled and lists t's
// redirect URI: a client may have withdrawn it (RFC 7592 PUT) or been
// disabled while the user was signing in or deciding.
func stillRegistered(t target) bool {
	if t.client.ID == "" || t.client.Disabled {
		return false
	}
	_, ok := oauth.MatchRedirectURI(t.client.Metadata.RedirectURIs, t.redirectURI)
	return ok
}

// appendQuery adds v to uri, keeping uri's own query byte for byte (RFC
// 6749 §3.1.2: the registered query MUST be retained).
func appendQuery(uri string, v url.Values) string {
	switch {
	case !strings.Contains(uri, "?"):
		return uri + "?" + v.Encode()
	case strings.HasSuffix(uri, "?"), strings.HasSuffix(uri, "&"):
		return uri + v.Encode()
	default:
		return uri + "&" + v.Encode()
	}
}

// redirect answers 303 to a POST (RFC 9700 §4.12: a 307 would re-send the
// form, credentials included) and 302 to a GET. Location is set verbatim:
// redirect URIs may use private-use schemes that http.Redirect must not
// touch.
func redirect(w http.ResponseWriter, r *http.Request, location string) {
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	w.Header().Set("Location", location)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
}
