package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/authd/authd/internal/oauth"
)

// raceN runs f(0..n-1) concurrently, all released at once by a start
// barrier once every goroutine is ready, and waits for all of them.
func raceN(n int, f func(i int)) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			f(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}

const raceWidth = 8

// liveRefreshTokens counts the refresh tokens of a grant that could still
// be redeemed: unspent, unexpired, in a grant that is not revoked.
func (s *secEnv) liveRefreshTokens(t *testing.T, clientID string) int {
	t.Helper()
	return s.count(t, `SELECT count(*) FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id
		WHERE r.client_id = $1 AND r.used_at IS NULL AND r.expires_at > now() AND g.revoked_at IS NULL`, clientID)
}

// TestRaceCodeRedemption: N presentations of one code released at once
// (fosite #778). Exactly one gets tokens; the others get invalid_grant; one
// grant exists and at most one refresh token is live.
func TestRaceCodeRedemption(t *testing.T) {
	s := newSecEnv(t, nil)
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
	for round := 0; round < 5; round++ {
		code, verifier := s.code(t, conf)
		grants := s.count(t, "SELECT count(*) FROM grants")
		results := make([]oauthResp, raceWidth)
		raceN(raceWidth, func(i int) {
			results[i] = s.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {cbX}, "client_id": {conf.ClientID}})
		})
		wins := 0
		for _, r := range results {
			switch {
			case r.status == http.StatusOK:
				wins++
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
		if n := s.liveRefreshTokens(t, conf.ClientID); n > 1 {
			t.Fatalf("round %d: %d live refresh tokens", round, n)
		}
		// Every later presentation is a replay that ends the grant.
		s.exec(t, "UPDATE grants SET revoked_at = now() WHERE client_id = $1", conf.ClientID)
	}
}

// TestRaceRefresh: N presentations of one refresh token at once (a thief
// racing the client). Exactly one rotation succeeds, the rest are refused,
// and the family never has more than one live refresh token.
func TestRaceRefresh(t *testing.T) {
	s := newSecEnv(t, nil)
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
	for round := 0; round < 3; round++ {
		tok := s.tokens(t, conf)
		results := make([]oauthResp, raceWidth)
		raceN(raceWidth, func(i int) {
			results[i] = s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {conf.ClientID}})
		})
		wins := 0
		for _, r := range results {
			switch {
			case r.status == http.StatusOK:
				wins++
			case r.err() != "invalid_grant":
				t.Errorf("round %d: loser got %d %s", round, r.status, r.raw)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d refreshes of one token succeeded", round, wins)
		}
		if n := s.liveRefreshTokens(t, conf.ClientID); n > 1 {
			t.Fatalf("round %d: %d live refresh tokens in the family", round, n)
		}
	}
}

// TestRaceRefreshVersusRevoke: the client revokes its refresh token
// (logout) while a thief refreshes it. Whichever wins, once both have
// answered nothing of the grant is usable: no live refresh token, and a
// token the refresh may have produced is refused.
func TestRaceRefreshVersusRevoke(t *testing.T) {
	s := newSecEnv(t, nil)
	conf := s.oauthConfig(s.publicClient(t, "http://127.0.0.1/cb"), "", cbX)
	for round := 0; round < 4; round++ {
		tok := s.tokens(t, conf)
		var refresh, revoke oauthResp
		raceN(2, func(i int) {
			if i == 0 {
				refresh = s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {conf.ClientID}})
			} else {
				revoke = s.post(t, "/revoke", url.Values{"token": {tok.RefreshToken}, "client_id": {conf.ClientID}}, "", "")
			}
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
	s := newSecEnv(t, nil)
	for round := 0; round < 4; round++ {
		reg := s.registerRaw(t, map[string]any{"client_name": "race", "redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "client_secret_basic"})
		id, rat := reg.body["client_id"].(string), reg.body["registration_access_token"].(string)
		body, _ := json.Marshal(map[string]any{"client_id": id, "client_name": "updated", "redirect_uris": []string{"https://app.example.com/other"}, "token_endpoint_auth_method": "client_secret_basic"})
		var put, del oauthResp
		raceN(2, func(i int) {
			if i == 0 {
				put = s.jsonRequest(t, http.MethodPut, "/register/"+id, rat, body)
			} else {
				del = s.jsonRequest(t, http.MethodDelete, "/register/"+id, rat, nil)
			}
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
	s := newSecEnv(t, map[string]string{"AUTHD_REGISTRATION_ROTATE_REGISTRATION_TOKEN": "true"})
	for round := 0; round < 3; round++ {
		reg := s.registerRaw(t, map[string]any{"client_name": "rotate", "redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "client_secret_basic"})
		id, rat := reg.body["client_id"].(string), reg.body["registration_access_token"].(string)
		body, _ := json.Marshal(map[string]any{"client_id": id, "client_name": "rotated", "redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "client_secret_basic"})
		results := make([]oauthResp, raceWidth)
		raceN(raceWidth, func(i int) {
			results[i] = s.jsonRequest(t, http.MethodPut, "/register/"+id, rat, body)
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
	s := newSecEnv(t, nil)
	for round := 0; round < 4; round++ {
		reg := s.registerRaw(t, map[string]any{
			"client_name": "delete-race", "redirect_uris": []string{"http://127.0.0.1/cb"}, "token_endpoint_auth_method": "client_secret_basic",
			"grant_types": []string{"authorization_code", "refresh_token"},
		})
		id, secret, rat := reg.body["client_id"].(string), reg.body["client_secret"].(string), reg.body["registration_access_token"].(string)
		tok := s.tokens(t, s.oauthConfig(id, secret, cbX))
		var refresh, del oauthResp
		raceN(2, func(i int) {
			if i == 0 {
				refresh = s.post(t, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, id, secret)
			} else {
				del = s.jsonRequest(t, http.MethodDelete, "/register/"+id, rat, nil)
			}
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
