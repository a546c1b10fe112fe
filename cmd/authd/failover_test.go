package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// refreshChain is one client refreshing in a loop: the refresh tokens it
// received, in order, and every answer that was not a new token.
type refreshChain struct {
	clientID string
	received []string // received[0] from the code exchange
	failures []string // "503 temporarily_unavailable", …
	// lostResponse: a refresh failed (503) and its retry with the same
	// token got invalid_grant, so the rotation may have committed while
	// its response was lost; resolved against the store at the end.
	lostResponse bool
	okAfter      int // new tokens since the promotion
}

// TestFailoverToPromotedReplica: authd has the primary and a synchronous
// streaming standby in one multi-host URL with
// target_session_attrs=read-write. While clients keep refreshing (each
// holding one rotation chain), the primary is killed with SIGKILL and the
// standby promoted. authd finds the new primary by itself, with no
// restart; until then requests get 503 temporarily_unavailable and nothing
// else; afterwards every answer is a token again. Comparing what clients
// received with what the new primary stores: every refresh token a client
// received is there, linked to the one before it (nothing lost), and each
// chain goes on from the last token its client holds (nothing forked).
func TestFailoverToPromotedReplica(t *testing.T) {
	t.Parallel()
	primary, standby := pgtest.NewReplicatedCluster(t)
	f := newFlowEnv(t, pgtest.MultiHostDSN(primary, standby))
	inst := f.start(t)
	ctx := context.Background()

	const clients = 4
	chains := make([]*refreshChain, clients)
	for i := range chains {
		reg := registerClient(t, inst.URL, map[string]any{
			"client_name": fmt.Sprintf("failover client %d", i), "redirect_uris": []string{"http://127.0.0.1/callback"},
			"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
		})
		conf := &oauth2.Config{
			ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:45125/callback",
			Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
		}
		verifier := oauth2.GenerateVerifier()
		b := newBrowser(t, f.github.Client().Transport, "http://127.0.0.1:45125/callback")
		q := b.authorize(t, inst.URL, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
		tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil || tok.RefreshToken == "" {
			t.Fatalf("code exchange: %v %+v", err, tok)
		}
		chains[i] = &refreshChain{clientID: conf.ClientID, received: []string{tok.RefreshToken}}
	}

	var (
		mu       sync.Mutex
		promoted bool
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	httpc := &http.Client{Timeout: 15 * time.Second}
	refresh := func(c *refreshChain) (status int, errCode, next string) {
		resp, err := httpc.PostForm(inst.URL+"/token", url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {c.received[len(c.received)-1]}, "client_id": {c.clientID},
		})
		if err != nil {
			return -1, err.Error(), ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var v struct {
			RefreshToken string `json:"refresh_token"`
			Error        string `json:"error"`
		}
		_ = json.Unmarshal(body, &v)
		return resp.StatusCode, v.Error, v.RefreshToken
	}
	for _, c := range chains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			retrying := false
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				status, errCode, next := refresh(c)
				mu.Lock()
				switch {
				case status == http.StatusOK && next != "":
					c.received = append(c.received, next)
					if promoted {
						c.okAfter++
					}
					retrying = false
				case status == http.StatusBadRequest && errCode == "invalid_grant" && retrying:
					c.lostResponse = true
				default:
					c.failures = append(c.failures, fmt.Sprint(status, " ", errCode))
					retrying = status == http.StatusServiceUnavailable
				}
				done := c.lostResponse || (status != http.StatusOK && status != http.StatusServiceUnavailable)
				mu.Unlock()
				if done {
					return // the chain is over; judged below
				}
			}
		}()
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopLoad()
	waitFor := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				stopLoad()
				t.Fatalf("timed out waiting for %s; chains: %s\nlogs:\n%s", what, describeChains(chains), tail(inst.Logs.String(), 30))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	allChains := func(pred func(c *refreshChain) bool) func() bool {
		return func() bool {
			for _, c := range chains {
				if !pred(c) && !c.lostResponse {
					return false
				}
			}
			return true
		}
	}

	waitFor("refreshes on the primary", 10*time.Second, allChains(func(c *refreshChain) bool { return len(c.received) > 3 }))
	mu.Lock()
	for _, c := range chains {
		if len(c.failures) > 0 {
			t.Fatalf("failures before the failover: %s", describeChains(chains))
		}
	}
	mu.Unlock()

	killed := time.Now()
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	failing := func() bool {
		n := 0
		for _, c := range chains {
			n += len(c.failures)
		}
		return n >= 3
	}
	waitFor("503s while there is no primary", 10*time.Second, failing)
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	promotedAt := time.Now()
	mu.Lock()
	promoted = true
	mu.Unlock()
	waitFor("refreshes on the promoted standby", 20*time.Second, allChains(func(c *refreshChain) bool { return c.okAfter >= 3 }))
	recovered := time.Since(promotedAt)
	// Once recovered, every answer is a token again.
	mu.Lock()
	failuresAtRecovery := make([]int, clients)
	for i, c := range chains {
		failuresAtRecovery[i] = len(c.failures)
	}
	mu.Unlock()
	time.Sleep(time.Second)
	stopLoad()
	t.Logf("primary killed; standby promoted %s later; authd served it within %s of the promotion", promotedAt.Sub(killed).Round(time.Millisecond), recovered.Round(time.Millisecond))

	for i, c := range chains {
		for _, fl := range c.failures {
			if fl != "503 temporarily_unavailable" {
				t.Errorf("client %d: answer %q during the failover, want only 503 temporarily_unavailable", i, fl)
			}
		}
		if extra := len(c.failures) - failuresAtRecovery[i]; extra > 0 {
			t.Errorf("client %d: %d failures after authd had recovered: %v", i, extra, c.failures[failuresAtRecovery[i]:])
		}
	}

	// What the new primary stores against what the clients received.
	st, err := store.OpenPostgres(ctx, standby.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i, c := range chains {
		stored := make([]store.RefreshToken, len(c.received))
		for j, rt := range c.received {
			if stored[j], err = st.GetRefreshToken(ctx, oauth.Digest(rt)); err != nil {
				t.Fatalf("client %d: refresh token %d of %d it received is not on the new primary (lost): %v", i, j+1, len(c.received), err)
			}
		}
		var grant string
		for j, got := range stored {
			if j == 0 {
				grant = got.GrantID
			} else if got.Parent != oauth.Digest(c.received[j-1]) || got.GrantID != grant {
				t.Fatalf("client %d: refresh token %d is not the successor of the one before it (forked chain)", i, j+1)
			}
			if last := j == len(c.received)-1; !last && got.UsedAt == nil {
				t.Fatalf("client %d: refresh token %d is unused although the client has its successor", i, j+1)
			} else if last && got.UsedAt == nil == c.lostResponse {
				t.Fatalf("client %d: last refresh token used=%v, lost response=%v", i, got.UsedAt != nil, c.lostResponse)
			}
		}
		if c.lostResponse {
			// The rotation committed (it reached the synchronous standby)
			// but the primary died before its answer left: the client saw
			// a 503 and retried with the same token. Within
			// tokens.refresh_retry_window that retry must get working
			// tokens, not be taken for a replay that revokes the grant.
			t.Errorf("client %d: a refresh whose response was lost to the crash was retried and refused (invalid_grant): the chain ended", i)
			continue
		}
		if status, errCode, _ := refresh(c); status != http.StatusOK {
			t.Errorf("client %d: the chain does not go on from its last token: %d %s", i, status, errCode)
		}
	}
}

func describeChains(chains []*refreshChain) string {
	var b strings.Builder
	for i, c := range chains {
		fmt.Fprintf(&b, "\n  client %d: %d tokens, failures %v, lost response %v", i, len(c.received), c.failures, c.lostResponse)
	}
	return b.String()
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(parts[max(0, len(parts)-lines):], "\n")
}
