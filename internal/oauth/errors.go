// Package oauth is authd's shared OAuth vocabulary: the RFC 6749 error type
// and its JSON writer, token and secret helpers, and the rules for redirect
// URIs, scopes and resource indicators that every endpoint applies alike.
// It imports nothing else from authd.
package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// Error codes from RFC 6749 §4.1.2.1 and §5.2, RFC 7591 §3.2.2, RFC 6750
// §3.1, RFC 8707 §2 and OpenID Connect Core §3.1.2.6.
const (
	CodeInvalidRequest          = "invalid_request"
	CodeInvalidClient           = "invalid_client"
	CodeInvalidGrant            = "invalid_grant"
	CodeUnauthorizedClient      = "unauthorized_client"
	CodeUnsupportedGrantType    = "unsupported_grant_type"
	CodeUnsupportedResponseType = "unsupported_response_type"
	CodeInvalidScope            = "invalid_scope"
	CodeInvalidTarget           = "invalid_target"
	CodeAccessDenied            = "access_denied"
	CodeServerError             = "server_error"
	CodeTemporarilyUnavailable  = "temporarily_unavailable"
	CodeInvalidRedirectURI      = "invalid_redirect_uri"
	CodeInvalidClientMetadata   = "invalid_client_metadata"
	CodeInvalidToken            = "invalid_token"
	CodeInsufficientScope       = "insufficient_scope"
	CodeLoginRequired           = "login_required"
	CodeConsentRequired         = "consent_required"
	CodeInteractionRequired     = "interaction_required"
	CodeUnsupportedTokenType    = "unsupported_token_type"
	CodeTooManyRequests         = "too_many_requests"
)

// Error is an OAuth error response. Code and Description are sent to the
// client; Err is the internal cause, logged but never serialized.
type Error struct {
	Code        string
	Description string
	Status      int
	// Header holds extra response headers (WWW-Authenticate, Retry-After).
	Header http.Header
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Description, e.Err)
	}
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.Err }

// WithHeader returns e with header k set to v.
func (e *Error) WithHeader(k, v string) *Error {
	if e.Header == nil {
		e.Header = http.Header{}
	}
	e.Header.Set(k, v)
	return e
}

// WithCause records the internal cause (logged, never sent).
func (e *Error) WithCause(err error) *Error {
	e.Err = err
	return e
}

func newError(code string, status int, format string, args []any) *Error {
	desc := format
	if len(args) > 0 {
		desc = fmt.Sprintf(format, args...)
	}
	return &Error{Code: code, Description: SanitizeDescription(desc), Status: status}
}

// Constructors: one per code, each returning a fresh value so no shared
// sentinel is ever mutated.
func InvalidRequest(format string, a ...any) *Error {
	return newError(CodeInvalidRequest, http.StatusBadRequest, format, a)
}
func InvalidClient(format string, a ...any) *Error {
	return newError(CodeInvalidClient, http.StatusUnauthorized, format, a)
}
func InvalidGrant(format string, a ...any) *Error {
	return newError(CodeInvalidGrant, http.StatusBadRequest, format, a)
}
func UnauthorizedClient(format string, a ...any) *Error {
	return newError(CodeUnauthorizedClient, http.StatusBadRequest, format, a)
}
func UnsupportedGrantType(format string, a ...any) *Error {
	return newError(CodeUnsupportedGrantType, http.StatusBadRequest, format, a)
}
func UnsupportedResponseType(format string, a ...any) *Error {
	return newError(CodeUnsupportedResponseType, http.StatusBadRequest, format, a)
}
func InvalidScope(format string, a ...any) *Error {
	return newError(CodeInvalidScope, http.StatusBadRequest, format, a)
}
func InvalidTarget(format string, a ...any) *Error {
	return newError(CodeInvalidTarget, http.StatusBadRequest, format, a)
}
func AccessDenied(format string, a ...any) *Error {
	return newError(CodeAccessDenied, http.StatusForbidden, format, a)
}
func InvalidRedirectURI(format string, a ...any) *Error {
	return newError(CodeInvalidRedirectURI, http.StatusBadRequest, format, a)
}
func InvalidClientMetadata(format string, a ...any) *Error {
	return newError(CodeInvalidClientMetadata, http.StatusBadRequest, format, a)
}
func InvalidToken(format string, a ...any) *Error {
	return newError(CodeInvalidToken, http.StatusUnauthorized, format, a)
}
func InsufficientScope(format string, a ...any) *Error {
	return newError(CodeInsufficientScope, http.StatusForbidden, format, a)
}
func UnsupportedTokenType(format string, a ...any) *Error {
	return newError(CodeUnsupportedTokenType, http.StatusBadRequest, format, a)
}
func LoginRequired(format string, a ...any) *Error {
	return newError(CodeLoginRequired, http.StatusBadRequest, format, a)
}
func ConsentRequired(format string, a ...any) *Error {
	return newError(CodeConsentRequired, http.StatusBadRequest, format, a)
}
func InteractionRequired(format string, a ...any) *Error {
	return newError(CodeInteractionRequired, http.StatusBadRequest, format, a)
}

