package register

import (
	"net/url"
	"slices"

	"github.com/authd/authd/internal/clientmeta"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// Grant types, response types and client authentication methods, as the
// grant registry (internal/grants) and the metadata rules
// (internal/clientmeta) name them. Which grant types a client may register
// is the registry's decision (Handler.Grants).
const (
	GrantAuthorizationCode = grants.AuthorizationCode
	GrantRefreshToken      = grants.RefreshToken
	GrantClientCredentials = grants.ClientCredentials

	ResponseTypeCode = clientmeta.ResponseTypeCode

	AuthNone              = clientmeta.AuthNone
	AuthClientSecretBasic = clientmeta.AuthClientSecretBasic
	AuthClientSecretPost  = clientmeta.AuthClientSecretPost
)

// request is the client metadata of a registration or update request.
type request struct {
	store.ClientMetadata
	// Only meaningful in RFC 7592 PUT requests.
	ClientID     string
	ClientSecret string
	HasSecret    bool
}

// decodeMetadata parses a JSON object of client metadata
// (clientmeta.Decode).
func decodeMetadata(body []byte) (request, *oauth.Error) {
	d, err := clientmeta.Decode(body)
	if err != nil {
		return request{}, err
	}
	return request{ClientMetadata: d.ClientMetadata, ClientID: d.ClientID, ClientSecret: d.ClientSecret, HasSecret: d.Has("client_secret")}, nil
}

// validate checks the metadata of a dynamically registered client against
// the shared rules (clientmeta.Rules) and the policy, with the default
// grant registry; see validateWith.
func (p Policy) validate(in store.ClientMetadata) (store.ClientMetadata, *oauth.Error) {
	return p.validateWith(p.grants(grants.Registry{}), in)
}

// validateWith checks metadata against RFC 7591 §2, OAuth 2.1, the grants
// reg opens to dynamically registered clients and the policy, fills in the
// RFC 7591 defaults, and returns the metadata to store.
func (p Policy) validateWith(reg grants.Registry, in store.ClientMetadata) (store.ClientMetadata, *oauth.Error) {
	return clientmeta.Rules{
		Source:       store.SourceDynamic,
		Grants:       reg,
		RedirectURIs: p.CheckRedirectURIs,
		MaxContacts:  p.maxContacts(),
	}.Validate(in)
}

// grants is reg, or when reg is empty the default registry with
// client_credentials open to dynamic clients as the policy says.
func (p Policy) grants(reg grants.Registry) grants.Registry {
	if len(reg.Types()) > 0 {
		return reg
	}
	return grants.Default().AllowDynamic(grants.ClientCredentials, p.AllowClientCredentials)
}

// checkText is clientmeta.CheckText.
func checkText(field, s string, maxLen int) *oauth.Error {
	return clientmeta.CheckText(field, s, maxLen)
}

const maxNameLen = clientmeta.MaxNameLen

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

func truncateURI(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
