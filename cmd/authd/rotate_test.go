package main

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream/upstreamtest"
	"github.com/authd/authd/internal/upstreamtokens"
)

// The secrets of TestRotateEncryptionSecretEndToEnd: rotateSecretA is the
// broker environment's configured keys.encryption_secret.
const (
	rotateSecretA = "test-encryption-secret-0123456789abcdef"
	rotateSecretB = "rotated-encryption-secret-0123456789abcdef"
)

// Rotating keys.encryption_secret the way the README says, on Postgres
// with the real commands: a deployment under secret A has a signing key
// and kept GitHub grants of two users. Started with B alone before
// re-encryption, serve refuses to start with an error naming the remedy
// and changes nothing (no new signing key that would invalidate issued
// tokens). Started with B and A as a previous secret, tokens signed before
// verify, the same key signs, the kept grants are handed out, and what is
// written anew (a refreshed grant, a rotated-in key) is under B. `authd
// keys reencrypt`, run while that replica serves, moves the rest to B and
// a second run finds nothing to do. Then B alone serves everything: the
// same key signs, a grant re-encrypted from A refreshes at GitHub.
func TestRotateEncryptionSecretEndToEnd(t *testing.T) {
	t.Parallel()
	e := newBrokerEnv(t)
	e.github.AddUser(upstreamtest.GitHubUser{
		ID: 2003, Login: "alice", Name: "Alice",
		Emails: []upstreamtest.GitHubEmail{{Email: "alice@example.com", Primary: true, Verified: true}},
		Orgs:   []string{"acme"},
	})
	ctx := context.Background()
	rA := e.start(t)
	e.github.SetNextUser("bob")
	confBob, tokBob := e.signIn(t, rA)
	e.github.SetNextUser("alice")
	e.signIn(t, rA)
	kid := kidOf(t, tokBob.AccessToken)
	bob, err := rA.store.FindUser(ctx, "github", "2002")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := rA.store.FindUser(ctx, "github", "2003")
	if err != nil {
		t.Fatal(err)
	}
	rA.app.close()
	// Later replicas are the same deployment: the same issuer.
	issuer := rA.URL
	onReplica := func(r *brokerApp) *oauth2.Config {
		c := *confBob
		c.Endpoint.TokenURL = r.URL + "/token"
		return &c
	}
	verifies := func(r *brokerApp, raw string) error {
		_, err := jwt.Parse(raw, r.app.keys.Keyfunc, jwt.WithValidMethods(r.app.keys.Algorithms()), jwt.WithTimeFunc(e.clock.Now))
		return err
	}
	snapshot := func() (any, any) {
		keys, err := rA.store.ListSigningKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ups []store.UpstreamToken
		for _, u := range []string{bob.ID, alice.ID} {
			r, err := rA.store.ListUpstreamTokens(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			ups = append(ups, r...)
		}
		return keys, ups
	}

	// B alone before re-encryption: serve exits with the documented error
	// and writes nothing.
	keysBefore, upsBefore := snapshot()
	serveCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var out, logs syncBuffer
	err = run(serveCtx, []string{"serve", "--config", e.cfg}, envOf(map[string]string{
		"AUTHD_DATABASE_URL": e.dsn, "AUTHD_ISSUER": issuer, "AUTHD_LISTEN": freeAddr(t),
		"AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretB,
	}), &out, &logs)
	if err == nil || !strings.Contains(err.Error(), "keys.previous_encryption_secrets") || !strings.Contains(err.Error(), "authd keys reencrypt") {
		t.Fatalf("serve with only the new secret: %v, want the error naming keys.previous_encryption_secrets and authd keys reencrypt\n%s", err, logs.String())
	}
	if errors.Is(serveCtx.Err(), context.DeadlineExceeded) {
		t.Fatal("serve with only the new secret started")
	}
	if keysAfter, upsAfter := snapshot(); !reflect.DeepEqual(keysAfter, keysBefore) || !reflect.DeepEqual(upsAfter, upsBefore) {
		t.Fatal("the refused start changed the stored signing keys or kept upstream tokens")
	}

	// B, with A kept as a previous secret.
	rotated := map[string]string{"AUTHD_ISSUER": issuer, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretB, "AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS": rotateSecretA}
	rBA := e.startWith(t, rotated)
	if err := verifies(rBA, tokBob.AccessToken); err != nil {
		t.Fatalf("a token signed under the old secret: %v", err)
	}
	tokBob, err = refresh(onReplica(rBA), tokBob)
	if err != nil {
		t.Fatalf("refresh after the secret changed: %v", err)
	}
	if got := kidOf(t, tokBob.AccessToken); got != kid {
		t.Fatalf("signing with %s after the secret changed, want the same key %s", got, kid)
	}
	for _, u := range []store.User{bob, alice} {
		up, err := rBA.app.upstreamTokens.Token(ctx, u.ID, "github")
		if err != nil {
			t.Fatalf("kept grant of %s sealed under the old secret: %v", u.Login, err)
		}
		if got := e.githubLogin(t, up.AccessToken); got != u.Login {
			t.Fatalf("the kept grant of %s works at GitHub as %q", u.Login, got)
		}
	}
	// Written anew: bob's refreshed grant, a rotated-in signing key.
	e.clock.Advance(9 * time.Hour)
	if _, err := rBA.app.upstreamTokens.Token(ctx, bob.ID, "github"); err != nil {
		t.Fatalf("refreshing bob's kept grant: %v", err)
	}
	current, err := upstreamtokens.NewKeyring(rotateSecretB)
	if err != nil {
		t.Fatal(err)
	}
	// The replica logged its secret's fingerprint at start-up (and
	// recorded it, so that reencrypt below goes ahead without --force).
	if !strings.Contains(rBA.logs.String(), `"msg":"encryption secret in use","fingerprint":"`+current.KeyID()+`"`) {
		t.Fatalf("the replica did not log its encryption secret's fingerprint %s at start-up:\n%s", current.KeyID(), rBA.logs.String())
	}
	if row, err := rBA.store.GetUpstreamToken(ctx, bob.ID, "github"); err != nil || row.KeyID != current.KeyID() {
		t.Fatalf("the refreshed grant is sealed under key %q (%v), want the new secret's %q", row.KeyID, err, current.KeyID())
	}
	// (On the test clock, so that the new key is not due for an hour.)
	if _, err := rBA.app.keys.Rotate(ctx, false); err != nil {
		t.Fatalf("rotating in a signing key: %v", err)
	}

	// Re-encrypt while rBA serves.
	cli := map[string]string{"AUTHD_DATABASE_URL": e.dsn, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretB, "AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS": rotateSecretA}
	stdout, stderr, err := cliResult(cli, "keys", "reencrypt", "-o", "json")
	if err != nil {
		t.Fatalf("keys reencrypt: %v\n%s", err, stderr)
	}
	var res reencryptResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("keys reencrypt -o json: %v\n%s", err, stdout)
	}
	if res.Fingerprint != current.KeyID() {
		t.Fatalf("keys reencrypt -o json: fingerprint %q, want the one the replica logged, %q", res.Fingerprint, current.KeyID())
	}
	if sk, ut := res.SigningKeys, res.UpstreamTokens; sk.Reencrypted != 1 || sk.Current != 1 || len(sk.Undecryptable) != 0 ||
		ut.Resealed != 1 || ut.Current != 1 || ut.Undecryptable != 0 {
		t.Fatalf("keys reencrypt: %s; want the first key and alice's grant re-encrypted, the rotated-in key and bob's refreshed grant current", stdout)
	}
	if !strings.Contains(stderr, "run again to confirm") || strings.Contains(stderr, "can be removed") {
		t.Fatalf("keys reencrypt that re-encrypted rows does not ask for a confirming run:\n%s", stderr)
	}
	stdout, stderr, err = cliResult(cli, "keys", "reencrypt")
	if err != nil || !strings.Contains(stdout, "signing keys: 0 re-encrypted, 2 already under the current secret") ||
		!strings.Contains(stdout, "kept upstream tokens: 0 re-encrypted, 2 already under the current secret") {
		t.Fatalf("second keys reencrypt: %v\n%s", err, stdout)
	}
	if !strings.Contains(stderr, "keys.previous_encryption_secrets can be removed") {
		t.Fatalf("the confirming keys reencrypt does not say the previous secret can go:\n%s", stderr)
	}
	// The replica that served through it still signs and hands out grants.
	if tokBob, err = refresh(onReplica(rBA), tokBob); err != nil || kidOf(t, tokBob.AccessToken) != kid {
		t.Fatalf("refresh at the replica serving during re-encryption: %v", err)
	}
	if _, err := rBA.app.upstreamTokens.Token(ctx, bob.ID, "github"); err != nil {
		t.Fatalf("bob's kept grant at the replica serving during re-encryption: %v", err)
	}

	// B alone.
	rB := e.startWith(t, map[string]string{"AUTHD_ISSUER": issuer, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretB})
	if err := verifies(rB, tokBob.AccessToken); err != nil {
		t.Fatalf("a token signed before re-encryption: %v", err)
	}
	if tokBob, err = refresh(onReplica(rB), tokBob); err != nil {
		t.Fatalf("refresh with only the new secret: %v", err)
	}
	if got := kidOf(t, tokBob.AccessToken); got != kid {
		t.Fatalf("signing with %s with only the new secret, want the same key %s", got, kid)
	}
	// alice's grant, re-encrypted from A, has expired: it refreshes with
	// the refresh token re-encrypted under B.
	up, err := rB.app.upstreamTokens.Token(ctx, alice.ID, "github")
	if err != nil {
		t.Fatalf("alice's re-encrypted grant with only the new secret: %v", err)
	}
	if got := e.githubLogin(t, up.AccessToken); got != "alice" {
		t.Fatalf("alice's refreshed grant works at GitHub as %q", got)
	}
	if ok, refused := e.github.Refreshes(); ok != 2 || refused != 0 {
		t.Fatalf("GitHub saw %d refreshes (%d refused), want bob's and alice's", ok, refused)
	}
	if _, err := rB.app.upstreamTokens.Token(ctx, bob.ID, "github"); err != nil {
		t.Fatalf("bob's grant with only the new secret: %v", err)
	}
}

