// Package clientmeta decodes and validates RFC 7591 client metadata: the
// one set of rules behind dynamic registration (RFC 7591), its updates
// (RFC 7592), client ID metadata documents and operator-configured
// clients. What differs between them is written here too, as the rules of
// a client source (store.ClientSource): which authentication methods and
// grant types (from the grant registry) each may use.
package clientmeta

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// Response types and client authentication methods authd supports.
// OAuth 2.1 allows the code response type only.
const (
	ResponseTypeCode = "code"

	AuthNone              = "none"
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
)

// AuthMethods are the token endpoint authentication methods authd
// implements (internal/clientauth).
var AuthMethods = []string{AuthNone, AuthClientSecretBasic, AuthClientSecretPost}

// sharedSecretMethods need a secret established at registration, which a
// client ID metadata document cannot carry (draft section 4.1).
var sharedSecretMethods = []string{AuthClientSecretBasic, AuthClientSecretPost, "client_secret_jwt"}

// Limits on free-text metadata. They keep the consent screen readable and
// the row small; the body limit of each source bounds everything else.
const (
	MaxNameLen    = 200 // client_name, software_id, software_version (characters)
	MaxURLLen     = 2000
	MaxContactLen = 320 // the longest valid e-mail address
)

// ErrNotObject is the cause (oauth.Error.Err) of a Decode failure for a
// body that is not one JSON object.
var ErrNotObject = errors.New("not a JSON object")

// Decoded is a JSON object of client metadata, decoded field by field so
// that each type error names its field and names match exactly
// (encoding/json would also accept "Redirect_URIs").
type Decoded struct {
	store.ClientMetadata
	// ClientID and ClientSecret are the members of those names (RFC 7592
	// PUT requests echo them; a metadata document names itself).
	ClientID     string
	ClientSecret string
	// Members holds the name of every member, mapped to whether its value
	// is not null.
	Members map[string]bool
}

// Has reports whether the object had a member name that is not null.
func (d Decoded) Has(name string) bool { return d.Members[name] }

// Decode parses a JSON object of client metadata. Unknown fields are
// ignored (RFC 7591 §2); known ones must have their JSON type. The body
// must be valid text with no repeated member (oauth.CheckJSON): a name
// that is not UTF-8 must not be stored as U+FFFD, and a repeated
// redirect_uris must not mean whatever the last copy says. Lists are
// deduplicated.
func Decode(body []byte) (Decoded, *oauth.Error) {
	if err := oauth.CheckJSON(body); err != nil {
		if !json.Valid(body) {
			e := *err
			e.Err = ErrNotObject
			return Decoded{}, &e
		}
		return Decoded{}, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return Decoded{}, oauth.InvalidRequest("the request body must be a JSON object").WithCause(ErrNotObject)
	}
	d := Decoded{Members: map[string]bool{}}
	m := &d.ClientMetadata
	for name, v := range raw {
		d.Members[name] = !isNull(v)
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"client_id", &d.ClientID},
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
		{"client_secret", &d.ClientSecret},
	} {
		if v, ok := raw[f.name]; ok && !isNull(v) {
			if err := json.Unmarshal(v, f.dst); err != nil {
				return Decoded{}, oauth.InvalidClientMetadata("%s must be a string", f.name)
			}
		}
	}
	for _, f := range []struct {
		name string
		dst  *[]string
	}{
		{"redirect_uris", &m.RedirectURIs},
		{"grant_types", &m.GrantTypes},
		{"response_types", &m.ResponseTypes},
		{"contacts", &m.Contacts},
	} {
		if v, ok := raw[f.name]; ok && !isNull(v) {
			var list []*string
			if err := json.Unmarshal(v, &list); err != nil || slices.Contains(list, nil) {
				return Decoded{}, oauth.InvalidClientMetadata("%s must be an array of strings", f.name)
			}
			for _, s := range list {
				*f.dst = append(*f.dst, *s)
			}
			*f.dst = dedupe(*f.dst)
		}
	}
	return d, nil
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// Rules validate the metadata of clients from one source.
type Rules struct {
	// Source is store.SourceDynamic for registration and RFC 7592
	// updates, store.SourceMetadata for client ID metadata documents.
	Source store.ClientSource
	// Grants are the grant types the server serves; a client may
	// register those open to its source.
	Grants grants.Registry
	// RedirectURIs checks the list of redirect URIs (the registration
	// policy); nil checks each with oauth.ValidateRedirectURI.
	RedirectURIs func(uris []string, appType string) *oauth.Error
	// MaxContacts bounds contacts: more are refused, or, for metadata
	// documents (which the client cannot quickly change), dropped.
	MaxContacts int
}

