package upstream_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

var alice = upstreamtest.OIDCUser{
	Subject: "248289761001", Email: "alice@example.com", EmailVerified: true,
	Name: "Alice", PreferredUsername: "alice", Groups: []string{"admins", "Dev Team"},
}

func TestOIDCLogin(t *testing.T) {
	op := upstreamtest.NewOIDC(t)
	op.AddUser(alice)
	op.AddUser(upstreamtest.OIDCUser{Subject: "other", Email: "bob@example.com", EmailVerified: true})
	conn := connect(t, op.Config("corp", upstream.TypeOIDC), op.Client())
	if conn.Type() != upstream.TypeOIDC || conn.DisplayName() != "127.0.0.1" {
		t.Errorf("Type/DisplayName = %q/%q", conn.Type(), conn.DisplayName())
	}

	f := newFlow()
	r := authorize(t, conn, op.Client(), f, "alice@example.com")
	id, err := conn.HandleCallback(t.Context(), r, f.options(""))
	if err != nil {
		t.Fatalf("HandleCallback: %v", err)
	}
	want := upstream.Identity{
		Provider: "corp", Subject: "248289761001", Login: "alice", Name: "Alice",
		Email: "alice@example.com", EmailVerified: true, Groups: []string{"admins", "Dev Team"},
	}
	if !equalIdentity(id, want) {
		t.Errorf("identity = %+v\nwant       %+v", id, want)
	}

	q := op.AuthorizeRequests()[0]
	for k, v := range map[string]string{
		"response_type":         "code",
		"scope":                 "openid profile email",
		"nonce":                 f.nonce,
		"code_challenge":        oauth2.S256ChallengeFromVerifier(f.verifier),
		"code_challenge_method": "S256",
		"login_hint":            "alice@example.com",
		"redirect_uri":          issuer + "/callback/corp",
	} {
		if q.Get(k) != v {
			t.Errorf("authorize %s = %q, want %q", k, q.Get(k), v)
		}
	}
}

// Each check the relying party owes (OpenID Connect Core §3.1.3.7), and
// PKCE at the token endpoint, rejects the login.
func TestOIDCRejectsBadTokens(t *testing.T) {
	tests := []struct {
		name   string
		faults upstreamtest.Faults
		code   string
	}{
		{"wrong nonce", upstreamtest.Faults{WrongNonce: true}, upstream.CodeUpstreamError},
		{"wrong audience", upstreamtest.Faults{WrongAudience: true}, upstream.CodeUpstreamError},
		{"extra audience without azp", upstreamtest.Faults{ExtraAudience: true}, upstream.CodeUpstreamError},
		{"wrong issuer", upstreamtest.Faults{WrongIssuer: true}, upstream.CodeUpstreamError},
		{"expired", upstreamtest.Faults{Expired: true}, upstream.CodeUpstreamError},
		{"bad signature", upstreamtest.Faults{BadSignature: true}, upstream.CodeUpstreamError},
		{"no id_token", upstreamtest.Faults{NoIDToken: true}, upstream.CodeUpstreamError},
		{"mix-up iss in response", upstreamtest.Faults{MixUpIss: true}, upstream.CodeUpstreamError},
		{"token endpoint 400", upstreamtest.Faults{TokenStatus: http.StatusBadRequest}, upstream.CodeUpstreamError},
		{"token endpoint 500", upstreamtest.Faults{TokenStatus: http.StatusInternalServerError}, upstream.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := upstreamtest.NewOIDC(t)
			op.AddUser(alice)
			conn := connect(t, op.Config("corp", upstream.TypeOIDC), op.Client())
			// The same login succeeds without the fault, so the fault is
			// what the connector rejects.
			if _, err := login(t, conn, op.Client(), ""); err != nil {
				t.Fatalf("baseline login: %v", err)
			}
			op.SetFaults(tt.faults)
			id, err := login(t, conn, op.Client(), "")
			wantError(t, id, err, tt.code)
		})
	}
}

func TestOIDCWrongVerifierRejected(t *testing.T) {
	op := upstreamtest.NewOIDC(t)
	op.AddUser(alice)
	conn := connect(t, op.Config("corp", upstream.TypeOIDC), op.Client())
	f := newFlow()
	r := authorize(t, conn, op.Client(), f, "")
	id, err := conn.HandleCallback(t.Context(), r, upstream.LoginOptions{Verifier: oauth2.GenerateVerifier(), Nonce: f.nonce})
	ue := wantError(t, id, err, upstream.CodeUpstreamError)
	if !strings.Contains(ue.Err.Error(), "invalid_grant") {
		t.Errorf("cause = %v, want invalid_grant from the token endpoint", ue.Err)
	}
}

