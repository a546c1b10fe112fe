package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/authd/authd/internal/keys"
)

func newKeysCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "keys rotate|list", Short: "Manage JWT signing keys",
		Long: "Manage JWT signing keys. Needs the database and keys.encryption_secret (or keys.pem_files),\n" +
			"nothing else of the server's configuration.",
		Example: "  authd keys list -o json\n  authd keys rotate          # publish a new key now, sign with it after keys.prepublish\n" +
			"  authd keys rotate --now    # after a suspected compromise"}
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
	cmd.AddCommand(rotate, list)
	return cmd
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
