package token_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/token"
)

const testRetryWindow = time.Minute

func withRetryWindow(h *token.Handler) { h.RefreshRetryWindow = testRetryWindow }

// A client that never got the response to a refresh retries with the same
// refresh token within the window and keeps its sign-in: it gets working
// tokens of the same grant, and the successor it uses supersedes the one
// it never saw, which is then reuse.
func TestRefreshRetryAfterLostResponse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withRetryWindow)
	first := e.login(confClient)
	g := e.grantOf(first.RefreshToken)

	e.clock.Add(30 * time.Minute)
	lost, err := e.refresh(confClient, first.RefreshToken) // the response that never arrived
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(testRetryWindow - time.Second)
	retried, err := e.refresh(confClient, first.RefreshToken)
	if err != nil {
		t.Fatalf("retry of the rotated token within the window: %v", err)
	}
	if retried.RefreshToken == lost.RefreshToken || retried.RefreshToken == first.RefreshToken {
		t.Fatal("the retry did not issue a new refresh token")
	}
	if _, claims := e.verify(retried.AccessToken, resA); claims["gid"] != g.ID || claims["sub"] != e.alice.ID {
		t.Errorf("access token of the retry: %v, want grant %s", claims, g.ID)
	}
	if got := e.grantOf(retried.RefreshToken); got.ID != g.ID || got.RevokedAt != nil {
		t.Fatalf("grant after the retry: %+v, want the same, live", got)
	}
	if !strings.Contains(e.logs.String(), `"event":"refresh_token_retry"`) {
		t.Error("no refresh_token_retry audit event")
	}

	// The client goes on with what it received.
	e.clock.Add(time.Second)
	next, err := e.refresh(confClient, retried.RefreshToken)
	if err != nil {
		t.Fatalf("refresh with the retry's token: %v", err)
	}
	// The lost successor was superseded: whoever holds it is not the
	// client, and the family ends.
	_, err = e.refresh(confClient, lost.RefreshToken)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
	if got := e.grantOf(first.RefreshToken); got.RevokedAt == nil {
		t.Fatal("a superseded successor presented after the chain moved on did not revoke the grant")
	}
	_, err = e.refresh(confClient, next.RefreshToken)
	wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
}

// Everything outside the rule is reuse, as without a window: the chain
// moved on, the window passed, or another client presents the token.
func TestRefreshRetryRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withRetryWindow)
	for _, tc := range []struct {
		name string
		// replay presents first after it was rotated into second.
		replay func(e *env, first, second *oauth2.Token) error
	}{
		{"chain moved on", func(e *env, first, second *oauth2.Token) error {
			if _, err := e.refresh(confClient, second.RefreshToken); err != nil {
				e.t.Fatal(err)
			}
			e.clock.Add(time.Second)
			_, err := e.refresh(confClient, first.RefreshToken)
			return err
		}},
		{"outside the window", func(e *env, first, _ *oauth2.Token) error {
			e.clock.Add(testRetryWindow)
			_, err := e.refresh(confClient, first.RefreshToken)
			return err
		}},
		{"another client", func(e *env, first, _ *oauth2.Token) error {
			_, err := e.refresh(otherClient, first.RefreshToken)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			first := e.login(confClient)
			second, err := e.refresh(confClient, first.RefreshToken)
			if err != nil {
				t.Fatal(err)
			}
			wantRetrieveError(t, tc.replay(e, first, second), http.StatusBadRequest, oauth.CodeInvalidGrant)
			if g := e.grantOf(first.RefreshToken); g.RevokedAt == nil {
				t.Fatal("the replay did not revoke the grant")
			}
			_, err = e.refresh(confClient, second.RefreshToken)
			wantRetrieveError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
		})
	}
}

// Two processes of one client share a refresh token and refresh at the
// same moment: both get tokens, and whichever successor is used next keeps
// the user signed in.
func TestRefreshConcurrentSameToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withRetryWindow)
	for round := range 6 {
		first := e.login(publicClient)
		var toks [2]*oauth2.Token
		var errs [2]error
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range toks {
			wg.Go(func() {
				<-start
				toks[i], errs[i] = e.refresh(publicClient, first.RefreshToken)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: concurrent refresh %d: %v", round, i, err)
			}
		}
		// Alternate which process refreshes next.
		used := toks[round%2]
		next, err := e.refresh(publicClient, used.RefreshToken)
		if err != nil {
			t.Fatalf("round %d: refresh with successor %d: %v", round, round%2, err)
		}
		if _, err := e.refresh(publicClient, next.RefreshToken); err != nil {
			t.Fatalf("round %d: the chain did not go on: %v", round, err)
		}
		if g := e.grantOf(first.RefreshToken); g.RevokedAt != nil {
			t.Fatalf("round %d: concurrent refreshes revoked the grant", round)
		}
	}
}
