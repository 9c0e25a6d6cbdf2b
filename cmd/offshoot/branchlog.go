package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
)

// branchLogCmd is `offshoot branch log BRANCH [-n 50]`: the tail of the
// branch endpoint's Postgres log.
func branchLogCmd(a *app) *cobra.Command {
	var project string
	var n int
	cmd, _ := verb(a, "log BRANCH", "Show the last lines of the branch endpoint's Postgres log", cobra.ExactArgs(1), &project,
		func(args []string) (string, string, any, error) {
			if n < 1 || n > 1000 {
				return "", "", nil, fmt.Errorf("-n %d: want 1..1000 lines", n)
			}
			return "GET", branchURL(project, args[0]) + "/endpoint/log?lines=" + strconv.Itoa(n), nil, nil
		},
		func(w io.Writer, raw []byte) error {
			var out struct {
				Lines []string `json:"lines"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			if len(out.Lines) == 0 {
				_, err := fmt.Fprintln(w, "(no log yet: the endpoint has not started; run a query to wake it)")
				return err
			}
			for _, l := range out.Lines {
				if _, err := fmt.Fprintln(w, l); err != nil {
					return err
				}
			}
			return nil
		})
	cmd.Flags().IntVarP(&n, "lines", "n", 50, "number of lines (1..1000)")
	return cmd
}
