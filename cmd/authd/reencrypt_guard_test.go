package main

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstreamtokens"
)

// rotateSecretTypo is what an operator might pass as the current secret
// by mistake: no replica runs with it.
const rotateSecretTypo = "rotated-encryption-secret-0123456789abcdeg"

// `authd keys reencrypt` with a current secret no replica has started
// with (a typo, a regenerated one) and the right previous one, which
// decrypts everything: it refuses and rewrites nothing, printing the
// fingerprint; --dry-run counts and writes nothing; --force re-encrypts.
func TestReencryptRefusesUnknownCurrentSecret(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	underA := map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretA}
	if _, logs, err := cliResult(underA, "keys", "list"); err != nil { // the first key, under A
		t.Fatalf("keys list: %v\n%s", err, logs)
	}
	st, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// A replica started with A (and so recorded A, not the typo).
	fpA, err := upstreamtokens.Fingerprint(rotateSecretA)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RecordEncryptionSecret(ctx, fpA, time.Now()); err != nil {
		t.Fatal(err)
	}
	before, err := st.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string) {
		t.Helper()
		after, err := st.ListSigningKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(after, before) {
			t.Fatalf("%s rewrote the stored signing key", what)
		}
	}
	fpTypo, err := upstreamtokens.Fingerprint(rotateSecretTypo)
	if err != nil {
		t.Fatal(err)
	}
	typo := map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretTypo,
		"AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS": rotateSecretA}

	out, logs, err := cliResult(typo, "keys", "reencrypt")
	if err == nil || !strings.Contains(err.Error(), "fingerprint "+fpTypo) || !strings.Contains(err.Error(), fpA) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("keys reencrypt under a secret no replica has: %v, want a refusal naming its fingerprint %s, the recorded %s and --force\n%s%s", err, fpTypo, fpA, out, logs)
	}
	if !strings.Contains(out, "fingerprint: "+fpTypo) || !strings.Contains(out, "signing keys: 0 re-encrypted") {
		t.Fatalf("refused keys reencrypt printed:\n%s", out)
	}
	for _, s := range []string{rotateSecretA, rotateSecretTypo} {
		if strings.Contains(out+logs+err.Error(), s) {
			t.Fatal("keys reencrypt printed a secret")
		}
	}
	unchanged("a refused keys reencrypt")

	out, logs, err = cliResult(typo, "keys", "reencrypt", "--dry-run", "-o", "json")
	if err != nil {
		t.Fatalf("keys reencrypt --dry-run: %v\n%s", err, logs)
	}
	var res reencryptResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("keys reencrypt --dry-run -o json: %v\n%s", err, out)
	}
	if want := (reencryptResult{Fingerprint: fpTypo, DryRun: true, SigningKeys: keys.ReencryptResult{Pending: 1}}); !reflect.DeepEqual(res, want) {
		t.Fatalf("keys reencrypt --dry-run: %+v, want %+v", res, want)
	}
	if !strings.Contains(logs, "dry run, nothing written: 1 signing keys") {
		t.Fatalf("keys reencrypt --dry-run said:\n%s", logs)
	}
	unchanged("keys reencrypt --dry-run")

	// --force: the operator vouches for the secret.
	out, logs, err = cliResult(typo, "keys", "reencrypt", "--force")
	if err != nil || !strings.Contains(out, "signing keys: 1 re-encrypted") {
		t.Fatalf("keys reencrypt --force: %v\n%s%s", err, out, logs)
	}
	if _, logs, err := cliResult(map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretTypo}, "keys", "list"); err != nil {
		t.Fatalf("keys list under the forced secret: %v\n%s", err, logs)
	}
}

