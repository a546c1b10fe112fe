package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/authd/authd/internal/oauth"
)

// raceN runs f(0..n-1) concurrently, all released at once by a start
// barrier once every goroutine is ready, and waits for all of them. f runs
// off the test goroutine, where t.Fatal (and every helper calling it) must
// not be used: it returns an error instead, and raceN fails the test with
// them here, on the test goroutine.
func raceN(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	ready.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("racing request failed: %v", err)
	}
}

const raceWidth = 8

// liveRefreshTokens counts the refresh tokens of a client that could still
// be redeemed: unspent, unexpired, in a grant that is not revoked.
func (s *secEnv) liveRefreshTokens(t *testing.T, clientID string) int {
	t.Helper()
	return s.count(t, `SELECT count(*) FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id
		WHERE r.client_id = $1 AND r.used_at IS NULL AND r.expires_at > now() AND g.revoked_at IS NULL`, clientID)
}

// assertFamilyRevoked checks that the grant (token family) of the refresh
// token rt was ended by reuse detection: the grant is revoked, none of its
// refresh tokens is unspent, and the refresh and access tokens the race's
// winner walked away with are refused.
func (s *secEnv) assertFamilyRevoked(t *testing.T, what, clientID, rt string, winner oauthResp) {
	t.Helper()
	var grantID string
	if err := s.db.QueryRow(t.Context(), "SELECT grant_id FROM refresh_tokens WHERE digest = $1", oauth.Digest(rt)).Scan(&grantID); err != nil {
		t.Fatalf("%s: the grant of the raced refresh token: %v", what, err)
	}
	if n := s.count(t, "SELECT count(*) FROM grants WHERE id = $1 AND revoked_at IS NOT NULL", grantID); n != 1 {
		t.Fatalf("%s: a reuse was refused but the grant was not revoked", what)
	}
	if n := s.count(t, "SELECT count(*) FROM refresh_tokens WHERE grant_id = $1 AND used_at IS NULL", grantID); n != 0 {
		t.Fatalf("%s: %d refresh tokens of the revoked family are still unspent", what, n)
	}
	if n := s.liveRefreshTokens(t, clientID); n != 0 {
		t.Fatalf("%s: %d live refresh tokens", what, n)
	}
	next, _ := winner.body["refresh_token"].(string)
	access, _ := winner.body["access_token"].(string)
	if next == "" || access == "" {
		t.Fatalf("%s: the winner got no tokens: %s", what, winner.raw)
	}
	wantOAuthError(t, what+": the winner's refresh token", s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next}, "client_id": {clientID}}), http.StatusBadRequest, "invalid_grant")
	if s.active(t, access) {
		t.Fatalf("%s: the winner's access token is still active", what)
	}
}