// keys.previous_encryption_secrets: a comma-separated list in the
// environment (as every list of strings), a YAML list in the file; each at
// least 32 characters, neither the current secret nor listed twice, and
// never printed, not even in an error.
func TestPreviousEncryptionSecretsConfig(t *testing.T) {
	t.Parallel()
	const p1, p2 = "previous-secret-one-0123456789abcdef", "previous-secret-two-0123456789abcdef"
	path := writeFile(t, validYAML)
	cfg, err := loadConfig(flagsFor(t, "--config", path), envOf(map[string]string{"AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS": p1 + "," + p2}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Keys.PreviousEncryptionSecrets; !reflect.DeepEqual(got, []string{p1, p2}) {
		t.Fatalf("from the environment: %d secrets, want 2", len(got))
	}
	inFile := strings.Replace(validYAML, "keys:\n", "keys:\n  previous_encryption_secrets: ["+p2+"]\n", 1)
	if cfg, err = loadConfig(flagsFor(t, "--config", writeFile(t, inFile)), envOf(nil)); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Keys.PreviousEncryptionSecrets; !reflect.DeepEqual(got, []string{p2}) {
		t.Fatalf("from the file: %d secrets, want 1", len(got))
	}

	const current = "0123456789abcdef0123456789abcdef" // validYAML's
	for _, tc := range []struct {
		name, value string
		want        []string
	}{
		{"short", p1 + ",short-previous-secret", []string{"keys.previous_encryption_secrets[1]", "at least 32 characters"}},
		{"the current one", current, []string{"keys.previous_encryption_secrets[0]", "keys.encryption_secret itself"}},
		{"twice", p1 + "," + p2 + "," + p1, []string{"keys.previous_encryption_secrets[2]", "listed twice"}},
		{"a space after the comma", p1 + ", " + p2, []string{"keys.previous_encryption_secrets[1]", "whitespace"}},
		{"a trailing newline", p1 + "\n", []string{"keys.previous_encryption_secrets[0]", "whitespace"}},
	} {
		_, err := loadConfig(flagsFor(t, "--config", path), envOf(map[string]string{"AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS": tc.value}))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: the error does not say %q:\n%v", tc.name, w, err)
			}
		}
		for _, s := range []string{p1, p2, "short-previous-secret", current} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: the error prints a secret:\n%v", tc.name, err)
			}
		}
	}
	noCurrent := strings.Replace(validYAML, "  encryption_secret: 0123456789abcdef0123456789abcdef\n", "  pem_files: [/nonexistent.pem]\n", 1)
	_, err = loadConfig(flagsFor(t, "--config", writeFile(t, noCurrent)), envOf(map[string]string{"AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS": p1}))
	if err == nil || !strings.Contains(err.Error(), "keys.previous_encryption_secrets[0]: needs keys.encryption_secret") {
		t.Errorf("previous secrets without a current one: %v", err)
	}
}

