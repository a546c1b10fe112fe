package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/authd/authd/internal/store"
)

// newUsersCmd is `authd users`: the operator's view of the users table.
// Users come into being by signing in, so there is no create; disabling one
// also revokes everything issued to them. Each disable and enable is logged
// to log as an audit record (nil: not logged).
func newUsersCmd(openStore func(ctx context.Context) (store.Store, error), now func() time.Time, log *slog.Logger) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users list|show|disable|enable",
		Short: "List users and disable or enable them",
		Long: "List users and disable or enable them. A user is named by id or by provider:subject\n" +
			"(the upstream connector id and the provider's immutable id, e.g. github:1234567).",
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &usersCmd{adminCmd{openStore: openStore, now: now, log: log}}
	cmd.AddCommand(u.list(), u.show(), u.disable(), u.enable())
	return cmd
}

type usersCmd struct{ adminCmd }

func (c *usersCmd) list() *cobra.Command {
	var f store.UserFilter
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List users, most recent sign-in first",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVar(&f.Provider, "provider", "", "only users of this upstream connector id")
	cmd.Flags().BoolVar(&f.Disabled, "disabled", false, "only disabled users")
	cmd.Flags().IntVar(&f.Limit, "limit", 0, "list at most this many users (0: all)")
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		out, err := output()
		if err != nil {
			return err
		}
		if f.Limit < 0 {
			return fmt.Errorf("--limit must not be negative, not %d", f.Limit)
		}
		return c.withStore(cmd, func(st store.Store) error {
			users, err := st.ListUsers(cmd.Context(), f)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out == "json" {
				views := make([]userView, 0, len(users))
				for _, u := range users {
					views = append(views, userViewOf(u))
				}
				return writeJSON(w, views)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPROVIDER\tSUBJECT\tLOGIN\tEMAIL\tDISABLED\tLAST SIGN-IN")
			for _, u := range users {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%s\n", u.ID, printable(u.Provider), printable(u.Subject),
					printable(u.Login), printable(u.Email), u.Disabled, u.LastLoginAt.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		})
	}
	return cmd
}

func (c *usersCmd) show() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show ID|PROVIDER:SUBJECT",
		Short: "Show one user",
		Args:  cobra.ExactArgs(1),
	}
	c.storeRunE(cmd, func(cmd *cobra.Command, args []string, out string, st store.Store) error {
		u, err := c.get(cmd.Context(), st, args[0])
		if err != nil {
			return err
		}
		if out == "json" {
			return writeJSON(cmd.OutOrStdout(), userViewOf(u))
		}
		return printUser(cmd, u)
	})
	return cmd
}

func (c *usersCmd) disable() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disable ID|PROVIDER:SUBJECT",
		Short: "Disable a user and revoke all their grants and tokens",
		Long: "Disable a user: they can no longer sign in, and in the same transaction every grant of\n" +
			"theirs is revoked with its refresh tokens and opaque access tokens. JWT access tokens\n" +
			"already issued fail /introspect and /verify at once but stay valid until they expire\n" +
			"for resource servers that only check their signature. Disabling again revokes whatever\n" +
			"is live.",
		Args: cobra.ExactArgs(1),
	}
	c.storeRunE(cmd, func(cmd *cobra.Command, args []string, out string, st store.Store) error {
		ctx := cmd.Context()
		u, err := c.get(ctx, st, args[0])
		if err != nil {
			return err
		}
		rev, err := st.DisableUser(ctx, u.ID, c.now())
		if err != nil {
			return err
		}
		c.log.InfoContext(ctx, "audit", "event", "user_disabled", "via", "cli", "user_id", u.ID,
			"provider", u.Provider, "grants_revoked", len(rev.Grants),
			"refresh_tokens_revoked", rev.RefreshTokens, "access_tokens_revoked", rev.AccessTokens)
		wasDisabled := u.Disabled
		u.Disabled = true
		return printDisabled(cmd, out, u, wasDisabled, rev)
	})
	return cmd
}

func (c *usersCmd) enable() *cobra.Command {
	return &cobra.Command{
		Use:   "enable ID|PROVIDER:SUBJECT",
		Short: "Let a disabled user sign in again; what was revoked stays revoked",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withStore(cmd, func(st store.Store) error {
				ctx := cmd.Context()
				u, err := c.get(ctx, st, args[0])
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if !u.Disabled {
					fmt.Fprintf(w, "user %s (%s) was not disabled\n", u.ID, userRef(u))
					return nil
				}
				if err := st.SetUserDisabled(ctx, u.ID, false); err != nil {
					return err
				}
				c.log.InfoContext(ctx, "audit", "event", "user_enabled", "via", "cli", "user_id", u.ID,
					"provider", u.Provider)
				fmt.Fprintf(w, "enabled user %s (%s); grants revoked when they were disabled stay revoked, "+
					"so their clients must sign them in again\n", u.ID, userRef(u))
				return nil
			})
		},
	}
}

