package main

import (
	"fmt"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		var c client
		var since string
		var limit int
		cmd := &cobra.Command{
			Use:     "audit",
			Short:   "Show the audit log (admin)",
			Example: "  offshoot audit --since 1h\n  offshoot audit --since 2026-01-02T15:04:05Z --json",
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				q := url.Values{}
				if since != "" {
					t, err := parseSince(since, time.Now())
					if err != nil {
						return &exitError{code: exitBadInput, err: err}
					}
					q.Set("since", t.UTC().Format(time.RFC3339Nano))
				}
				if limit > 0 {
					q.Set("limit", strconv.Itoa(limit))
				}
				var page struct {
					Entries []struct {
						Time   time.Time `json:"time"`
						KeyID  string    `json:"key_id"`
						Action string    `json:"action"`
						Target string    `json:"target"`
						Result string    `json:"result"`
						Error  string    `json:"error"`
					} `json:"entries"`
					Next *time.Time `json:"next"`
				}
				raw, err := c.do(cmd.Context(), "GET", "/v1/audit?"+q.Encode(), nil, &page)
				if err != nil {
					return err
				}
				if c.json {
					return printJSON(a.stdout, raw)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tKEY\tACTION\tTARGET\tRESULT\tERROR")
				for _, e := range page.Entries {
					key := e.KeyID
					if key == "" {
						key = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), key, e.Action, e.Target, e.Result, e.Error)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if page.Next != nil {
					fmt.Fprintf(a.stdout, "(more: --since %s)\n", page.Next.Format(time.RFC3339Nano))
				}
				return nil
			},
		}
		addClientFlags(cmd, a, &c)
		cmd.Flags().StringVar(&since, "since", "", "entries at or after this RFC 3339 time or this long ago (e.g. 1h)")
		cmd.Flags().IntVar(&limit, "limit", 0, "entries to show (server default 100, at most 1000)")
		return cmd
	})
}

// parseSince accepts an RFC 3339 time or a duration back from now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (90m, 24h)", s)
}
