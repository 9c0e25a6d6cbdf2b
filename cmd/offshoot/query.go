package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		var c client
		var project string
		var params []string
		var readOnly bool
		var timeout time.Duration
		var maxRows int
		cmd := &cobra.Command{
			Use:   "query BRANCH SQL",
			Short: "Run SQL on a branch through the running server",
			Long: `Run SQL on a branch in one transaction through the running server's HTTP API.
Several statements separated by semicolons are allowed unless --param or --read-only
is given. Results print as tables; --json prints the server's answer.`,
			Example: `  offshoot query main "SELECT count(*) FROM items"
  offshoot query feature/x "SELECT id FROM items ORDER BY emb <-> \$1 LIMIT 5" --param '[1,2,3]'
  offshoot query main "SELECT * FROM big" --max-rows 10 --json`,
			Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				body := map[string]any{"sql": args[1]}
				if len(params) > 0 {
					ps := make([]any, len(params))
					for i, p := range params {
						ps[i] = p
					}
					body["params"] = ps
				}
				if readOnly {
					body["read_only"] = true
				}
				if timeout > 0 {
					body["timeout_ms"] = timeout.Milliseconds()
				}
				if maxRows > 0 {
					body["max_rows"] = maxRows
				}
				path := "/v1/projects/" + url.PathEscape(project) + "/branches/" + url.PathEscape(args[0]) + "/query"
				var res queryResult
				raw, err := c.do(cmd.Context(), "POST", path, body, &res)
				if err != nil {
					var pe *problemErr
					if errors.As(err, &pe) && pe.p.Postgres != nil && !c.json {
						fmt.Fprint(a.stderr, pgErrorContext(args[1], pe.p))
					}
					if c.json && raw != nil {
						_ = printJSON(a.stdout, raw)
					}
					return err
				}
				if c.json {
					return printJSON(a.stdout, raw)
				}
				return printResults(a.stdout, res)
			},
		}
		addClientFlags(cmd, a, &c)
		f := cmd.Flags()
		f.StringVarP(&project, "project", "p", "main", "project")
		f.StringArrayVar(&params, "param", nil, "value of $1, $2, ... in order (repeatable; typed by Postgres)")
		f.BoolVar(&readOnly, "read-only", false, "run in a READ ONLY transaction")
		f.DurationVar(&timeout, "timeout", 0, "statement timeout (server default 30s)")
		f.IntVar(&maxRows, "max-rows", 0, "rows per result (server default 1000)")
		return cmd
	})
}

type queryResult struct {
	Results []struct {
		Command string `json:"command"`
		Columns []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"columns"`
		Rows      [][]json.RawMessage `json:"rows"`
		Truncated bool                `json:"truncated"`
	} `json:"results"`
}

// printResults prints each result as a table, or its command tag.
func printResults(w io.Writer, res queryResult) error {
	for i, r := range res.Results {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if len(r.Columns) == 0 {
			fmt.Fprintln(w, r.Command)
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		names := make([]string, len(r.Columns))
		for j, col := range r.Columns {
			names[j] = col.Name
		}
		fmt.Fprintln(tw, strings.Join(names, "\t"))
		for _, row := range r.Rows {
			cells := make([]string, len(row))
			for j, v := range row {
				cells[j] = cell(v)
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		n := len(r.Rows)
		plural := "s"
		if n == 1 {
			plural = ""
		}
		if r.Truncated {
			fmt.Fprintf(w, "(first %d row%s; more were cut: raise --max-rows)\n", n, plural)
		} else {
			fmt.Fprintf(w, "(%d row%s)\n", n, plural)
		}
	}
	return nil
}

// cell renders one JSON value for a table: strings bare, null as NULL,
// tabs and newlines escaped.
func cell(v json.RawMessage) string {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		s = string(v)
	}
	if string(v) == "null" {
		s = "NULL"
	}
	return strings.NewReplacer("\t", `\t`, "\n", `\n`).Replace(s)
}

// pgErrorContext shows where in the SQL Postgres found the error, as psql
// does, plus its detail and hint.
func pgErrorContext(sql string, p problem) string {
	pg := p.Postgres
	var b strings.Builder
	if pg.Position > 0 {
		runes := []rune(sql)
		pos := min(pg.Position-1, len(runes))
		lineStart, lineNo := 0, 1
		for i := 0; i < pos; i++ {
			if runes[i] == '\n' {
				lineStart, lineNo = i+1, lineNo+1
			}
		}
		lineEnd := lineStart
		for lineEnd < len(runes) && runes[lineEnd] != '\n' {
			lineEnd++
		}
		prefix := fmt.Sprintf("LINE %d: ", lineNo)
		fmt.Fprintf(&b, "%s%s\n%s^\n", prefix, string(runes[lineStart:lineEnd]), strings.Repeat(" ", len(prefix)+pos-lineStart))
	}
	if pg.Detail != "" {
		fmt.Fprintf(&b, "DETAIL:  %s\n", pg.Detail)
	}
	if pg.Hint != "" {
		fmt.Fprintf(&b, "HINT:  %s\n", pg.Hint)
	}
	return b.String()
}
