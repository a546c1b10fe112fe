package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstreamtokens"
)

// recordEncryptionSecret logs the fingerprint of keys.encryption_secret
// and records in the database that a replica started with it, once the
// signing keys have loaded under it: `authd keys reencrypt` refuses to
// move what is stored under a secret no replica has started with (a
// mistyped or regenerated one would strand it).
func recordEncryptionSecret(ctx context.Context, d deps) error {
	if d.cfg.Keys.EncryptionSecret == "" {
		return nil // keys.pem_files or --dev: nothing is encrypted under an operator's secret
	}
	fp, err := upstreamtokens.Fingerprint(d.cfg.Keys.EncryptionSecret)
	if err != nil {
		return err
	}
	d.log.InfoContext(ctx, "encryption secret in use", "fingerprint", fp, "previous_secrets", len(d.cfg.Keys.PreviousEncryptionSecrets))
	if err := d.store.RecordEncryptionSecret(ctx, fp, d.now()); err != nil {
		return fmt.Errorf("recording the encryption secret's fingerprint: %w", err)
	}
	return nil
}

// checkFingerprintRecorded is reencrypt's guard: nil if a replica started
// with the secret of fingerprint fp.
func checkFingerprintRecorded(fp string, recorded []store.EncryptionSecret) error {
	if slices.ContainsFunc(recorded, func(r store.EncryptionSecret) bool { return r.Fingerprint == fp }) {
		return nil
	}
	seen := "none has been recorded (replicas record theirs at start-up)"
	if len(recorded) > 0 {
		var l []string
		for _, r := range recorded {
			l = append(l, fmt.Sprintf("%s (last started %s)", r.Fingerprint, r.LastSeenAt.UTC().Format(time.RFC3339)))
		}
		seen = "replicas started with " + strings.Join(l, ", ")
	}
	return fmt.Errorf("keys.encryption_secret has fingerprint %s, and no replica has started with it against this database (%s): "+
		"re-encrypting under it could move everything where no replica can decrypt it, so nothing was written. "+
		"Check the secret against the fingerprint a replica logs at start-up (\"encryption secret in use\"); "+
		"start the replicas with it first, or run again with --force if it is right", fp, seen)
}