func TestOIDCClaims(t *testing.T) {
	tests := []struct {
		name         string
		user         upstreamtest.OIDCUser
		oidc         upstream.OIDCConfig
		wantEmail    string
		wantVerified bool
		wantLogin    string
		wantGroups   []string
	}{
		{
			name:      "email_verified false",
			user:      upstreamtest.OIDCUser{Subject: "s", Email: "a@example.com", EmailVerified: false, PreferredUsername: "a"},
			wantLogin: "a",
		},
		{
			name: "email_verified missing",
			user: upstreamtest.OIDCUser{Subject: "s", Email: "a@example.com", Claims: map[string]any{"email_verified": nil}},
		},
		{
			name:      "email_verified as string",
			user:      upstreamtest.OIDCUser{Subject: "s", Email: "a@example.com", Claims: map[string]any{"email_verified": "true"}},
			wantEmail: "a@example.com", wantVerified: true, wantLogin: "",
		},
		{
			name:       "groups as a single string",
			user:       upstreamtest.OIDCUser{Subject: "s", Claims: map[string]any{"groups": "admins"}},
			wantGroups: []string{"admins"},
		},
		{
			name:       "groups array with non-strings",
			user:       upstreamtest.OIDCUser{Subject: "s", Claims: map[string]any{"groups": []any{"a", 1, "", "b"}}},
			wantGroups: []string{"a", "b"},
		},
		{
			name: "mapped claims",
			user: upstreamtest.OIDCUser{Subject: "s", Email: "ignored@example.com", EmailVerified: true, Claims: map[string]any{
				"roles": []string{"ops"}, "nickname": "al", "upn": "al@corp.example",
			}},
			oidc:       upstream.OIDCConfig{ClaimGroups: "roles", ClaimUsername: "nickname", ClaimEmail: "upn"},
			wantLogin:  "al",
			wantGroups: []string{"ops"},
			// upn has no verification status: not a trusted email.
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := upstreamtest.NewOIDC(t)
			op.AddUser(tt.user)
			c := op.Config("corp", upstream.TypeOIDC)
			tt.oidc.Issuer = op.Issuer()
			c.OIDC = tt.oidc
			id, err := login(t, connect(t, c, op.Client()), op.Client(), "")
			if err != nil {
				t.Fatal(err)
			}
			if id.Email != tt.wantEmail || id.EmailVerified != tt.wantVerified || id.Login != tt.wantLogin || !slices.Equal(id.Groups, tt.wantGroups) {
				t.Errorf("got email %q verified %v login %q groups %q\nwant email %q verified %v login %q groups %q",
					id.Email, id.EmailVerified, id.Login, id.Groups, tt.wantEmail, tt.wantVerified, tt.wantLogin, tt.wantGroups)
			}
		})
	}
}

func TestGoogle(t *testing.T) {
	op := upstreamtest.NewOIDC(t)
	op.AddUser(upstreamtest.OIDCUser{
		Subject: "1099", Email: "carol@corp.example", EmailVerified: true, Name: "Carol",
		HostedDomain: "corp.example", Groups: []string{"not-for-google"},
	})
	op.AddUser(upstreamtest.OIDCUser{Subject: "2000", Email: "dave@gmail.com", EmailVerified: true})
	op.AddUser(upstreamtest.OIDCUser{Subject: "3000", Email: "eve@other.example", EmailVerified: true, HostedDomain: "other.example"})

	t.Run("hd claim mapped", func(t *testing.T) {
		conn := connect(t, op.Config("google", upstream.TypeGoogle), op.Client())
		if conn.DisplayName() != "Google" {
			t.Errorf("DisplayName = %q", conn.DisplayName())
		}
		id, err := login(t, conn, op.Client(), "1099")
		if err != nil {
			t.Fatal(err)
		}
		want := upstream.Identity{
			Provider: "google", Subject: "1099", Login: "carol@corp.example", Name: "Carol",
			Email: "carol@corp.example", EmailVerified: true, Domain: "corp.example",
		}
		if !equalIdentity(id, want) {
			t.Errorf("identity = %+v\nwant       %+v", id, want)
		}
		q := op.AuthorizeRequests()[len(op.AuthorizeRequests())-1]
		if q.Get("scope") != "openid email profile" || q.Has("hd") {
			t.Errorf("authorize scope %q hd %q", q.Get("scope"), q.Get("hd"))
		}
	})

	c := op.Config("google", upstream.TypeGoogle)
	c.OIDC.HostedDomain = "corp.example"
	conn := connect(t, c, op.Client())
	t.Run("hosted domain matches", func(t *testing.T) {
		id, err := login(t, conn, op.Client(), "1099")
		if err != nil || id.Domain != "corp.example" {
			t.Fatalf("login = %+v, %v", id, err)
		}
		if hd := op.AuthorizeRequests()[len(op.AuthorizeRequests())-1].Get("hd"); hd != "corp.example" {
			t.Errorf("hd hint = %q", hd)
		}
	})
	// The hd parameter is only a hint the user can strip from the URL;
	// the claim decides.
	for _, sub := range []string{"2000", "3000"} {
		t.Run("hosted domain claim differs "+sub, func(t *testing.T) {
			id, err := login(t, conn, op.Client(), sub)
			wantError(t, id, err, upstream.CodeAccessDenied)
		})
	}
}

