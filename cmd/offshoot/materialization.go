package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/experiments"
)

func init() {
	subcommands = append(subcommands, materializationCmd)
}

// materializationCmd is `offshoot materialization list|show|delete|pin`:
// the variants' loaded and indexed forks kept for reuse by later runs.
func materializationCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "materialization", Aliases: []string{"mat"},
		Short: "List, show, delete and pin materializations (variants' loaded and indexed forks kept for reuse)"}
	var project string
	path := func(id string) string { return projectPath(project) + "/materializations/" + url.PathEscape(id) }
	list, _ := verb(a, "list", "List a project's materializations, most recently used first", cobra.NoArgs, &project,
		func([]string) (string, string, any, error) {
			return "GET", projectPath(project) + "/materializations", nil, nil
		},
		func(w io.Writer, raw []byte) error {
			var out struct {
				Materializations []experiments.Materialization `json:"materializations"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tEMBEDDER\tINDEX\tROWS\tSIZE\tHITS\tLAST USED\tEXPIRES\tBUILT BY")
			for _, m := range out.Materializations {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s/%s\n", m.ID, m.Key.Retriever(), indexString(m.Key.Index), m.Rows,
					deltaString(m.DeltaBytes), m.Hits, m.LastUsedAt.Format(time.RFC3339), expiresString(&m), m.CreatedByRun, m.CreatedByVariant)
			}
			return tw.Flush()
		})
	show, _ := verb(a, "show ID", "Show a materialization: its key, where it forks from, its storage and use", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) { return "GET", path(args[0]), nil, nil },
		showMaterialization)
	del, _ := verb(a, "delete ID", "Delete a materialization and release its storage (pinned or not)", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) { return "DELETE", path(args[0]), nil, nil },
		printed("deleted"))
	var off bool
	pin, _ := verb(a, "pin ID", "Pin a materialization (--off: unpin): a pinned one neither expires nor is evicted", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) {
			return "POST", path(args[0]) + "/pin", map[string]any{"pinned": !off}, nil
		}, showMaterialization)
	pin.Flags().BoolVar(&off, "off", false, "unpin")
	cmd.AddCommand(list, show, del, pin)
	return cmd
}

func showMaterialization(w io.Writer, raw []byte) error {
	var m experiments.Materialization
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	k := m.Key
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\n", m.ID)
	fmt.Fprintf(tw, "corpus\t%d docs, sha256 %.12s\n", k.Corpus.Rows, k.Corpus.SHA256)
	chunking := "one chunk per document"
	if c := k.Chunking; c != nil {
		chunking = fmt.Sprintf("size %d overlap %d", c.Size, c.Overlap)
	}
	fmt.Fprintf(tw, "chunking\t%s\n", chunking)
	if k.TextSearchConfig != "" {
		fmt.Fprintf(tw, "retriever\tPostgres full-text search, text search configuration %s\n", k.TextSearchConfig)
	} else {
		fmt.Fprintf(tw, "embedder\t%s (model %s, %d dims, normalization %s)\n", k.Embedder, m.ModelID, k.Dims, m.Normalization)
	}
	fmt.Fprintf(tw, "index\t%s, distance %s, layout %s\n", indexString(k.Index), k.Distance, k.Layout)
	fmt.Fprintf(tw, "rows\t%d\n", m.Rows)
	if m.IndexName != "" {
		fmt.Fprintf(tw, "index size\t%s (%s)\n", humanBytes(uint64(max(m.IndexBytes, 0))), m.IndexName)
	}
	fmt.Fprintf(tw, "storage\t%s of its own", deltaString(m.DeltaBytes))
	if m.CurrentBytes != nil {
		fmt.Fprintf(tw, ", %s once its build's history ages out", humanBytes(uint64(max(*m.CurrentBytes, 0))))
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "forks from\t%s\n", m.Point)
	fmt.Fprintf(tw, "built by\trun %s variant %s, %s (embed %.0f ms, load %.0f ms, index %.0f ms)\n", m.CreatedByRun, m.CreatedByVariant,
		m.CreatedAt.Format(time.RFC3339), m.Build.Embed, m.Build.Load, m.Build.Index)
	fmt.Fprintf(tw, "used\t%d hits, last %s\n", m.Hits, m.LastUsedAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "pinned\t%t\n", m.Pinned)
	fmt.Fprintf(tw, "expires\t%s\n", expiresString(&m))
	return tw.Flush()
}

func indexString(ix experiments.IndexSpec) string {
	switch ix.Type {
	case "hnsw":
		return fmt.Sprintf("hnsw m=%d ef_construction=%d", ix.M, ix.EfConstruction)
	case "ivfflat":
		return fmt.Sprintf("ivfflat lists=%d", ix.Lists)
	case "gin":
		return "gin (tsvector)"
	}
	return "exact"
}

func deltaString(b *int64) string {
	if b == nil {
		return "-"
	}
	return humanBytes(uint64(max(*b, 0)))
}

func expiresString(m *experiments.Materialization) string {
	if m.ExpiresAt == nil {
		return "never"
	}
	return m.ExpiresAt.Format(time.RFC3339)
}

// writeMaterializations says, per variant, which materialization it
// reused or kept.
func writeMaterializations(w io.Writer, r *experiments.Run) {
	for _, v := range r.Variants {
		u := v.Materialization
		switch {
		case u == nil:
		case u.Reused:
			fmt.Fprintf(w, "%s: reused materialization %s (built by run %s variant %s): no embed, load or index build\n",
				v.Name, u.ID, u.CreatedByRun, u.CreatedByVariant)
		case strings.HasPrefix(u.Note, "rebuilt: "):
			fmt.Fprintf(w, "%s: kept as materialization %s (%s)\n", v.Name, u.ID, u.Note)
		case u.Note != "":
			fmt.Fprintf(w, "%s: materialization %s %s\n", v.Name, u.ID, u.Note)
		default:
			fmt.Fprintf(w, "%s: kept as materialization %s\n", v.Name, u.ID)
		}
	}
}
