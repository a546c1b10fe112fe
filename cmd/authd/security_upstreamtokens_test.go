package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store/pgtest"
)

// TestSecurityKeptUpstreamTokensStayEncrypted extends the leak test to
// store_tokens: the GitHub access and refresh token authd keeps appear in
// no log line, not in /metrics and not in a dump of every table, neither
// as text nor hex- or base64-encoded (a bytea column dumps as hex); the
// dump does hold the upstream_tokens row, so the check looked at it.
func TestSecurityKeptUpstreamTokensStayEncrypted(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	f := newFlowEnv(t, dsn)
	f.github.SetTokenLifetime(8 * time.Hour) // with a refresh token to keep too
	raw, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(raw), "      load_teams: true\n", "      load_teams: true\n    store_tokens: true\n", 1)
	if cfg == string(raw) {
		t.Fatal("could not turn store_tokens on in the flow configuration")
	}
	if err := os.WriteFile(f.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSecEnvFrom(t, f, dsn, map[string]string{"AUTHD_LOG_LEVEL": "debug", "AUTHD_LOG_FORMAT": "json"}, "")

	reg := registerClient(t, s.inst.URL, map[string]any{
		"client_name": "Leak test", "redirect_uris": []string{"http://127.0.0.1/cb"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:7402/cb", Scopes: []string{"mcp:tools"},
		Endpoint: oauth2.Endpoint{AuthURL: s.inst.URL + "/authorize", TokenURL: s.inst.URL + "/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, s.github.Client().Transport, "http://127.0.0.1:7402/cb")
	q := b.authorize(t, s.inst.URL, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))
	if err != nil {
		t.Fatal(err)
	}
	// A refresh at authd (the membership check is not due yet, but the
	// path runs) and the connected-apps page, which lists the account.
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	if _, err := conf.TokenSource(context.Background(), &expired).Token(); err != nil {
		t.Fatal(err)
	}
	_, apps := b.get(t, s.inst.URL+"/apps")

	kept := s.upstreamTokens.tokens()
	if len(kept) < 2 {
		t.Fatalf("saw %d upstream tokens on the wire, want the access and the refresh token", len(kept))
	}
	dump := dumpDatabase(t, s)
	if !strings.Contains(dump, "upstream_tokens: ") {
		t.Fatalf("the dump holds no upstream_tokens row: nothing was kept\n%s", dump)
	}
	_, metricsText := get(t, s.metricsURL, nil)
	haystacks := map[string]string{
		"logs":     s.inst.Logs.String(),
		"stdout":   s.inst.Stdout.String(),
		"metrics":  metricsText,
		"database": dump,
		"/apps":    apps,
	}
	if !strings.Contains(haystacks["logs"], `"level":"DEBUG"`) {
		t.Fatal("expected JSON debug logs")
	}
	for _, sec := range kept {
		forms := []string{sec, hex.EncodeToString([]byte(sec)), base64.StdEncoding.EncodeToString([]byte(sec)), base64.RawURLEncoding.EncodeToString([]byte(sec))}
		for where, text := range haystacks {
			for _, form := range forms {
				if strings.Contains(text, form) {
					t.Errorf("a kept upstream token (%.8s…) appears in the %s", sec, where)
				}
			}
		}
	}
}
