package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

type apiKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	RevokedAt *time.Time `json:"revoked_at"`
	Token     string     `json:"token"`
}

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "key",
			Short: "Create, list and revoke API keys (admin)",
			Long: `API keys authenticate HTTP API calls (Authorization: Bearer <token>). Once a key
exists, or when the server listens beyond loopback, every /v1 call needs one.
Scopes: admin | read:PROJECT[:BRANCH-GLOB] | write:PROJECT[:BRANCH-GLOB] (PROJECT * = all).`,
		}
		cmd.AddCommand(keyCreateCmd(a), keyListCmd(a), keyRevokeCmd(a))
		return cmd
	})
}

func keyCreateCmd(a *app) *cobra.Command {
	var c client
	var scopes []string
	cmd := &cobra.Command{
		Use:     "create NAME --scope SCOPE...",
		Short:   "Create a key; its token is printed once",
		Example: "  offshoot key create ci --scope admin\n  offshoot key create agent-7 --scope write:main:experiment-*\n  offshoot key create agent-8 --scope write:main::masked   # masked branches only",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(scopes) == 0 {
				return &exitError{code: exitBadInput, err: fmt.Errorf("give at least one --scope (admin, read:PROJECT[:BRANCH-GLOB][:masked] or write:PROJECT[:BRANCH-GLOB][:masked])")}
			}
			var k apiKey
			raw, err := c.do(cmd.Context(), "POST", "/v1/keys", map[string]any{"name": args[0], "scopes": scopes}, &k)
			if err != nil {
				return err
			}
			if c.json {
				return printJSON(a.stdout, raw)
			}
			fmt.Fprintf(a.stdout, "key %s (%s) scopes %s\n%s\n", k.ID, k.Name, strings.Join(k.Scopes, " "), k.Token)
			fmt.Fprintln(a.stderr, "The token is shown only now; store it (e.g. export OFFSHOOT_TOKEN=...).")
			return nil
		},
	}
	addClientFlags(cmd, a, &c)
	cmd.Flags().StringArrayVar(&scopes, "scope", nil, "scope to grant (repeatable)")
	return cmd
}

func keyListCmd(a *app) *cobra.Command {
	var c client
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List keys, revoked ones included",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct{ Keys []apiKey }
			raw, err := c.do(cmd.Context(), "GET", "/v1/keys", nil, &out)
			if err != nil {
				return err
			}
			if c.json {
				return printJSON(a.stdout, raw)
			}
			return printKeys(a.stdout, out.Keys)
		},
	}
	addClientFlags(cmd, a, &c)
	return cmd
}

func printKeys(w io.Writer, keys []apiKey) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tCREATED\tREVOKED")
	for _, k := range keys {
		revoked := "-"
		if k.RevokedAt != nil {
			revoked = k.RevokedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, strings.Join(k.Scopes, " "), k.CreatedAt.Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}

func keyRevokeCmd(a *app) *cobra.Command {
	var c client
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a key; it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var k apiKey
			raw, err := c.do(cmd.Context(), "DELETE", "/v1/keys/"+url.PathEscape(args[0]), nil, &k)
			if err != nil {
				return err
			}
			if c.json {
				return printJSON(a.stdout, raw)
			}
			fmt.Fprintf(a.stdout, "revoked key %s (%s)\n", k.ID, k.Name)
			return nil
		},
	}
	addClientFlags(cmd, a, &c)
	return cmd
}
