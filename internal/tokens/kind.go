package tokens

import (
	"strings"

	"github.com/authd/authd/internal/oauth"
)

// maxTokenLen bounds what is parsed or hashed; authd's tokens are far
// shorter.
const maxTokenLen = 8 << 10

// Kind is what a presented token is, by its own shape.
type Kind int

const (
	KindUnknown Kind = iota // nothing authd issues
	KindJWT                 // an RFC 9068 JWT access token
	KindOpaque              // an opaque access token (oauth.PrefixAccessToken)
	KindRefresh             // a refresh token (oauth.PrefixRefreshToken)
)

// String names the kind in logs.
func (k Kind) String() string {
	switch k {
	case KindJWT:
		return "jwt_access_token"
	case KindOpaque:
		return "opaque_access_token"
	case KindRefresh:
		return "refresh_token"
	}
	return "unknown"
}

// KindOf recognises a token by its shape: authd's opaque access and
// refresh tokens carry distinct prefixes, and anything shaped like a JWS
// compact serialization is taken for a JWT access token. It is the one
// place that tells them apart; a caller's token_type_hint never does
// (RFC 7009 §2.1 and RFC 7662 §2.1 make it a mere optimisation).
func KindOf(raw string) Kind {
	switch {
	case len(raw) > maxTokenLen:
		return KindUnknown
	case strings.HasPrefix(raw, oauth.PrefixAccessToken):
		return KindOpaque
	case strings.HasPrefix(raw, oauth.PrefixRefreshToken):
		return KindRefresh
	case isJWT(raw):
		return KindJWT
	}
	return KindUnknown
}

// isJWT reports whether s has the shape of a JWS compact serialization:
// three non-empty base64url segments.
func isJWT(s string) bool {
	segments := 0
	seglen := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if seglen == 0 {
				return false
			}
			segments++
			seglen = 0
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			seglen++
		default:
			return false
		}
	}
	return segments == 2 && seglen > 0
}
