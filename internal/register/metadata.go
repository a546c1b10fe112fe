package register

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// Grant types, response types and client authentication methods authd
// supports. OAuth 2.1 removed implicit and password; anything else (device
// code, JWT bearer, token exchange) is not implemented, so registering it
// would promise what /token cannot do.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"

	ResponseTypeCode = "code"

	AuthNone              = "none"
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
)

var (
	supportedGrantTypes  = []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}
	supportedAuthMethods = []string{AuthNone, AuthClientSecretBasic, AuthClientSecretPost}
)

// Limits on free-text metadata. They keep the consent screen readable and
// the row small; the request body limit bounds everything else.
const (
	maxNameLen    = 200 // client_name, software_id, software_version (characters)
	maxURLLen     = 2000
	maxContactLen = 320 // the longest valid e-mail address
)

// request is the client metadata of a registration or update request,
// decoded field by field so that each type error names its field and field
// names match exactly (encoding/json would also accept "Redirect_URIs").
type request struct {
	store.ClientMetadata
	// Only meaningful in RFC 7592 PUT requests.
	ClientID     string
	ClientSecret string
	HasSecret    bool
}

// decodeMetadata parses a JSON object of client metadata. Unknown fields
// are ignored (RFC 7591 §2); known ones must have their JSON type. The
// body must be valid text with no repeated member (oauth.CheckJSON): a
// name that is not UTF-8 must not be stored as U+FFFD, and a repeated
// redirect_uris must not mean whatever the last copy says.
func decodeMetadata(body []byte) (request, *oauth.Error) {
	if err := oauth.CheckJSON(body); err != nil {
		return request{}, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return request{}, oauth.InvalidRequest("the request body must be a JSON object")
	}
	var req request
	m := &req.ClientMetadata
	strs := []struct {
		name string
		dst  *string
	}{
		{"token_endpoint_auth_method", &m.TokenEndpointAuthMethod},
		{"application_type", &m.ApplicationType},
		{"client_name", &m.ClientName},
		{"client_uri", &m.ClientURI},
		{"logo_uri", &m.LogoURI},
		{"scope", &m.Scope},
		{"tos_uri", &m.TOSURI},
		{"policy_uri", &m.PolicyURI},
		{"software_id", &m.SoftwareID},
		{"software_version", &m.SoftwareVersion},
		{"client_id", &req.ClientID},
		{"client_secret", &req.ClientSecret},
	}
	for _, f := range strs {
		if v, ok := raw[f.name]; ok && !isNull(v) {
			if err := json.Unmarshal(v, f.dst); err != nil {
				return request{}, oauth.InvalidClientMetadata("%s must be a string", f.name)
			}
		}
	}
	if v, ok := raw["client_secret"]; ok && !isNull(v) {
		req.HasSecret = true
	}
	lists := []struct {
		name string
		dst  *[]string
	}{
		{"redirect_uris", &m.RedirectURIs},
		{"grant_types", &m.GrantTypes},
		{"response_types", &m.ResponseTypes},
		{"contacts", &m.Contacts},
	}
	for _, f := range lists {
		if v, ok := raw[f.name]; ok && !isNull(v) {
			var list []*string
			if err := json.Unmarshal(v, &list); err != nil || slices.Contains(list, nil) {
				return request{}, oauth.InvalidClientMetadata("%s must be an array of strings", f.name)
			}
			for _, s := range list {
				*f.dst = append(*f.dst, *s)
			}
		}
	}
	return req, nil
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// validate checks metadata against RFC 7591 §2, OAuth 2.1 and the policy,
// fills in the RFC 7591 defaults, and returns the metadata to store.
func (p Policy) validate(in store.ClientMetadata) (store.ClientMetadata, *oauth.Error) {
	m := in
	m.GrantTypes = dedupe(m.GrantTypes)
	m.ResponseTypes = dedupe(m.ResponseTypes)
	m.RedirectURIs = dedupe(m.RedirectURIs)
	m.Contacts = dedupe(m.Contacts)

	if m.TokenEndpointAuthMethod == "" {
		m.TokenEndpointAuthMethod = AuthClientSecretBasic
	}
	if !slices.Contains(supportedAuthMethods, m.TokenEndpointAuthMethod) {
		return m, oauth.InvalidClientMetadata("token_endpoint_auth_method %q is not supported; use none, client_secret_basic or client_secret_post", truncate(m.TokenEndpointAuthMethod))
	}

	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{GrantAuthorizationCode}
	}
	if err := checkGrantTypes(m.GrantTypes, m.TokenEndpointAuthMethod); err != nil {
		return m, err
	}
	if slices.Contains(m.GrantTypes, GrantClientCredentials) && !p.AllowClientCredentials {
		return m, oauth.InvalidClientMetadata("this server does not let dynamically registered clients use the client_credentials grant; ask the operator to configure a machine client")
	}
	usesCode := slices.Contains(m.GrantTypes, GrantAuthorizationCode)
	if len(m.ResponseTypes) == 0 && usesCode {
		m.ResponseTypes = []string{ResponseTypeCode}
	}
	for _, rt := range m.ResponseTypes {
		if rt != ResponseTypeCode {
			return m, oauth.InvalidClientMetadata("response type %q is not supported; OAuth 2.1 allows only code", truncate(rt))
		}
	}
	// RFC 7591 §2.1: the code response type goes with the
	// authorization_code grant, and each needs the other.
	if usesCode != (len(m.ResponseTypes) > 0) {
		return m, oauth.InvalidClientMetadata("response_types [code] and grant type authorization_code must be registered together")
	}

	switch m.ApplicationType {
	case "", oauth.AppTypeWeb, oauth.AppTypeNative:
	default:
		return m, oauth.InvalidClientMetadata("application_type must be web or native")
	}
	if usesCode && len(m.RedirectURIs) == 0 {
		return m, oauth.InvalidRedirectURI("redirect_uris is required for the authorization_code grant")
	}
	if err := p.CheckRedirectURIs(m.RedirectURIs, m.ApplicationType); err != nil {
		return m, err
	}

	if m.Scope != "" {
		scopes, err := oauth.ParseScope(m.Scope)
		if err != nil {
			return m, oauth.InvalidClientMetadata("scope: %s", err.Description)
		}
		m.Scope = oauth.JoinScope(scopes)
	}

	for _, f := range [][2]string{
		{"client_name", m.ClientName}, {"software_id", m.SoftwareID}, {"software_version", m.SoftwareVersion},
	} {
		if err := checkText(f[0], f[1], maxNameLen); err != nil {
			return m, err
		}
	}
	for _, f := range [][2]string{
		{"client_uri", m.ClientURI}, {"logo_uri", m.LogoURI}, {"tos_uri", m.TOSURI}, {"policy_uri", m.PolicyURI},
	} {
		if err := checkWebURL(f[0], f[1]); err != nil {
			return m, err
		}
	}
	if len(m.Contacts) > p.maxContacts() {
		return m, oauth.InvalidClientMetadata("too many contacts (at most %d)", p.maxContacts())
	}
	for _, c := range m.Contacts {
		if c == "" {
			return m, oauth.InvalidClientMetadata("contacts must not contain empty strings")
		}
		if err := checkText("contacts", c, maxContactLen); err != nil {
			return m, err
		}
	}
	return m, nil
}

