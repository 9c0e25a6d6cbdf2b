package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/experiments"
)

// Verbs over a project's masking policy (admin keys only).

func init() {
	subcommands = append(subcommands, maskCmd)
}

func maskCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "mask", Short: "Set, show and clear a project's masking policy (for branch create --masked)",
		Long: `A masking policy lists, per table and column, how a masked fork replaces
values: fixed (value), hash, fake (format: email, phone, name, digits, text),
null, or sql (expr). hash and fake are deterministic per project, so keys and
foreign keys masked the same way stay joinable. Example FILE:

  {"rules": [
    {"table": "public.customers", "column": "id", "method": "hash"},
    {"table": "public.orders", "column": "customer_id", "method": "hash"},
    {"table": "public.customers", "column": "email", "method": "fake", "format": "email"},
    {"table": "public.customers", "column": "name", "method": "null"}
  ]}

Then: offshoot branch create agent-1 --masked, and give the agent a key with a
masked scope (offshoot key create agent --scope write:PROJECT::masked).`}
	var project string
	set, _ := verb(a, "set FILE", "Set the policy from a JSON file (- for stdin)", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) {
			var raw []byte
			var err error
			if args[0] == "-" {
				raw, err = io.ReadAll(os.Stdin)
			} else {
				raw, err = os.ReadFile(args[0])
			}
			if err != nil {
				return "", "", nil, err
			}
			var body json.RawMessage
			if err := json.Unmarshal(raw, &body); err != nil {
				return "", "", nil, fmt.Errorf("%s: not JSON: %w", args[0], err)
			}
			return "PUT", projectPath(project) + "/masking", body, nil
		}, showMaskPolicy)
	show, _ := verb(a, "show", "Show the policy", cobra.NoArgs, &project,
		func([]string) (string, string, any, error) { return "GET", projectPath(project) + "/masking", nil, nil }, showMaskPolicy)
	clr, _ := verb(a, "clear", "Remove the policy (masked branches stay masked)", cobra.NoArgs, &project,
		func([]string) (string, string, any, error) {
			return "DELETE", projectPath(project) + "/masking", nil, nil
		}, printed("policy removed"))
	cmd.AddCommand(set, show, clr)
	return cmd
}

func showMaskPolicy(w io.Writer, raw []byte) error {
	var p experiments.MaskPolicy
	if err := json.Unmarshal(raw, &p); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tCOLUMN\tMETHOD\tDETAIL")
	for _, r := range p.Rules {
		detail := string(r.Format)
		switch {
		case r.Value != nil:
			detail = fmt.Sprintf("%q", *r.Value)
		case r.Expr != "":
			detail = r.Expr
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Table, r.Column, r.Method, detail)
	}
	fmt.Fprintf(tw, "updated %s by %s\n", p.UpdatedAt.Format("2006-01-02T15:04:05Z07:00"), p.UpdatedBy)
	return tw.Flush()
}
