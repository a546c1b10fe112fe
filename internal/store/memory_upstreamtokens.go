package store

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

type upstreamKey struct{ userID, upstream string }

// upstreamTokens is the Memory store's upstream_tokens table. Besides the
// rows it keeps a mutex per row: UpdateUpstreamToken holds it (and not the
// store's mutex) while its callback runs, which may call the upstream for
// seconds, as Postgres holds the row lock (SELECT ... FOR UPDATE). Row
// mutexes are never dropped; the dev store lives as long as one process.
type upstreamTokens struct {
	rows  map[upstreamKey]UpstreamToken
	locks map[upstreamKey]*sync.Mutex
}

func cloneUpstreamToken(t UpstreamToken) UpstreamToken {
	t.Sealed = bytes.Clone(t.Sealed)
	t.ExpiresAt = truncPtr(t.ExpiresAt)
	t.Scopes = slices.Clone(t.Scopes)
	t.DeadAt = truncPtr(t.DeadAt)
	t.MembershipCheckedAt = truncPtr(t.MembershipCheckedAt)
	t.CreatedAt = trunc(t.CreatedAt)
	t.UpdatedAt = trunc(t.UpdatedAt)
	t.RefreshLeaseUntil = truncPtr(t.RefreshLeaseUntil)
	return t
}

func (m *Memory) upstreamTable() *upstreamTokens {
	if m.upstream.rows == nil {
		m.upstream.rows = map[upstreamKey]UpstreamToken{}
		m.upstream.locks = map[upstreamKey]*sync.Mutex{}
	}
	return &m.upstream
}

func (m *Memory) PutUpstreamToken(_ context.Context, t UpstreamToken) error {
	if err := checkUpstreamToken(t); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.needUser(t.UserID); err != nil {
		return err
	}
	tab := m.upstreamTable()
	k := upstreamKey{t.UserID, t.Upstream}
	if old, ok := tab.rows[k]; ok {
		t.CreatedAt = old.CreatedAt
	}
	t.RefreshLeaseUntil, t.RefreshUnsettled = nil, false
	tab.rows[k] = cloneUpstreamToken(t)
	return nil
}

func (m *Memory) GetUpstreamToken(_ context.Context, userID, upstream string) (UpstreamToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.upstreamTable().rows[upstreamKey{userID, upstream}]
	if !ok {
		return UpstreamToken{}, ErrNotFound
	}
	return cloneUpstreamToken(t), nil
}

func (m *Memory) ListUpstreamTokens(_ context.Context, userID string) ([]UpstreamToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []UpstreamToken
	for k, t := range m.upstreamTable().rows {
		if k.userID == userID {
			out = append(out, cloneUpstreamToken(t))
		}
	}
	slices.SortFunc(out, func(a, b UpstreamToken) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.Upstream, b.Upstream))
	})
	return out, nil
}

func (m *Memory) DeleteUpstreamToken(_ context.Context, userID, upstream string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.upstreamTable().rows, upstreamKey{userID, upstream})
	return nil
}

// deleteUserUpstreamTokens is DisableUser's share; m.mu is held.
func (m *Memory) deleteUserUpstreamTokens(userID string) {
	for k := range m.upstreamTable().rows {
		if k.userID == userID {
			delete(m.upstream.rows, k)
		}
	}
}

