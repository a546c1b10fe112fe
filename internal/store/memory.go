package store

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Memory is an in-process Store for `authd serve --dev` and fast unit tests.
//
// DEVELOPMENT ONLY: its state lives in one process and is lost on exit, so
// replicas do not share clients, codes, tokens or signing keys, and a
// restart logs everybody out. Production uses Postgres.
//
// It follows the same contract as Postgres, checked by the same conformance
// suite (storetest): one-time use, expiry against the caller's now,
// uniqueness (ErrConflict), the foreign keys and cascades of the schema, and
// all-or-nothing writes. One mutex serialises every method, which is what
// makes "exactly one concurrent caller wins" trivially true here. Values are
// copied in and out, so callers can never reach internal state through a
// slice or pointer, and times are truncated to microseconds as Postgres
// stores them.
type Memory struct {
	mu sync.Mutex

	clients           map[string]Client
	users             map[string]User
	userIDs           map[userKey]string // (provider, subject) → user id
	authRequests      map[string]AuthRequest
	sessions          map[string]Session
	consents          map[consentKey]Consent
	codes             map[string]AuthCode
	grants            map[string]Grant
	refreshTokens     map[string]RefreshToken
	accessTokens      map[string]AccessToken
	revokedJTIs       map[string]time.Time // jti → token exp
	logoutTokens      map[string]time.Time // upstream NUL jti → logout token exp
	signingKeys       map[string]SigningKey
	metadataDocs      map[string]MetadataDocument
	upstream          upstreamTokens
	encryptionSecrets map[string]EncryptionSecret
}

type userKey struct{ provider, subject string }

type consentKey struct{ userID, clientID string }

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store (development only).
func NewMemory() *Memory {
	return &Memory{
		clients:           map[string]Client{},
		users:             map[string]User{},
		userIDs:           map[userKey]string{},
		authRequests:      map[string]AuthRequest{},
		sessions:          map[string]Session{},
		consents:          map[consentKey]Consent{},
		codes:             map[string]AuthCode{},
		grants:            map[string]Grant{},
		refreshTokens:     map[string]RefreshToken{},
		accessTokens:      map[string]AccessToken{},
		revokedJTIs:       map[string]time.Time{},
		logoutTokens:      map[string]time.Time{},
		encryptionSecrets: map[string]EncryptionSecret{},
		signingKeys:       map[string]SigningKey{},
		metadataDocs:      map[string]MetadataDocument{},
	}
}

// Ping always succeeds: there is no database to lose.
func (m *Memory) Ping(context.Context) error { return nil }

// Close does nothing; the data goes with the process.
func (m *Memory) Close() {}

// expired reports whether a row expiring at exp is gone at now (the
// contract: live only while now < exp).
func expired(exp, now time.Time) bool { return !now.Before(exp) }

func clientExpired(c Client, now time.Time) bool {
	return c.ExpiresAt != nil && expired(*c.ExpiresAt, now)
}

// The checks below stand in for the schema's foreign keys. Like a foreign
// key violation in Postgres, a failure is a plain error, not a sentinel.

func (m *Memory) needClient(id string) error {
	if _, ok := m.clients[id]; !ok {
		return fmt.Errorf("%w: client %q does not exist", ErrNotFound, id)
	}
	return nil
}

func (m *Memory) needUser(id string) error {
	if _, ok := m.users[id]; !ok {
		return fmt.Errorf("%w: user %q does not exist", ErrNotFound, id)
	}
	return nil
}

// needOptionalUser allows the empty id (client_credentials, a request
// nobody has signed in to yet).
func (m *Memory) needOptionalUser(id string) error {
	if id == "" {
		return nil
	}
	return m.needUser(id)
}

// Clients.

func (m *Memory) CreateClient(_ context.Context, c Client) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.clients[c.ID]; ok {
		return fmt.Errorf("%w: client %q exists", ErrConflict, c.ID)
	}
	m.clients[c.ID] = cloneClient(c)
	return nil
}

func (m *Memory) GetClient(_ context.Context, id string, now time.Time) (Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clients[id]
	if !ok || clientExpired(c, now) {
		return Client{}, ErrNotFound
	}
	return cloneClient(c), nil
}

func (m *Memory) FindClientByFingerprint(_ context.Context, fingerprint string, now time.Time) (Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if fingerprint == "" {
		return Client{}, ErrNotFound
	}
	var found *Client
	for _, c := range m.clients {
		if c.Fingerprint != fingerprint || clientExpired(c, now) {
			continue
		}
		if found == nil || compareClients(c, *found) > 0 {
			found = &c
		}
	}
	if found == nil {
		return Client{}, ErrNotFound
	}
	return cloneClient(*found), nil
}

func (m *Memory) UpdateClient(_ context.Context, c Client) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.clients[c.ID]
	if !ok {
		return ErrNotFound
	}
	c.CreatedAt = old.CreatedAt
	m.clients[c.ID] = cloneClient(c)
	return nil
}

