package oauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Every OAuth parameter and JSON member authd reads is text: UTF-8 (the
// encoding RFC 6749 Appendix B and RFC 8259 §8.1 prescribe) without NUL.
// Anything else is refused where the request is parsed, naming the
// parameter, before any of it can reach a page, a log line or the database
// (PostgreSQL refuses such text with an error, SQLSTATE 22021, and
// encoding/json would silently turn it into U+FFFD).

// ValidText reports whether s is valid UTF-8 without NUL characters.
func ValidText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// CheckParams returns invalid_request for the first parameter (in name
// order, so the answer is stable) whose name or any value is not
// ValidText, or nil.
func CheckParams(v url.Values) *Error {
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if err := CheckParam(k, v[k]...); err != nil {
			return err
		}
	}
	return nil
}

// CheckParam is CheckParams for one parameter name and its values.
func CheckParam(name string, values ...string) *Error {
	if !ValidText(name) {
		return InvalidRequest("a parameter name is not valid UTF-8 text")
	}
	for _, s := range values {
		if !ValidText(s) {
			return BadParam(name)
		}
	}
	return nil
}

// BadParam is the error for parameter name whose value is not valid text.
func BadParam(name string) *Error {
	return InvalidRequest("%s is not valid text: it must be UTF-8 without NUL characters", truncate(name, 60))
}

// CheckCharset answers 415 when the media type parameters of a request
// body (mime.ParseMediaType's) name a charset other than UTF-8 (or its
// subset US-ASCII): authd would otherwise read, say, UTF-16 as UTF-8.
func CheckCharset(params map[string]string) *Error {
	cs, ok := params["charset"]
	if !ok {
		return nil
	}
	switch strings.ToLower(strings.Trim(cs, `"`)) {
	case "utf-8", "utf8", "us-ascii":
		return nil
	}
	e := InvalidRequest("charset %s is not supported: send the body in UTF-8", truncate(cs, 40))
	e.Status = http.StatusUnsupportedMediaType
	return e
}

// CheckJSON checks that body is one JSON value that is valid text all
// through: UTF-8 (RFC 8259 §8.1), no NUL, no unpaired UTF-16 surrogate in
// a \u escape (RFC 8259 §8.2, which encoding/json would turn into U+FFFD),
// and no object with two members of the same name (RFC 8259 §4 leaves the
// meaning to the parser; encoding/json takes the last, another parser the
// first). Errors are invalid_request naming the offending member.
func CheckJSON(body []byte) *Error {
	if !json.Valid(body) {
		return InvalidRequest("the request body is not valid JSON")
	}
	s := jsonScanner{b: body}
	s.value("")
	return s.err
}

// jsonScanner walks a document json.Valid accepted, so it needs to handle
// only well-formed input; it stops at the first problem.
type jsonScanner struct {
	b   []byte
	i   int
	err *Error
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// value scans one value; path names it in errors ("" for the document,
// else the member it belongs to, such as "contacts").
func (s *jsonScanner) value(path string) {
	s.ws()
	if s.err != nil || s.i >= len(s.b) {
		return
	}
	switch s.b[s.i] {
	case '{':
		s.i++
		seen := map[string]bool{}
		for s.err == nil {
			s.ws()
			if s.b[s.i] == '}' {
				s.i++
				return
			}
			if s.b[s.i] == ',' {
				s.i++
				s.ws()
			}
			name, ok := s.str(path, true)
			if !ok {
				return
			}
			member := name
			if path != "" {
				member = path + "." + name
			}
			if seen[name] {
				s.err = InvalidRequest("the JSON member %s appears more than once", truncate(member, 60))
				return
			}
			seen[name] = true
			s.ws()
			s.i++ // ':'
			s.value(member)
		}
	case '[':
		s.i++
		for s.err == nil {
			s.ws()
			switch s.b[s.i] {
			case ']':
				s.i++
				return
			case ',':
				s.i++
			}
			s.value(path)
		}
	case '"':
		s.str(path, false)
	default: // number, true, false, null
		for s.i < len(s.b) && !strings.ContainsRune(",]} \t\r\n", rune(s.b[s.i])) {
			s.i++
		}
	}
}

// str scans a string literal at s.i and returns its decoded value; ok is
// false (and s.err set) when it is not valid text. name says the literal
// is a member name (of the object at path).
func (s *jsonScanner) str(path string, name bool) (string, bool) {
	start := s.i
	s.i++ // opening quote
	bad := func() (string, bool) {
		if path == "" || name {
			s.err = InvalidRequest("the JSON body contains a member name that is not valid text (UTF-8 without NUL or unpaired surrogates)")
		} else {
			s.err = InvalidRequest("%s is not valid text: it must be UTF-8 without NUL characters or unpaired surrogates", truncate(path, 60))
		}
		return "", false
	}
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if !name {
				return "", true // only names are compared
			}
			var v string
			if json.Unmarshal(s.b[start:s.i], &v) != nil {
				return bad()
			}
			return v, true
		case c == '\\':
			if s.b[s.i+1] != 'u' {
				s.i += 2
				continue
			}
			r := hex4(s.b[s.i+2 : s.i+6])
			s.i += 6
			switch {
			case r == 0:
				return bad()
			case utf16.IsSurrogate(r):
				// A high surrogate must be followed by an escaped low one.
				if r >= 0xdc00 || s.i+6 > len(s.b) || s.b[s.i] != '\\' || s.b[s.i+1] != 'u' {
					return bad()
				}
				lo := hex4(s.b[s.i+2 : s.i+6])
				if utf16.DecodeRune(r, lo) == utf8.RuneError {
					return bad()
				}
				s.i += 6
			}
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n <= 1 {
				return bad()
			}
			s.i += n
		}
	}
	return bad()
}

// hex4 decodes four hex digits (json.Valid checked them).
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}
