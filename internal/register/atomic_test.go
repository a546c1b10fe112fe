package register_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/store"
)

// failingForget is the registration store with the update that forgets a
// client's consents failing once, as when the caller disconnects: it runs
// with a cancelled context.
type failingForget struct {
	testStore
	failed atomic.Bool
}

func (s *failingForget) UpdateClientIfForgetConsents(ctx context.Context, c store.Client, ratHash string) error {
	if s.failed.CompareAndSwap(false, true) {
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		ctx = cancelled
	}
	return s.testStore.UpdateClientIfForgetConsents(ctx, c, ratHash)
}

// TestUpdateForgetsConsentsAtomically: an RFC 7592 PUT that changes the
// metadata changes it and forgets the consents given for the old one
// together or not at all. When forgetting fails, the update does not
// stick either (users are asked again, under the new redirect URIs), and
// the client's retry forgets them.
func TestUpdateForgetsConsentsAtomically(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	st := &failingForget{testStore: e.st}
	e.h.Store = st
	first := e.register(claudeMetadata()).mustStatus(t, http.StatusCreated).registration(t)
	ctx, now := context.Background(), e.clock.Now()
	u, err := e.st.UpsertUser(ctx, store.User{Provider: "github", Subject: "1", Login: "u", CreatedAt: now, UpdatedAt: now, LastLoginAt: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.AddConsent(ctx, store.Consent{UserID: u.ID, ClientID: first.ClientID, Scopes: []string{"mcp:tools"}, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	changed := claudeMetadata()
	changed["client_id"] = first.ClientID
	changed["redirect_uris"] = []string{"https://attacker.example/cb"}
	put := req{method: http.MethodPut, path: "/register/" + first.ClientID, token: first.RegistrationAccessToken, body: changed}
	resp := e.do(put)
	if resp.status == http.StatusOK || !st.failed.Load() {
		t.Fatalf("the injected failure was not reached: %d %s", resp.status, resp.body)
	}
	if got := e.client(first.ClientID).Metadata.RedirectURIs; len(got) != 2 {
		t.Fatalf("failed PUT (%d) left the new redirect URIs %v with the old consent", resp.status, got)
	}
	e.do(put).mustStatus(t, http.StatusOK) // the client retries
	if _, err := e.st.GetConsent(ctx, u.ID, first.ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("consent for the old redirect URIs survived the change: %v", err)
	}
}

// racingShare is the registration store with a hook that runs between
// the read of a client to share and the sharing itself.
type racingShare struct {
	testStore
	between func()
}

func (s *racingShare) FindClientByFingerprint(ctx context.Context, fp string, now time.Time) (store.Client, error) {
	c, err := s.testStore.FindClientByFingerprint(ctx, fp, now)
	if err == nil && s.between != nil {
		f := s.between
		s.between = nil
		f()
	}
	return c, err
}

// TestShareRacingOwnersUpdate: a re-registration that found a client to
// share just before its owner changed it (RFC 7592 PUT) does not hand out
// that client, whose metadata is no longer what was asked for: it
// registers a new one.
func TestShareRacingOwnersUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	const owner, neighbour = "160.79.104.10:40000", "160.79.104.77:1"
	first := e.do(req{method: http.MethodPost, path: "/register", body: claudeMetadata(), remote: owner}).
		mustStatus(t, http.StatusCreated).registration(t)
	changed := claudeMetadata()
	changed["client_id"] = first.ClientID
	changed["redirect_uris"] = []string{"https://claude.ai/api/mcp/auth_callback"}
	st := &racingShare{testStore: e.st}
	st.between = func() {
		e.do(req{method: http.MethodPut, path: "/register/" + first.ClientID, token: first.RegistrationAccessToken, body: changed}).
			mustStatus(t, http.StatusOK)
	}
	e.h.Store = register.Store(st)
	resp := e.do(req{method: http.MethodPost, path: "/register", body: claudeMetadata(), remote: neighbour}).mustStatus(t, http.StatusCreated)
	got := resp.registration(t)
	if got.ClientID == first.ClientID {
		t.Fatalf("the re-registration was handed the owner's client after its change: %s", resp.body)
	}
	if got.RegistrationAccessToken == "" || len(e.client(got.ClientID).Metadata.RedirectURIs) != 2 {
		t.Fatalf("the re-registration is not a client of its own with the metadata asked for: %s", resp.body)
	}
	if st.between != nil {
		t.Fatal("the hook never ran: the test proves nothing")
	}
}