func (m *Memory) UpdateClientIf(_ context.Context, c Client, ratHash string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.clients[c.ID]
	if !ok || old.RegistrationTokenHash != ratHash {
		return ErrNotFound
	}
	c.CreatedAt = old.CreatedAt
	m.clients[c.ID] = cloneClient(c)
	return nil
}

func (m *Memory) UpdateClientIfForgetConsents(_ context.Context, c Client, ratHash string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.clients[c.ID]
	if !ok || old.RegistrationTokenHash != ratHash {
		return ErrNotFound
	}
	c.CreatedAt = old.CreatedAt
	m.clients[c.ID] = cloneClient(c)
	for k := range m.consents {
		if k.clientID == c.ID {
			delete(m.consents, k)
		}
	}
	return nil
}

func (m *Memory) UpsertClient(_ context.Context, c Client) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.clients[c.ID]; ok {
		c.CreatedAt = old.CreatedAt
	}
	m.clients[c.ID] = cloneClient(c)
	return nil
}

func (m *Memory) DeleteClient(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.clients[id]; !ok {
		return ErrNotFound
	}
	m.deleteClient(id)
	return nil
}

// deleteClient removes the client and, as the schema's ON DELETE CASCADE
// does, everything that references it.
func (m *Memory) deleteClient(id string) {
	delete(m.clients, id)
	for k, r := range m.authRequests {
		if r.ClientID == id {
			delete(m.authRequests, k)
		}
	}
	for k := range m.consents {
		if k.clientID == id {
			delete(m.consents, k)
		}
	}
	for k, c := range m.codes {
		if c.ClientID == id {
			delete(m.codes, k)
		}
	}
	for k, g := range m.grants {
		if g.ClientID == id {
			m.deleteGrant(k)
		}
	}
	for k, t := range m.refreshTokens {
		if t.ClientID == id {
			delete(m.refreshTokens, k)
		}
	}
	for k, t := range m.accessTokens {
		if t.ClientID == id {
			delete(m.accessTokens, k)
		}
	}
}

func (m *Memory) TouchClient(_ context.Context, id string, now time.Time, idle time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.touchClient(id, nil, now, idle)
}

func (m *Memory) TouchClientIf(_ context.Context, id, fingerprint string, now time.Time, idle time.Duration) error {
	if fingerprint == "" {
		return ErrNotFound
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.touchClient(id, &fingerprint, now, idle)
}

// touchClient is TouchClient(If), with m.mu held.
func (m *Memory) touchClient(id string, fingerprint *string, now time.Time, idle time.Duration) error {
	c, ok := m.clients[id]
	if !ok || clientExpired(c, now) || (fingerprint != nil && c.Fingerprint != *fingerprint) {
		return ErrNotFound
	}
	c.LastUsedAt = trunc(now)
	if c.ExpiresAt != nil {
		exp := trunc(now.Add(idle))
		c.ExpiresAt = &exp
	}
	m.clients[id] = c
	return nil
}

func (m *Memory) ListClients(_ context.Context, f ClientFilter) ([]Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Client
	for _, c := range m.clients {
		if f.Source == "" || c.Source == f.Source {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, compareClients)
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	for i := range out {
		out[i] = cloneClient(out[i])
	}
	return out, nil
}

func compareClients(a, b Client) int {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
}

func (m *Memory) CountClients(_ context.Context, source ClientSource) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, c := range m.clients {
		if source == "" || c.Source == source {
			n++
		}
	}
	return n, nil
}

// Users.

func (m *Memory) UpsertUser(_ context.Context, u User) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := userKey{u.Provider, u.Subject}
	if id, ok := m.userIDs[key]; ok {
		old := m.users[id]
		u.ID, u.CreatedAt, u.Disabled = old.ID, old.CreatedAt, old.Disabled
	} else {
		if u.ID == "" {
			u.ID = uuid.NewString()
		} else if _, taken := m.users[u.ID]; taken {
			return User{}, fmt.Errorf("%w: user %q exists", ErrConflict, u.ID)
		}
		m.userIDs[key] = u.ID
	}
	u = cloneUser(u)
	m.users[u.ID] = u
	return cloneUser(u), nil
}

func (m *Memory) GetUser(_ context.Context, id string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[id]
	if !ok {
		return User{}, ErrNotFound
	}
	return cloneUser(u), nil
}

func (m *Memory) SetUserDisabled(_ context.Context, id string, disabled bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[id]
	if !ok {
		return ErrNotFound
	}
	u.Disabled = disabled
	m.users[id] = u
	return nil
}

func (m *Memory) FindUser(_ context.Context, provider, subject string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.userIDs[userKey{provider, subject}]
	if !ok {
		return User{}, ErrNotFound
	}
	return cloneUser(m.users[id]), nil
}