// TestRaceCodeRedemption: N presentations of one code released at once
// (fosite #778). Exactly one gets tokens; the others get invalid_grant; one
// grant exists, and since the losers replayed a spent code, it is revoked
// with everything issued from it.
func TestRaceCodeRedemption(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
	for round := 0; round < 5; round++ {
		code, verifier := s.code(t, conf)
		grants := s.count(t, "SELECT count(*) FROM grants")
		results := make([]oauthResp, raceWidth)
		raceN(t, raceWidth, func(i int) (err error) {
			results[i], err = s.tryPost("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {cbX}, "client_id": {conf.ClientID}}, "", "")
			return err
		})
		var winner oauthResp
		wins := 0
		for _, r := range results {
			switch {
			case r.status == http.StatusOK:
				wins++
				winner = r
			case r.err() != "invalid_grant":
				t.Errorf("round %d: loser got %d %s", round, r.status, r.raw)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d redemptions of one code succeeded", round, wins)
		}
		if n := s.count(t, "SELECT count(*) FROM grants"); n != grants+1 {
			t.Fatalf("round %d: %d grants created", round, n-grants)
		}
		// raceWidth-1 losers presented the spent code: replays, which end
		// the grant (OAuth 2.1 §4.1.3).
		rt, _ := winner.body["refresh_token"].(string)
		s.assertFamilyRevoked(t, fmt.Sprintf("round %d", round), conf.ClientID, rt, winner)
	}
}

// TestRaceRefresh: N presentations of one refresh token at once (a thief
// racing the client).
//
// With the retry window off, exactly one rotation succeeds, the rest are
// refused, and since each refused one presented a spent token (a reuse),
// the whole family is revoked: no live refresh token remains, and the
// winner's new refresh token and access token are refused too.
//
// With the retry window (the default), the same client presenting the
// token again at once cannot be told from its own second process, so all
// N get tokens; but the first successor used supersedes the others, so the
// family has one live refresh token again, and the first of the others to
// come back (the thief's or the client's) revokes the whole family.
func TestRaceRefresh(t *testing.T) {
	t.Parallel()
	t.Run("no retry window", func(t *testing.T) {
		t.Parallel()
		s := newSecEnv(t, map[string]string{"AUTHD_TOKENS_REFRESH_RETRY_WINDOW": "0"})
		conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
		for round := 0; round < 3; round++ {
			tok := s.tokens(t, conf)
			results := s.raceRefresh(t, conf.ClientID, tok.RefreshToken)
			var winner oauthResp
			wins, losers := 0, 0
			for _, r := range results {
				switch {
				case r.status == http.StatusOK:
					wins++
					winner = r
				case r.err() != "invalid_grant":
					t.Errorf("round %d: loser got %d %s", round, r.status, r.raw)
				default:
					losers++
				}
			}
			if wins != 1 || losers < 1 {
				t.Fatalf("round %d: %d refreshes of one token succeeded, %d refused", round, wins, losers)
			}
			s.assertFamilyRevoked(t, fmt.Sprintf("round %d", round), conf.ClientID, tok.RefreshToken, winner)
		}
	})
	t.Run("retry window", func(t *testing.T) {
		t.Parallel()
		s := newSecEnv(t, nil)
		conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
		refresh := func(rt string) oauthResp {
			return s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {conf.ClientID}})
		}
		for round := 0; round < 3; round++ {
			tok := s.tokens(t, conf)
			results := s.raceRefresh(t, conf.ClientID, tok.RefreshToken)
			for i, r := range results {
				if r.status != http.StatusOK {
					t.Fatalf("round %d: presentation %d within the retry window: %d %s", round, i, r.status, r.raw)
				}
			}
			first := results[round%raceWidth]
			next := refresh(first.body["refresh_token"].(string))
			if next.status != http.StatusOK {
				t.Fatalf("round %d: the first successor used: %d %s", round, next.status, next.raw)
			}
			if n := s.liveRefreshTokens(t, conf.ClientID); n != 1 {
				t.Fatalf("round %d: %d live refresh tokens once a successor was used, want 1", round, n)
			}
			other := results[(round+1)%raceWidth]
			wantOAuthError(t, "a superseded successor", refresh(other.body["refresh_token"].(string)), http.StatusBadRequest, "invalid_grant")
			s.assertFamilyRevoked(t, fmt.Sprintf("round %d", round), conf.ClientID, tok.RefreshToken, next)
		}
	})
}

// raceRefresh presents the refresh token rt raceWidth times at once.
func (s *secEnv) raceRefresh(t *testing.T, clientID, rt string) []oauthResp {
	t.Helper()
	results := make([]oauthResp, raceWidth)
	raceN(t, raceWidth, func(i int) (err error) {
		results[i], err = s.tryPost("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}}, "", "")
		return err
	})
	return results
}

// TestRaceRefreshVersusRevoke: the client revokes its refresh token
// (logout) while a thief refreshes it. Whichever wins, once both have
// answered nothing of the grant is usable: no live refresh token, and a
// token the refresh may have produced is refused.
func TestRaceRefreshVersusRevoke(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
	for round := 0; round < 4; round++ {
		tok := s.tokens(t, conf)
		var refresh, revoke oauthResp
		raceN(t, 2, func(i int) (err error) {
			if i == 0 {
				refresh, err = s.tryPost("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {conf.ClientID}}, "", "")
			} else {
				revoke, err = s.tryPost("/revoke", url.Values{"token": {tok.RefreshToken}, "client_id": {conf.ClientID}}, "", "")
			}
			return err
		})
		if revoke.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", revoke.status, revoke.raw)
		}
		if n := s.liveRefreshTokens(t, conf.ClientID); n != 0 {
			t.Fatalf("round %d (refresh %d): %d live refresh tokens outlive the revocation", round, refresh.status, n)
		}
		if refresh.status == http.StatusOK {
			next := s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh.body["refresh_token"].(string)}, "client_id": {conf.ClientID}})
			wantOAuthError(t, "refresh token issued during revocation", next, http.StatusBadRequest, "invalid_grant")
			if s.active(t, refresh.body["access_token"].(string)) {
				t.Fatalf("round %d: access token issued during revocation still active", round)
			}
		}
	}
}