// A mixed set across both kinds: the signing key decrypts under the
// previous secret, but a kept upstream token is sealed under a secret not
// configured. `authd keys reencrypt` rewrites nothing, the signing key
// included, and names the fingerprint the token needs.
func TestReencryptCommandMixedWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	underA := map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretA}
	if _, logs, err := cliResult(underA, "keys", "list"); err != nil {
		t.Fatalf("keys list: %v\n%s", err, logs)
	}
	st, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fpB, err := upstreamtokens.Fingerprint(rotateSecretB)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RecordEncryptionSecret(ctx, fpB, time.Now()); err != nil { // replicas run B
		t.Fatal(err)
	}
	now := time.Now()
	u, err := st.UpsertUser(ctx, store.User{Provider: "github", Subject: "42", Login: "octo", CreatedAt: now, UpdatedAt: now, LastLoginAt: now})
	if err != nil {
		t.Fatal(err)
	}
	const lostFP = "00112233aabbccdd"
	row := store.UpstreamToken{UserID: u.ID, Upstream: "github", KeyID: lostFP, Sealed: []byte("sealed under a lost secret"), Refreshable: true, CreatedAt: now, UpdatedAt: now}
	if err := st.PutUpstreamToken(ctx, row); err != nil {
		t.Fatal(err)
	}
	keysBefore, err := st.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}

	cli := map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_KEYS_ENCRYPTION_SECRET": rotateSecretB, "AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS": rotateSecretA}
	out, logs, err := cliResult(cli, "keys", "reencrypt")
	if err == nil || !strings.Contains(err.Error(), lostFP+": 1") || !strings.Contains(err.Error(), "nothing was re-encrypted") {
		t.Fatalf("keys reencrypt with a token under an unconfigured secret: %v, want an error naming %s and that nothing was re-encrypted\n%s%s", err, lostFP, out, logs)
	}
	if !strings.Contains(out, "signing keys: 0 re-encrypted, 0 already under the current secret, 0 changed meanwhile, 0 undecryptable, 1 still under a previous secret") {
		t.Fatalf("keys reencrypt printed:\n%s", out)
	}
	if keysAfter, err := st.ListSigningKeys(ctx); err != nil || !reflect.DeepEqual(keysAfter, keysBefore) {
		t.Fatalf("keys reencrypt rewrote the signing key while a kept upstream token was undecryptable (%v)", err)
	}
	if got, err := st.GetUpstreamToken(ctx, u.ID, "github"); err != nil || got.KeyID != lostFP || !bytes.Equal(got.Sealed, row.Sealed) {
		t.Fatalf("keys reencrypt changed the undecryptable row (%v)", err)
	}

	// The secret is lost: --force moves the signing key and leaves the row.
	out, logs, err = cliResult(cli, "keys", "reencrypt", "--force")
	if err == nil || !strings.Contains(err.Error(), "left as they are") || !strings.Contains(out, "signing keys: 1 re-encrypted") {
		t.Fatalf("keys reencrypt --force: %v\n%s%s", err, out, logs)
	}
}

// The verdict after a run: only a run that re-encrypted nothing and saw
// nothing change says the previous secrets can go (README, step 3).
func TestReencryptVerdict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		res  reencryptResult
		want string
	}{
		{"signing keys re-encrypted", reencryptResult{SigningKeys: keys.ReencryptResult{Reencrypted: 1, Current: 1}}, "run again"},
		{"tokens re-encrypted", reencryptResult{UpstreamTokens: upstreamtokens.ResealResult{Resealed: 3}}, "run again"},
		{"changed meanwhile", reencryptResult{UpstreamTokens: upstreamtokens.ResealResult{Changed: 1, Current: 2}}, "run again"},
		{"nothing to do", reencryptResult{SigningKeys: keys.ReencryptResult{Current: 2}, UpstreamTokens: upstreamtokens.ResealResult{Current: 2}}, "can be removed"},
	} {
		var w bytes.Buffer
		if err := reencryptVerdict(tc.res, 1, &w); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !strings.Contains(w.String(), tc.want) {
			t.Errorf("%s: the verdict says %q, want %q", tc.name, w.String(), tc.want)
		}
		if tc.want != "can be removed" && strings.Contains(w.String(), "keys.previous_encryption_secrets can be removed") {
			t.Errorf("%s: the verdict says the previous secrets can be removed: %q", tc.name, w.String())
		}
	}
}
