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
	cmd := &cobra.Command{Use: "keys rotate|list", Short: "Manage JWT signing keys"}
	var now bool
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Add a new signing key: published in JWKS at once, signing after keys.prepublish (or --now)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), e.getenv)
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
		Use:   "list",
		Short: "List signing keys and their state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), e.getenv)
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

func newPurgeCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "purge",
		Short: "Delete expired codes, requests, sessions, tokens, revocations and idle dynamic clients once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := storeOpener(e, cmd.Flags())(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := st.Purge(cmd.Context(), e.now())
			if err != nil {
				return err
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
}

func newStatsCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Print counts of clients, users, active grants and refresh tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := storeOpener(e, cmd.Flags())(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			s, err := st.Stats(cmd.Context(), e.now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "clients: %d\nusers: %d\nactive grants: %d\nrefresh tokens: %d\n",
				s.Clients, s.Users, s.ActiveGrants, s.RefreshTokens)
			return nil
		},
	}
}