// TestRaceRegistrationUpdateVersusDelete: RFC 7592 PUT and DELETE of one
// client at once. Whatever the order, a successful DELETE leaves no client
// row (an update cannot resurrect it) and nothing issued to it.
func TestRaceRegistrationUpdateVersusDelete(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	for round := 0; round < 4; round++ {
		reg := s.registerRaw(t, map[string]any{"client_name": "race", "redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "client_secret_basic"})
		id, rat := reg.body["client_id"].(string), reg.body["registration_access_token"].(string)
		body, _ := json.Marshal(map[string]any{"client_id": id, "client_name": "updated", "redirect_uris": []string{"https://app.example.com/other"}, "token_endpoint_auth_method": "client_secret_basic"})
		var put, del oauthResp
		raceN(t, 2, func(i int) (err error) {
			if i == 0 {
				put, err = s.tryJSONRequest(http.MethodPut, "/register/"+id, rat, body)
			} else {
				del, err = s.tryJSONRequest(http.MethodDelete, "/register/"+id, rat, nil)
			}
			return err
		})
		if del.status != http.StatusNoContent {
			t.Fatalf("round %d: delete %d %s", round, del.status, del.raw)
		}
		if put.status != http.StatusOK && put.err() != "invalid_token" {
			t.Fatalf("round %d: update %d %s", round, put.status, put.raw)
		}
		if n := s.count(t, "SELECT count(*) FROM clients WHERE id = $1", id); n != 0 {
			t.Fatalf("round %d: the deleted client exists again (update %d)", round, put.status)
		}
	}
}

// TestRaceRegistrationTokenRotation: with rotate_registration_token, each
// management request spends the registration access token and returns a
// new one. N requests with the same token at once (a thief racing the
// client) must have one winner: the others are refused, and the token
// stored is the winner's, so a loser never walks away holding control.
func TestRaceRegistrationTokenRotation(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, map[string]string{"AUTHD_REGISTRATION_ROTATE_REGISTRATION_TOKEN": "true"})
	for round := 0; round < 3; round++ {
		reg := s.registerRaw(t, map[string]any{"client_name": "rotate", "redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "client_secret_basic"})
		id, rat := reg.body["client_id"].(string), reg.body["registration_access_token"].(string)
		body, _ := json.Marshal(map[string]any{"client_id": id, "client_name": "rotated", "redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "client_secret_basic"})
		results := make([]oauthResp, raceWidth)
		raceN(t, raceWidth, func(i int) (err error) {
			results[i], err = s.tryJSONRequest(http.MethodPut, "/register/"+id, rat, body)
			return err
		})
		var winners []string
		for _, r := range results {
			switch {
			case r.status == http.StatusOK:
				winners = append(winners, r.body["registration_access_token"].(string))
			case r.err() != "invalid_token":
				t.Errorf("round %d: loser got %d %s", round, r.status, r.raw)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d concurrent rotations of one registration token succeeded", round, len(winners))
		}
		var stored string
		if err := s.db.QueryRow(t.Context(), "SELECT registration_token_hash FROM clients WHERE id = $1", id).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored != oauth.Digest(winners[0]) {
			t.Fatalf("round %d: the stored registration token is not the winner's", round)
		}
		wantOAuthError(t, "spent registration token", s.jsonRequest(t, http.MethodGet, "/register/"+id, rat, nil), 401, "invalid_token")
	}
}

// TestRaceRefreshVersusClientDelete: the client's registration is deleted
// (RFC 7592) while its refresh token is being used. Whatever the order,
// once the delete has answered, nothing issued to the client survives: no
// row references it, a refresh token the race may have produced is
// refused, and so is an access token.
func TestRaceRefreshVersusClientDelete(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	for round := 0; round < 4; round++ {
		reg := s.registerRaw(t, map[string]any{
			"client_name": "delete-race", "redirect_uris": []string{"http://127.0.0.1/cb"}, "token_endpoint_auth_method": "client_secret_basic",
			"grant_types": []string{"authorization_code", "refresh_token"},
		})
		id, secret, rat := reg.body["client_id"].(string), reg.body["client_secret"].(string), reg.body["registration_access_token"].(string)
		tok := s.tokens(t, s.oauthConfig(id, secret, cbX))
		var refresh, del oauthResp
		raceN(t, 2, func(i int) (err error) {
			if i == 0 {
				refresh, err = s.tryPost("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, id, secret)
			} else {
				del, err = s.tryJSONRequest(http.MethodDelete, "/register/"+id, rat, nil)
			}
			return err
		})
		if del.status != http.StatusNoContent {
			t.Fatalf("round %d: delete %d %s", round, del.status, del.raw)
		}
		for _, tbl := range []string{"grants", "refresh_tokens", "access_tokens", "auth_codes", "consents"} {
			if n := s.count(t, "SELECT count(*) FROM "+tbl+" WHERE client_id = $1", id); n != 0 {
				t.Fatalf("round %d (refresh %d): %d %s rows outlive their client", round, refresh.status, n, tbl)
			}
		}
		if refresh.status == http.StatusOK {
			if s.active(t, refresh.body["access_token"].(string)) {
				t.Fatalf("round %d: access token issued during deletion still active", round)
			}
			next := s.post(t, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh.body["refresh_token"].(string)}}, id, secret)
			wantOAuthError(t, "refresh after deletion", next, http.StatusUnauthorized, "invalid_client")
		}
	}
}
