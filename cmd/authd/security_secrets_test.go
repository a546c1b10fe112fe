package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/oauth"
)

const testEncryptionSecret = "test-encryption-secret-0123456789abcdef"

// wire records what crossed the HTTP boundary in both directions, for the
// leak checks: every request URL, every redirect and cookie authd set, and
// every error body it answered.
type wire struct {
	next   http.RoundTripper
	issuer string
	mu     sync.Mutex
	urls   []string
	locs   []string
	cookie []string
	errs   []string
}

func (w *wire) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := w.next.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.urls = append(w.urls, r.URL.String())
	if !strings.HasPrefix(r.URL.String(), w.issuer) {
		return resp, nil
	}
	if l := resp.Header.Get("Location"); l != "" {
		w.locs = append(w.locs, l)
	}
	for _, c := range resp.Cookies() {
		w.cookie = append(w.cookie, c.Value)
	}
	if resp.StatusCode >= 400 {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		w.errs = append(w.errs, r.Method+" "+r.URL.Path+": "+string(body))
	}
	return resp, nil
}

// TestSecurityNoSecretInLogsMetricsErrorsRedirectsOrDatabase is issue 7's
// and issue 10's leak test. It runs complete flows — dynamic registration
// with a secret, the code flow through GitHub with PKCE, refresh (and a
// refresh-token replay), client_credentials, introspection, revocation,
// RFC 7592 read/update/delete, and failing requests carrying near-miss
// secrets — with debug logs in JSON, then collects every secret value
// involved and asserts none appears in any log line, error body, the
// /metrics exposition, or a redirect authd sent (other than the code in the
// redirect to the client, where it belongs), and that a text dump of every
// table holds none of them in clear: only digests, and the signing key only
// encrypted (neither its PKCS #8 DER, PEM nor private scalar appear).
func TestSecurityNoSecretInLogsMetricsErrorsRedirectsOrDatabase(t *testing.T) {
	t.Parallel()
	// A previous encryption secret is configured too: it is a secret like
	// the current one (SECURITY.md: never printed).
	const previousSecret = "test-previous-encryption-secret-canary-0123456789"
	s := newSecEnv(t, map[string]string{"AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS": previousSecret})
	ctx := context.Background()
	rec := &wire{next: s.github.Client().Transport, issuer: s.inst.URL}
	hc := &http.Client{Transport: rec}
	octx := context.WithValue(ctx, oauth2.HTTPClient, hc)
	var secrets []string
	keep := func(v ...string) {
		for _, x := range v {
			if x == "" {
				t.Fatal("empty secret collected")
			}
			secrets = append(secrets, x)
		}
	}
	keep(testEncryptionSecret, previousSecret, introspectionToken, s.github.ClientSecret)

	// Registration with a secret, and RFC 7592 management.
	const redirect = "http://127.0.0.1:7401/cb"
	body, _ := json.Marshal(map[string]any{
		"client_name": "leak", "redirect_uris": []string{"http://127.0.0.1/cb"}, "token_endpoint_auth_method": "client_secret_basic",
		"grant_types": []string{"authorization_code", "refresh_token", "client_credentials"},
	})
	resp, err := hc.Post(s.inst.URL+"/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var reg map[string]any
	json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	id, secret, rat := reg["client_id"].(string), reg["client_secret"].(string), reg["registration_access_token"].(string)
	keep(secret, rat)
	manage := func(method, bearer string, body []byte) int {
		req, _ := http.NewRequest(method, s.inst.URL+"/register/"+id, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bearer)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if manage(http.MethodGet, rat, nil) != 200 || manage(http.MethodGet, rat[:len(rat)-2]+"xx", nil) != 401 {
		t.Fatal("registration read")
	}
	upd, _ := json.Marshal(map[string]any{"client_id": id, "client_secret": secret, "client_name": "leak2", "redirect_uris": []string{"http://127.0.0.1/cb"},
		"token_endpoint_auth_method": "client_secret_basic", "grant_types": []string{"authorization_code", "refresh_token", "client_credentials"}})
	if st := manage(http.MethodPut, rat, upd); st != 200 {
		t.Fatalf("registration update: %d", st)
	}

	// The code flow, through a recording browser.
	conf := s.oauthConfig(id, secret, redirect)
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, rec, redirect)
	b.c.Transport = rec
	q := b.authorize(t, s.inst.URL, conf.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
	code := q.Get("code")
	keep(code, verifier)
	tok, err := conf.Exchange(octx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	keep(tok.AccessToken, tok.RefreshToken)
	// A replay of the code (revokes that grant), then a second flow.
	if _, err := conf.Exchange(octx, code, oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("replay accepted")
	}
	verifier2 := oauth2.GenerateVerifier()
	q = b.authorize(t, s.inst.URL, conf.AuthCodeURL("state-2", oauth2.S256ChallengeOption(verifier2), oauth2.SetAuthURLParam("resource", mcpResource)))
	code2 := q.Get("code")
	keep(code2, verifier2)
	tok2, err := conf.Exchange(octx, code2, oauth2.VerifierOption(verifier2))
	if err != nil {
		t.Fatal(err)
	}
	keep(tok2.AccessToken, tok2.RefreshToken)

	// Refresh, then a replay of the spent refresh token.
	expired := *tok2
	expired.Expiry = expired.Expiry.Add(-24 * 3600e9)
	tok3, err := conf.TokenSource(octx, &expired).Token()
	if err != nil {
		t.Fatal(err)
	}
	keep(tok3.AccessToken, tok3.RefreshToken)
	// The client uses its new refresh token, so the old one is a replay
	// (not a retry within tokens.refresh_retry_window).
	moved := *tok3
	moved.Expiry = moved.Expiry.Add(-24 * 3600e9)
	tok3b, err := conf.TokenSource(octx, &moved).Token()
	if err != nil {
		t.Fatal(err)
	}
	keep(tok3b.AccessToken, tok3b.RefreshToken)
	if _, err := conf.TokenSource(octx, &expired).Token(); err == nil {
		t.Fatal("refresh-token replay accepted")
	}
	// client_credentials, and a near-miss secret.
	cc := &clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: s.inst.URL + "/token", EndpointParams: url.Values{"resource": {mcpResource}}}
	tok4, err := cc.Token(octx)
	if err != nil {
		t.Fatal(err)
	}
	keep(tok4.AccessToken)
	nearMiss := secret[:len(secret)-3] + "zzz"
	bad := *cc
	bad.ClientSecret = nearMiss
	if _, err := bad.Token(octx); err == nil {
		t.Fatal("near-miss secret accepted")
	}
	keep(nearMiss)
	// Introspection and revocation.
	for _, v := range []string{tok3.AccessToken, tok3.RefreshToken, tok4.AccessToken, "authd_rt_" + strings.Repeat("Z", 43)} {
		req, _ := http.NewRequest(http.MethodPost, s.inst.URL+"/introspect", strings.NewReader(url.Values{"token": {v}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+introspectionToken)
		r, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
	}
	if r, _ := postForm(t, hc, s.inst.URL+"/revoke", url.Values{"token": {tok3.RefreshToken}}, id, secret); r.StatusCode != 200 {
		t.Fatalf("revoke: %d", r.StatusCode)
	}
	if r, _ := postForm(t, hc, s.inst.URL+"/introspect", url.Values{"token": {tok4.AccessToken}}, id, nearMiss); r.StatusCode != 401 {
		t.Fatalf("introspect with a near-miss secret: %d", r.StatusCode)
	}
	// Dump the tables now: deleting the client below cascades to every
	// row issued to it, so a dump taken after it could not show a leak.
	dbDump := dumpDatabase(t, s)
	// The rows were there, keyed by digest (which also proves the dump
	// renders the columns a clear-text secret would sit in).
	for what, digest := range map[string]string{
		"first code":                oauth.Digest(code),
		"second code":               oauth.Digest(code2),
		"first refresh token":       oauth.Digest(tok.RefreshToken),
		"second refresh token":      oauth.Digest(tok2.RefreshToken),
		"rotated refresh token":     oauth.Digest(tok3.RefreshToken),
		"registration access token": oauth.Digest(rat),
		"client secret":             oauth.HashSecret(secret),
	} {
		if !strings.Contains(dbDump, digest) {
			t.Errorf("the database dump lacks the digest of the %s: the rows are gone or not stored as digests", what)
		}
	}
	if st := manage(http.MethodDelete, rat, nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d", st)
	}

	// Upstream and browser secrets seen on the wire.
	ups := s.upstreamTokens.tokens()
	if len(ups) == 0 {
		t.Fatal("no upstream token seen")
	}
	keep(ups...)
	rec.mu.Lock()
	for _, u := range rec.urls {
		if pu, err := url.Parse(u); err == nil && strings.HasPrefix(pu.Path, "/callback/") {
			keep(pu.Query().Get("code")) // GitHub's code, redeemed by authd
		}
	}
	for _, c := range rec.cookie {
		if len(c) >= 20 {
			keep(c) // session and pending-request cookies
		}
	}
	locs, errs := append([]string(nil), rec.locs...), append([]string(nil), rec.errs...)
	rec.mu.Unlock()

	// The signing key, decrypted here with the configured secret.
	keyForms := signingKeyForms(t, s)
	secrets = append(secrets, keyForms...)

	// Also look for the random part of prefixed tokens (a log that cut
	// the prefix off would still leak).
	for _, v := range append([]string(nil), secrets...) {
		if i := strings.LastIndex(v, "_"); strings.HasPrefix(v, "authd_") && i > 0 && len(v)-i > 20 {
			secrets = append(secrets, v[i+1:])
		}
	}

	_, metricsText := get(t, s.metricsURL, nil)

	haystacks := map[string]string{
		"logs":         s.inst.Logs.String(),
		"stdout":       s.inst.Stdout.String(),
		"metrics":      metricsText,
		"error bodies": strings.Join(errs, "\n"),
		"database":     dbDump,
	}
	var redirects []string
	for _, l := range locs {
		if strings.HasPrefix(l, redirect) {
			// The code belongs here, and only the code.
			u, _ := url.Parse(l)
			qq := u.Query()
			qq.Del("code")
			u.RawQuery = qq.Encode()
			l = u.String()
		}
		redirects = append(redirects, l)
	}
	haystacks["redirects"] = strings.Join(redirects, "\n")
	if len(strings.Split(haystacks["logs"], "\n")) < 20 || !strings.Contains(haystacks["logs"], `"level":"DEBUG"`) {
		t.Fatalf("expected JSON debug logs, got:\n%s", haystacks["logs"])
	}
	if len(errs) < 4 || len(locs) < 4 || !strings.Contains(metricsText, "authd_") {
		t.Fatalf("too little collected: %d error bodies, %d redirects, metrics %d bytes", len(errs), len(locs), len(metricsText))
	}
	for where, text := range haystacks {
		for _, sec := range secrets {
			if strings.Contains(text, sec) {
				i := strings.Index(text, sec)
				lo, hi := max(0, i-200), min(len(text), i+len(sec)+50)
				t.Errorf("a secret (%.12s…) appears in the %s: …%s…", sec, where, text[lo:hi])
			}
		}
	}
}

// signingKeyForms decrypts the stored signing keys with the configured
// encryption secret and returns every form their private part could leak
// in: PKCS #8 DER as hex (Postgres' bytea text form) and base64, PEM, and
// the private scalar as hex and base64url (JWK "d").
func signingKeyForms(t *testing.T, s *secEnv) []string {
	t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT id, encrypted_private_key, convert_from(public_jwk, 'UTF8') FROM signing_keys`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	block, _ := aes.NewCipher(keys.DeriveKEK(testEncryptionSecret))
	aead, _ := cipher.NewGCM(block)
	var forms []string
	n := 0
	for rows.Next() {
		var kid, pub string
		var sealed []byte
		if err := rows.Scan(&kid, &sealed, &pub); err != nil {
			t.Fatal(err)
		}
		der, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(kid))
		if err != nil {
			t.Fatalf("stored key %s does not decrypt as documented: %v", kid, err)
		}
		priv, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatal(err)
		}
		forms = append(forms, hex.EncodeToString(der), base64.StdEncoding.EncodeToString(der)[:60],
			string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
		if ec, ok := priv.(*ecdsa.PrivateKey); ok {
			d, _ := ec.Bytes()
			forms = append(forms, hex.EncodeToString(d), base64.RawURLEncoding.EncodeToString(d))
		}
		// public_jwk is bytea holding the JSON: parse it, so that a private
		// member is found whatever the spacing.
		var jwk map[string]any
		if err := json.Unmarshal([]byte(pub), &jwk); err != nil {
			t.Fatalf("public JWK of %s is not JSON: %v: %q", kid, err, pub)
		}
		if jwk["kty"] == nil || jwk["kid"] != kid {
			t.Errorf("public JWK of %s is not a JWK of that key: %s", kid, pub)
		}
		if ec, ok := priv.(*ecdsa.PrivateKey); ok {
			p, _ := ec.PublicKey.Bytes() // 0x04 || X || Y
			if jwk["x"] != base64.RawURLEncoding.EncodeToString(p[1:33]) || jwk["y"] != base64.RawURLEncoding.EncodeToString(p[33:]) {
				t.Errorf("public JWK of %s is not the public half of the stored key: %s", kid, pub)
			}
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := jwk[private]; ok {
				t.Errorf("public JWK of %s holds the private parameter %q: %s", kid, private, pub)
			}
		}
		n++
	}
	if n == 0 {
		t.Fatal("no signing keys stored")
	}
	return forms
}

// dumpDatabase renders every row of every table in authd's schema as text.
func dumpDatabase(t *testing.T, s *secEnv) string {
	t.Helper()
	ctx := context.Background()
	rows, err := s.db.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("only %d tables: %v", len(tables), tables)
	}
	var out strings.Builder
	for _, tbl := range tables {
		rows, err := s.db.Query(ctx, `SELECT t::text FROM "`+tbl+`" t`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			rows.Scan(&line)
			out.WriteString(tbl + ": " + line + "\n")
		}
		rows.Close()
	}
	return out.String()
}