func (m *Memory) ListUsers(_ context.Context, f UserFilter) ([]User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []User
	for _, u := range m.users {
		if (f.Provider == "" || u.Provider == f.Provider) && (!f.Disabled || u.Disabled) {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b User) int {
		return cmp.Or(b.LastLoginAt.Compare(a.LastLoginAt), cmp.Compare(a.ID, b.ID))
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	for i := range out {
		out[i] = cloneUser(out[i])
	}
	return out, nil
}

func (m *Memory) DisableUser(_ context.Context, id string, now time.Time) (UserRevocation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[id]
	if !ok {
		return UserRevocation{}, ErrNotFound
	}
	u.Disabled = true
	m.users[id] = u
	r := m.revokeUserGrants(id, now)
	m.deleteUserUpstreamTokens(id)
	return r, nil
}

func (m *Memory) LogoutUser(_ context.Context, id string, now time.Time, revokeGrants bool) (UserLogout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logoutUser(id, now, revokeGrants, revokeGrants)
}

func (m *Memory) RevokeUserAccess(_ context.Context, id string, now time.Time) (UserLogout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logoutUser(id, now, true, false)
}

func (m *Memory) LogoutUpstreamUser(_ context.Context, l UpstreamLogout, now time.Time) (UserLogout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.useLogoutToken(l.Upstream, l.JTI, l.Expiry); err != nil {
		return UserLogout{}, err
	}
	id, ok := m.userIDs[userKey{l.Upstream, l.Subject}]
	if !ok {
		return UserLogout{}, nil // nobody to sign out; the jti stays recorded
	}
	return m.logoutUser(id, now, l.RevokeGrants, l.RevokeGrants)
}

// logoutUser is LogoutUser; m.mu is held.
func (m *Memory) logoutUser(id string, now time.Time, revokeGrants, dropUpstreamTokens bool) (UserLogout, error) {
	if _, ok := m.users[id]; !ok {
		return UserLogout{}, ErrNotFound
	}
	l := UserLogout{UserID: id}
	for k, s := range m.sessions {
		if s.UserID == id {
			delete(m.sessions, k)
			l.Sessions++
		}
	}
	for k, r := range m.authRequests {
		if r.UserID == id {
			delete(m.authRequests, k)
		}
	}
	if revokeGrants {
		l.UserRevocation = m.revokeUserGrants(id, now)
	}
	if dropUpstreamTokens {
		m.deleteUserUpstreamTokens(id)
	}
	return l, nil
}

// revokeUserGrants is DisableUser's revocation; m.mu is held.
func (m *Memory) revokeUserGrants(id string, now time.Time) UserRevocation {
	var r UserRevocation
	at := trunc(now)
	revoked := map[string]bool{}
	for gid, g := range m.grants {
		if g.UserID == id && g.RevokedAt == nil {
			g.RevokedAt = &at
			m.grants[gid] = g
			revoked[gid] = true
			r.Grants = append(r.Grants, cloneGrant(g))
		}
	}
	slices.SortFunc(r.Grants, func(a, b Grant) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	for k, t := range m.refreshTokens {
		if revoked[t.GrantID] && t.UsedAt == nil {
			t.UsedAt = &at
			m.refreshTokens[k] = t
			r.RefreshTokens++
		}
	}
	for k, t := range m.accessTokens {
		if (revoked[t.GrantID] || t.UserID == id) && t.RevokedAt == nil {
			t.RevokedAt = &at
			m.accessTokens[k] = t
			r.AccessTokens++
		}
	}
	return r
}

func (m *Memory) UseLogoutToken(_ context.Context, upstream, jti string, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.useLogoutToken(upstream, jti, exp)
}

// useLogoutToken is UseLogoutToken; m.mu is held.
func (m *Memory) useLogoutToken(upstream, jti string, exp time.Time) error {
	k := upstream + "\x00" + jti
	if _, ok := m.logoutTokens[k]; ok {
		return fmt.Errorf("%w: logout token replayed", ErrConflict)
	}
	m.logoutTokens[k] = trunc(exp)
	return nil
}

// Pending authorization requests.

// upstreamStateTaken reports whether another request than idDigest uses the
// (non-empty) upstream state digest.
func (m *Memory) upstreamStateTaken(stateDigest, idDigest string) bool {
	if stateDigest == "" {
		return false
	}
	for k, r := range m.authRequests {
		if k != idDigest && r.UpstreamStateDigest == stateDigest {
			return true
		}
	}
	return false
}

func (m *Memory) CreateAuthRequest(_ context.Context, r AuthRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.authRequests[r.IDDigest]; ok {
		return fmt.Errorf("%w: auth request exists", ErrConflict)
	}
	if m.upstreamStateTaken(r.UpstreamStateDigest, r.IDDigest) {
		return fmt.Errorf("%w: upstream state in use", ErrConflict)
	}
	if r.ClientID != "" { // "": the sign-in offered on /apps
		if err := m.needClient(r.ClientID); err != nil {
			return err
		}
	}
	if err := m.needOptionalUser(r.UserID); err != nil {
		return err
	}
	m.authRequests[r.IDDigest] = cloneAuthRequest(r)
	return nil
}

func (m *Memory) GetAuthRequest(_ context.Context, idDigest string, now time.Time) (AuthRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.authRequests[idDigest]
	if !ok || expired(r.ExpiresAt, now) {
		return AuthRequest{}, ErrNotFound
	}
	return cloneAuthRequest(r), nil
}

func (m *Memory) GetAuthRequestByUpstreamState(_ context.Context, stateDigest string, now time.Time) (AuthRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if stateDigest == "" {
		return AuthRequest{}, ErrNotFound
	}
	for _, r := range m.authRequests {
		if r.UpstreamStateDigest == stateDigest && !expired(r.ExpiresAt, now) {
			return cloneAuthRequest(r), nil
		}
	}
	return AuthRequest{}, ErrNotFound
}

func (m *Memory) UpdateAuthRequest(_ context.Context, r AuthRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.authRequests[r.IDDigest]
	if !ok {
		return ErrNotFound
	}
	if m.upstreamStateTaken(r.UpstreamStateDigest, r.IDDigest) {
		return fmt.Errorf("%w: upstream state in use", ErrConflict)
	}
	if err := m.needOptionalUser(r.UserID); err != nil {
		return err
	}
	cur.Upstream = r.Upstream
	cur.UpstreamStateDigest = r.UpstreamStateDigest
	cur.UserID = r.UserID
	cur.AuthTime = r.AuthTime
	cur.Scopes = r.Scopes
	cur.Resources = r.Resources
	m.authRequests[r.IDDigest] = cloneAuthRequest(cur)
	return nil
}

func (m *Memory) ConsumeAuthRequest(_ context.Context, idDigest string, now time.Time) (AuthRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.authRequests[idDigest]
	if !ok || expired(r.ExpiresAt, now) {
		return AuthRequest{}, ErrNotFound
	}
	delete(m.authRequests, idDigest)
	return r, nil // the map no longer holds it: no copy needed
}

func (m *Memory) ClaimAuthRequest(_ context.Context, idDigest, stateDigest string, now time.Time) (AuthRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.authRequests[idDigest]
	if !ok || expired(r.ExpiresAt, now) {
		return AuthRequest{}, ErrNotFound
	}
	if stateDigest == "" || r.UpstreamStateDigest != stateDigest {
		return cloneAuthRequest(r), fmt.Errorf("%w: the auth request does not wait for this upstream answer", ErrConflict)
	}
	r.UpstreamStateDigest, r.UserID, r.AuthTime = ClaimedState(stateDigest), "", nil
	m.authRequests[idDigest] = cloneAuthRequest(r)
	return cloneAuthRequest(r), nil
}

func (m *Memory) SettleAuthRequest(_ context.Context, idDigest, stateDigest string, now time.Time, signIn *SignIn) (AuthRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.authRequests[idDigest]
	if !ok || expired(r.ExpiresAt, now) {
		return AuthRequest{}, ErrNotFound
	}
	if stateDigest == "" || r.UpstreamStateDigest != ClaimedState(stateDigest) || r.UserID != "" {
		return cloneAuthRequest(r), fmt.Errorf("%w: the auth request is not claimed for this answer", ErrConflict)
	}
	if signIn == nil {
		delete(m.authRequests, idDigest)
		return r, nil // the map no longer holds it: no copy needed
	}
	if err := m.needUser(signIn.UserID); err != nil {
		return AuthRequest{}, err
	}
	at := signIn.AuthTime
	r.UpstreamStateDigest, r.UserID, r.AuthTime = "", signIn.UserID, &at
	m.authRequests[idDigest] = cloneAuthRequest(r)
	return cloneAuthRequest(r), nil
}

// Browser sessions.

func (m *Memory) CreateSession(_ context.Context, s Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[s.IDDigest]; ok {
		return fmt.Errorf("%w: session exists", ErrConflict)
	}
	if err := m.needUser(s.UserID); err != nil {
		return err
	}
	m.sessions[s.IDDigest] = cloneSession(s)
	return nil
}

func (m *Memory) GetSession(_ context.Context, idDigest string, now time.Time) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[idDigest]
	if !ok || expired(s.ExpiresAt, now) {
		return Session{}, ErrNotFound
	}
	return s, nil
}

func (m *Memory) GetSessionUser(_ context.Context, idDigest string, now time.Time) (Session, User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[idDigest]
	if !ok || expired(s.ExpiresAt, now) {
		return Session{}, User{}, ErrNotFound
	}
	u, ok := m.users[s.UserID]
	if !ok {
		return Session{}, User{}, ErrNotFound
	}
	return s, cloneUser(u), nil
}

func (m *Memory) DeleteSession(_ context.Context, idDigest string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, idDigest)
	return nil
}

// Consents.

func (m *Memory) GetConsent(_ context.Context, userID, clientID string) (Consent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.consents[consentKey{userID, clientID}]
	if !ok {
		return Consent{}, ErrNotFound
	}
	return cloneConsent(c), nil
}

func (m *Memory) AddConsent(_ context.Context, c Consent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.needUser(c.UserID); err != nil {
		return err
	}
	if err := m.needClient(c.ClientID); err != nil {
		return err
	}
	key := consentKey{c.UserID, c.ClientID}
	if old, ok := m.consents[key]; ok {
		c.CreatedAt = old.CreatedAt
		c.Scopes = union(old.Scopes, c.Scopes)
		c.Resources = union(old.Resources, c.Resources)
		c.Approvals = unionApprovals(old.Approvals, c.Approvals)
	} else {
		c.Scopes = union(nil, c.Scopes)
		c.Resources = union(nil, c.Resources)
		c.Approvals = normalApprovals(c.Approvals)
	}
	m.consents[key] = cloneConsent(c)
	return nil
}

// unionApprovals merges b into a per resource (as union), into a fresh map.
func unionApprovals(a, b map[string][]string) map[string][]string {
	out := normalApprovals(a)
	for r, scopes := range normalApprovals(b) {
		if out == nil {
			out = map[string][]string{}
		}
		out[r] = union(out[r], scopes)
	}
	return out
}

// union returns a followed by the elements of b it lacks, without
// duplicates. The result is a fresh slice; nil only when both are nil.
func union(a, b []string) []string {
	if a == nil && b == nil {
		return nil
	}
	out := make([]string, 0, len(a)+len(b))
	for _, s := range slices.Concat(a, b) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (m *Memory) ListConsents(_ context.Context, userID string) ([]Consent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Consent
	for k, c := range m.consents {
		if k.userID == userID {
			out = append(out, cloneConsent(c))
		}
	}
	slices.SortFunc(out, func(a, b Consent) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ClientID, b.ClientID))
	})
	return out, nil
}

