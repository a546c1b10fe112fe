package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Flags live on the commands they apply to: every command that reads the
// configuration has --config (the root's), the server's settings are flags
// of serve (and of config, which prints what serve would run with), the
// database URL is a flag of the commands that open the database.

// addServeFlags declares the flags that override server settings.
func addServeFlags(fs *pflag.FlagSet) {
	fs.Bool("dev", false, "development mode: in-memory store, dev login, http://localhost issuer (NEVER in production)")
	fs.String("issuer", "", "public URL of this server (issuer)")
	fs.String("listen", "", "listen address, e.g. :8080")
	addDatabaseFlag(fs)
	fs.Bool("migrate", false, "apply database migrations at start-up")
	fs.String("log-level", "", "log level: debug, info, warn, error")
}

// addDatabaseFlag declares --database-url.
func addDatabaseFlag(fs *pflag.FlagSet) {
	fs.String("database-url", "", "PostgreSQL URL (default: database_url from --config or AUTHD_DATABASE_URL)")
}

// addOutputFlag declares -o/--output for a command that prints data.
func addOutputFlag(fs *pflag.FlagSet, output *string) {
	fs.StringVarP(output, "output", "o", "table", "output format: table or json")
}

func checkOutput(output string) error {
	if output != "table" && output != "json" {
		return fmt.Errorf("--output %q: want table or json", output)
	}
	return nil
}

// withFlagsOf returns the flags a parent command's subcommands see: its
// persistent flags and the root's (--config).
func withFlagsOf(c *cobra.Command) *pflag.FlagSet {
	fs := pflag.NewFlagSet(c.Name(), pflag.ContinueOnError)
	fs.AddFlagSet(c.PersistentFlags())
	fs.AddFlagSet(c.Root().PersistentFlags())
	return fs
}
