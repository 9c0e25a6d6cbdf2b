package main

import (
	"encoding/json"
	"fmt"
	"github.com/offshootdb/offshoot/experiments"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// Verbs over projects, branches, snapshots, usage and psql; all call the
// running server's HTTP API like query and diff.

// The client decodes the server's answers into the facade's own types.

func costString(c *experiments.Cost) string { return fmt.Sprintf("%.4f %s", c.Total, c.Currency) }

func projectPath(p string) string { return "/v1/projects/" + url.PathEscape(p) }
func branchURL(p, b string) string {
	return projectPath(p) + "/branches/" + url.PathEscape(b)
}

// verb builds a client command: build returns the request; show prints a
// successful answer for people (--json prints it raw).
func verb(a *app, use, short string, args cobra.PositionalArgs, project *string,
	build func(args []string) (method, path string, body any, err error), show func(w io.Writer, raw []byte) error) (*cobra.Command, *client) {
	return verbExit(a, use, short, args, project, build, show, nil)
}

// verbExit is verb whose exit status, once the answer is printed (as
// text or with --json alike), is exit's for the answer; nil exits 0.
func verbExit(a *app, use, short string, args cobra.PositionalArgs, project *string,
	build func(args []string) (method, path string, body any, err error), show func(w io.Writer, raw []byte) error,
	exit func(raw []byte) error) (*cobra.Command, *client) {
	c := &client{}
	cmd := &cobra.Command{
		Use: use, Short: short, Args: args,
		RunE: func(cmd *cobra.Command, args []string) error {
			method, path, body, err := build(args)
			if err != nil {
				return &exitError{code: exitBadInput, err: err}
			}
			raw, err := c.do(cmd.Context(), method, path, body, nil)
			if err != nil {
				return err
			}
			if c.json || show == nil {
				if len(raw) > 0 {
					err = printJSON(a.stdout, raw)
				}
			} else {
				err = show(a.stdout, raw)
			}
			if err != nil || exit == nil {
				return err
			}
			return exit(raw)
		},
	}
	addClientFlags(cmd, a, c)
	if project != nil {
		cmd.Flags().StringVarP(project, "project", "p", "main", "project")
	}
	return cmd, c
}

func printed(msg string) func(io.Writer, []byte) error {
	return func(w io.Writer, _ []byte) error {
		_, err := fmt.Fprintln(w, msg)
		return err
	}
}

// resetPrinted prints a reset's answer: the snapshot keeping the old head.
func resetPrinted(w io.Writer, raw []byte) error {
	var b experiments.Branch
	if err := json.Unmarshal(raw, &b); err != nil {
		return err
	}
	if b.Snapshot == "" {
		_, err := fmt.Fprintf(w, "reset %s (old head discarded)\n", b.Name)
		return err
	}
	_, err := fmt.Fprintf(w, "reset %s; old head kept as snapshot %s\n", b.Name, b.Snapshot)
	return err
}

func showBranch(w io.Writer, raw []byte) error {
	var b experiments.Branch
	if err := json.Unmarshal(raw, &b); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name\t%s\n", b.Name)
	if b.ParentID != "" {
		fmt.Fprintf(tw, "parent\t%s (store seq %d", b.ParentID, b.ParentLSN)
		if b.ParentTimestamp != nil {
			fmt.Fprintf(tw, ", %s", b.ParentTimestamp.Format(time.RFC3339))
		}
		fmt.Fprintln(tw, ")")
	}
	fmt.Fprintf(tw, "created\t%s\n", b.CreatedAt.Format(time.RFC3339))
	if b.Snapshot != "" {
		fmt.Fprintf(tw, "old head\tkept as snapshot %s\n", b.Snapshot)
	}
	if b.ExpiresAt != nil {
		fmt.Fprintf(tw, "expires\t%s\n", b.ExpiresAt.Format(time.RFC3339))
		if b.ExpiryBlocked != "" {
			fmt.Fprintf(tw, "still here\t%s\n", b.ExpiryBlocked)
		}
	}
	fmt.Fprintf(tw, "protected\t%t\n", b.Protected)
	if len(b.Labels) > 0 {
		fmt.Fprintf(tw, "labels\t%s\n", labelString(b.Labels))
	}
	if e := b.Endpoint; e != nil {
		fmt.Fprintf(tw, "endpoint\t%s, %d connections, %d wakes, %.1f compute s\n", e.State, e.Connections, e.Wakes, e.ComputeSeconds)
		if e.LastError != "" {
			fmt.Fprintf(tw, "last error\t%s\n", e.LastError)
		}
	}
	if u := b.Usage; u != nil {
		fmt.Fprintf(tw, "storage\tlogical %s, delta %s (current %s, history %s), shared %s\n", humanBytes(u.LogicalBytes),
			humanBytes(u.DeltaBytes), humanBytes(u.CurrentBytes), humanBytes(u.HistoryBytes), humanBytes(u.SharedBytes))
	}
	return tw.Flush()
}

func labelString(l map[string]string) string {
	var kv []string
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func init() {
	subcommands = append(subcommands, projectCmd, branchCmd, snapshotCmd, usageCmd, psqlCmd)
}

func projectCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "project", Short: "Create, list and delete projects (one Postgres cluster each)"}
	create, _ := verb(a, "create NAME", "Create a project (initdb + pgvector on a new root timeline)", cobra.ExactArgs(1), nil,
		func(args []string) (string, string, any, error) {
			return "POST", "/v1/projects", map[string]any{"name": args[0]}, nil
		}, func(w io.Writer, raw []byte) error {
			var p struct{ Name string }
			_ = json.Unmarshal(raw, &p)
			_, err := fmt.Fprintf(w, "created project %s with branch main\n", p.Name)
			return err
		})
	list, _ := verb(a, "list", "List projects", cobra.NoArgs, nil,
		func([]string) (string, string, any, error) { return "GET", "/v1/projects", nil, nil },
		func(w io.Writer, raw []byte) error {
			var out struct {
				Projects []struct {
					Name      string    `json:"name"`
					Branches  int       `json:"branches"`
					Default   bool      `json:"default"`
					CreatedAt time.Time `json:"created_at"`
				}
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tBRANCHES\tDEFAULT\tCREATED")
			for _, p := range out.Projects {
				fmt.Fprintf(tw, "%s\t%d\t%t\t%s\n", p.Name, p.Branches, p.Default, p.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		})
	var force bool
	del, _ := verb(a, "delete NAME", "Delete a project (stops its endpoints, drops all its branches and snapshots)", cobra.ExactArgs(1), nil,
		func(args []string) (string, string, any, error) {
			return "DELETE", projectPath(args[0]) + fmt.Sprintf("?force=%t", force), nil, nil
		}, printed("deleted"))
	del.Flags().BoolVar(&force, "force", false, "delete even with branches besides main, protected branches, or the default project")
	cmd.AddCommand(create, list, del)
	return cmd
}

func branchCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "branch", Short: "Fork, list, show, reset, rename, protect and delete branches"}
	var project string

	var parent, snapshot, at, ttl string
	var labels []string
	var protect, masked bool
	create, _ := verb(a, "create NAME", "Fork a branch (from the parent's head, a snapshot, or a time)", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) {
			body := map[string]any{"name": args[0]}
			if parent != "" {
				body["parent_id"] = parent
			}
			if snapshot != "" {
				body["snapshot"] = snapshot
			}
			if at != "" {
				t, err := time.Parse(time.RFC3339Nano, at)
				if err != nil {
					return "", "", nil, fmt.Errorf("--at %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", at)
				}
				body["parent_timestamp"] = t
			}
			if ttl != "" {
				body["ttl"] = ttl
			}
			if protect {
				body["protected"] = true
			}
			if masked {
				body["masked"] = true
			}
			if len(labels) > 0 {
				l, err := parseLabels(labels)
				if err != nil {
					return "", "", nil, err
				}
				body["labels"] = l
			}
			return "POST", projectPath(project) + "/branches", body, nil
		}, showBranch)
	f := create.Flags()
	f.StringVar(&parent, "parent", "", "parent branch (default main)")
	f.StringVar(&snapshot, "snapshot", "", "fork from this snapshot")
	f.StringVar(&at, "at", "", "fork the parent as of this RFC 3339 time")
	f.StringVar(&ttl, "ttl", "", "expire after this Go duration (e.g. 1h)")
	f.StringArrayVar(&labels, "label", nil, "key=value label (repeatable)")
	f.BoolVar(&protect, "protect", false, "protect against delete and reset")
	f.BoolVar(&masked, "masked", false, "apply the project's masking policy before anyone can connect (see offshoot mask)")

	var prefix, cursor string
	var filter []string
	var limit int
	list, _ := verb(a, "list", "List branches as a tree", cobra.NoArgs, &project,
		func([]string) (string, string, any, error) {
			q := url.Values{}
			if prefix != "" {
				q.Set("prefix", prefix)
			}
			for _, l := range filter {
				q.Add("label", l)
			}
			if limit > 0 {
				q.Set("limit", fmt.Sprint(limit))
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			return "GET", projectPath(project) + "/branches?" + q.Encode(), nil, nil
		}, func(w io.Writer, raw []byte) error {
			var page struct {
				Branches []experiments.Branch
				Next     string
			}
			if err := json.Unmarshal(raw, &page); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BRANCH\tPROTECTED\tEXPIRES\tLABELS")
			for _, b := range page.Branches {
				exp := "-"
				if b.ExpiresAt != nil {
					exp = b.ExpiresAt.Format(time.RFC3339)
					if b.ExpiryBlocked != "" {
						exp += " (kept: " + b.ExpiryBlocked + ")"
					}
				}
				fmt.Fprintf(tw, "%s%s\t%t\t%s\t%s\n", strings.Repeat("  ", b.Depth), b.Name, b.Protected, exp, labelString(b.Labels))
			}
			if page.Next != "" {
				fmt.Fprintf(tw, "(more: --cursor %s)\n", page.Next)
			}
			return tw.Flush()
		})
	lf := list.Flags()
	lf.StringVar(&prefix, "prefix", "", "only names starting with this")
	lf.StringArrayVar(&filter, "label", nil, "only branches with this key=value label (repeatable)")
	lf.IntVar(&limit, "limit", 0, "page size (default 100)")
	lf.StringVar(&cursor, "cursor", "", "continue a previous page")

	show, _ := verb(a, "show BRANCH", "Describe a branch: parent, endpoint, storage", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) { return "GET", branchURL(project, args[0]), nil, nil }, showBranch)

	var cascade bool
	del, _ := verb(a, "delete BRANCH", "Delete (discard) a branch", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) {
			return "DELETE", branchURL(project, args[0]) + fmt.Sprintf("?cascade=%t", cascade), nil, nil
		}, printed("deleted"))
	del.Flags().BoolVar(&cascade, "cascade", false, "delete child branches too")

	var keepAs string
	var discard bool
	reset, _ := verb(a, "reset BRANCH", "Reset a branch to its parent's head (old head kept as a snapshot)", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) {
			return "POST", branchURL(project, args[0]) + "/reset", map[string]any{"snapshot": keepAs, "discard": discard}, nil
		}, resetPrinted)
	reset.Flags().StringVar(&keepAs, "snapshot", "", "name of the snapshot keeping the old head (default auto)")
	reset.Flags().BoolVar(&discard, "discard", false, "do not keep the old head")

	rename, _ := verb(a, "rename BRANCH NEW-NAME", "Rename a branch", cobra.ExactArgs(2), &project,
		func(args []string) (string, string, any, error) {
			return "PATCH", branchURL(project, args[0]), map[string]any{"name": args[1]}, nil
		}, showBranch)

	var off bool
	protectCmd, _ := verb(a, "protect BRANCH", "Protect a branch against delete and reset (--off to unprotect)", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) {
			return "PATCH", branchURL(project, args[0]), map[string]any{"protected": !off}, nil
		}, showBranch)
	protectCmd.Flags().BoolVar(&off, "off", false, "unprotect")

	ttlCmd, _ := verb(a, "ttl BRANCH DURATION", "Make a branch expire after DURATION from now (0s clears)", cobra.ExactArgs(2), &project,
		func(args []string) (string, string, any, error) {
			return "PATCH", branchURL(project, args[0]), map[string]any{"ttl": args[1]}, nil
		}, showBranch)

	var rotateRole string
	rotate, _ := verb(a, "rotate-password BRANCH", "Give a branch new passwords for its database roles (old ones stop working)", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) {
			return "POST", branchURL(project, args[0]) + "/credentials/rotate", map[string]any{"role": rotateRole}, nil
		}, func(w io.Writer, raw []byte) error {
			var out struct {
				Rotated []experiments.RotatedRole `json:"rotated"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			for _, r := range out.Rotated {
				fmt.Fprintf(w, "rotated the password of %s\n", r.Role)
			}
			return nil
		})
	rotate.Flags().StringVar(&rotateRole, "role", "", "only this role: read, write or superuser (default all the key may rotate)")

	var connRole string
	var connPassword bool
	connect, _ := verb(a, "connect BRANCH", "Print a branch's connection URI through the proxy", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) {
			q := url.Values{"password": {fmt.Sprint(connPassword)}}
			if connRole != "" {
				q.Set("role", connRole)
			}
			return "GET", branchURL(project, args[0]) + "/connection?" + q.Encode(), nil, nil
		}, func(w io.Writer, raw []byte) error {
			var c experiments.Connection
			if err := json.Unmarshal(raw, &c); err != nil {
				return err
			}
			_, err := fmt.Fprintln(w, c.URI)
			return err
		})
	connect.Flags().StringVar(&connRole, "role", "", "database role: read, write, superuser or replication (default the strongest the key allows)")
	connect.Flags().BoolVar(&connPassword, "password", false, "include the role's password on this branch (audited)")

	cmd.AddCommand(create, list, show, del, reset, rename, protectCmd, ttlCmd, rotate, connect, branchLogCmd(a), branchMergeCmd(a))
	return cmd
}

func parseLabels(ls []string) (map[string]string, error) {
	out := map[string]string{}
	for _, l := range ls {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--label %q: want key=value", l)
		}
		out[k] = v
	}
	return out, nil
}

func snapshotCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Create, list, delete and restore snapshots"}
	var project string
	create, _ := verb(a, "create BRANCH NAME", "Snapshot a branch's head", cobra.ExactArgs(2), &project,
		func(args []string) (string, string, any, error) {
			return "POST", branchURL(project, args[0]) + "/snapshots", map[string]any{"name": args[1]}, nil
		}, printed("created"))
	list, _ := verb(a, "list", "List a project's snapshots", cobra.NoArgs, &project,
		func([]string) (string, string, any, error) {
			return "GET", projectPath(project) + "/snapshots", nil, nil
		},
		func(w io.Writer, raw []byte) error {
			var out struct {
				Snapshots []struct {
					Name      string    `json:"name"`
					Branch    string    `json:"branch"`
					LSN       uint64    `json:"lsn"`
					CreatedAt time.Time `json:"created_at"`
				}
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SNAPSHOT\tBRANCH\tLSN\tCREATED")
			for _, s := range out.Snapshots {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.Name, s.Branch, s.LSN, s.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		})
	del, _ := verb(a, "delete NAME", "Delete a snapshot", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) {
			return "DELETE", projectPath(project) + "/snapshots/" + url.PathEscape(args[0]), nil, nil
		}, printed("deleted"))
	var onto string
	restore, _ := verb(a, "restore NAME [NEW-BRANCH]", "Restore a snapshot into a new branch, or --onto an existing one", cobra.RangeArgs(1, 2), &project,
		func(args []string) (string, string, any, error) {
			body := map[string]any{}
			switch {
			case onto != "" && len(args) == 1:
				body["branch"] = onto
			case onto == "" && len(args) == 2:
				body["new_branch"] = args[1]
			default:
				return "", "", nil, fmt.Errorf("give NEW-BRANCH or --onto BRANCH, exactly one")
			}
			return "POST", projectPath(project) + "/snapshots/" + url.PathEscape(args[0]) + "/restore", body, nil
		}, showBranch)
	restore.Flags().StringVar(&onto, "onto", "", "reset this existing branch onto the snapshot")
	cmd.AddCommand(create, list, del, restore)
	return cmd
}

func usageCmd(a *app) *cobra.Command {
	var project string
	cmd, _ := verb(a, "usage", "Storage and compute use per branch", cobra.NoArgs, &project,
		func([]string) (string, string, any, error) { return "GET", projectPath(project) + "/usage", nil, nil },
		func(w io.Writer, raw []byte) error {
			var u experiments.Usage
			if err := json.Unmarshal(raw, &u); err != nil {
				return err
			}
			// The cost column appears when the server has a price table.
			cost := func(c *experiments.Cost) string {
				if u.Cost == nil {
					return ""
				}
				if c == nil {
					return "-\t"
				}
				return costString(c) + "\t"
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
			head := "BRANCH\tLOGICAL\tDELTA\tCURRENT\tHISTORY\tSHARED\tCOMPUTE S\tWAKES\t"
			if u.Cost != nil {
				head += "EST. COST\t"
			}
			fmt.Fprintln(tw, head)
			for _, b := range u.Branches {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%d\t%s\n", b.Branch, humanBytes(b.LogicalBytes), humanBytes(b.DeltaBytes),
					humanBytes(b.CurrentBytes), humanBytes(b.HistoryBytes), humanBytes(b.SharedBytes), b.ComputeSeconds, b.Wakes, cost(b.Cost))
			}
			fmt.Fprintf(tw, "total\t%s\t%s\t%s\t%s\t\t%.1f\t%d\t%s\n", humanBytes(u.LogicalBytes), humanBytes(u.DeltaBytes),
				humanBytes(u.CurrentBytes), humanBytes(u.HistoryBytes), u.ComputeSeconds, u.Wakes, cost(u.Cost))
			if err := tw.Flush(); err != nil {
				return err
			}
			if m := u.Materializations; m.Count > 0 {
				_, err := fmt.Fprintf(w, "materializations: %d (%d pinned), %s of their own\n", m.Count, m.Pinned, humanBytes(uint64(max(m.DeltaBytes, 0))))
				return err
			}
			return nil
		})
	return cmd
}

// withCAFile points the sslrootcert of a connection string at caFile (the
// server names its own path to the CA, which a client on another machine
// does not have). Unchanged when caFile is "" or uri has no sslrootcert.
func withCAFile(uri, caFile string) string {
	u, err := url.Parse(uri)
	if caFile == "" || err != nil || !u.Query().Has("sslrootcert") {
		return uri
	}
	if abs, err := filepath.Abs(caFile); err == nil {
		caFile = abs
	}
	q := u.Query()
	q.Set("sslrootcert", caFile)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // libpq reads + literally
	return u.String()
}

// psqlExec replaces the process with psql.
var psqlExec = func(path string, argv, env []string) error { return syscall.Exec(path, argv, env) }

func psqlCmd(a *app) *cobra.Command {
	var project string
	var c *client
	var cmd *cobra.Command
	var role string
	cmd, c = verb(a, "psql BRANCH [-- PSQL-ARGS...]", "Open psql on a branch through the proxy", cobra.MinimumNArgs(1), &project, nil, nil)
	cmd.Flags().StringVar(&role, "role", "", "database role: read, write or superuser (default the strongest the key allows)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var conn struct {
			URI string `json:"uri"`
		}
		q := url.Values{"password": {"true"}}
		if role != "" {
			q.Set("role", role)
		}
		if _, err := c.do(cmd.Context(), "GET", branchURL(project, args[0])+"/connection?"+q.Encode(), nil, &conn); err != nil {
			return err
		}
		conn.URI = withCAFile(conn.URI, c.caFile)
		bin, err := exec.LookPath("psql")
		if err != nil {
			return &exitError{code: exitFailure, err: fmt.Errorf("psql not found in PATH (install postgresql-client); connect with: %s", conn.URI)}
		}
		return psqlExec(bin, append([]string{"psql", conn.URI}, args[1:]...), os.Environ())
	}
	return cmd
}
