package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		var c client
		var project string
		var sample int
		cmd := &cobra.Command{
			Use:   "diff BASE BRANCH",
			Short: "Show how BRANCH differs from BASE: schema and rows",
			Long: `Compare two branches through the running server: the schema as a unified diff of
normalized DDL (- BASE, + BRANCH), then per table the rows added, removed and changed
(tables with a primary key) with a few sample rows, or row counts (tables without).`,
			Example: "  offshoot diff main feature/x\n  offshoot diff main experiment-1 --json",
			Args:    cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				q := url.Values{"against": {args[0]}}
				if sample > 0 {
					q.Set("sample_rows", strconv.Itoa(sample))
				}
				path := "/v1/projects/" + url.PathEscape(project) + "/branches/" + url.PathEscape(args[1]) + "/diff?" + q.Encode()
				var d diffResult
				raw, err := c.do(cmd.Context(), "GET", path, nil, &d)
				if err != nil {
					return err
				}
				if c.json {
					return printJSON(a.stdout, raw)
				}
				return printDiff(a.stdout, d)
			},
		}
		addClientFlags(cmd, a, &c)
		cmd.Flags().StringVarP(&project, "project", "p", "main", "project")
		cmd.Flags().IntVar(&sample, "sample-rows", 0, "sample rows per table and kind of change (server default 10)")
		return cmd
	})
}

type diffResult struct {
	Base   string `json:"base"`
	Branch string `json:"branch"`
	Schema struct {
		Changed bool   `json:"changed"`
		Unified string `json:"unified"`
	} `json:"schema"`
	Tables []struct {
		Table      string   `json:"table"`
		Status     string   `json:"status"`
		PrimaryKey []string `json:"primary_key"`
		BaseRows   int64    `json:"base_rows"`
		BranchRows int64    `json:"branch_rows"`
		Added      int64    `json:"added"`
		Removed    int64    `json:"removed"`
		Changed    int64    `json:"changed"`
		Samples    []struct {
			Kind string            `json:"kind"`
			Key  map[string]string `json:"key"`
			Old  json.RawMessage   `json:"old"`
			New  json.RawMessage   `json:"new"`
		} `json:"samples"`
		Note string `json:"note"`
	} `json:"tables"`
	ChangedBytes *int64 `json:"changed_bytes"`
}

func printDiff(w io.Writer, d diffResult) error {
	fmt.Fprintf(w, "schema (%s → %s):\n", d.Base, d.Branch)
	if d.Schema.Changed {
		fmt.Fprint(w, d.Schema.Unified)
	} else {
		fmt.Fprintln(w, "  no schema changes")
	}
	fmt.Fprintln(w, "\ndata:")
	if len(d.Tables) == 0 {
		fmt.Fprintln(w, "  no row changes")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  TABLE\tSTATUS\tBASE ROWS\tBRANCH ROWS\tADDED\tREMOVED\tCHANGED")
		for _, t := range d.Tables {
			if t.Status == "unknown" {
				fmt.Fprintf(tw, "  %s\tno key\t%d\t%d\t-\t-\t-\n", t.Table, t.BaseRows, t.BranchRows)
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%d\n", t.Table, t.Status, t.BaseRows, t.BranchRows, t.Added, t.Removed, t.Changed)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, t := range d.Tables {
			if len(t.Samples) == 0 {
				continue
			}
			fmt.Fprintf(w, "\n%s:\n", t.Table)
			for _, s := range t.Samples {
				mark := map[string]string{"added": "+", "removed": "-", "changed": "~"}[s.Kind]
				fmt.Fprintf(w, "  %s %s", mark, keyText(s.Key))
				switch s.Kind {
				case "added":
					fmt.Fprintf(w, "  %s\n", s.New)
				case "removed":
					fmt.Fprintf(w, "  %s\n", s.Old)
				default:
					fmt.Fprintf(w, "\n      old %s\n      new %s\n", s.Old, s.New)
				}
			}
		}
	}
	if d.ChangedBytes != nil {
		fmt.Fprintf(w, "\nchanged storage: %d bytes\n", *d.ChangedBytes)
	}
	return nil
}

func keyText(k map[string]string) string {
	names := make([]string, 0, len(k))
	for n := range k {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + k[n]
	}
	return strings.Join(parts, ",")
}