func (m *Memory) UpdateUpstreamToken(_ context.Context, userID, upstream string, update func(UpstreamToken) (*UpstreamToken, error)) (UpstreamToken, error) {
	k := upstreamKey{userID, upstream}
	m.mu.Lock()
	tab := m.upstreamTable()
	rowLock := tab.locks[k]
	if rowLock == nil {
		rowLock = &sync.Mutex{}
		tab.locks[k] = rowLock
	}
	m.mu.Unlock()

	rowLock.Lock()
	defer rowLock.Unlock()
	m.mu.Lock()
	cur, ok := tab.rows[k]
	m.mu.Unlock()
	if !ok {
		return UpstreamToken{}, ErrNotFound
	}
	next, err := update(cloneUpstreamToken(cur))
	if err != nil {
		return UpstreamToken{}, err
	}
	if next == nil {
		return cloneUpstreamToken(cur), nil
	}
	if next.UserID != userID || next.Upstream != upstream {
		return UpstreamToken{}, fmt.Errorf("store: UpdateUpstreamToken: the update changed the row's user or upstream")
	}
	if err := checkUpstreamToken(*next); err != nil {
		return UpstreamToken{}, err
	}
	n := cloneUpstreamToken(*next)
	n.CreatedAt = cur.CreatedAt
	n.RefreshLeaseUntil, n.RefreshUnsettled = nil, false
	m.mu.Lock()
	defer m.mu.Unlock()
	// Deleted meanwhile (user disabled, disconnected): the deletion came
	// after this update, as in Postgres, where it waits for the row lock.
	if _, ok := tab.rows[k]; ok {
		tab.rows[k] = n
	}
	return cloneUpstreamToken(n), nil
}

func (m *Memory) ClaimUpstreamRefresh(_ context.Context, userID, upstream string, now, expiresBefore, until time.Time) (UpstreamToken, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	tab := m.upstreamTable()
	k := upstreamKey{userID, upstream}
	cur, ok := tab.rows[k]
	if !ok {
		return UpstreamToken{}, false, ErrNotFound
	}
	if cur.DeadAt != nil || cur.ExpiresAt == nil || !cur.ExpiresAt.Before(expiresBefore) ||
		(cur.RefreshLeaseUntil != nil && cur.RefreshLeaseUntil.After(now)) {
		return cloneUpstreamToken(cur), false, nil
	}
	cur.RefreshUnsettled = cur.RefreshLeaseUntil != nil
	u := trunc(until)
	cur.RefreshLeaseUntil = &u
	tab.rows[k] = cur
	return cloneUpstreamToken(cur), true, nil
}