func (m *Memory) ForgetClientConsents(_ context.Context, clientID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.consents {
		if k.clientID == clientID {
			delete(m.consents, k)
		}
	}
	return nil
}

func (m *Memory) DeleteConsent(_ context.Context, userID, clientID string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.consents, consentKey{userID, clientID})
	for id, g := range m.grants {
		if g.UserID == userID && g.ClientID == clientID {
			m.revokeGrant(id, now)
		}
	}
	return nil
}

// Authorization codes.

func (m *Memory) CreateAuthCode(_ context.Context, c AuthCode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.codes[c.Digest]; ok {
		return fmt.Errorf("%w: code exists", ErrConflict)
	}
	if err := m.needClient(c.ClientID); err != nil {
		return err
	}
	if err := m.needUser(c.UserID); err != nil {
		return err
	}
	m.codes[c.Digest] = cloneAuthCode(c)
	return nil
}

func (m *Memory) GetAuthCode(_ context.Context, digest string, now time.Time) (AuthCode, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.codes[digest]
	if !ok || (c.UsedAt == nil && expired(c.ExpiresAt, now)) {
		return AuthCode{}, ErrNotFound
	}
	return cloneAuthCode(c), nil
}

func (m *Memory) GetAuthCodeUser(_ context.Context, digest string, now time.Time) (AuthCode, User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.codes[digest]
	if !ok || (c.UsedAt == nil && expired(c.ExpiresAt, now)) {
		return AuthCode{}, User{}, ErrNotFound
	}
	u, ok := m.users[c.UserID]
	if !ok {
		return AuthCode{}, User{}, ErrNotFound
	}
	return cloneAuthCode(c), cloneUser(u), nil
}