func checkGrantTypes(grants []string, authMethod string) *oauth.Error {
	for _, g := range grants {
		switch g {
		case "implicit", "password":
			return oauth.InvalidClientMetadata("grant type %q was removed by OAuth 2.1", g)
		case GrantClientCredentials:
			if authMethod == AuthNone {
				return oauth.InvalidClientMetadata("the client_credentials grant requires a confidential client (token_endpoint_auth_method client_secret_basic or client_secret_post)")
			}
		}
		if !slices.Contains(supportedGrantTypes, g) {
			return oauth.InvalidClientMetadata("grant type %q is not supported; use authorization_code, refresh_token or client_credentials", truncate(g))
		}
	}
	if slices.Contains(grants, GrantRefreshToken) && !slices.Contains(grants, GrantAuthorizationCode) {
		return oauth.InvalidClientMetadata("the refresh_token grant is only useful together with authorization_code")
	}
	return nil
}

// checkText rejects text a consent screen could be fooled by: invalid
// UTF-8, control characters, and invisible format characters such as the
// right-to-left override that can disguise a name.
func checkText(field, s string, maxLen int) *oauth.Error {
	if !utf8.ValidString(s) {
		return oauth.InvalidClientMetadata("%s is not valid UTF-8", field)
	}
	if utf8.RuneCountInString(s) > maxLen {
		return oauth.InvalidClientMetadata("%s is too long (at most %d characters)", field, maxLen)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
		return oauth.InvalidClientMetadata("%s contains control or invisible formatting characters", field)
	}
	return nil
}

// checkWebURL accepts the URLs shown to users (client_uri, logo_uri,
// tos_uri, policy_uri): https, or http on a loopback host; never a script,
// data or file URL, never user information that could disguise the host.
func checkWebURL(field, raw string) *oauth.Error {
	if raw == "" {
		return nil
	}
	bad := func() *oauth.Error {
		return oauth.InvalidClientMetadata("%s must be an https URL (http only on loopback hosts) without user information", field)
	}
	if len(raw) > maxURLLen {
		return oauth.InvalidClientMetadata("%s is too long", field)
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c >= 0x7f {
			return bad()
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || strings.Contains(hostOf(raw), "@") || u.Hostname() == "" {
		return bad()
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if oauth.IsLoopbackHost(u.Hostname()) {
			return nil
		}
	}
	return bad()
}

func hostOf(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

func isLoopbackHTTP(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "http" && oauth.IsLoopbackHost(u.Hostname())
}

func dedupe(in []string) []string {
	var out []string
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// truncate keeps client-supplied values in error descriptions short.
func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func truncateURI(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
