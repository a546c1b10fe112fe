package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/store"
)

func newMigrateCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate up|down|status",
		Short: "Manage the database schema",
		Long: "Manage the database schema. Migrations run under a PostgreSQL advisory lock, so several\n" +
			"replicas or jobs may run `migrate up` at once; only the database URL is needed.",
		Example: "  AUTHD_DATABASE_URL=postgres://authd:pw@db:5432/authd authd migrate up\n" +
			"  authd migrate status --database-url postgres://authd:pw@db:5432/authd -o json",
	}
	addDatabaseFlag(cmd.PersistentFlags())
	var output string
	addOutputFlag(cmd.PersistentFlags(), &output)
	dsn := func(cmd *cobra.Command) (string, error) {
		if err := checkOutput(output); err != nil {
			return "", err
		}
		cfg, err := loadDBConfig(cmd.Flags(), e.getenv)
		if err != nil {
			return "", err
		}
		return cfg.DatabaseDSN(), nil
	}
	cmd.AddCommand(
		&cobra.Command{
			Use: "up", Short: "Apply all pending migrations, and say which", Args: cobra.NoArgs,
			Example: "  authd migrate up --database-url postgres://authd:pw@db:5432/authd",
			RunE: func(cmd *cobra.Command, _ []string) error {
				d, err := dsn(cmd)
				if err != nil {
					return err
				}
				applied, err := store.ApplyMigrations(cmd.Context(), d)
				if err != nil {
					return err
				}
				return printStatus(cmd, d, output, applied)
			},
		},
		&cobra.Command{
			Use: "down", Short: "Roll back the most recent migration", Args: cobra.NoArgs,
			Example: "  authd migrate down --database-url postgres://authd:pw@db:5432/authd",
			RunE: func(cmd *cobra.Command, _ []string) error {
				d, err := dsn(cmd)
				if err != nil {
					return err
				}
				if err := store.MigrateDown(cmd.Context(), d); err != nil {
					return err
				}
				return printStatus(cmd, d, output, nil)
			},
		},
		&cobra.Command{
			Use: "status", Short: "Print the schema version", Args: cobra.NoArgs,
			Example: "  authd migrate status -o json",
			RunE: func(cmd *cobra.Command, _ []string) error {
				d, err := dsn(cmd)
				if err != nil {
					return err
				}
				return printStatus(cmd, d, output, nil)
			},
		},
	)
	return cmd
}

// migrationStatus is what `migrate` prints.
type migrationStatus struct {
	Current int64                    `json:"current"`
	Latest  int64                    `json:"latest"`
	Pending int64                    `json:"pending"`
	State   string                   `json:"state"`
	Applied []store.AppliedMigration `json:"applied,omitempty"`
}

func printStatus(cmd *cobra.Command, dsn, output string, applied []store.AppliedMigration) error {
	cur, latest, err := store.MigrationStatus(cmd.Context(), dsn)
	if err != nil {
		return err
	}
	st := migrationStatus{Current: cur, Latest: latest, State: "up to date", Applied: applied}
	switch {
	case cur < latest:
		st.Pending = latest - cur
		st.State = fmt.Sprintf("%d pending", latest-cur)
	case cur > latest:
		st.State = "NEWER than this authd knows"
	}
	if output == "json" {
		if st.Applied == nil && cmd.Name() == "up" {
			st.Applied = []store.AppliedMigration{}
		}
		return writeJSON(cmd.OutOrStdout(), st)
	}
	w := cmd.OutOrStdout()
	if cmd.Name() == "up" {
		if len(applied) == 0 {
			fmt.Fprintln(w, "no migration to apply")
		}
		for _, m := range applied {
			fmt.Fprintf(w, "applied %s (version %d) in %s\n", m.Name, m.Version, m.Duration.Round(time.Millisecond))
		}
	}
	fmt.Fprintf(w, "schema version %d, latest %d (%s)\n", cur, latest, st.State)
	return nil
}

// loadDBConfig loads the configuration for commands that only need the
// database: the full validation would demand upstreams and secrets that a
// migration job does not have, so only the database URL (from the file,
// the environment or --database-url) is required and checked. A file or
// variable that cannot be read or decoded fails.
func loadDBConfig(flags *pflag.FlagSet, getenv environ) (*config.Config, error) {
	cfg, err := loadConfigFor(flags, getenv)
	if err != nil {
		return nil, err
	}
	if cfg.DatabaseURL == "" {
		return nil, errors.New("database_url is required for this command: set AUTHD_DATABASE_URL, database_url in --config, or --database-url (e.g. postgres://authd:pw@db:5432/authd)")
	}
	if u, err := url.Parse(cfg.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, errors.New("database_url: must be a postgres:// or postgresql:// URL")
	}
	return cfg, nil
}

func newHealthcheckCmd(e *env) *cobra.Command {
	var target string
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Probe a running authd's /health (for container HEALTHCHECK; the image has no curl)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if target == "" {
				// The address serve would listen on, from the same flags,
				// variables and file; nothing else of the configuration
				// needs to be valid to probe it.
				cfg, err := loadConfigFor(cmd.Flags(), e.getenv, "listen", "tls.")
				if err != nil {
					return err
				}
				_, port, err := net.SplitHostPort(cfg.Listen)
				if err != nil {
					return fmt.Errorf("cannot derive the health URL from listen %q: pass --url", cfg.Listen)
				}
				target = "http://127.0.0.1:" + port + "/health"
				if cfg.TLS.CertFile != "" {
					target = "https://127.0.0.1:" + port + "/health"
				}
			}
			c := &http.Client{Timeout: 3 * time.Second}
			if u, err := url.Parse(target); err == nil && u.Scheme == "https" && isLoopback(u.Hostname()) {
				// Probing our own process over loopback: its certificate
				// names the public host, not 127.0.0.1, and a liveness
				// probe sends nothing secret.
				c.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec
			}
			resp, err := c.Get(target)
			if err != nil {
				return fmt.Errorf("unhealthy: %w", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return errors.New("unhealthy: " + resp.Status)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "url", "", "health URL (default http(s)://127.0.0.1:<listen port>/health; https when tls.cert_file is set)")
	cmd.Flags().String("listen", "", "the server's listen address (default: listen from --config or AUTHD_LISTEN, else :8080)")
	cmd.Example = "  authd healthcheck                      # the container's HEALTHCHECK\n" +
		"  authd healthcheck --config authd.yaml\n  authd healthcheck --url http://127.0.0.1:8080/health"
	return cmd
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
