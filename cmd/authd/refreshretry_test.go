package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/oauth"
)

// dropResponses forwards requests to authd and, while drop is set, reads
// the answer and throws it away, as a proxy whose client connection broke
// does: authd did the work, the client never learns of it.
type dropResponses struct {
	drop    atomic.Bool
	dropped atomic.Int32
	status  atomic.Int32 // of the last dropped answer
}

func (d *dropResponses) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || !d.drop.Load() {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d.dropped.Add(1)
	d.status.Store(int32(resp.StatusCode))
	return nil, errors.New("connection reset by peer (response dropped by the test proxy)")
}

// A refresh whose response never reaches the client (authd committed the
// rotation) is retried with the same refresh token, as x/oauth2 and every
// MCP client do: the user stays signed in, through the real binary.
func TestRefreshLostResponse(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	const redirect = "http://127.0.0.1:9/cb"
	conf := s.oauthConfig(s.publicClient(t, redirect), "", redirect)
	refresh := func(ctx context.Context, c *http.Client, rt string) (*oauth2.Token, error) {
		return conf.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, c), &oauth2.Token{RefreshToken: rt}).Token()
	}
	grantRevoked := func(t *testing.T, rt string) bool {
		t.Helper()
		return s.count(t, `SELECT count(*) FROM grants g JOIN refresh_tokens r ON r.grant_id = g.id
			WHERE r.digest = $1 AND g.revoked_at IS NOT NULL`, oauth.Digest(rt)) == 1
	}
	// keepsWorking checks that tok's refresh token carries the chain on and
	// that its access token is active.
	keepsWorking := func(t *testing.T, tok *oauth2.Token) {
		t.Helper()
		if !s.active(t, tok.AccessToken) {
			t.Fatal("the access token of the retried refresh is not active")
		}
		if _, err := refresh(t.Context(), http.DefaultClient, tok.RefreshToken); err != nil {
			t.Fatalf("refresh with the retried refresh's token: %v", err)
		}
		if grantRevoked(t, tok.RefreshToken) {
			t.Fatal("the grant was revoked")
		}
	}

	t.Run("dropped by a proxy", func(t *testing.T) {
		tok := s.tokens(t, conf)
		proxy := &dropResponses{}
		proxy.drop.Store(true)
		_, err := refresh(t.Context(), &http.Client{Transport: proxy}, tok.RefreshToken)
		if err == nil || proxy.dropped.Load() != 1 || proxy.status.Load() != http.StatusOK {
			t.Fatalf("the first refresh should have succeeded at authd and been dropped: err %v, dropped %d, status %d",
				err, proxy.dropped.Load(), proxy.status.Load())
		}
		proxy.drop.Store(false)
		retried, err := refresh(t.Context(), &http.Client{Transport: proxy}, tok.RefreshToken)
		if err != nil {
			t.Fatalf("retry after the lost response: %v (grant revoked: %v)", err, grantRevoked(t, tok.RefreshToken))
		}
		keepsWorking(t, retried)
	})

	t.Run("client gave up on a slow database", func(t *testing.T) {
		tok := s.tokens(t, conf)
		// Another session holds the grant's row: the rotation waits for it.
		tx, err := s.db.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		if _, err := tx.Exec(t.Context(), `SELECT 1 FROM grants WHERE id =
			(SELECT grant_id FROM refresh_tokens WHERE digest = $1) FOR UPDATE`, oauth.Digest(tok.RefreshToken)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		_, err = refresh(ctx, &http.Client{Transport: withRequestID{"refresh-client-gave-up"}}, tok.RefreshToken)
		cancel()
		if err == nil {
			t.Fatal("the refresh answered while its grant was locked")
		}
		time.Sleep(100 * time.Millisecond) // the client is gone; authd may still be waiting
		if err := tx.Rollback(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Whether authd finished the abandoned rotation or gave it up, the
		// client's retry must succeed. Give a committed rotation time to
		// land first, as the reported clients' retries did.
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) && s.count(t, `SELECT count(*) FROM refresh_tokens
			WHERE digest = $1 AND used_at IS NOT NULL`, oauth.Digest(tok.RefreshToken)) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		committed := s.count(t, `SELECT count(*) FROM refresh_tokens WHERE digest = $1 AND used_at IS NOT NULL`,
			oauth.Digest(tok.RefreshToken)) == 1
		t.Logf("abandoned rotation committed: %v", committed)
		retried, err := refresh(t.Context(), http.DefaultClient, tok.RefreshToken)
		if err != nil {
			t.Fatalf("retry after giving up: %v (grant revoked: %v)", err, grantRevoked(t, tok.RefreshToken))
		}
		keepsWorking(t, retried)
		// The access log says the client never got an answer.
		if line := logLine(t, s.inst.Logs.String(), "refresh-client-gave-up"); line["status"] != float64(499) {
			t.Errorf("access log of the abandoned refresh: %v, want status 499", line)
		}
	})
}

// withRequestID sets X-Request-Id, so the test can find the request's line
// in the access log.
type withRequestID struct{ id string }

func (w withRequestID) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Request-Id", w.id)
	return http.DefaultTransport.RoundTrip(r)
}
