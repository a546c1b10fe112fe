package introspect

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/tokens"
)

// Headers /verify answers with on success, for the proxy to set on the
// request it forwards to the protected server. All are always sent, empty
// when they do not apply (X-Auth-User and X-Auth-Email for a
// client_credentials token, X-Auth-Email for an unverified address, the
// identity-claim headers for a resource not configured for them), so that
// a proxy copying them replaces any the client sent itself.
const (
	HeaderUser     = "X-Auth-User"      // the user's login
	HeaderSubject  = "X-Auth-Subject"   // sub: authd user id, or client id
	HeaderEmail    = "X-Auth-Email"     // verified email address
	HeaderClientID = "X-Auth-Client-Id" // the OAuth client acting
	HeaderScope    = "X-Auth-Scope"     // granted scopes, space-separated

	// With the resource's claims setting:
	HeaderName             = "X-Auth-Name"              // name: display name
	HeaderGroups           = "X-Auth-Groups"            // groups: comma-separated (a group containing a comma is left out)
	HeaderUpstreamProvider = "X-Auth-Upstream-Provider" // upstream: the upstream's id, e.g. github
	HeaderUpstreamID       = "X-Auth-Upstream-Id"       // upstream: the user's immutable id there (GitHub numeric id, OIDC sub)
	HeaderUpstreamLogin    = "X-Auth-Upstream-Login"    // upstream: the user's login there

	// With the resource's forward_upstream_token setting: the user's
	// access token at that upstream (oauth2-proxy's header name).
	HeaderForwardedAccessToken = "X-Forwarded-Access-Token"
)

// HeaderForwardAuthSecret carries introspection.forward_auth_secret on
// the proxy's auth subrequest (nginx: proxy_set_header in the
// auth_request location), the proof that the request is that subrequest
// and not a client calling /verify through the proxy.
const HeaderForwardAuthSecret = "X-Authd-Forward-Secret"

// serveVerify is the ForwardAuth check a reverse proxy makes before
// passing a request on to a protected resource:
//
//   - 200 with the X-Auth-* headers: let the request through;
//   - 401 with an RFC 6750 §3 challenge whose resource_metadata (RFC 9728
//     §5.1) leads an MCP client to the resource's metadata and from there
//     to authd: no token, or one that is invalid, expired, revoked or not
//     meant for this resource;
//   - 403 insufficient_scope naming the scopes the resource requires;
//   - 403 access_denied when the request is for no configured resource
//     (the proxy protects something authd does not know: fail closed);
//   - 400 when the proxy says nothing usable about the request (see
//     resourceOf), a deployment error.
//
// The token is read from the Authorization header only, never from the
// query string (RFC 9700 §4.3.2 and MCP forbid tokens in URLs).
func (h *Handler) serveVerify(w http.ResponseWriter, r *http.Request) {
	oauth.NoStore(w)
	// Read once and dropped, so that nothing downstream can log it.
	subrequest := h.isForwardAuth(r.Header.Get(HeaderForwardAuthSecret))
	r.Header.Del(HeaderForwardAuthSecret)
	t, res, err := h.verify(r)
	var upstreamToken string
	if err == nil {
		upstreamToken, err = h.forwardedUpstreamToken(r, subrequest, t, res)
	}
	var missing missingToken
	switch {
	case errors.As(err, &missing):
		// RFC 6750 §3.1: a request without credentials gets a challenge
		// but no error code.
		w.Header().Set("WWW-Authenticate", string(missing))
		w.WriteHeader(http.StatusUnauthorized)
	case err != nil:
		oauth.WriteError(w, r, h.log(), err)
	default:
		hd := w.Header()
		// The login and verified email always, the rest as the resource
		// is configured.
		id := idclaims.For(res.Claims.Union(idclaims.Basic), t.User)
		hd.Set(HeaderUser, headerValue(id.PreferredUsername))
		hd.Set(HeaderSubject, headerValue(t.Subject))
		hd.Set(HeaderEmail, headerValue(id.Email))
		hd.Set(HeaderClientID, headerValue(t.ClientID))
		hd.Set(HeaderScope, headerValue(oauth.JoinScope(t.Scopes)))
		var groups []string
		for _, g := range id.Groups {
			if !strings.Contains(g, ",") {
				groups = append(groups, g)
			}
		}
		hd.Set(HeaderName, headerValue(id.Name))
		hd.Set(HeaderGroups, headerValue(strings.Join(groups, ",")))
		hd.Set(HeaderUpstreamProvider, headerValue(id.UpstreamProvider))
		hd.Set(HeaderUpstreamID, headerValue(id.UpstreamID))
		hd.Set(HeaderUpstreamLogin, headerValue(id.UpstreamLogin))
		hd.Set(HeaderForwardedAccessToken, headerValue(upstreamToken))
		w.WriteHeader(http.StatusOK)
	}
}

