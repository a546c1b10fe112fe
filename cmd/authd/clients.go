package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/store"
)

// newClientsCmd is `authd clients`: the operator's view of the clients
// table. Clients it creates are config clients (store.SourceConfig), with
// authd-generated secrets shown once. Clients declared in the config file
// are re-applied at every start, so edit those in the file rather than here.
func newClientsCmd(openStore func(ctx context.Context) (store.Store, error), now func() time.Time, log *slog.Logger) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "clients create|list|show|update|delete|rotate-secret",
		Short: "Manage OAuth clients in the database",
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &clientsCmd{adminCmd{openStore: openStore, now: now, log: log}}
	cmd.AddCommand(c.create(), c.list(), c.show(), c.update(), c.delete(), c.rotateSecret())
	return cmd
}

// adminCmd is what the database admin commands (clients, users) share.
type adminCmd struct {
	openStore func(ctx context.Context) (store.Store, error)
	now       func() time.Time
	log       *slog.Logger // audit records of changes, like the server's
}

// withStore runs fn with an open store, closing it afterwards.
func (c *adminCmd) withStore(cmd *cobra.Command, fn func(st store.Store) error) error {
	st, err := c.openStore(cmd.Context())
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

// storeRunE sets cmd's RunE to fn with the -o/--output flag resolved and a
// store open for the duration.
func (c *adminCmd) storeRunE(cmd *cobra.Command, fn func(cmd *cobra.Command, args []string, out string, st store.Store) error) {
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		out, err := output()
		if err != nil {
			return err
		}
		return c.withStore(cmd, func(st store.Store) error { return fn(cmd, args, out, st) })
	}
}

type clientsCmd struct{ adminCmd }

// audit records a change made from the command line, with the event names
// the server uses for the same change.
func (c *clientsCmd) audit(ctx context.Context, event, clientID string) {
	c.log.InfoContext(ctx, "client changed from the command line", "event", event, "via", "cli", "client_id", clientID)
}

// clientFlags are the client attributes create and update accept.
type clientFlags struct {
	name, authMethod, appType string
	redirectURIs, grantTypes  []string
	scopes, resources         []string
	skipConsent, introspect   bool
	public                    bool
}

func (f *clientFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.name, "name", "", "display name shown on the consent screen")
	fs.StringArrayVar(&f.redirectURIs, "redirect-uri", nil, "redirect URI (repeatable)")
	fs.StringArrayVar(&f.grantTypes, "grant-type", nil, "authorization_code, refresh_token or client_credentials (repeatable; default authorization_code and refresh_token with redirect URIs)")
	fs.StringVar(&f.authMethod, "auth-method", "", "token endpoint auth method: client_secret_basic (default), client_secret_post or none")
	fs.StringArrayVar(&f.scopes, "scope", nil, "allowed scope (repeatable, or space-separated; default: no restriction)")
	fs.StringArrayVar(&f.resources, "resource", nil, "allowed resource URI (repeatable; default: no restriction)")
	fs.BoolVar(&f.skipConsent, "skip-consent", false, "first-party client: do not ask users for consent")
	fs.BoolVar(&f.introspect, "introspect", false, "allow the client to call /introspect (resource servers)")
	fs.BoolVar(&f.public, "public", false, "public client without a secret (same as --auth-method none)")
	fs.StringVar(&f.appType, "application-type", "", "web or native (default: unspecified)")
}

// apply copies the flags that were set onto s.
func (f *clientFlags) apply(fs *pflag.FlagSet, s *register.StaticClient) error {
	if fs.Changed("public") && fs.Changed("auth-method") && f.public != (f.authMethod == register.AuthNone) {
		return errors.New("--public contradicts --auth-method")
	}
	set := fs.Changed
	if set("name") {
		s.Name = f.name
	}
	if set("redirect-uri") {
		s.RedirectURIs = nonEmpty(f.redirectURIs)
	}
	if set("grant-type") {
		s.GrantTypes = nonEmpty(f.grantTypes)
	}
	if set("scope") {
		s.Scopes = nil
		for _, v := range f.scopes {
			s.Scopes = append(s.Scopes, strings.Fields(v)...)
		}
	}
	if set("resource") {
		s.Resources = nonEmpty(f.resources)
	}
	if set("skip-consent") {
		s.SkipConsent = f.skipConsent
	}
	if set("introspect") {
		s.Introspect = f.introspect
	}
	if set("application-type") {
		s.ApplicationType = f.appType
	}
	switch {
	case set("auth-method"):
		s.TokenEndpointAuthMethod = f.authMethod
	case set("public") && f.public:
		s.TokenEndpointAuthMethod = register.AuthNone
	case set("public") && !f.public && s.TokenEndpointAuthMethod == register.AuthNone:
		s.TokenEndpointAuthMethod = register.AuthClientSecretBasic
	}
	return nil
}