// Validate checks metadata against RFC 7591 §2, OAuth 2.1 and the rules of
// its source, fills in the RFC 7591 defaults, and returns the metadata to
// store. Its result validates again to itself.
func (r Rules) Validate(in store.ClientMetadata) (store.ClientMetadata, *oauth.Error) {
	m := in
	m.GrantTypes = dedupe(m.GrantTypes)
	m.ResponseTypes = dedupe(m.ResponseTypes)
	m.RedirectURIs = dedupe(m.RedirectURIs)
	m.Contacts = dedupe(m.Contacts)

	method, err := r.authMethod(m.TokenEndpointAuthMethod)
	if err != nil {
		return m, err
	}
	m.TokenEndpointAuthMethod = method
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{grants.AuthorizationCode}
	}
	if err := CheckGrantTypes(r.Grants, m.GrantTypes, method, r.Source); err != nil {
		return m, err
	}
	usesCode := slices.Contains(m.GrantTypes, grants.AuthorizationCode)
	if len(m.ResponseTypes) == 0 && usesCode {
		m.ResponseTypes = []string{ResponseTypeCode}
	}
	for _, rt := range m.ResponseTypes {
		if rt != ResponseTypeCode {
			return m, oauth.InvalidClientMetadata("response type %s is not supported; OAuth 2.1 allows only code", truncate(rt))
		}
	}
	// RFC 7591 §2.1: the code response type goes with the
	// authorization_code grant, and each needs the other.
	if usesCode != (len(m.ResponseTypes) > 0) {
		return m, oauth.InvalidClientMetadata("response_types [code] and grant type authorization_code must be registered together")
	}

	if err := CheckApplicationType(m.ApplicationType); err != nil {
		return m, err
	}
	if usesCode && len(m.RedirectURIs) == 0 {
		return m, oauth.InvalidRedirectURI("redirect_uris is required for the authorization_code grant")
	}
	if err := r.checkRedirectURIs(m.RedirectURIs, m.ApplicationType); err != nil {
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
		if err := CheckText(f[0], f[1], MaxNameLen); err != nil {
			return m, err
		}
	}
	for _, f := range [][2]string{
		{"client_uri", m.ClientURI}, {"logo_uri", m.LogoURI}, {"tos_uri", m.TOSURI}, {"policy_uri", m.PolicyURI},
	} {
		if err := r.checkWebURL(f[0], f[1]); err != nil {
			return m, err
		}
	}
	return r.checkContacts(m)
}

// authMethod applies the default and the methods of the source. A
// metadata document without a method describes a client without
// credentials: RFC 7591's default (client_secret_basic) is impossible
// there.
func (r Rules) authMethod(method string) (string, *oauth.Error) {
	if r.Source == store.SourceMetadata {
		switch {
		case method == "" || method == AuthNone:
			return AuthNone, nil
		case slices.Contains(sharedSecretMethods, method):
			return method, oauth.InvalidClientMetadata("token_endpoint_auth_method %s needs a shared secret, which a metadata document cannot establish; use none", method)
		}
		return method, oauth.InvalidClientMetadata("token_endpoint_auth_method %s is not supported by this server for metadata-document clients; only none is", truncate(method))
	}
	if method == "" {
		return AuthClientSecretBasic, nil
	}
	if !slices.Contains(AuthMethods, method) {
		return method, oauth.InvalidClientMetadata("token_endpoint_auth_method %q is not supported; use none, client_secret_basic or client_secret_post", truncate(method))
	}
	return method, nil
}

