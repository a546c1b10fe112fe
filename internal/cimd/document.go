package cimd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/authd/authd/internal/clientmeta"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/store"
)

// Limits on what a document may carry; the size cap bounds the rest.
const (
	maxRedirectURIs = 20
	maxContacts     = 5
)

// ParseDocument validates a fetched document for the client identifier URL
// id with the default grant registry and returns the client metadata authd
// keeps. The reason of a refusal is a sentence fit for the user (and the
// operator's log).
func ParseDocument(id string, body []byte) (store.ClientMetadata, error) {
	return validateDocument(id, body, grants.Default())
}

// validateDocument applies what is particular to documents (the client_id is
// the URL, no secrets, a name and redirect URIs are required) and then the
// RFC 7591 rules every client's metadata passes (clientmeta.Rules, for
// store.SourceMetadata: no shared secrets, the grants reg opens to
// metadata-document clients).
func validateDocument(id string, body []byte, reg grants.Registry) (store.ClientMetadata, error) {
	d, oerr := clientmeta.Decode(body)
	switch {
	case oerr != nil && errors.Is(oerr, clientmeta.ErrNotObject):
		return store.ClientMetadata{}, fmt.Errorf("the document is not a JSON object")
	case oerr != nil && oerr.Code == "invalid_request":
		// Valid JSON, but not valid text or with a repeated member.
		return store.ClientMetadata{}, fmt.Errorf("the document is unusable: %s", oerr.Description)
	case oerr != nil:
		return store.ClientMetadata{}, errors.New(oerr.Description)
	}
	if d.ClientID == "" {
		return d.ClientMetadata, fmt.Errorf("the document has no client_id")
	}
	// Simple string comparison (RFC 3986 §6.2.1), as the draft requires:
	// a document cannot speak for another URL.
	if d.ClientID != id {
		return d.ClientMetadata, fmt.Errorf("the document's client_id is not the URL it was fetched from")
	}
	for _, name := range []string{"client_secret", "client_secret_expires_at"} {
		if _, ok := d.Members[name]; ok {
			return d.ClientMetadata, fmt.Errorf("the document must not contain %s: metadata documents cannot carry shared secrets", name)
		}
	}
	if strings.TrimSpace(d.ClientName) == "" {
		return d.ClientMetadata, fmt.Errorf("the document has no client_name")
	}
	if len(d.RedirectURIs) == 0 {
		return d.ClientMetadata, fmt.Errorf("the document has no redirect_uris")
	}
	if len(d.RedirectURIs) > maxRedirectURIs {
		return d.ClientMetadata, fmt.Errorf("the document lists more than %d redirect_uris", maxRedirectURIs)
	}
	m, oerr := clientmeta.Rules{Source: store.SourceMetadata, Grants: reg, MaxContacts: maxContacts}.Validate(d.ClientMetadata)
	if oerr != nil {
		return m, errors.New(oerr.Description)
	}
	return m, nil
}