func (m *Memory) RedeemAuthCode(_ context.Context, digest string, now time.Time, g Grant, rt *RefreshToken) (AuthCode, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.codes[digest]
	if ok && c.UsedAt != nil {
		return cloneAuthCode(c), ErrAlreadyUsed
	}
	if !ok || expired(c.ExpiresAt, now) {
		return AuthCode{}, ErrNotFound
	}
	// Validate everything before the first write: all or nothing.
	if err := m.checkNewGrant(g); err != nil {
		return AuthCode{}, err
	}
	if rt != nil {
		if _, ok := m.refreshTokens[rt.Digest]; ok {
			return AuthCode{}, fmt.Errorf("%w: refresh token exists", ErrConflict)
		}
		if _, ok := m.grants[rt.GrantID]; !ok && rt.GrantID != g.ID {
			return AuthCode{}, fmt.Errorf("store: grant %q does not exist", rt.GrantID)
		}
		if err := m.needClient(rt.ClientID); err != nil {
			return AuthCode{}, err
		}
		// A refresh token is of its grant's client (deleting the client
		// deletes it through the grant).
		owner := g.ClientID
		if rt.GrantID != g.ID {
			owner = m.grants[rt.GrantID].ClientID
		}
		if rt.ClientID != owner {
			return AuthCode{}, fmt.Errorf("%w: grant %q is not of client %q", ErrNotFound, rt.GrantID, rt.ClientID)
		}
	}
	used := trunc(now)
	c.UsedAt = &used
	c.GrantID = g.ID
	m.codes[digest] = c
	m.grants[g.ID] = cloneGrant(g)
	if rt != nil {
		m.refreshTokens[rt.Digest] = cloneRefreshToken(*rt)
	}
	return cloneAuthCode(c), nil
}