func nonEmpty(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// outputFlag adds --output/-o and returns a validating getter.
func outputFlag(cmd *cobra.Command) func() (string, error) {
	var output string
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return func() (string, error) {
		if output != "table" && output != "json" {
			return "", fmt.Errorf("--output must be table or json, not %q", output)
		}
		return output, nil
	}
}

func (c *clientsCmd) create() *cobra.Command {
	var f clientFlags
	var id string
	cmd := &cobra.Command{
		Use:   "create --name NAME [flags]",
		Short: "Create a client; a confidential client's secret is printed once",
		Args:  cobra.NoArgs,
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVar(&id, "id", "", "client id (default: a random uuid); A-Z a-z 0-9 . _ -")
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		out, err := output()
		if err != nil {
			return err
		}
		s := register.StaticClient{ID: id}
		if s.ID == "" {
			s.ID = uuid.NewString()
		}
		if err := f.apply(cmd.Flags(), &s); err != nil {
			return err
		}
		var secret string
		if s.TokenEndpointAuthMethod != register.AuthNone {
			secret = oauth.NewToken(oauth.PrefixClientSecret)
			s.SecretHash = oauth.HashSecret(secret)
		}
		if errs := s.Validate(); len(errs) > 0 {
			return errors.Join(errs...)
		}
		now := c.now()
		client, err := s.ToClient(now)
		if err != nil {
			return err
		}
		return c.withStore(cmd, func(st store.Store) error {
			if err := st.CreateClient(cmd.Context(), client); err != nil {
				if errors.Is(err, store.ErrConflict) {
					return fmt.Errorf("a client with id %q exists already", client.ID)
				}
				return err
			}
			c.audit(cmd.Context(), "client_registered", client.ID)
			return printClient(cmd, out, client, secret)
		})
	}
	return cmd
}

func (c *clientsCmd) list() *cobra.Command {
	var source string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List clients",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVar(&source, "source", "", "only clients from this source: config, dynamic or metadata_document")
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most this many clients (0: all)")
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		out, err := output()
		if err != nil {
			return err
		}
		switch store.ClientSource(source) {
		case "", store.SourceConfig, store.SourceDynamic, store.SourceMetadata:
		default:
			return fmt.Errorf("--source must be config, dynamic or metadata_document, not %q", source)
		}
		return c.withStore(cmd, func(st store.Store) error {
			clients, err := st.ListClients(cmd.Context(), store.ClientFilter{Source: store.ClientSource(source), Limit: limit})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out == "json" {
				views := make([]clientView, 0, len(clients))
				for _, cl := range clients {
					views = append(views, viewOf(cl, ""))
				}
				return writeJSON(w, views)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLIENT ID\tNAME\tSOURCE\tAUTH METHOD\tREDIRECT URIS\tCREATED")
			for _, cl := range clients {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cl.ID, printable(cl.Metadata.ClientName), cl.Source,
					cl.Metadata.TokenEndpointAuthMethod, printable(strings.Join(cl.Metadata.RedirectURIs, ",")),
					cl.CreatedAt.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		})
	}
	return cmd
}

func (c *clientsCmd) show() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show CLIENT_ID",
		Short: "Show one client",
		Args:  cobra.ExactArgs(1),
	}
	c.storeRunE(cmd, func(cmd *cobra.Command, args []string, out string, st store.Store) error {
		cl, err := c.get(cmd.Context(), st, args[0])
		if err != nil {
			return err
		}
		return printClient(cmd, out, cl, "")
	})
	return cmd
}