// get finds the user named by ref: provider:subject when ref has a colon
// (connector ids have none; subjects may), else an id.
func (c *usersCmd) get(ctx context.Context, st store.Store, ref string) (store.User, error) {
	var u store.User
	var err error
	if provider, subject, ok := strings.Cut(ref, ":"); ok {
		u, err = st.FindUser(ctx, provider, subject)
	} else {
		u, err = st.GetUser(ctx, ref)
	}
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, fmt.Errorf("no user %q (give a user id or provider:subject)", printable(ref))
	}
	return u, err
}

// userRef is provider:subject, as the commands accept it.
func userRef(u store.User) string { return printable(u.Provider + ":" + u.Subject) }

// userView is how the CLI shows a user.
type userView struct {
	ID            string    `json:"id"`
	Provider      string    `json:"provider"`
	Subject       string    `json:"subject"`
	Login         string    `json:"login,omitempty"`
	Email         string    `json:"email,omitempty"`
	EmailVerified bool      `json:"email_verified"`
	Name          string    `json:"name,omitempty"`
	Groups        []string  `json:"groups,omitempty"`
	Domain        string    `json:"domain,omitempty"`
	Disabled      bool      `json:"disabled"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	LastLoginAt   time.Time `json:"last_login_at"`
}

func userViewOf(u store.User) userView {
	return userView{
		ID: u.ID, Provider: u.Provider, Subject: u.Subject, Login: u.Login,
		Email: u.Email, EmailVerified: u.EmailVerified, Name: u.Name, Groups: u.Groups, Domain: u.Domain,
		Disabled: u.Disabled, CreatedAt: u.CreatedAt.UTC(), UpdatedAt: u.UpdatedAt.UTC(), LastLoginAt: u.LastLoginAt.UTC(),
	}
}

// printUser prints one user as a table. Profile fields come from the
// upstream provider, so they are made printable.
func printUser(cmd *cobra.Command, u store.User) error {
	v := userViewOf(u)
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	row := func(k, val string) {
		if val != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, printable(val))
		}
	}
	row("id", v.ID)
	row("provider", v.Provider)
	row("subject", v.Subject)
	row("login", v.Login)
	row("email", v.Email)
	row("email_verified", fmt.Sprint(v.EmailVerified))
	row("name", v.Name)
	row("groups", strings.Join(v.Groups, " "))
	row("domain", v.Domain)
	row("disabled", fmt.Sprint(v.Disabled))
	row("created_at", v.CreatedAt.Format(time.RFC3339))
	row("updated_at", v.UpdatedAt.Format(time.RFC3339))
	row("last_login_at", v.LastLoginAt.Format(time.RFC3339))
	return tw.Flush()
}

// disabledView is what `users disable -o json` prints.
type disabledView struct {
	User                 userView    `json:"user"`
	WasDisabled          bool        `json:"was_disabled"`
	RevokedGrants        []grantView `json:"revoked_grants"`
	RevokedRefreshTokens int64       `json:"revoked_refresh_tokens"`
	RevokedAccessTokens  int64       `json:"revoked_access_tokens"`
}

type grantView struct {
	ID        string    `json:"grant_id"`
	ClientID  string    `json:"client_id"`
	Scopes    []string  `json:"scopes,omitempty"`
	Resources []string  `json:"resources,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func printDisabled(cmd *cobra.Command, output string, u store.User, wasDisabled bool, rev store.UserRevocation) error {
	w := cmd.OutOrStdout()
	if output == "json" {
		v := disabledView{
			User: userViewOf(u), WasDisabled: wasDisabled, RevokedGrants: []grantView{},
			RevokedRefreshTokens: rev.RefreshTokens, RevokedAccessTokens: rev.AccessTokens,
		}
		for _, g := range rev.Grants {
			v.RevokedGrants = append(v.RevokedGrants, grantView{
				ID: g.ID, ClientID: g.ClientID, Scopes: g.Scopes, Resources: g.Resources, CreatedAt: g.CreatedAt.UTC(),
			})
		}
		return writeJSON(w, v)
	}
	if wasDisabled {
		fmt.Fprintf(w, "user %s (%s) was disabled already\n", u.ID, userRef(u))
	} else {
		fmt.Fprintf(w, "disabled user %s (%s)\n", u.ID, userRef(u))
	}
	fmt.Fprintf(w, "revoked %s, %s and %s\n", plural(int64(len(rev.Grants)), "grant"),
		plural(rev.RefreshTokens, "refresh token"), plural(rev.AccessTokens, "opaque access token"))
	if len(rev.Grants) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GRANT ID\tCLIENT ID\tSCOPES\tCREATED")
		for _, g := range rev.Grants {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.ID, printable(g.ClientID), printable(strings.Join(g.Scopes, " ")),
				g.CreatedAt.UTC().Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "note: JWT access tokens already issued fail /introspect and /verify now, "+
		"but stay valid until they expire where a resource server only checks their signature")
	return nil
}

func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