func (m *Memory) checkNewGrant(g Grant) error {
	if _, ok := m.grants[g.ID]; ok {
		return fmt.Errorf("%w: grant %q exists", ErrConflict, g.ID)
	}
	if err := m.needClient(g.ClientID); err != nil {
		return err
	}
	return m.needOptionalUser(g.UserID)
}

// Grants.

func (m *Memory) GetGrant(_ context.Context, id string) (Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.grants[id]
	if !ok {
		return Grant{}, ErrNotFound
	}
	return cloneGrant(g), nil
}

func (m *Memory) GetGrantUser(_ context.Context, id string) (Grant, User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.grants[id]
	if !ok || g.UserID == "" {
		return Grant{}, User{}, ErrNotFound
	}
	u, ok := m.users[g.UserID]
	if !ok {
		return Grant{}, User{}, ErrNotFound
	}
	return cloneGrant(g), cloneUser(u), nil
}

func (m *Memory) ListGrants(_ context.Context, userID string) ([]Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Grant
	for _, g := range m.grants {
		if g.UserID == userID {
			out = append(out, cloneGrant(g))
		}
	}
	slices.SortFunc(out, func(a, b Grant) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func (m *Memory) RevokeGrant(_ context.Context, id string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.grants[id]; !ok {
		return ErrNotFound
	}
	m.revokeGrant(id, now)
	return nil
}

// revokeGrant marks the grant revoked and its tokens used/revoked, keeping
// earlier timestamps. The grant must exist.
func (m *Memory) revokeGrant(id string, now time.Time) {
	at := trunc(now)
	g := m.grants[id]
	if g.RevokedAt == nil {
		g.RevokedAt = &at
		m.grants[id] = g
	}
	for k, t := range m.refreshTokens {
		if t.GrantID == id && t.UsedAt == nil {
			t.UsedAt = &at
			m.refreshTokens[k] = t
		}
	}
	for k, t := range m.accessTokens {
		if t.GrantID == id && t.RevokedAt == nil {
			t.RevokedAt = &at
			m.accessTokens[k] = t
		}
	}
}

// deleteGrant removes the grant and the tokens hanging off it (cascade).
func (m *Memory) deleteGrant(id string) {
	delete(m.grants, id)
	for k, t := range m.refreshTokens {
		if t.GrantID == id {
			delete(m.refreshTokens, k)
		}
	}
	for k, t := range m.accessTokens {
		if t.GrantID == id {
			delete(m.accessTokens, k)
		}
	}
}

// Refresh tokens.

func (m *Memory) CreateRefreshToken(_ context.Context, rt RefreshToken) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.refreshTokens[rt.Digest]; ok {
		return fmt.Errorf("%w: refresh token exists", ErrConflict)
	}
	g, ok := m.grants[rt.GrantID]
	if !ok {
		return fmt.Errorf("store: grant %q does not exist", rt.GrantID)
	}
	if err := m.needClient(rt.ClientID); err != nil {
		return err
	}
	if g.ClientID != rt.ClientID {
		return fmt.Errorf("%w: grant %q is not of client %q", ErrNotFound, rt.GrantID, rt.ClientID)
	}
	m.refreshTokens[rt.Digest] = cloneRefreshToken(rt)
	return nil
}

func (m *Memory) GetRefreshToken(_ context.Context, digest string) (RefreshToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.refreshTokens[digest]
	if !ok {
		return RefreshToken{}, ErrNotFound
	}
	return cloneRefreshToken(t), nil
}

func (m *Memory) GetRefreshTokenGrant(_ context.Context, digest string) (RefreshToken, Grant, User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.refreshTokens[digest]
	if !ok {
		return RefreshToken{}, Grant{}, User{}, ErrNotFound
	}
	g, ok := m.grants[t.GrantID]
	if !ok || g.UserID == "" {
		return RefreshToken{}, Grant{}, User{}, ErrNotFound
	}
	u, ok := m.users[g.UserID]
	if !ok {
		return RefreshToken{}, Grant{}, User{}, ErrNotFound
	}
	return cloneRefreshToken(t), cloneGrant(g), cloneUser(u), nil
}

func (m *Memory) RotateRefreshToken(_ context.Context, old string, now time.Time, next RefreshToken, retryWindow time.Duration) (Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.refreshTokens[old]
	if !ok || expired(t.ExpiresAt, now) {
		return Grant{}, ErrNotFound
	}
	g, ok := m.grants[t.GrantID]
	if !ok || g.RevokedAt != nil || expired(g.ExpiresAt, now) {
		return Grant{}, ErrNotFound
	}
	if t.UsedAt != nil && !m.mayRetry(t, now, next.ClientID, retryWindow) {
		// Reuse of a rotated token: somebody else holds the chain. Kill it.
		m.revokeGrant(g.ID, now)
		return cloneGrant(m.grants[g.ID]), ErrAlreadyUsed
	}
	if next.GrantID != t.GrantID || next.ClientID != t.ClientID {
		return Grant{}, fmt.Errorf("store: next refresh token must belong to grant %q of client %q", t.GrantID, t.ClientID)
	}
	if _, ok := m.refreshTokens[next.Digest]; ok {
		return Grant{}, fmt.Errorf("%w: refresh token exists", ErrConflict)
	}
	at := trunc(now)
	if t.UsedAt == nil {
		t.UsedAt = &at
		m.refreshTokens[old] = t
		// Siblings of old left by a retry of its parent are superseded:
		// the chain goes on from old alone.
		for k, s := range m.refreshTokens {
			if t.Parent != "" && s.Parent == t.Parent && s.GrantID == t.GrantID && s.UsedAt == nil {
				s.UsedAt = &at
				m.refreshTokens[k] = s
			}
		}
	}
	m.refreshTokens[next.Digest] = cloneRefreshToken(next)
	g.LastUsedAt = at
	m.grants[g.ID] = g
	return cloneGrant(g), nil
}

// mayRetry is the retry rule of RotateRefreshToken for the used token t.
func (m *Memory) mayRetry(t RefreshToken, now time.Time, clientID string, window time.Duration) bool {
	if window <= 0 || clientID != t.ClientID || !now.Before(t.UsedAt.Add(window)) {
		return false
	}
	successors := 0
	for _, s := range m.refreshTokens {
		if s.Parent == t.Digest && s.GrantID == t.GrantID {
			if s.UsedAt != nil {
				return false
			}
			successors++
		}
	}
	return successors > 0
}

// Opaque access tokens.

func (m *Memory) CreateAccessToken(_ context.Context, t AccessToken) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.accessTokens[t.Digest]; ok {
		return fmt.Errorf("%w: access token exists", ErrConflict)
	}
	if g, ok := m.grants[t.GrantID]; t.GrantID != "" && (!ok || g.RevokedAt != nil) {
		return ErrNotFound
	}
	if err := m.needClient(t.ClientID); err != nil {
		return err
	}
	if err := m.needOptionalUser(t.UserID); err != nil {
		return err
	}
	m.accessTokens[t.Digest] = cloneAccessToken(t)
	return nil
}