func (c *clientsCmd) update() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "update CLIENT_ID [flags]",
		Short: "Change a config client; only the flags given are changed",
		Long: "Change a config client; only the flags given are changed. Dynamic clients are managed by\n" +
			"their owners (RFC 7592): delete them instead. Turning a public client confidential prints\n" +
			"its new secret once.",
		Args: cobra.ExactArgs(1),
	}
	f.register(cmd.Flags())
	c.storeRunE(cmd, func(cmd *cobra.Command, args []string, out string, st store.Store) error {
		old, err := c.getConfig(cmd.Context(), st, args[0])
		if err != nil {
			return err
		}
		s := register.StaticClientFrom(old)
		if err := f.apply(cmd.Flags(), &s); err != nil {
			return err
		}
		var secret string
		switch {
		case s.TokenEndpointAuthMethod == register.AuthNone:
			s.SecretHash = ""
		case s.SecretHash == "":
			secret = oauth.NewToken(oauth.PrefixClientSecret)
			s.SecretHash = oauth.HashSecret(secret)
		}
		if errs := s.Validate(); len(errs) > 0 {
			return errors.Join(errs...)
		}
		now := c.now()
		next, err := s.ToClient(now)
		if err != nil {
			return err
		}
		next.CreatedAt, next.LastUsedAt, next.Disabled = old.CreatedAt, old.LastUsedAt, old.Disabled
		if secret == "" && next.SecretHash == old.SecretHash {
			next.SecretExpiresAt = old.SecretExpiresAt
		}
		if err := st.UpdateClient(cmd.Context(), next); err != nil {
			return err
		}
		c.audit(cmd.Context(), "client_updated", next.ID)
		return printClient(cmd, out, next, secret)
	})
	return cmd
}

func (c *clientsCmd) delete() *cobra.Command {
	return &cobra.Command{
		Use:   "delete CLIENT_ID",
		Short: "Delete a client and revoke everything issued to it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withStore(cmd, func(st store.Store) error {
				cl, err := c.get(cmd.Context(), st, args[0])
				if err != nil {
					return err
				}
				if err := st.DeleteClient(cmd.Context(), cl.ID); err != nil {
					return err
				}
				c.audit(cmd.Context(), "client_deleted", cl.ID)
				fmt.Fprintf(cmd.OutOrStdout(), "deleted client %s and revoked its grants and tokens\n", cl.ID)
				if cl.Source == store.SourceMetadata {
					fmt.Fprintf(cmd.OutOrStdout(), "note: a metadata-document client comes back the next time it is used; "+
						"to keep it out, list it in %s\n", blockHint(cl.ID))
				}
				return nil
			})
		},
	}
}

func (c *clientsCmd) rotateSecret() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate-secret CLIENT_ID",
		Short: "Give a confidential config client a new secret, printed once; the old one stops working",
		Args:  cobra.ExactArgs(1),
	}
	c.storeRunE(cmd, func(cmd *cobra.Command, args []string, out string, st store.Store) error {
		cl, err := c.getConfig(cmd.Context(), st, args[0])
		if err != nil {
			return err
		}
		if cl.Metadata.TokenEndpointAuthMethod == register.AuthNone {
			return fmt.Errorf("client %s is public and has no secret", cl.ID)
		}
		secret := oauth.NewToken(oauth.PrefixClientSecret)
		cl.SecretHash = oauth.HashSecret(secret)
		cl.SecretExpiresAt = nil
		cl.UpdatedAt = c.now()
		if err := st.UpdateClient(cmd.Context(), cl); err != nil {
			return err
		}
		c.audit(cmd.Context(), "client_secret_rotated", cl.ID)
		return printClient(cmd, out, cl, secret)
	})
	return cmd
}

func (c *clientsCmd) get(ctx context.Context, st store.Store, id string) (store.Client, error) {
	cl, err := st.GetClient(ctx, id, c.now())
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, fmt.Errorf("no client with id %q", id)
	}
	return cl, err
}

// blockHint names the settings that block a metadata-document client.
func blockHint(id string) string {
	host := id
	if u, err := url.Parse(id); err == nil {
		host = u.Hostname()
	}
	return fmt.Sprintf("client_metadata_documents.blocked_clients (or its host %s in client_metadata_documents.denied_hosts)", host)
}

// getConfig is get for the commands that change a client: only config
// clients are the operator's to edit.
func (c *clientsCmd) getConfig(ctx context.Context, st store.Store, id string) (store.Client, error) {
	cl, err := c.get(ctx, st, id)
	if err == nil && cl.Source == store.SourceMetadata {
		err = fmt.Errorf("client %s is described by the metadata document at its URL, which its owner manages; to refuse it, list it in %s", cl.ID, blockHint(cl.ID))
	} else if err == nil && cl.Source != store.SourceConfig {
		err = fmt.Errorf("client %s is a %s client, which its owner manages; delete it instead", cl.ID, cl.Source)
	}
	return cl, err
}