// CheckGrantTypes checks the grant types a client from src registers with
// authentication method authMethod against the grant registry.
func CheckGrantTypes(reg grants.Registry, types []string, authMethod string, src store.ClientSource) *oauth.Error {
	for _, gt := range types {
		if slices.Contains(grants.Removed, gt) {
			return oauth.InvalidClientMetadata("grant type %q was removed by OAuth 2.1", gt)
		}
		g, ok := reg.Lookup(gt)
		switch {
		case src == store.SourceMetadata && !g.AllowedFor(src):
			return oauth.InvalidClientMetadata("grant type %s is not available to metadata-document clients (%s are)", truncate(gt), andList(reg.TypesFor(src)))
		case !ok:
			return oauth.InvalidClientMetadata("grant type %q is not supported; use %s", truncate(gt), grants.List(reg.TypesFor(src)))
		case g.Confidential && authMethod == AuthNone:
			return oauth.InvalidClientMetadata("the %s grant requires a confidential client (token_endpoint_auth_method client_secret_basic or client_secret_post)", gt)
		case g.Requires != "" && !slices.Contains(types, g.Requires):
			return oauth.InvalidClientMetadata("the %s grant is only useful together with %s: grant_types must include %[2]s", gt, g.Requires)
		case !g.AllowedFor(src):
			return oauth.InvalidClientMetadata("this server does not let dynamically registered clients use the %s grant; ask the operator to configure a machine client", gt)
		}
	}
	return nil
}

// CheckApplicationType accepts RFC 7591's web and native (and none).
func CheckApplicationType(t string) *oauth.Error {
	switch t {
	case "", oauth.AppTypeWeb, oauth.AppTypeNative:
		return nil
	}
	return oauth.InvalidClientMetadata("application_type must be web or native")
}

func (r Rules) checkRedirectURIs(uris []string, appType string) *oauth.Error {
	if r.RedirectURIs != nil {
		return r.RedirectURIs(uris, appType)
	}
	for _, uri := range uris {
		if err := oauth.ValidateRedirectURI(uri, appType); err != nil {
			return err
		}
	}
	return nil
}

func (r Rules) checkContacts(m store.ClientMetadata) (store.ClientMetadata, *oauth.Error) {
	if r.Source == store.SourceMetadata {
		m.Contacts = slices.DeleteFunc(m.Contacts, func(c string) bool { return c == "" })
	}
	if len(m.Contacts) > r.MaxContacts {
		if r.Source != store.SourceMetadata {
			return m, oauth.InvalidClientMetadata("too many contacts (at most %d)", r.MaxContacts)
		}
		m.Contacts = m.Contacts[:r.MaxContacts]
	}
	for _, c := range m.Contacts {
		if c == "" {
			return m, oauth.InvalidClientMetadata("contacts must not contain empty strings")
		}
		if err := CheckText("contacts", c, MaxContactLen); err != nil {
			return m, err
		}
	}
	return m, nil
}

// CheckText rejects text a consent screen could be fooled by: invalid
// UTF-8, control characters, and invisible format characters such as the
// right-to-left override that can disguise a name.
func CheckText(field, s string, maxLen int) *oauth.Error {
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
// tos_uri, policy_uri): https, or for registered clients http on a
// loopback host (a client being developed); never a script, data or file
// URL, never user information that could disguise the host.
func (r Rules) checkWebURL(field, raw string) *oauth.Error {
	if raw == "" {
		return nil
	}
	loopbackHTTP := r.Source != store.SourceMetadata
	bad := func() *oauth.Error {
		if !loopbackHTTP {
			return oauth.InvalidClientMetadata("%s must be an https URL without user information", field)
		}
		return oauth.InvalidClientMetadata("%s must be an https URL (http only on loopback hosts) without user information", field)
	}
	if len(raw) > MaxURLLen {
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
	switch {
	case u.Scheme == "https" && (loopbackHTTP || strings.HasPrefix(raw, "https://")):
		return nil
	case u.Scheme == "http" && loopbackHTTP && oauth.IsLoopbackHost(u.Hostname()):
		return nil
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

func dedupe(in []string) []string {
	var out []string
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// andList joins grant types for "(a and b are)".
func andList(types []string) string {
	switch len(types) {
	case 0:
		return "none"
	case 1:
		return types[0]
	}
	return strings.Join(types[:len(types)-1], ", ") + " and " + types[len(types)-1]
}

// truncate keeps client-supplied values in error descriptions short.
func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
