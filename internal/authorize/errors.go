package authorize

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// The handlers of the browser flow return errors; serve answers them, and
// decide alone chooses between an error page and an error redirect to the
// client. A redirect is possible only once the client and its redirect URI
// have been verified for this request (the handler then builds the error
// with target.fail), and only while the client, as read while serving the
// request, is still enabled and still lists that URI. Everything else is
// a page: an unverified redirect URI makes authd an open redirector (RFC
// 6749 §4.1.2.1, RFC 9700 §4.11.2).

// flowError is a failure of the browser flow: what the client is told
// (RFC 6749 §4.1.2.1 code and description), what the user is shown, and
// what was known when it happened.
type flowError struct {
	code        string // RFC 6749 §4.1.2.1 error code; "" for page-only errors
	description string // error_description; never an internal cause
	// status is the page's HTTP status, and for a redirected error the
	// status its oauth.Error had (it sets the log level).
	status int
	header http.Header // extra page headers (Retry-After)
	title  string      // the page, when the answer is a page
	msg    string
	hint   string
	// to is where the error may be redirected: set only once the client
	// and its redirect URI are verified. nil: the answer is a page.
	to    *target
	cause error // logged, never shown or sent
}

func (e *flowError) Error() string {
	s := e.code
	if s == "" {
		s = e.title
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *flowError) Unwrap() error { return e.cause }

// pageError is an error shown on a page, never redirected: the client or
// its redirect URI is not verified, or the failure is the user's business
// (expired request, wrong browser) rather than the client's.
func pageError(status int, title, msg string) *flowError {
	return &flowError{status: status, title: title, msg: msg}
}

func (e *flowError) withHint(hint string) *flowError {
	e.hint = hint
	return e
}

// withCause records the internal cause (logged, never shown).
func (e *flowError) withCause(err error) *flowError {
	e.cause = err
	return e
}

func (e *flowError) withHeader(k, v string) *flowError {
	if e.header == nil {
		e.header = http.Header{}
	}
	e.header.Set(k, v)
	return e
}

// internalError is a failure of authd itself (the database, a bug): a
// page with 503 and Retry-After when the database cannot be reached
// (store.Bounded, store.Unavailable), 500 otherwise, never with the cause.
// A handler may return such errors unwrapped; serve wraps them here.
func internalError(err error) *flowError {
	oe := oauth.AsError(err)
	if oe.Code == oauth.CodeTemporarilyUnavailable {
		return pageError(http.StatusServiceUnavailable, "Temporarily unavailable",
			"The server cannot complete your request right now. Please try again in a moment.").
			withHeader("Retry-After", "1").withCause(err)
	}
	return pageError(http.StatusInternalServerError, "Something went wrong",
		"The server could not complete your request. Please try again later.").withCause(err)
}

// fail is err answered at t, the verified redirect URI of this request,
// with state and iss (RFC 6749 §4.1.2.1, RFC 9207 §2). An OAuth error
// keeps its code and description; any other error becomes server_error or
// temporarily_unavailable with a generic description (oauth.AsError).
func (t target) fail(err error) *flowError {
	oe := oauth.AsError(err)
	return &flowError{code: oe.Code, description: oe.Description, status: oe.Status, to: &t, cause: oe.Err}
}

// answer is decide's choice: a redirect to location, or else a page.
type answer struct {
	location string
	status   int
	header   http.Header
	title    string
	msg      string
	hint     string
}

// decide is the one place that chooses between an error page and an error
// redirect to the client (see the top of this file). iss is sent with a
// redirected error (RFC 9207).
func decide(e *flowError, iss string) answer {
	if e.to == nil {
		return answer{status: e.status, header: e.header, title: e.title, msg: e.msg, hint: e.hint}
	}
	if !stillRegistered(*e.to) {
		// The client withdrew the redirect URI (RFC 7592 PUT) or was
		// disabled while the user was signing in or deciding.
		p := errNoLongerRegistered()
		return answer{status: p.status, title: p.title, msg: p.msg}
	}
	v := url.Values{"error": {e.code}, "iss": {iss}}
	if e.description != "" {
		v.Set("error_description", e.description)
	}
	if e.to.state != "" {
		v.Set("state", e.to.state)
	}
	return answer{location: appendQuery(e.to.redirectURI, v)}
}

// serve adapts a handler of the browser flow: a handler either writes its
// answer and returns nil, or writes nothing but cookies and returns an
// error, which is answered here.
func (h *Handler) serve(fn func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			h.writeError(w, r, err)
		}
	}
}

// writeError logs err once (5xx at error level with its cause, the rest
// at debug) and answers it as decide says.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *flowError
	if !errors.As(err, &e) {
		e = internalError(err)
	}
	attrs := []any{"status", e.status}
	if e.code != "" {
		attrs = append(attrs, "error", e.code, "description", e.description)
	} else {
		attrs = append(attrs, "title", e.title)
	}
	if e.cause != nil {
		attrs = append(attrs, "cause", e.cause.Error())
	}
	if e.status >= 500 {
		h.log().ErrorContext(r.Context(), "authorization failed", attrs...)
	} else {
		h.log().DebugContext(r.Context(), "authorization request rejected", attrs...)
	}

	a := decide(e, h.Issuer)
	if a.location != "" {
		redirect(w, r, a.location)
		return
	}
	for k, vs := range a.header {
		w.Header()[k] = vs
	}
	h.render(w, r, a.status, "error", a.title, errorData{Message: a.msg, Hint: a.hint})
}

// errExpired: the browser holds no such pending request.
func errExpired() *flowError {
	return pageError(http.StatusBadRequest, "Authorization expired",
		"This authorization request has expired, was already completed, or was started in another browser. Return to the application and start again.")
}

// errNoLongerRegistered: the client of a request no longer lists its
// redirect URI, or was disabled, so nothing may be sent there.
func errNoLongerRegistered() *flowError {
	return pageError(http.StatusBadRequest, "Invalid redirect address",
		"The application no longer lists the address it asked to send you to. You were not redirected.")
}

// errUpstreamUnavailable: the identity provider cannot be reached.
func errUpstreamUnavailable(cause error) *flowError {
	return pageError(http.StatusServiceUnavailable, "Sign-in unavailable",
		"The identity provider cannot be reached right now. Please try again in a moment.").
		withHeader("Retry-After", "5").withCause(cause)
}

// clientGone is the error for a pending request whose client disappeared
// or was disabled since /authorize (err from GetClient, nil for disabled):
// nothing may be sent to its redirect URI now. A failure to read the
// client is returned as it is (an internal error).
func clientGone(err error) error {
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if msg, ok := unusableClient(err); ok {
		return pageError(http.StatusBadRequest, "Application not accepted", msg).withCause(err)
	}
	return pageError(http.StatusBadRequest, "Unknown application",
		"The application that sent you here is no longer registered with this server. You were not redirected.").withCause(err)
}

// unusableClient recognises a client that exists but cannot be used as
// it describes itself: a client ID metadata document that could not be
// fetched or is invalid (invalid_client, matching store.ErrNotFound). Its
// description names the document's problem, never an internal one, so
// the page shows it; the redirect URI cannot be trusted, so nothing is
// redirected.
func unusableClient(err error) (string, bool) {
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code != oauth.CodeInvalidClient || oe.Description == "" {
		return "", false
	}
	return "The application that sent you here cannot be accepted: " + oe.Description + ". You were not redirected.", true
}