// TooManyRequests is the 429 answer of the rate limiters.
func TooManyRequests(retryAfterSeconds int) *Error {
	e := newError(CodeTooManyRequests, http.StatusTooManyRequests, "rate limit exceeded, retry later", nil)
	return e.WithHeader("Retry-After", fmt.Sprint(retryAfterSeconds))
}

// ServerError hides cause from the client; it is logged by WriteError.
func ServerError(cause error) *Error {
	e := newError(CodeServerError, http.StatusInternalServerError, "internal server error", nil)
	e.Err = cause
	return e
}

// TemporarilyUnavailable is the answer when the database cannot be reached.
func TemporarilyUnavailable(cause error) *Error {
	e := newError(CodeTemporarilyUnavailable, http.StatusServiceUnavailable, "the service is temporarily unavailable, retry later", nil)
	e.Err = cause
	return e.WithHeader("Retry-After", "1")
}

// unavailable is implemented by errors meaning "a dependency is down, retry
// later" (the store's outage errors); AsError answers them with 503.
type unavailable interface{ Unavailable() bool }

// SanitizeDescription keeps error_description within RFC 6749 §5.2's
// charset (%x20-21 / %x23-5B / %x5D-7E): control characters such as CR, LF
// and TAB become spaces, '"' and '\' become '\” and '/', anything outside
// ASCII is dropped, and the text is capped at 300 bytes.
func SanitizeDescription(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 300; i++ {
		c := s[i]
		switch {
		case c == '"':
			b.WriteByte('\'')
		case c == '\\':
			b.WriteByte('/')
		case c < 0x20 || c == 0x7f:
			b.WriteByte(' ')
		case c > 0x7e:
			// drop non-ASCII
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// AsError converts any error into the *Error to send: OAuth errors pass
// through, dependency outages become 503 temporarily_unavailable, anything
// else a 500 server_error with a generic description.
func AsError(err error) *Error {
	var oe *Error
	if errors.As(err, &oe) {
		return oe
	}
	var u unavailable
	if errors.As(err, &u) && u.Unavailable() {
		return TemporarilyUnavailable(err)
	}
	return ServerError(err)
}

// WriteError writes err as an RFC 6749 §5.2 JSON error response. Internal
// causes are logged once (5xx at error level, 4xx at debug), never sent.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	oe := AsError(err)
	if log != nil {
		attrs := []any{"error", oe.Code, "status", oe.Status}
		if oe.Err != nil {
			attrs = append(attrs, "cause", oe.Err.Error())
		}
		if oe.Status >= 500 {
			log.ErrorContext(r.Context(), "request failed", attrs...)
		} else {
			log.DebugContext(r.Context(), "request rejected", append(attrs, "description", oe.Description)...)
		}
	}
	for k, vs := range oe.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	body := struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{oe.Code, oe.Description}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	WriteJSON(w, oe.Status, body)
}

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only reachable with an unmarshalable type: a programming error.
		b = []byte(`{"error":"server_error"}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// NoStore marks a response as carrying credentials (RFC 6749 §5.1).
func NoStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}