func (m *Memory) GetAccessToken(_ context.Context, digest string) (AccessToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.accessTokens[digest]
	if !ok {
		return AccessToken{}, ErrNotFound
	}
	return cloneAccessToken(t), nil
}

func (m *Memory) RevokeAccessToken(_ context.Context, digest string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.accessTokens[digest]
	if !ok {
		return ErrNotFound
	}
	if t.RevokedAt == nil {
		at := trunc(now)
		t.RevokedAt = &at
		m.accessTokens[digest] = t
	}
	return nil
}

// JWT revocations.

func (m *Memory) RevokeJTI(_ context.Context, jti string, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp = trunc(exp)
	if old, ok := m.revokedJTIs[jti]; !ok || exp.After(old) {
		m.revokedJTIs[jti] = exp
	}
	return nil
}

func (m *Memory) IsJTIRevoked(_ context.Context, jti string, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.revokedJTIs[jti]
	return ok && !expired(exp, now), nil
}

func (m *Memory) CheckJWTGrant(ctx context.Context, jti, grantID string, now time.Time) (bool, Grant, User, error) {
	g, u, err := m.GetGrantUser(ctx, grantID)
	if err != nil {
		return false, Grant{}, User{}, err
	}
	revoked, _ := m.IsJTIRevoked(ctx, jti, now)
	return revoked, g, u, nil
}

// Signing keys.

