package store

import (
	"bytes"
	"slices"
	"time"
)

// Deep copies. Every value goes through one of these on the way in and on
// the way out, so no slice, pointer or byte array is shared with a caller.
// Times are truncated to microseconds, the precision Postgres keeps.

func trunc(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

func truncPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := trunc(*t)
	return &c
}

func cloneClient(c Client) Client {
	c.SecretExpiresAt = truncPtr(c.SecretExpiresAt)
	c.Metadata = cloneClientMetadata(c.Metadata)
	c.AllowedScopes = slices.Clone(c.AllowedScopes)
	c.AllowedResources = slices.Clone(c.AllowedResources)
	c.CreatedAt = trunc(c.CreatedAt)
	c.UpdatedAt = trunc(c.UpdatedAt)
	c.LastUsedAt = trunc(c.LastUsedAt)
	c.ExpiresAt = truncPtr(c.ExpiresAt)
	return c
}

func cloneClientMetadata(md ClientMetadata) ClientMetadata {
	md.RedirectURIs = slices.Clone(md.RedirectURIs)
	md.GrantTypes = slices.Clone(md.GrantTypes)
	md.ResponseTypes = slices.Clone(md.ResponseTypes)
	md.Contacts = slices.Clone(md.Contacts)
	return md
}

func cloneUser(u User) User {
	u.Groups = slices.Clone(u.Groups)
	u.CreatedAt = trunc(u.CreatedAt)
	u.UpdatedAt = trunc(u.UpdatedAt)
	u.LastLoginAt = trunc(u.LastLoginAt)
	return u
}

func cloneAuthRequest(r AuthRequest) AuthRequest {
	r.Scopes = slices.Clone(r.Scopes)
	r.Resources = slices.Clone(r.Resources)
	r.Prompt = slices.Clone(r.Prompt)
	if r.MaxAge != nil {
		v := *r.MaxAge
		r.MaxAge = &v
	}
	r.AuthTime = truncPtr(r.AuthTime)
	r.CreatedAt = trunc(r.CreatedAt)
	r.ExpiresAt = trunc(r.ExpiresAt)
	return r
}

func cloneSession(s Session) Session {
	s.AuthTime = trunc(s.AuthTime)
	s.CreatedAt = trunc(s.CreatedAt)
	s.ExpiresAt = trunc(s.ExpiresAt)
	return s
}

func cloneConsent(c Consent) Consent {
	c.Scopes = slices.Clone(c.Scopes)
	c.Resources = slices.Clone(c.Resources)
	if c.Approvals != nil {
		approvals := make(map[string][]string, len(c.Approvals))
		for r, scopes := range c.Approvals {
			approvals[r] = slices.Clone(scopes)
		}
		c.Approvals = approvals
	}
	c.CreatedAt = trunc(c.CreatedAt)
	c.UpdatedAt = trunc(c.UpdatedAt)
	return c
}

func cloneAuthCode(c AuthCode) AuthCode {
	c.Scopes = slices.Clone(c.Scopes)
	c.Resources = slices.Clone(c.Resources)
	c.AuthTime = trunc(c.AuthTime)
	c.CreatedAt = trunc(c.CreatedAt)
	c.ExpiresAt = trunc(c.ExpiresAt)
	c.UsedAt = truncPtr(c.UsedAt)
	return c
}

func cloneGrant(g Grant) Grant {
	g.Scopes = slices.Clone(g.Scopes)
	g.Resources = slices.Clone(g.Resources)
	g.AuthTime = trunc(g.AuthTime)
	g.CreatedAt = trunc(g.CreatedAt)
	g.LastUsedAt = trunc(g.LastUsedAt)
	g.ExpiresAt = trunc(g.ExpiresAt)
	g.RevokedAt = truncPtr(g.RevokedAt)
	return g
}

func cloneRefreshToken(t RefreshToken) RefreshToken {
	t.CreatedAt = trunc(t.CreatedAt)
	t.ExpiresAt = trunc(t.ExpiresAt)
	t.UsedAt = truncPtr(t.UsedAt)
	return t
}

func cloneAccessToken(t AccessToken) AccessToken {
	t.Scopes = slices.Clone(t.Scopes)
	t.Resources = slices.Clone(t.Resources)
	t.AuthTime = truncPtr(t.AuthTime)
	t.CreatedAt = trunc(t.CreatedAt)
	t.ExpiresAt = trunc(t.ExpiresAt)
	t.RevokedAt = truncPtr(t.RevokedAt)
	return t
}

func cloneSigningKey(k SigningKey) SigningKey {
	k.PublicJWK = bytes.Clone(k.PublicJWK)
	k.EncryptedPrivateKey = bytes.Clone(k.EncryptedPrivateKey)
	k.CreatedAt = trunc(k.CreatedAt)
	k.ActivatedAt = truncPtr(k.ActivatedAt)
	k.RetiredAt = truncPtr(k.RetiredAt)
	k.ExpiresAt = truncPtr(k.ExpiresAt)
	return k
}

func cloneMetadataDocument(d MetadataDocument) MetadataDocument {
	d.Document = bytes.Clone(d.Document)
	d.FetchedAt = trunc(d.FetchedAt)
	d.ExpiresAt = trunc(d.ExpiresAt)
	return d
}
