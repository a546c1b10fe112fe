package main

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/authd/authd/internal/config"
)

// secretKeys are masked by `authd config`, wherever they appear.
var secretKeys = map[string]bool{
	"encryption_secret":    true,
	"client_secret":        true,
	"secret":               true,
	"initial_access_token": true,
	"bearer_tokens":        true,
	"forward_auth_secret":  true,

	"previous_encryption_secrets": true,
}

const masked = "********"

func newConfigCmd(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration (secrets masked) and validate it",
		Long: "Print the configuration serve would run with, from the same flags, AUTHD_* variables and\n" +
			"--config file, with secrets masked; exit non-zero naming every problem if it is invalid.",
		Example: "  authd config --config authd.yaml\n  AUTHD_LOG_LEVEL=debug authd config --dev -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "yaml" && output != "json" {
				return fmt.Errorf("--output %q: want yaml or json", output)
			}
			cfg, err := loadConfig(cmd.Flags(), e.getenv)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), maskedConfig(cfg))
			}
			out, err := yaml.Marshal(maskedConfig(cfg))
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	addServeFlags(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}

// maskedConfig renders cfg as a generic tree keyed like the YAML file, with
// every secret replaced.
func maskedConfig(cfg *config.Config) any {
	return toTree(reflect.ValueOf(*cfg), "")
}

func toTree(v reflect.Value, key string) any {
	if secretKeys[key] {
		if v.IsZero() {
			return v.Interface()
		}
		if v.Kind() == reflect.Slice {
			out := make([]string, v.Len())
			for i := range out {
				out[i] = masked
			}
			return out
		}
		return masked
	}
	if key == "database_url" || key == "database_listen_url" {
		return maskURLPassword(v.String())
	}
	if d, ok := v.Interface().(time.Duration); ok {
		return d.String()
	}
	switch v.Kind() {
	case reflect.Struct:
		m := map[string]any{}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("mapstructure"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			m[tag] = toTree(v.Field(i), tag)
		}
		return m
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = toTree(v.Index(i), "")
		}
		return out
	case reflect.Map:
		m := map[string]any{}
		iter := v.MapRange()
		for iter.Next() {
			k := iter.Key().String()
			m[k] = toTree(iter.Value(), k)
		}
		return m
	}
	return v.Interface()
}

func maskURLPassword(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
