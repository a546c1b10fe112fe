package authorize

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/authd/authd/internal/oauth"
)

// Cookie names without the __Host- prefix, which is added when cookies are
// Secure (an https issuer). The prefix makes the browser refuse cookies set
// by a sibling subdomain or without Secure (cookie tossing).
const (
	sessionCookie       = "authd_session"
	requestCookiePrefix = "authd_rq_"
	hostPrefix          = "__Host-"
)

// handleLen is the length of a request handle: a prefix of the digest of the
// request id, naming the request's cookie. 22 base64url characters carry
// 132 bits, so two live requests of one browser never collide.
const handleLen = 22

// requestHandle is the public name of a pending request (it appears in
// URLs); it reveals nothing about the request id.
func requestHandle(idDigest string) string {
	if len(idDigest) < handleLen {
		return idDigest
	}
	return idDigest[:handleLen]
}

func validHandle(s string) bool {
	if len(s) != handleLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (h *Handler) cookieName(base string) string {
	if h.secureCookies() {
		return hostPrefix + base
	}
	return base
}

func (h *Handler) requestCookieName(handle string) string {
	return h.cookieName(requestCookiePrefix + handle)
}

// setCookie sets an HttpOnly, SameSite=Lax, host-only cookie for path /.
// Lax (not Strict) because the upstream's redirect to /callback is a
// cross-site top-level navigation that must carry the cookie.
func (h *Handler) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		HttpOnly: true,
		Secure:   h.secureCookies(),
		SameSite: http.SameSiteLaxMode,
	})
}

func (h *Handler) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   h.secureCookies(),
		SameSite: http.SameSiteLaxMode,
	})
}

// cookieValue returns the value of the named cookie, or "".
func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// requestIDFromCookie returns the request id this browser holds for the
// request with the given digest, or "" if it holds none (another browser,
// or the cookie expired).
func (h *Handler) requestIDFromCookie(r *http.Request, idDigest string) string {
	id := cookieValue(r, h.requestCookieName(requestHandle(idDigest)))
	if !strings.HasPrefix(id, oauth.PrefixRequest) || !oauth.ConstantTimeEqual(oauth.Digest(id), idDigest) {
		return ""
	}
	return id
}

// derive returns base64url(SHA-256(label NUL parts...)): secrets bound to a
// value only the browser holds (see the package documentation).
func derive(label string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(label))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// upstreamVerifier is the PKCE verifier towards the upstream: 43 characters
// of the base64url alphabet, a valid RFC 7636 verifier.
func upstreamVerifier(requestID, upstreamState string) string {
	return derive("authd-upstream-pkce", requestID, upstreamState)
}

func upstreamNonce(requestID, upstreamState string) string {
	return derive("authd-upstream-nonce", requestID, upstreamState)
}

func consentCSRF(requestID string) string {
	return derive("authd-consent", requestID)
}

// sessionCSRF protects the forms of the connected-apps page.
func sessionCSRF(sessionID string) string {
	return derive("authd-session-form", sessionID)
}
