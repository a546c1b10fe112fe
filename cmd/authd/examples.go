package main

import "github.com/spf13/cobra"

// subcommandExamples are the help examples of the clients and users
// subcommands, by command path (kept here, beside each other, so that the
// whole CLI's examples read alike).
var subcommandExamples = map[string]string{
	"authd clients create":        "  authd clients create --name \"Billing agent\" --grant-type client_credentials --scope mcp:tools\n  authd clients create --name Inspector --public --redirect-uri http://localhost:6274/oauth/callback -o json",
	"authd clients list":          "  authd clients list --source dynamic --limit 20\n  authd clients list -o json",
	"authd clients show":          "  authd clients show 6f1c…-client-id -o json",
	"authd clients update":        "  authd clients update 6f1c…-client-id --skip-consent",
	"authd clients delete":        "  authd clients delete 6f1c…-client-id",
	"authd clients rotate-secret": "  authd clients rotate-secret 6f1c…-client-id   # prints the new secret once",
	"authd users list":            "  authd users list --provider github --limit 50\n  authd users list --disabled -o json",
	"authd users show":            "  authd users show github:583231",
	"authd users disable":         "  authd users disable github:583231   # also revokes their grants and tokens",
	"authd users enable":          "  authd users enable github:583231",
}

// addExamples sets the examples above on the commands under root.
func addExamples(root *cobra.Command) {
	for _, c := range root.Commands() {
		for _, sub := range c.Commands() {
			if ex, ok := subcommandExamples[sub.CommandPath()]; ok && sub.Example == "" {
				sub.Example = ex
			}
		}
	}
}