func (m *Memory) ListSigningKeys(context.Context) ([]SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SigningKey, 0, len(m.signingKeys))
	for _, k := range m.signingKeys {
		out = append(out, cloneSigningKey(k))
	}
	slices.SortFunc(out, func(a, b SigningKey) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func (m *Memory) ResealSigningKeys(_ context.Context, rs []SigningKeyReseal) (int, error) {
	for _, r := range rs {
		if err := checkSigningKeyReseal(r); err != nil {
			return 0, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range rs {
		k, ok := m.signingKeys[r.ID]
		if !ok || !bytes.Equal(k.EncryptedPrivateKey, r.Old) {
			continue
		}
		k.EncryptedPrivateKey = bytes.Clone(r.New)
		m.signingKeys[r.ID] = k
		n++
	}
	return n, nil
}

func (m *Memory) CreateSigningKey(_ context.Context, k SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch k.State {
	case KeyNext, KeyActive, KeyRetired:
	default:
		return fmt.Errorf("store: invalid signing key state %q", k.State)
	}
	if _, ok := m.signingKeys[k.ID]; ok {
		return fmt.Errorf("%w: signing key %q exists", ErrConflict, k.ID)
	}
	if k.State == KeyActive && m.activeKey() != "" {
		return fmt.Errorf("%w: an active signing key exists", ErrConflict)
	}
	m.signingKeys[k.ID] = cloneSigningKey(k)
	return nil
}

// activeKey returns the kid of the active key, or "".
func (m *Memory) activeKey() string {
	for id, k := range m.signingKeys {
		if k.State == KeyActive {
			return id
		}
	}
	return ""
}

func (m *Memory) ActivateSigningKey(_ context.Context, kid string, now, retireExpiry time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.signingKeys[kid]
	switch {
	case !ok:
		return ErrNotFound
	case k.State == KeyActive:
		return nil
	case k.State == KeyRetired:
		return fmt.Errorf("%w: signing key %q is retired", ErrConflict, kid)
	}
	at, exp := trunc(now), trunc(retireExpiry)
	if prev := m.activeKey(); prev != "" {
		p := m.signingKeys[prev]
		p.State = KeyRetired
		p.RetiredAt = &at
		p.ExpiresAt = &exp
		m.signingKeys[prev] = p
	}
	k.State = KeyActive
	k.ActivatedAt = &at
	m.signingKeys[kid] = k
	return nil
}

// Client ID metadata documents.

func (m *Memory) GetMetadataDocument(_ context.Context, url string) (MetadataDocument, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.metadataDocs[url]
	if !ok {
		return MetadataDocument{}, ErrNotFound
	}
	return cloneMetadataDocument(d), nil
}

func (m *Memory) PutMetadataDocument(_ context.Context, d MetadataDocument) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.metadataDocs[d.URL] = cloneMetadataDocument(d)
	return nil
}

// Maintenance.

func (m *Memory) Purge(_ context.Context, now time.Time) (PurgeResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	res := PurgeResult{}
	// Parents first, as their cascades would remove children in Postgres
	// too; children that went along are not counted.
	// Config clients are the operator's: never purged, whatever they say.
	res["clients"] = purge(m.clients, func(c Client) bool { return c.Source != SourceConfig && clientExpired(c, now) }, m.deleteClient)
	res["grants"] = purge(m.grants, func(g Grant) bool { return expired(g.ExpiresAt, now) }, m.deleteGrant)
	res["auth_codes"] = purge(m.codes, func(c AuthCode) bool {
		g, ok := m.grants[c.GrantID]
		evidence := c.UsedAt != nil && ok && g.RevokedAt == nil && !expired(g.ExpiresAt, now)
		return expired(c.ExpiresAt, now) && !evidence
	}, nil)
	res["auth_requests"] = purge(m.authRequests, func(r AuthRequest) bool { return expired(r.ExpiresAt, now) }, nil)
	res["sessions"] = purge(m.sessions, func(s Session) bool { return expired(s.ExpiresAt, now) }, nil)
	res["refresh_tokens"] = purge(m.refreshTokens, func(t RefreshToken) bool { return expired(t.ExpiresAt, now) }, nil)
	res["access_tokens"] = purge(m.accessTokens, func(t AccessToken) bool { return expired(t.ExpiresAt, now) }, nil)
	res["revoked_jtis"] = purge(m.revokedJTIs, func(exp time.Time) bool { return expired(exp, now) }, nil)
	res["upstream_logout_tokens"] = purge(m.logoutTokens, func(exp time.Time) bool { return expired(exp, now) }, nil)
	res["signing_keys"] = purge(m.signingKeys, func(k SigningKey) bool {
		return k.State == KeyRetired && k.ExpiresAt != nil && expired(*k.ExpiresAt, now)
	}, nil)
	res["metadata_documents"] = purge(m.metadataDocs, func(d MetadataDocument) bool { return expired(d.ExpiresAt, now) }, nil)
	res["upstream_tokens"] = m.purgeUpstreamTokens(now)
	return res, nil
}

// purge deletes the rows of table for which gone is true, with del (which
// cascades) or a plain delete, and counts them.
func purge[K comparable, V any](table map[K]V, gone func(V) bool, del func(K)) int64 {
	var doomed []K
	for k, v := range table {
		if gone(v) {
			doomed = append(doomed, k)
		}
	}
	for _, k := range doomed {
		if del != nil {
			del(k)
		} else {
			delete(table, k)
		}
	}
	return int64(len(doomed))
}

func (m *Memory) Stats(_ context.Context, now time.Time) (Stats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Stats{Users: int64(len(m.users)), RefreshTokens: int64(len(m.refreshTokens))}
	for _, c := range m.clients {
		if !clientExpired(c, now) {
			s.Clients++
		}
	}
	for _, g := range m.grants {
		if g.RevokedAt == nil && !expired(g.ExpiresAt, now) {
			s.ActiveGrants++
		}
	}
	return s, nil
}