func (m *Memory) FinishUpstreamRefresh(_ context.Context, userID, upstream string, lease time.Time, next *UpstreamToken, retryAt time.Time) (bool, error) {
	if next != nil {
		if next.UserID != userID || next.Upstream != upstream {
			return false, fmt.Errorf("store: FinishUpstreamRefresh: the update changed the row's user or upstream")
		}
		if err := checkUpstreamToken(*next); err != nil {
			return false, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	tab := m.upstreamTable()
	k := upstreamKey{userID, upstream}
	cur, ok := tab.rows[k]
	if !ok || cur.RefreshLeaseUntil == nil || !cur.RefreshLeaseUntil.Equal(trunc(lease)) {
		return false, nil
	}
	if next == nil {
		r := trunc(retryAt)
		cur.RefreshLeaseUntil = &r
		tab.rows[k] = cur
		return true, nil
	}
	n := cloneUpstreamToken(*next)
	if n.DeadAt == nil { // a dead row keeps its ciphertext
		cur.KeyID, cur.Sealed = n.KeyID, n.Sealed
	}
	cur.ExpiresAt, cur.Refreshable = n.ExpiresAt, n.Refreshable
	cur.Scopes, cur.DeadAt, cur.UpdatedAt = n.Scopes, n.DeadAt, n.UpdatedAt
	cur.RefreshLeaseUntil, cur.RefreshUnsettled = nil, false
	tab.rows[k] = cur
	return true, nil
}

func (m *Memory) FinishUpstreamRefreshRevoked(_ context.Context, userID, upstream string, lease, now time.Time) (bool, UserLogout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	tab := m.upstreamTable()
	k := upstreamKey{userID, upstream}
	cur, ok := tab.rows[k]
	if _, known := m.users[userID]; !known || !ok || cur.RefreshLeaseUntil == nil || !cur.RefreshLeaseUntil.Equal(trunc(lease)) {
		return false, UserLogout{}, nil
	}
	l, err := m.logoutUser(userID, now, true, false)
	if err != nil {
		return false, UserLogout{}, err
	}
	at := trunc(now)
	cur.DeadAt, cur.UpdatedAt = &at, at
	cur.RefreshLeaseUntil, cur.RefreshUnsettled = nil, false
	tab.rows[k] = cur
	return true, l, nil
}

func (m *Memory) SettleUpstreamRefresh(_ context.Context, userID, upstream string, lease time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	tab := m.upstreamTable()
	k := upstreamKey{userID, upstream}
	cur, ok := tab.rows[k]
	if !ok || cur.RefreshLeaseUntil == nil || !cur.RefreshLeaseUntil.Equal(trunc(lease)) {
		return false, nil
	}
	cur.RefreshLeaseUntil, cur.RefreshUnsettled = nil, false
	tab.rows[k] = cur
	return true, nil
}

func (m *Memory) DeleteUpstreamTokensExcept(_ context.Context, keep []string, writtenBefore time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	before := trunc(writtenBefore)
	return purge(m.upstreamTable().rows, func(t UpstreamToken) bool {
		last := t.UpdatedAt
		if c := t.MembershipCheckedAt; c != nil && c.After(last) {
			last = *c
		}
		return !slices.Contains(keep, t.Upstream) && last.Before(before)
	}, nil), nil
}

func (m *Memory) ClaimMembershipCheck(_ context.Context, userID, upstream string, now time.Time, interval time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	tab := m.upstreamTable()
	k := upstreamKey{userID, upstream}
	t, ok := tab.rows[k]
	if !ok || t.DeadAt != nil {
		return false, nil
	}
	if c := t.MembershipCheckedAt; c != nil && c.After(trunc(now.Add(-interval))) {
		return false, nil
	}
	t.MembershipCheckedAt = truncPtr(&now)
	tab.rows[k] = t
	return true, nil
}

func (m *Memory) DeferMembershipCheck(_ context.Context, userID, upstream string, now, at time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	tab := m.upstreamTable()
	k := upstreamKey{userID, upstream}
	t, ok := tab.rows[k]
	if !ok {
		return false, nil
	}
	if c := t.MembershipCheckedAt; c != nil && c.After(trunc(now)) {
		return false, nil
	}
	t.MembershipCheckedAt = truncPtr(&at)
	tab.rows[k] = t
	return true, nil
}

func (m *Memory) purgeUpstreamTokens(now time.Time) int64 {
	return purge(m.upstreamTable().rows, func(t UpstreamToken) bool {
		return t.DeadAt != nil || (!t.Refreshable && t.ExpiresAt != nil && expired(*t.ExpiresAt, now))
	}, nil)
}

func (m *Memory) ListUpstreamTokensAfter(_ context.Context, afterUser, afterUpstream string, limit int) ([]UpstreamToken, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("store: ListUpstreamTokensAfter needs a positive limit, got %d", limit)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	after := upstreamKey{afterUser, afterUpstream}
	byKey := func(a, b upstreamKey) int {
		return cmp.Or(cmp.Compare(a.userID, b.userID), cmp.Compare(a.upstream, b.upstream))
	}
	var keys []upstreamKey
	for k := range m.upstreamTable().rows {
		if byKey(k, after) > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, byKey)
	out := make([]UpstreamToken, 0, min(limit, len(keys)))
	for _, k := range keys[:min(limit, len(keys))] {
		out = append(out, cloneUpstreamToken(m.upstream.rows[k]))
	}
	return out, nil
}

func (m *Memory) ResealUpstreamTokens(_ context.Context, rs []UpstreamTokenReseal) (int, error) {
	for _, r := range rs {
		if err := checkUpstreamTokenReseal(r); err != nil {
			return 0, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	tab := m.upstreamTable()
	n := 0
	for _, r := range rs {
		k := upstreamKey{r.UserID, r.Upstream}
		cur, ok := tab.rows[k]
		if !ok || cur.KeyID != r.OldKeyID || !bytes.Equal(cur.Sealed, r.OldSealed) {
			continue
		}
		cur.KeyID, cur.Sealed = r.KeyID, bytes.Clone(r.Sealed)
		tab.rows[k] = cur
		n++
	}
	return n, nil
}
