package experiments

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText writes m for people and agents: the outcome, the DDL and row
// counts, every conflict with its base, source and target values, and
// what to do next. The CLI and the MCP tools print it.
func (m *Merge) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "merge\t%s: %s into %s, strategy %s\n", m.ID, m.Source, m.Target, m.Strategy)
	fmt.Fprintf(tw, "base\t%s as of store seq %d\n", m.Base, m.BaseSeq)
	fmt.Fprintf(tw, "status\t%s\n", m.Status)
	if m.Snapshot != "" {
		fmt.Fprintf(tw, "snapshot\t%s\n", m.Snapshot)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range m.Schema {
		fmt.Fprintf(w, "  ddl: %s\n", clip(strings.Join(strings.Fields(s), " "), 300))
	}
	if len(m.Tables) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TABLE\tINSERTED\tUPDATED\tDELETED")
		for _, t := range m.Tables {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", t.Table, t.Inserted, t.Updated, t.Deleted)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if m.UnchangedTables+m.NarrowedByBlocks > 0 {
		fmt.Fprintf(w, "  unchanged tables: %d (%d never read: storage shows no block written since the base); %d read only in changed blocks\n",
			m.UnchangedTables, m.SkippedByBlocks, m.NarrowedByBlocks)
	}
	if m.Sequences > 0 {
		fmt.Fprintf(w, "  sequences advanced: %d\n", m.Sequences)
	}
	for _, c := range m.Conflicts {
		state := "OPEN"
		if c.Resolution != nil {
			state = "resolved: " + c.Resolution.Choice
		}
		where := strings.TrimSpace(c.Table + " " + c.Object)
		if len(c.Key) > 0 {
			b, _ := json.Marshal(c.Key)
			where += " key " + string(b)
		}
		fmt.Fprintf(w, "conflict %s (%s, %s) %s\n  %s\n", c.ID, c.Kind, state, where, c.Message)
		for _, side := range []struct {
			name string
			v    json.RawMessage
		}{{"base", c.Base}, {"source", c.Source}, {"target", c.Target}} {
			if len(side.v) > 0 {
				fmt.Fprintf(w, "  %-7s %s\n", side.name+":", clip(string(side.v), 300))
			}
		}
		if c.Hint != "" && c.Resolution == nil {
			fmt.Fprintf(w, "  hint: %s\n", c.Hint)
		}
	}
	_, err := fmt.Fprintf(w, "next: %s\n", m.Next)
	return err
}
