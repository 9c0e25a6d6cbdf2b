package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/experiments"
)

func init() {
	subcommands = append(subcommands, replicaCmd)
}

// replicaCmd is `offshoot replica create|list|show|promote|delete`:
// read-only copies of a branch of another offshoot server that follow it.
func replicaCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "replica",
		Short: "Create, list, show, promote and delete replicas (read-only copies of a branch of another server that follow it)"}
	path := func(project string) string { return "/v1/replicas/" + url.PathEscape(project) }
	var source, maxRate string
	create, _ := verb(a, "create PROJECT --source URI", "Copy a branch of another server into a new project here and keep following it", cobra.ExactArgs(1), nil,
		func(args []string) (string, string, any, error) {
			src, err := replicaSource(source, os.Stdin)
			if err != nil {
				return "", "", nil, err
			}
			return "POST", "/v1/replicas", map[string]any{"project": args[0], "source": src, "max_rate": maxRate}, nil
		}, showReplica)
	create.Flags().StringVar(&source, "source", "", "libpq URI of the source branch as offshoot_replication, with its password; - reads it from standard input (default: $"+sourceEnv+"), which keeps the password off the command line")
	create.Flags().StringVar(&maxRate, "max-rate", "", "cap on the initial copy's rate (kB/s, or 500k, 20M) so that it does not saturate the source")
	list, _ := verb(a, "list", "List the replicas on this server with their lag", cobra.NoArgs, nil,
		func([]string) (string, string, any, error) { return "GET", "/v1/replicas", nil, nil },
		func(w io.Writer, raw []byte) error {
			var out struct {
				Replicas []experiments.Replica `json:"replicas"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PROJECT\tSTATE\tLAG\tSOURCE")
			for _, r := range out.Replicas {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Project, r.State, lagString(r.Lag), r.Source)
			}
			return tw.Flush()
		})
	show, _ := verb(a, "show PROJECT", "Show a replica: its source, state and lag", cobra.ExactArgs(1), nil,
		func(args []string) (string, string, any, error) { return "GET", path(args[0]), nil, nil }, showReplica)
	promote, _ := verb(a, "promote PROJECT", "Stop following the source and make the replica a writable branch", cobra.ExactArgs(1), nil,
		func(args []string) (string, string, any, error) { return "POST", path(args[0]) + "/promote", nil, nil }, showReplica)
	del, _ := verb(a, "delete PROJECT", "Delete a replica's project and its slot on the source", cobra.ExactArgs(1), nil,
		func(args []string) (string, string, any, error) { return "DELETE", path(args[0]), nil, nil }, showReplica)
	cmd.AddCommand(create, list, show, promote, del)
	return cmd
}

// sourceEnv names the variable replica create reads the source URI from
// when --source is not given.
const sourceEnv = "OFFSHOOT_REPLICA_SOURCE"

// replicaSource is --source: the URI itself, "-" for the first line of
// stdin, or "" for $OFFSHOOT_REPLICA_SOURCE.
func replicaSource(flag string, stdin io.Reader) (string, error) {
	src := flag
	switch flag {
	case "-":
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("--source -: %w", err)
		}
		src = strings.TrimSpace(line)
	case "":
		src = os.Getenv(sourceEnv)
	}
	if src == "" {
		return "", fmt.Errorf("--source is required (or $%s, or - for standard input): the source branch's URI as role offshoot_replication (on the source: offshoot branch connect BRANCH --role replication --password)", sourceEnv)
	}
	return src, nil
}

func lagString(l *experiments.ReplicaLag) string {
	if l == nil {
		return "-"
	}
	return fmt.Sprintf("%s, %.1f s", humanBytes(uint64(max(l.Bytes, 0))), l.Seconds)
}

func showReplica(w io.Writer, raw []byte) error {
	var r experiments.Replica
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "project\t%s (branch %s)\n", r.Project, r.Branch)
	fmt.Fprintf(tw, "source\t%s\n", r.Source)
	if r.SourceBranch != "" {
		src := r.SourceBranch
		if r.SourceProject != "" {
			src = r.SourceProject + "/" + src
		}
		fmt.Fprintf(tw, "source branch\t%s\n", src)
	}
	fmt.Fprintf(tw, "system id\t%s\n", r.SystemID)
	fmt.Fprintf(tw, "slot\t%s\n", r.Slot)
	fmt.Fprintf(tw, "state\t%s\n", r.State)
	if r.Lag != nil {
		fmt.Fprintf(tw, "lag\t%s (replayed %s, received %s, source at %s)\n", lagString(r.Lag), r.Lag.ReplayedLSN, r.Lag.ReceivedLSN, r.Lag.SourceLSN)
		if r.Lag.LastMessageAt != nil {
			fmt.Fprintf(tw, "last message\t%s\n", r.Lag.LastMessageAt.Format(time.RFC3339))
		}
	}
	fmt.Fprintf(tw, "created\t%s\n", r.CreatedAt.Format(time.RFC3339))
	if r.PromotedAt != nil {
		fmt.Fprintf(tw, "promoted\t%s\n", r.PromotedAt.Format(time.RFC3339))
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(tw, "warning\t%s\n", warn)
	}
	return tw.Flush()
}