func TestDeclined(t *testing.T) {
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(octocat)
	gh.SetDecline(true)
	op := upstreamtest.NewOIDC(t)
	op.AddUser(alice)
	op.SetDecline(true)
	for _, tc := range []struct {
		conn upstream.Connector
		hc   *http.Client
	}{
		{connect(t, gh.Config("github"), gh.Client()), gh.Client()},
		{connect(t, op.Config("google", upstream.TypeGoogle), op.Client()), op.Client()},
		{connect(t, op.Config("corp", upstream.TypeOIDC), op.Client()), op.Client()},
	} {
		t.Run(tc.conn.ID(), func(t *testing.T) {
			id, err := login(t, tc.conn, tc.hc, "")
			ue := wantError(t, id, err, upstream.CodeAccessDenied)
			if !strings.Contains(ue.Message, "declined") {
				t.Errorf("message %q does not explain the user declined", ue.Message)
			}
		})
	}
}

func TestCallbackWithoutCodeOrWithError(t *testing.T) {
	op := upstreamtest.NewOIDC(t)
	gh := upstreamtest.NewGitHub(t)
	conns := []upstream.Connector{
		connect(t, gh.Config("github"), gh.Client()),
		connect(t, op.Config("corp", upstream.TypeOIDC), op.Client()),
	}
	for _, conn := range conns {
		f := newFlow()
		for _, tc := range []struct {
			q    url.Values
			code string
		}{
			{url.Values{"state": {f.state}}, upstream.CodeUpstreamError},
			{url.Values{"state": {f.state}, "error": {"server_error"}, "error_description": {"<script>alert(1)</script>"}}, upstream.CodeUpstreamError},
			{url.Values{"state": {f.state}, "error": {"access_denied"}, "code": {"x"}}, upstream.CodeAccessDenied},
		} {
			id, err := conn.HandleCallback(t.Context(), callbackRequest(conn, tc.q), f.options(""))
			ue := wantError(t, id, err, tc.code)
			if strings.Contains(ue.Message, "script") {
				t.Errorf("%s: provider text reached the user message: %q", conn.ID(), ue.Message)
			}
		}
	}
}

// authd starts even when the issuer is down; Prepare retries and works
// once the issuer is back.
func TestOIDCLazyDiscovery(t *testing.T) {
	op := upstreamtest.NewOIDC(t)
	op.AddUser(alice)
	op.SetFaults(upstreamtest.Faults{DiscoveryStatus: http.StatusServiceUnavailable})
	conn := connect(t, op.Config("corp", upstream.TypeOIDC), op.Client())

	err := upstream.Prepare(t.Context(), conn)
	wantError(t, upstream.Identity{}, err, upstream.CodeUnavailable)
	if u := conn.AuthCodeURL("s", upstream.LoginOptions{Verifier: oauth2.GenerateVerifier(), Nonce: "n"}); u != "" {
		t.Errorf("AuthCodeURL = %q while the issuer is down, want empty", u)
	}
	f := newFlow()
	id, err := conn.HandleCallback(t.Context(), callbackRequest(conn, url.Values{"code": {"c"}, "state": {f.state}}), f.options(""))
	wantError(t, id, err, upstream.CodeUnavailable)

	op.SetFaults(upstreamtest.Faults{})
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = upstream.Prepare(t.Context(), conn) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("Prepare after recovery: %v", err)
		}
	}
	if _, err := login(t, conn, op.Client(), ""); err != nil {
		t.Fatalf("login after recovery: %v", err)
	}
}

func TestPrepareIsNoOpForGitHub(t *testing.T) {
	gh := upstreamtest.NewGitHub(t)
	if err := upstream.Prepare(t.Context(), connect(t, gh.Config("github"), gh.Client())); err != nil {
		t.Fatal(err)
	}
}
