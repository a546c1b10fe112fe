package clientauth

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/authd/authd/internal/oauth"
)

// DefaultMaxFormBytes bounds a token-endpoint body when the caller gives no
// limit: every legitimate request is far smaller.
const DefaultMaxFormBytes = 64 << 10

// ReadForm reads the application/x-www-form-urlencoded body of a
// token-endpoint-style POST (RFC 6749 §3.2), at most maxBytes of it
// (DefaultMaxFormBytes when maxBytes <= 0). Parameters in the URL query are
// not read: credentials belong in the body only (RFC 6749 §2.3.1). It
// answers invalid_request for another content type, a malformed body or a
// parameter that is not valid text (oauth.CheckParams), 415 for a charset
// other than UTF-8, and 413 when the body is too large.
func ReadForm(w http.ResponseWriter, r *http.Request, maxBytes int64) (url.Values, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxFormBytes
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, oauth.InvalidRequest("the request body must be application/x-www-form-urlencoded")
	}
	if err := oauth.CheckCharset(params); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &oauth.Error{
				Code: oauth.CodeInvalidRequest, Description: "request body too large",
				Status: http.StatusRequestEntityTooLarge, Err: err,
			}
		}
		return nil, oauth.InvalidRequest("the request body could not be read").WithCause(err)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, oauth.InvalidRequest("the request body is not valid form encoding").WithCause(err)
	}
	if err := oauth.CheckParams(form); err != nil {
		return nil, err
	}
	return form, nil
}

// CheckSingle rejects a form in which a parameter appears more than once
// (RFC 6749 §3.2: "Request and response parameters MUST NOT be included
// more than once"), except those named in repeatable (RFC 8707 "resource").
// It applies to unknown parameters too: a repeated parameter is a sign of
// parameter pollution, never of a legitimate client.
func CheckSingle(form url.Values, repeatable ...string) error {
	var dup []string
	for k, vs := range form {
		if len(vs) > 1 && !slices.Contains(repeatable, k) {
			dup = append(dup, k)
		}
	}
	if len(dup) == 0 {
		return nil
	}
	sort.Strings(dup)
	return oauth.InvalidRequest("parameter %s is included more than once", truncate(strings.Join(dup, ", "), 100))
}