// ErrUpstreamTokenGone is what Handler.UpstreamTokens returns when authd
// holds no usable upstream token for the user (none stored, or the
// upstream refused to refresh it): /verify then answers 401, and the
// client's new sign-in stores a fresh one.
var ErrUpstreamTokenGone = errors.New("no usable upstream token for the user")

// isForwardAuth reports, in constant time, whether secret is
// ForwardAuthSecret. Both are hashed first so that neither the length nor
// the content leaks through timing.
func (h *Handler) isForwardAuth(secret string) bool {
	if h.ForwardAuthSecret == "" || secret == "" {
		return false
	}
	got, want := sha256.Sum256([]byte(secret)), sha256.Sum256([]byte(h.ForwardAuthSecret))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// forwardedUpstreamToken is the user's upstream access token when the
// resource is configured to receive it and the request is the proxy's
// auth subrequest (it carried the forward-auth secret), else "".
func (h *Handler) forwardedUpstreamToken(r *http.Request, subrequest bool, t *tokens.Info, res *resourceMatcher) (string, error) {
	if res.ForwardUpstreamToken == "" || t.User == nil {
		return "", nil
	}
	if _, named := r.URL.Query()["resource"]; named || !subrequest || h.FromTrustedProxy == nil || !h.FromTrustedProxy(r) {
		// Anyone may call /verify with the token of a client of theirs
		// (?resource= needs no proxy; and the proxy fronting authd passes
		// a client's own X-Forwarded-* headers on unless told otherwise):
		// handing the upstream token to such a caller would give every
		// client the user's upstream grant. Only the ForwardAuth proxy's
		// subrequest, which alone carries the secret and copies the
		// header onto the request it passes on, never back to the client,
		// gets it. Logged once: any client can cause this.
		if h.forwardRefusedWarned.CompareAndSwap(false, true) {
			h.log().WarnContext(r.Context(), "/verify does not forward the upstream token: the request lacks the right "+HeaderForwardAuthSecret+
				" header, is not from a trusted proxy or names the resource with ?resource=; call /verify from a proxy in trusted_proxies "+
				"with X-Forwarded-Proto, -Host, -Uri and "+HeaderForwardAuthSecret+": <introspection.forward_auth_secret>",
				"resource", res.URI)
		}
		return "", nil
	}
	if h.UpstreamTokens == nil {
		return "", errors.New("/verify: forward_upstream_token is set but no upstream tokens are kept")
	}
	tok, err := h.UpstreamTokens(r.Context(), t.User.ID, res.ForwardUpstreamToken)
	if errors.Is(err, ErrUpstreamTokenGone) {
		return "", oauth.InvalidToken("sign in again: authd holds no usable %s token for the user", res.ForwardUpstreamToken).
			WithHeader("WWW-Authenticate", res.challenge(oauth.CodeInvalidToken, nil)).WithCause(err)
	}
	if err != nil {
		// The upstream is down or being refreshed elsewhere: retry later.
		return "", oauth.TemporarilyUnavailable(err)
	}
	return tok, nil
}

// missingToken is the answer to a request without a bearer token: the
// challenge alone.
type missingToken string

func (m missingToken) Error() string { return "no bearer token" }

// verify finds the resource a request is for and checks its token for
// the request: the resource's required scopes and those of its route
// rules that match the request.
func (h *Handler) verify(r *http.Request) (*tokens.Info, *resourceMatcher, error) {
	h.prepare()
	ctx := r.Context()
	res, err := h.resourceOf(r)
	switch {
	case err != nil:
		if errors.Is(err, errNoResource) {
			err = oauth.InvalidRequest("send X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Uri from a trusted proxy, or a resource parameter")
		}
		// A deployment error, not a client's: say so where the operator
		// looks.
		h.log().WarnContext(ctx, "/verify cannot tell which resource is accessed; list the proxy in trusted_proxies "+
			"so its X-Forwarded-Proto, -Host and -Uri headers are kept, or add ?resource=<resource URI> to the address it calls",
			"problem", oauth.AsError(err).Description)
		return nil, nil, err
	case res == nil:
		h.log().WarnContext(ctx, "/verify called for a request to no configured resource; "+
			"the proxy protects a site that is not in authd's resources")
		return nil, nil, oauth.AccessDenied("no protected resource is configured for this address")
	}
	need, err := res.scopesFor(r)
	if err != nil {
		return nil, nil, err
	}

	raw, presented := bearerToken(r)
	if !presented {
		return nil, nil, missingToken(res.challenge("", need))
	}
	invalid := func(desc string) error {
		return oauth.InvalidToken("%s", desc).WithHeader("WWW-Authenticate", res.challenge(oauth.CodeInvalidToken, need))
	}
	switch {
	case raw == "":
		return nil, nil, invalid("the Authorization header does not carry a well-formed bearer token")
	case tokens.KindOf(raw) == tokens.KindRefresh:
		// Not worth a lookup: it could never pass.
		return nil, nil, invalid("a refresh token is not an access token")
	}
	t, err := h.tokens.Inspect(ctx, raw, h.now())
	if err != nil {
		if err = h.inactive(ctx, err); err != nil {
			return nil, nil, err
		}
		return nil, nil, invalid("the access token is invalid, expired or revoked")
	}
	reqlog.Set(ctx, "client_id", t.ClientID)
	if t.User != nil {
		reqlog.Set(ctx, "user_id", t.User.ID)
	}
	switch {
	case !t.AccessToken():
		return nil, nil, invalid("a refresh token is not an access token")
	case t.Confirmation != nil:
		// A sender-constrained token (RFC 9449, RFC 8705) is good only
		// with the holder's proof, which a ForwardAuth check never sees:
		// taking it as a bearer token would undo the binding.
		return nil, nil, invalid("a sender-constrained access token needs a proof of possession /verify cannot check")
	case !slices.Contains(t.Audience, res.URI):
		// RFC 8707: a token bound to another resource must not be
		// accepted here, even though it is otherwise valid.
		return nil, nil, invalid("the access token is not meant for this resource")
	case !oauth.Subset(need, t.Scopes):
		// MCP step-up: the challenge names what this request needs, and
		// the client asks the user for it.
		return nil, nil, oauth.InsufficientScope("the access token lacks scopes this request requires").
			WithHeader("WWW-Authenticate", res.challenge(oauth.CodeInsufficientScope, need))
	}
	return t, res, nil
}

// bearerToken returns the token of an "Authorization: Bearer" header
// (RFC 6750 §2.1). presented is false when the request carries no bearer
// credentials at all; raw is empty when it carries malformed ones (several
// Authorization headers, or a value that is not a token68).
func bearerToken(r *http.Request) (raw string, presented bool) {
	vs := r.Header.Values("Authorization")
	if len(vs) == 0 {
		return "", false
	}
	if len(vs) > 1 {
		return "", true
	}
	scheme, tok, _ := strings.Cut(vs[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// Another scheme (Basic, ...) is no bearer token: answer with the
		// challenge that says which scheme to use.
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	if !isToken68(tok) {
		return "", true
	}
	return tok, true
}

// isToken68 checks RFC 9110 §11.2's token68 syntax.
func isToken68(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// challenge is the WWW-Authenticate value for this resource, with the
// RFC 6750 error code when there is one, the scopes the request needs
// (the MCP authorization spec's scope hint) and the RFC 9728 §5.1
// resource_metadata URL.
func (m *resourceMatcher) challenge(code string, scopes []string) string {
	var b strings.Builder
	b.WriteString("Bearer ")
	if code != "" {
		b.WriteString(`error="` + code + `", `)
	}
	if len(scopes) > 0 {
		b.WriteString(`scope="` + quoted(oauth.JoinScope(scopes)) + `", `)
	}
	b.WriteString(`resource_metadata="` + quoted(m.metadataURL) + `"`)
	return b.String()
}

// quoted escapes s for an RFC 9110 quoted-string.
func quoted(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// headerValue drops control characters, which a header value must not
// carry, from user-controlled profile data.
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
