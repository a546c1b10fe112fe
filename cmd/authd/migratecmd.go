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
	}
	dsn := func(cmd *cobra.Command) (string, error) {
		cfg, err := loadDBConfig(cmd.Flags(), e.getenv)
		if err != nil {
			return "", err
		}
		return cfg.DatabaseDSN(), nil
	}
	cmd.AddCommand(
		&cobra.Command{
			Use: "up", Short: "Apply all pending migrations", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				d, err := dsn(cmd)
				if err != nil {
					return err
				}
				if err := store.MigrateUp(cmd.Context(), d); err != nil {
					return err
				}
				return printStatus(cmd, d)
			},
		},
		&cobra.Command{
			Use: "down", Short: "Roll back the most recent migration", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				d, err := dsn(cmd)
				if err != nil {
					return err
				}
				if err := store.MigrateDown(cmd.Context(), d); err != nil {
					return err
				}
				return printStatus(cmd, d)
			},
		},
		&cobra.Command{
			Use: "status", Short: "Print the schema version", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				d, err := dsn(cmd)
				if err != nil {
					return err
				}
				return printStatus(cmd, d)
			},
		},
	)
	return cmd
}

func printStatus(cmd *cobra.Command, dsn string) error {
	cur, latest, err := store.MigrationStatus(cmd.Context(), dsn)
	if err != nil {
		return err
	}
	state := "up to date"
	switch {
	case cur < latest:
		state = fmt.Sprintf("%d pending", latest-cur)
	case cur > latest:
		state = "NEWER than this authd knows"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "schema version %d, latest %d (%s)\n", cur, latest, state)
	return nil
}

// loadDBConfig loads the configuration for commands that only need the
// database: the full validation would demand upstreams and secrets that a
// migration job does not have, so a configuration that is merely
// incomplete still yields its database URL (from the file, the
// environment or --database-url). One that cannot be read fails.
func loadDBConfig(flags *pflag.FlagSet, getenv func(string) string) (*config.Config, error) {
	cfg, err := loadConfig(flags, getenv)
	var invalid *invalidConfigError
	switch {
	case err == nil:
	case errors.As(err, &invalid) && invalid.cfg.DatabaseURL != "":
		cfg = invalid.cfg
	default:
		return nil, err
	}
	if cfg.DatabaseURL == "" {
		return nil, errors.New("database_url is required for this command (AUTHD_DATABASE_URL or --database-url)")
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
				listen := e.getenv(envName("listen"))
				if listen == "" {
					listen = config.Defaults().Listen
				}
				_, port, err := net.SplitHostPort(listen)
				if err != nil {
					return fmt.Errorf("cannot derive the health URL from listen %q: pass --url", listen)
				}
				target = "http://127.0.0.1:" + port + "/health"
				if e.getenv(envName("tls.cert_file")) != "" {
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
	cmd.Flags().StringVar(&target, "url", "", "health URL (default http(s)://127.0.0.1:<listen port>/health; https when AUTHD_TLS_CERT_FILE is set)")
	return cmd
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
