package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/experiments"
)

// Three-way merges: `branch merge` starts one; `merge` shows, resolves,
// completes, aborts and undoes them. A merge that has conflicts open
// (failed, a preview, a session) exits with exitConflict, with --json
// too, so scripts cannot mistake it for a merge (see mergeExit).

func init() {
	subcommands = append(subcommands, mergeCmd)
}

func mergeURL(p, id string) string { return projectPath(p) + "/merges/" + url.PathEscape(id) }

// branchMergeCmd is `offshoot branch merge SRC --into DST`.
func branchMergeCmd(a *app) *cobra.Command {
	var project, into, strategy string
	var dryRun, full bool
	cmd, _ := verbExit(a, "merge SOURCE --into TARGET", "Merge SOURCE into TARGET three-way (schema and rows, with conflicts)", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) {
			if into == "" {
				return "", "", nil, errors.New("--into TARGET is required")
			}
			return "POST", branchURL(project, args[0]) + "/merge", map[string]any{"target": into, "strategy": strategy, "dry_run": dryRun, "full_compare": full}, nil
		}, showMerge, mergeExit)
	cmd.Long = `Merge SOURCE into TARGET three-way. The base is their nearest common ancestor in the
store's history (for a fork merged back, the parent as of the fork point). Schema changes
only one side made are replayed as DDL, then the source's row changes of every table with
a primary key, in one transaction on TARGET, which may be running. The target's prior
state is kept as snapshot pre-merge.<id>: 'offshoot merge undo ID' puts it back.

Strategies for conflicts (the same row changed differently on both sides, a change the
target's constraints refuse, a schema change both made, a keyless table both changed):
  fail    change nothing and list the conflicts (default)
  ours    keep the target's side
  theirs  take the source's side (a change the target refuses stays a conflict)
  manual  open a merge session: resolve each conflict, then 'offshoot merge complete ID'

Exits 6 when conflicts are left open: a failed merge, a --dry-run that found conflicts,
a manual session opened with conflicts (with --json too).`
	cmd.Example = "  offshoot branch merge feature/x --into main --dry-run\n  offshoot branch merge feature/x --into main --strategy manual"
	cmd.Flags().StringVar(&into, "into", "", "the branch that receives the changes (required)")
	cmd.Flags().StringVar(&strategy, "strategy", "fail", "fail, ours, theirs or manual")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would change and conflict; change nothing")
	cmd.Flags().BoolVar(&full, "full-compare", false, "compare every row of every table, not only the blocks storage shows changed (slower; for verification)")
	return cmd
}

func mergeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "merge", Short: "List, show, resolve, complete, abort and undo branch merges"}
	var project string
	list, _ := verb(a, "list", "List the project's merges, newest first", cobra.NoArgs, &project,
		func([]string) (string, string, any, error) { return "GET", projectPath(project) + "/merges", nil, nil },
		func(w io.Writer, raw []byte) error {
			var out struct {
				Merges []experiments.Merge `json:"merges"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSOURCE\tTARGET\tSTRATEGY\tSTATUS\tOPEN\tCREATED")
			for _, m := range out.Merges {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.ID, m.Source, m.Target, m.Strategy, m.Status, m.OpenConflicts, m.CreatedAt.Format("2006-01-02 15:04:05"))
			}
			return tw.Flush()
		})
	show, _ := verbExit(a, "show ID", "Show a merge with its conflicts (base, source and target values); exits 6 while it has conflicts open", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) { return "GET", mergeURL(project, args[0]), nil, nil }, showMerge, mergeExit)

	var values string
	// resolve exits 0 when the resolution is taken, even while other
	// conflicts of the session stay open: complete says whether it applies.
	resolve, _ := verb(a, "resolve ID CONFLICT ours|theirs|custom", "Resolve one conflict of a merge session", cobra.ExactArgs(3), &project,
		func(args []string) (string, string, any, error) {
			body := map[string]any{"choice": args[2]}
			if values != "" {
				v := values
				if rest, ok := strings.CutPrefix(values, "@"); ok {
					b, err := os.ReadFile(rest)
					if err != nil {
						return "", "", nil, fmt.Errorf("--values: %w", err)
					}
					v = string(b)
				}
				if !json.Valid([]byte(v)) {
					return "", "", nil, fmt.Errorf("--values %q: want a JSON object of column values (or null), or @file", values)
				}
				body["values"] = json.RawMessage(v)
			}
			return "POST", mergeURL(project, args[0]) + "/conflicts/" + url.PathEscape(args[1]) + "/resolve", body, nil
		}, showMerge)
	resolve.Flags().StringVar(&values, "values", "", `custom: the row's column values as a JSON object, e.g. '{"name": "x"}' (null deletes the row; @FILE reads a file)`)

	var actions []*cobra.Command
	for _, v := range []struct{ name, short string }{
		{"complete", "Apply a merge session once its conflicts are resolved (exits 6 while conflicts stay open)"},
		{"abort", "Discard a merge session; the branches stay as they are"},
		{"undo", "Put a merge's target back as it was before the merge (its merged state is kept as a snapshot)"},
	} {
		c, _ := verbExit(a, v.name+" ID", v.short, cobra.ExactArgs(1), &project,
			func(args []string) (string, string, any, error) {
				return "POST", mergeURL(project, args[0]) + "/" + v.name, nil, nil
			}, showMerge, mergeExit)
		actions = append(actions, c)
	}
	cmd.AddCommand(append([]*cobra.Command{list, show, resolve}, actions...)...)
	return cmd
}

// showMerge prints a merge for people.
func showMerge(w io.Writer, raw []byte) error {
	var m experiments.Merge
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	return m.WriteText(w)
}

// mergeExit fails with exitConflict when a merge has conflicts open:
// status conflicts (nothing was changed), or a preview or session that
// lists open conflicts. Merged, aborted and undone merges and conflict-free
// previews and sessions exit 0.
func mergeExit(raw []byte) error {
	var m experiments.Merge
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	switch {
	case m.Status == experiments.MergeConflicts:
		return &exitError{code: exitConflict, err: fmt.Errorf("merge %s: %d conflicts are open; nothing was changed", m.ID, m.OpenConflicts)}
	case m.OpenConflicts > 0 && m.Status == experiments.MergePreview:
		return &exitError{code: exitConflict, err: fmt.Errorf("merge %s would leave %d conflicts open", m.ID, m.OpenConflicts)}
	case m.OpenConflicts > 0 && m.Status == experiments.MergeOpen:
		return &exitError{code: exitConflict, err: fmt.Errorf("merge session %s: %d conflicts are open; resolve them, then complete it", m.ID, m.OpenConflicts)}
	}
	return nil
}