// clientView is how the CLI shows a client. The secret is only ever set
// right after it was generated.
type clientView struct {
	ClientID                string     `json:"client_id"`
	ClientSecret            string     `json:"client_secret,omitempty"`
	Name                    string     `json:"client_name,omitempty"`
	Source                  string     `json:"source"`
	TokenEndpointAuthMethod string     `json:"token_endpoint_auth_method"`
	ApplicationType         string     `json:"application_type,omitempty"`
	RedirectURIs            []string   `json:"redirect_uris,omitempty"`
	GrantTypes              []string   `json:"grant_types,omitempty"`
	Scope                   string     `json:"scope,omitempty"`
	AllowedScopes           []string   `json:"allowed_scopes,omitempty"`
	AllowedResources        []string   `json:"allowed_resources,omitempty"`
	SkipConsent             bool       `json:"skip_consent"`
	Introspect              bool       `json:"introspect"`
	Disabled                bool       `json:"disabled"`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
	LastUsedAt              *time.Time `json:"last_used_at,omitempty"`
	ExpiresAt               *time.Time `json:"expires_at,omitempty"`
	SecretExpiresAt         *time.Time `json:"secret_expires_at,omitempty"`
}

func viewOf(c store.Client, secret string) clientView {
	v := clientView{
		ClientID:                c.ID,
		ClientSecret:            secret,
		Name:                    c.Metadata.ClientName,
		Source:                  string(c.Source),
		TokenEndpointAuthMethod: c.Metadata.TokenEndpointAuthMethod,
		ApplicationType:         c.Metadata.ApplicationType,
		RedirectURIs:            c.Metadata.RedirectURIs,
		GrantTypes:              c.Metadata.GrantTypes,
		Scope:                   c.Metadata.Scope,
		AllowedScopes:           c.AllowedScopes,
		AllowedResources:        c.AllowedResources,
		SkipConsent:             c.SkipConsent,
		Introspect:              c.CanIntrospect,
		Disabled:                c.Disabled,
		CreatedAt:               c.CreatedAt.UTC(),
		UpdatedAt:               c.UpdatedAt.UTC(),
		ExpiresAt:               utcPtr(c.ExpiresAt),
		SecretExpiresAt:         utcPtr(c.SecretExpiresAt),
	}
	if !c.LastUsedAt.IsZero() {
		v.LastUsedAt = utcPtr(&c.LastUsedAt)
	}
	return v
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// printClient prints one client. A fresh secret goes to stdout with the
// client (so it can be captured) and a reminder to stderr.
func printClient(cmd *cobra.Command, output string, c store.Client, secret string) error {
	if secret != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "Store the client secret now: authd keeps only its hash and cannot show it again.")
	}
	v := viewOf(c, secret)
	w := cmd.OutOrStdout()
	if output == "json" {
		return writeJSON(w, v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, val string) {
		if val != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, printable(val))
		}
	}
	row("client_id", v.ClientID)
	row("client_secret", v.ClientSecret)
	row("client_name", v.Name)
	row("source", v.Source)
	row("token_endpoint_auth_method", v.TokenEndpointAuthMethod)
	row("application_type", v.ApplicationType)
	row("redirect_uris", strings.Join(v.RedirectURIs, " "))
	row("grant_types", strings.Join(v.GrantTypes, " "))
	row("scope", v.Scope)
	row("allowed_scopes", strings.Join(v.AllowedScopes, " "))
	row("allowed_resources", strings.Join(v.AllowedResources, " "))
	row("skip_consent", fmt.Sprint(v.SkipConsent))
	row("introspect", fmt.Sprint(v.Introspect))
	row("disabled", fmt.Sprint(v.Disabled))
	row("created_at", v.CreatedAt.Format(time.RFC3339))
	row("updated_at", v.UpdatedAt.Format(time.RFC3339))
	if v.LastUsedAt != nil {
		row("last_used_at", v.LastUsedAt.Format(time.RFC3339))
	}
	if v.ExpiresAt != nil {
		row("expires_at", v.ExpiresAt.Format(time.RFC3339))
	}
	if v.SecretExpiresAt != nil {
		row("secret_expires_at", v.SecretExpiresAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printable keeps client-supplied text (dynamic clients' names) from
// driving the operator's terminal with escape sequences.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