// `authd keys reencrypt` run without the secret a stored key needs: exit
// status 1 naming the key and the setting, nothing rewritten; with it, the
// key moves and the command says the previous secret can go.
func TestReencryptCommandRefusesWhatItCannotDecrypt(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	underA := map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretA}
	out, logs, err := cliResult(underA, "keys", "list", "-o", "json") // creates the first key, under A
	if err != nil {
		t.Fatalf("keys list: %v\n%s", err, logs)
	}
	var listed []struct {
		ID string `json:"kid"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != 1 {
		t.Fatalf("keys list -o json: %v\n%s", err, out)
	}
	out, _, err = cliResult(map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretB}, "keys", "reencrypt")
	if err == nil || !strings.Contains(err.Error(), listed[0].ID) || !strings.Contains(err.Error(), "keys.previous_encryption_secrets") {
		t.Fatalf("keys reencrypt without the old secret: %v, want an error naming key %s and keys.previous_encryption_secrets", err, listed[0].ID)
	}
	if !strings.Contains(out, "signing keys: 0 re-encrypted, 0 already under the current secret, 0 changed meanwhile, 1 undecryptable") {
		t.Fatalf("keys reencrypt without the old secret printed:\n%s", out)
	}
	if _, logs, err := cliResult(underA, "keys", "list"); err != nil {
		t.Fatalf("the key no longer decrypts under its secret after a refused reencrypt: %v\n%s", err, logs)
	}
	// (--force: no replica has started with B on this database.)
	withA := map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretB,
		"AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS": rotateSecretA}
	out, logs, err = cliResult(withA, "keys", "reencrypt", "--force")
	if err != nil || !strings.Contains(out, "signing keys: 1 re-encrypted") || !strings.Contains(logs, "run again to confirm") {
		t.Fatalf("keys reencrypt with the old secret as a previous one: %v\n%s%s", err, out, logs)
	}
	if out, logs, err = cliResult(withA, "keys", "reencrypt"); err != nil || !strings.Contains(logs, "can be removed") {
		t.Fatalf("the confirming keys reencrypt: %v\n%s%s", err, out, logs)
	}
	if _, logs, err := cliResult(map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretB}, "keys", "list"); err != nil {
		t.Fatalf("keys list with only the new secret after reencrypt: %v\n%s", err, logs)
	}
}
