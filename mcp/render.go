package mcp

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/offshootdb/offshoot/experiments"
)

// renderQuery is the compact text form of a query result: per statement
// its command tag and a pipe table of at most textRows rows, cells clipped
// to textCell bytes; every cut is marked.
func renderQuery(res *experiments.QueryResult, maxRows int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d result(s) in %.1f ms\n", len(res.Results), res.DurationMS)
	for _, r := range res.Results {
		fmt.Fprintf(&b, "\nstatement %s: %s", experiments.StatementLabel(r.Statement, r.Part), r.Command)
		if len(r.Columns) == 0 {
			b.WriteString("\n")
			continue
		}
		fmt.Fprintf(&b, " (%d row(s))\n", len(r.Rows))
		names := make([]string, len(r.Columns))
		for i, c := range r.Columns {
			names[i] = oneLine(c.Name) + " " + c.Type
		}
		b.WriteString(strings.Join(names, " | "))
		b.WriteString("\n")
		for i, row := range r.Rows {
			if i == textRows {
				fmt.Fprintf(&b, "… %d more row(s) not shown here; the structured result has them all\n", len(r.Rows)-textRows)
				break
			}
			cells := make([]string, len(row))
			for j, v := range row {
				cells[j] = cellText(v)
			}
			b.WriteString(strings.Join(cells, " | "))
			b.WriteString("\n")
		}
		if r.Truncated {
			fmt.Fprintf(&b, "… TRUNCATED: the statement returned more than max_rows=%d rows; add a LIMIT or WHERE, or raise max_rows\n", maxRows)
		}
	}
	return b.String()
}

// cellText renders one JSON value of a row for the text table.
func cellText(v any) string {
	var s string
	switch v := v.(type) {
	case nil:
		s = "NULL"
	case string:
		s = v
	default:
		bs, err := json.Marshal(v)
		if err != nil {
			s = fmt.Sprint(v)
		} else {
			s = string(bs)
		}
	}
	return clipText(oneLine(s), textCell)
}

// renderDiff is the compact text form of a branch diff.
func renderDiff(d *experiments.Diff) string {
	var b strings.Builder
	fmt.Fprintf(&b, "diff of branch %s against %s (project %s)\n", d.Branch, d.Base, d.Project)
	if !d.Schema.Changed && len(d.Tables) == 0 {
		b.WriteString("no differences in schema or rows\n")
		return b.String()
	}
	if d.Schema.Changed {
		b.WriteString("\nschema:\n")
		b.WriteString(clipText(d.Schema.Unified, 8000))
		if !strings.HasSuffix(d.Schema.Unified, "\n") {
			b.WriteString("\n")
		}
	} else {
		b.WriteString("\nschema: unchanged\n")
	}
	if len(d.Tables) > 0 {
		b.WriteString("\ntables:\n")
	}
	for _, t := range d.Tables {
		fmt.Fprintf(&b, "%s %s: rows %d -> %d, +%d -%d ~%d", t.Status, t.Table, t.BaseRows, t.BranchRows, t.Added, t.Removed, t.Changed)
		if t.Note != "" {
			fmt.Fprintf(&b, " (%s)", t.Note)
		}
		b.WriteString("\n")
		for _, sm := range t.Samples {
			row := sm.New
			if sm.Kind == "removed" {
				row = sm.Old
			}
			fmt.Fprintf(&b, "  %s %s\n", sm.Kind, clipText(oneLine(string(row)), textCell))
		}
	}
	return b.String()
}
