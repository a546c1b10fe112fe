package cimd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// Limits on what a document may carry; the size cap bounds the rest.
const (
	maxRedirectURIs = 20
	maxContacts     = 5
	maxNameLen      = 200
	maxURLLen       = 2000
)

// Token endpoint authentication methods. Metadata documents cannot carry a
// shared secret (draft section 4.1), so of authd's methods only none
// applies; private_key_jwt would be the confidential alternative, which
// authd does not implement.
var sharedSecretMethods = []string{"client_secret_basic", "client_secret_post", "client_secret_jwt"}

// ParseDocument validates a fetched document for the client identifier URL
// id and returns the client metadata authd keeps. The reason of a refusal
// is a sentence fit for the user (and the operator's log).
func ParseDocument(id string, body []byte) (store.ClientMetadata, error) {
	var m store.ClientMetadata
	// Valid text without repeated members, as registration requires.
	if err := oauth.CheckJSON(body); err != nil && json.Valid(body) {
		return m, fmt.Errorf("the document is unusable: %s", err.Description)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return m, fmt.Errorf("the document is not a JSON object")
	}
	str := func(name string, dst *string) error {
		v, ok := raw[name]
		if !ok || isNull(v) {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("%s must be a string", name)
		}
		return nil
	}
	list := func(name string, dst *[]string) error {
		v, ok := raw[name]
		if !ok || isNull(v) {
			return nil
		}
		var l []*string
		if err := json.Unmarshal(v, &l); err != nil || slices.Contains(l, nil) {
			return fmt.Errorf("%s must be an array of strings", name)
		}
		for _, s := range l {
			if !slices.Contains(*dst, *s) {
				*dst = append(*dst, *s)
			}
		}
		return nil
	}

	var clientID string
	if err := str("client_id", &clientID); err != nil {
		return m, err
	}
	if clientID == "" {
		return m, fmt.Errorf("the document has no client_id")
	}
	// Simple string comparison (RFC 3986 §6.2.1), as the draft requires:
	// a document cannot speak for another URL.
	if clientID != id {
		return m, fmt.Errorf("the document's client_id is not the URL it was fetched from")
	}
	for _, name := range []string{"client_secret", "client_secret_expires_at"} {
		if _, ok := raw[name]; ok {
			return m, fmt.Errorf("the document must not contain %s: metadata documents cannot carry shared secrets", name)
		}
	}

	for _, f := range []struct {
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
	} {
		if err := str(f.name, f.dst); err != nil {
			return m, err
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
		if err := list(f.name, f.dst); err != nil {
			return m, err
		}
	}

	// A document without a method describes a client without credentials:
	// RFC 7591's default (client_secret_basic) is impossible here.
	switch method := m.TokenEndpointAuthMethod; {
	case method == "" || method == "none":
		m.TokenEndpointAuthMethod = "none"
	case slices.Contains(sharedSecretMethods, method):
		return m, fmt.Errorf("token_endpoint_auth_method %s needs a shared secret, which a metadata document cannot establish; use none", method)
	default:
		return m, fmt.Errorf("token_endpoint_auth_method %s is not supported by this server for metadata-document clients; only none is", truncate(method))
	}

	if strings.TrimSpace(m.ClientName) == "" {
		return m, fmt.Errorf("the document has no client_name")
	}
	if err := checkText("client_name", m.ClientName); err != nil {
		return m, err
	}
	for _, f := range [][2]string{{"software_id", m.SoftwareID}, {"software_version", m.SoftwareVersion}} {
		if err := checkText(f[0], f[1]); err != nil {
			return m, err
		}
	}

	for _, g := range m.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			return m, fmt.Errorf("grant type %s is not available to metadata-document clients (authorization_code and refresh_token are)", truncate(g))
		}
	}
	if len(m.GrantTypes) > 0 && !slices.Contains(m.GrantTypes, "authorization_code") {
		return m, fmt.Errorf("grant_types must include authorization_code")
	}
	for _, rt := range m.ResponseTypes {
		if rt != "code" {
			return m, fmt.Errorf("response type %s is not supported; OAuth 2.1 allows only code", truncate(rt))
		}
	}
	switch m.ApplicationType {
	case "", oauth.AppTypeWeb, oauth.AppTypeNative:
	default:
		return m, fmt.Errorf("application_type must be web or native")
	}

	if len(m.RedirectURIs) == 0 {
		return m, fmt.Errorf("the document has no redirect_uris")
	}
	if len(m.RedirectURIs) > maxRedirectURIs {
		return m, fmt.Errorf("the document lists more than %d redirect_uris", maxRedirectURIs)
	}
	for _, uri := range m.RedirectURIs {
		if err := oauth.ValidateRedirectURI(uri, m.ApplicationType); err != nil {
			return m, fmt.Errorf("%s", err.Description)
		}
	}

	if m.Scope != "" {
		scopes, err := oauth.ParseScope(m.Scope)
		if err != nil {
			return m, fmt.Errorf("scope: %s", err.Description)
		}
		m.Scope = oauth.JoinScope(scopes)
	}
	for _, f := range [][2]string{{"client_uri", m.ClientURI}, {"logo_uri", m.LogoURI}, {"tos_uri", m.TOSURI}, {"policy_uri", m.PolicyURI}} {
		if err := checkWebURL(f[0], f[1]); err != nil {
			return m, err
		}
	}
	if len(m.Contacts) > maxContacts {
		m.Contacts = m.Contacts[:maxContacts]
	}
	for _, c := range m.Contacts {
		if err := checkText("contacts", c); err != nil {
			return m, err
		}
	}
	return m, nil
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// checkText refuses text that could fool a consent screen: invalid UTF-8,
// control and invisible formatting characters (such as a right-to-left
// override), and overlong values.
func checkText(field, s string) error {
	switch {
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8", field)
	case utf8.RuneCountInString(s) > maxNameLen:
		return fmt.Errorf("%s is longer than %d characters", field, maxNameLen)
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }):
		return fmt.Errorf("%s contains control or invisible formatting characters", field)
	}
	return nil
}

// checkWebURL accepts the URLs a consent screen might link to: https
// without user information (never a script or data URL).
func checkWebURL(field, raw string) error {
	if raw == "" {
		return nil
	}
	bad := fmt.Errorf("%s must be an https URL without user information", field)
	if len(raw) > maxURLLen {
		return bad
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c >= 0x7f {
			return bad
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Hostname() == "" || !strings.HasPrefix(raw, "https://") {
		return bad
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
