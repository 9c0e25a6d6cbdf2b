package main

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot"

	"github.com/offshootdb/offshoot/agentapi/web"
	"github.com/offshootdb/offshoot/experiments"
)

// plot writes the web UI's charts as files: the same gonum/plot code
// draws them, from the same API answers.
func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		cmd := &cobra.Command{Use: "plot", Short: "Write the web UI's charts as SVG or PNG files (format from the file extension)"}
		save := func(path string, p *plot.Plot) error {
			if err := web.SaveChart(path, p); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "wrote %s\n", path)
			return nil
		}

		var cmc client
		var metric string
		compare := &cobra.Command{
			Use:     "compare A B OUT",
			Short:   "Metric deltas of B against A with confidence intervals and significance marks",
			Example: "  offshoot plot compare 20261127-142601-a3f2c1:bow 20261127-142601-a3f2c1:char cmp.svg",
			Args:    cobra.ExactArgs(3),
			RunE: func(cmd *cobra.Command, args []string) error {
				q := url.Values{"a": {args[0]}, "b": {args[1]}}
				if metric != "" {
					q.Set("metric", metric)
				}
				var rc experiments.RunComparison
				if _, err := cmc.do(cmd.Context(), "GET", "/v1/runs/compare?"+q.Encode(), nil, &rc); err != nil {
					return err
				}
				p, err := web.ComparisonChart(&rc)
				if err != nil {
					return err
				}
				return save(args[2], p)
			},
		}
		addClientFlags(compare, a, &cmc)
		compare.Flags().StringVar(&metric, "metric", "", "primary measure, e.g. ndcg_cut_10")

		var smc client
		sweep := &cobra.Command{
			Use:   "sweep RUN OUT",
			Short: "Recall against QPS of a run's variants, with the Pareto front",
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				var r experiments.Run
				if _, err := smc.do(cmd.Context(), "GET", "/v1/runs/"+url.PathEscape(args[0]), nil, &r); err != nil {
					return err
				}
				p, err := web.SweepChart(experiments.SweepPoints(&r))
				if err != nil {
					return err
				}
				return save(args[1], p)
			},
		}
		addClientFlags(sweep, a, &smc)

		var tmc client
		var tmetric string
		trend := &cobra.Command{
			Use:   "trend SCHEDULE OUT",
			Short: "A metric over a schedule's runs, regressions marked",
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				var h struct {
					History []experiments.HistoryPoint `json:"history"`
				}
				if _, err := tmc.do(cmd.Context(), "GET", "/v1/schedules/"+url.PathEscape(args[0])+"/history", nil, &h); err != nil {
					return err
				}
				p, err := web.TrendChart(h.History, tmetric)
				if err != nil {
					return err
				}
				return save(args[1], p)
			},
		}
		addClientFlags(trend, a, &tmc)
		trend.Flags().StringVar(&tmetric, "metric", "ndcg_cut_10", "measure to plot")

		cmd.AddCommand(compare, sweep, trend)
		return cmd
	})
}
