package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/upstreamtokens"
)

func newKeysCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "keys rotate|list|reencrypt", Short: "Manage JWT signing keys and the encryption secret",
		Long: "Manage JWT signing keys. Needs the database and keys.encryption_secret (or keys.pem_files),\n" +
			"nothing else of the server's configuration.",
		Example: "  authd keys list -o json\n  authd keys rotate          # publish a new key now, sign with it after keys.prepublish\n" +
			"  authd keys rotate --now    # after a suspected compromise\n" +
			"  authd keys reencrypt       # after changing keys.encryption_secret"}
	addDatabaseFlag(cmd.PersistentFlags())
	var now bool
	rotate := &cobra.Command{
		Use:     "rotate",
		Short:   "Add a new signing key: published in JWKS at once, signing after keys.prepublish (or --now)",
		Example: "  authd keys rotate\n  authd keys rotate --now   # key compromise: sign with the new key at once",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfigFor(cmd.Flags(), e.getenv, keysSettings...)
			if err != nil {
				return err
			}
			st, err := storeOpener(e, cmd.Flags())(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			m, err := keys.New(cmd.Context(), st, keyOptions(cfg, e.now, newLogger(cfg, e.stderr)))
			if err != nil {
				return err
			}
			kid, err := m.Rotate(cmd.Context(), now)
			if err != nil {
				return err
			}
			if now {
				fmt.Fprintf(cmd.OutOrStdout(), "added key %s; it signs now and the previous key is withdrawn: tokens it signed no longer verify, clients must refresh\n", kid)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added key %s; it is published now and signs after %s\n", kid, cfg.Keys.Prepublish)
			return nil
		},
	}
	rotate.Flags().BoolVar(&now, "now", false, "activate the new key immediately and withdraw the old one (key compromise)")
	var output string
	list := &cobra.Command{
		Use:     "list",
		Short:   "List signing keys and their state",
		Example: "  authd keys list\n  authd keys list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfigFor(cmd.Flags(), e.getenv, keysSettings...)
			if err != nil {
				return err
			}
			st, err := storeOpener(e, cmd.Flags())(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			m, err := keys.New(cmd.Context(), st, keyOptions(cfg, e.now, newLogger(cfg, e.stderr)))
			if err != nil {
				return err
			}
			infos, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(infos)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED")
			for _, k := range infos {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, k.State, k.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.AddCommand(rotate, list, newReencryptCmd(e))
	return cmd
}

// reencryptResult is what `authd keys reencrypt -o json` prints.
type reencryptResult struct {
	// Fingerprint is keys.encryption_secret's (upstreamtokens.Fingerprint).
	Fingerprint    string                      `json:"fingerprint"`
	DryRun         bool                        `json:"dry_run,omitempty"`
	SigningKeys    keys.ReencryptResult        `json:"signing_keys"`
	UpstreamTokens upstreamtokens.ResealResult `json:"upstream_tokens"`
}

func newReencryptCmd(e *env) *cobra.Command {
	var (
		output        string
		dryRun, force bool
	)
	cmd := &cobra.Command{
		Use:   "reencrypt",
		Short: "Re-encrypt the stored signing keys and kept upstream tokens under the current keys.encryption_secret",
		Long: "Re-encrypt every stored signing key and kept upstream token that is encrypted with one of\n" +
			"keys.previous_encryption_secrets under keys.encryption_secret, a bounded batch per statement.\n" +
			"Run it once every replica runs with the new keys.encryption_secret (and the old one among the\n" +
			"previous ones); replicas keep serving meanwhile. It first looks at everything without writing:\n" +
			"if anything is encrypted with a secret that is not configured, or no replica has started with\n" +
			"keys.encryption_secret (its fingerprint, printed here, is what replicas log at start-up), it\n" +
			"writes nothing. It is idempotent: once a run re-encrypts nothing and sees nothing change, the\n" +
			"previous secrets can be removed.",
		Example: "  AUTHD_KEYS_ENCRYPTION_SECRET=$NEW AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS=$OLD authd keys reencrypt --dry-run\n" +
			"  AUTHD_KEYS_ENCRYPTION_SECRET=$NEW AUTHD_KEYS_PREVIOUS_ENCRYPTION_SECRETS=$OLD authd keys reencrypt",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			cfg, err := loadConfigFor(cmd.Flags(), e.getenv, keysSettings...)
			if err != nil {
				return err
			}
			if cfg.Keys.EncryptionSecret == "" {
				return errors.New("keys.encryption_secret is required: it is the secret everything is re-encrypted under")
			}
			kr, err := upstreamtokens.NewKeyring(cfg.Keys.EncryptionSecret, cfg.Keys.PreviousEncryptionSecrets...)
			if err != nil {
				return err
			}
			st, err := storeOpener(e, cmd.Flags())(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			ctx := cmd.Context()
			current, previous := keys.DeriveKEK(cfg.Keys.EncryptionSecret), previousKEKs(cfg)
			res := reencryptResult{Fingerprint: kr.KeyID(), DryRun: dryRun}
			// Look at everything before writing anything: one secret
			// missing (or a mistyped current one) must not leave some rows
			// moved and the rest stranded.
			if res.SigningKeys, err = keys.PlanReencrypt(ctx, st, current, previous); err != nil {
				return err
			}
			if res.UpstreamTokens, err = kr.PlanReseal(ctx, st); err != nil {
				return err
			}
			undecryptable := len(res.SigningKeys.Undecryptable) > 0 || res.UpstreamTokens.Undecryptable > 0
			var refused error
			if !dryRun && res.SigningKeys.Pending+res.UpstreamTokens.Pending > 0 && (!undecryptable || force) {
				if !force {
					recorded, err := st.ListEncryptionSecrets(ctx)
					if err != nil {
						return err
					}
					refused = checkFingerprintRecorded(res.Fingerprint, recorded)
				}
				if refused == nil {
					if res.SigningKeys, err = keys.Reencrypt(ctx, st, current, previous, force); err != nil {
						return err
					}
					if res.UpstreamTokens, err = kr.Reseal(ctx, st, 0, force); err != nil {
						return err
					}
				}
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				if err := writeJSON(w, res); err != nil {
					return err
				}
			} else {
				sk, ut := res.SigningKeys, res.UpstreamTokens
				fmt.Fprintf(w, "keys.encryption_secret fingerprint: %s\n", res.Fingerprint)
				fmt.Fprintf(w, "signing keys: %d re-encrypted, %d already under the current secret, %d changed meanwhile, %d undecryptable, %d still under a previous secret\n",
					sk.Reencrypted, sk.Current, sk.Changed, len(sk.Undecryptable), sk.Pending)
				fmt.Fprintf(w, "kept upstream tokens: %d re-encrypted, %d already under the current secret, %d changed meanwhile, %d undecryptable, %d still under a previous secret\n",
					ut.Resealed, ut.Current, ut.Changed, ut.Undecryptable, ut.Pending)
			}
			if refused != nil {
				return refused
			}
			return reencryptVerdict(res, len(cfg.Keys.PreviousEncryptionSecrets), cmd.ErrOrStderr())
		},
	}
	addOutputFlag(cmd.Flags(), &output) // --database-url is the keys command's
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count what would be re-encrypted and what cannot be decrypted; write nothing")
	cmd.Flags().BoolVar(&force, "force", false, "re-encrypt even under a secret no replica has started with, and even while something is undecryptable (that is left as it is): only when you know the secret is right, or the missing one lost")
	return cmd
}

// reencryptVerdict tells the operator whether the previous secrets can go:
// an error (exit status 1) while anything is left that only a secret not
// configured could decrypt. Only a run that re-encrypted nothing and saw
// nothing change confirms that nothing is left under a previous secret: a
// run that re-encrypted rows may have raced a replica still sealing under
// an old current secret, and rows that changed meanwhile were rewritten
// by a replica or deleted.
func reencryptVerdict(res reencryptResult, previous int, w io.Writer) error {
	sk, ut := res.SigningKeys, res.UpstreamTokens
	if len(sk.Undecryptable) > 0 || ut.Undecryptable > 0 {
		msg := fmt.Sprintf("%d signing keys and %d kept upstream tokens are encrypted with a secret that is neither keys.encryption_secret nor one of keys.previous_encryption_secrets (or are damaged)", len(sk.Undecryptable), ut.Undecryptable)
		if len(sk.Undecryptable) > 0 {
			msg += fmt.Sprintf(" (signing keys: %s)", strings.Join(sk.Undecryptable, ", "))
		}
		if len(ut.UnknownKeys) > 0 {
			var l []string
			for kid, n := range ut.UnknownKeys {
				l = append(l, fmt.Sprintf("%s: %d", kid, n))
			}
			sort.Strings(l)
			msg += fmt.Sprintf(" (kept upstream tokens by the fingerprint of the secret they need: %s)", strings.Join(l, ", "))
		}
		if sk.Reencrypted+ut.Resealed > 0 || res.DryRun {
			msg += "; they were left as they are"
		} else {
			msg += "; nothing was re-encrypted"
		}
		return errors.New(msg + ". Add the secret they need to keys.previous_encryption_secrets and run again (check keys.encryption_secret too). " +
			"If that secret is lost, --force re-encrypts the rest and leaves them: kept upstream tokens under it only make their users sign in at the upstream again")
	}
	switch {
	case res.DryRun:
		fmt.Fprintf(w, "dry run, nothing written: %d signing keys and %d kept upstream tokens would be re-encrypted\n", sk.Pending, ut.Pending)
	case sk.Changed > 0 || ut.Changed > 0:
		fmt.Fprintf(w, "%d signing keys and %d kept upstream tokens changed while being re-encrypted (a refresh or sign-in rewrote them, or they were deleted); run again to check them before removing keys.previous_encryption_secrets\n", sk.Changed, ut.Changed)
	case sk.Reencrypted > 0 || ut.Resealed > 0:
		fmt.Fprintf(w, "%d signing keys and %d kept upstream tokens re-encrypted; run again to confirm before removing keys.previous_encryption_secrets (a run that re-encrypts nothing and sees nothing change confirms it)\n", sk.Reencrypted, ut.Resealed)
	case previous > 0:
		fmt.Fprintln(w, "everything stored is encrypted with keys.encryption_secret: keys.previous_encryption_secrets can be removed")
	}
	return nil
}

// keysSettings are the settings the keys commands use (besides the
// database URL).
var keysSettings = []string{"keys.", "tokens.access_token_lifetime", "log."}

func newPurgeCmd(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "purge",
		Short:   "Delete expired codes, requests, sessions, tokens, revocations and idle dynamic clients once",
		Example: "  authd purge --database-url postgres://authd:pw@db:5432/authd\n  authd purge -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			st, err := storeOpener(e, cmd.Flags())(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := st.Purge(cmd.Context(), e.now())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			names := make([]string, 0, len(res))
			for k := range res {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d deleted\n", k, res[k])
			}
			return nil
		},
	}
	addDatabaseFlag(cmd.Flags())
	addOutputFlag(cmd.Flags(), &output)
	return cmd
}

func newStatsCmd(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "stats",
		Short:   "Print counts of clients, users, active grants and refresh tokens",
		Example: "  authd stats\n  authd stats -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			st, err := storeOpener(e, cmd.Flags())(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			s, err := st.Stats(cmd.Context(), e.now())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]int64{
					"clients": s.Clients, "users": s.Users, "active_grants": s.ActiveGrants, "refresh_tokens": s.RefreshTokens,
				})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "clients: %d\nusers: %d\nactive grants: %d\nrefresh tokens: %d\n",
				s.Clients, s.Users, s.ActiveGrants, s.RefreshTokens)
			return nil
		},
	}
	addDatabaseFlag(cmd.Flags())
	addOutputFlag(cmd.Flags(), &output)
	return cmd
}
