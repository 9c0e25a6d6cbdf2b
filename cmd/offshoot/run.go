package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/offshootdb/offshoot/experiments"
)

func init() {
	subcommands = append(subcommands, newRunCmd, newScheduleCmd)
}

// readSpec reads and validates an experiment spec (YAML or JSON); a
// relative BEIR directory is made absolute from the working directory.
func readSpec(path string) (*experiments.ExperimentSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &exitError{code: exitBadInput, err: err}
	}
	sp, err := experiments.ParseSpec(b)
	if err != nil {
		return nil, &exitError{code: exitBadInput, err: fmt.Errorf("%s: %w", path, err)}
	}
	if sp.Dataset.BEIR != "" && !filepath.IsAbs(sp.Dataset.BEIR) {
		abs, err := filepath.Abs(sp.Dataset.BEIR)
		if err != nil {
			return nil, err
		}
		sp.Dataset.BEIR = abs
	}
	return sp, nil
}

func newRunCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "run", Short: "Start, list, show, cancel and compare experiment runs"}

	var c client
	var wait bool
	start := &cobra.Command{
		Use:     "start SPEC.yaml",
		Short:   "Start an experiment run; prints its id (--wait: waits and prints the results)",
		Example: "  offshoot run start ab.yaml --wait",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sp, err := readSpec(args[0])
			if err != nil {
				return err
			}
			var r experiments.Run
			raw, err := c.do(cmd.Context(), "POST", "/v1/runs", sp, &r)
			if err != nil {
				return err
			}
			if !wait {
				if c.json {
					return printJSON(a.stdout, raw)
				}
				fmt.Fprintln(a.stdout, r.ID)
				return nil
			}
			return waitRun(cmd.Context(), a.stdout, &c, r.ID)
		},
	}
	addClientFlags(start, &c)
	start.Flags().BoolVar(&wait, "wait", false, "wait for the run to finish and print its results")

	var lc client
	var project, experiment string
	list := &cobra.Command{
		Use:   "list",
		Short: "List runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if project != "" {
				q.Set("project", project)
			}
			if experiment != "" {
				q.Set("experiment", experiment)
			}
			var out struct {
				Runs []experiments.Run `json:"runs"`
			}
			raw, err := lc.do(cmd.Context(), "GET", "/v1/runs?"+q.Encode(), nil, &out)
			if err != nil {
				return err
			}
			if lc.json {
				return printJSON(a.stdout, raw)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tEXPERIMENT\tPROJECT\tSTATUS\tVARIANTS\tCREATED")
			for _, r := range out.Runs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.Experiment, r.Project, r.Status, len(r.Variants), r.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	addClientFlags(list, &lc)
	list.Flags().StringVar(&project, "project", "", "only this project")
	list.Flags().StringVar(&experiment, "experiment", "", "only this experiment")

	var sc client
	show := &cobra.Command{
		Use:   "show RUN",
		Short: "Show a run: status, per-variant timings and metrics",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r experiments.Run
			raw, err := sc.do(cmd.Context(), "GET", "/v1/runs/"+url.PathEscape(args[0])+"?results=false", nil, &r)
			if err != nil {
				return err
			}
			if sc.json {
				return printJSON(a.stdout, raw)
			}
			return printRun(a.stdout, &r)
		},
	}
	addClientFlags(show, &sc)

	var cc client
	cancel := &cobra.Command{
		Use:   "cancel RUN",
		Short: "Cancel a queued or running run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := cc.do(cmd.Context(), "POST", "/v1/runs/"+url.PathEscape(args[0])+"/cancel", nil, nil)
			if err == nil {
				fmt.Fprintf(a.stdout, "cancelling %s\n", args[0])
			}
			return err
		},
	}
	addClientFlags(cancel, &cc)

	var mc client
	var metric string
	var alpha float64
	compare := &cobra.Command{
		Use:     "compare A B",
		Short:   "Compare run (variant) B against A: deltas, CIs, p-values, regressed queries",
		Example: "  offshoot run compare 20261127-142601-a3f2c1:bow 20261127-142601-a3f2c1:char --metric ndcg_cut_10",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"a": {args[0]}, "b": {args[1]}}
			if metric != "" {
				q.Set("metric", metric)
			}
			if alpha != 0 {
				q.Set("alpha", fmt.Sprint(alpha))
			}
			var rc experiments.RunComparison
			raw, err := mc.do(cmd.Context(), "GET", "/v1/runs/compare?"+q.Encode(), nil, &rc)
			if err != nil {
				return err
			}
			if mc.json {
				return printJSON(a.stdout, raw)
			}
			return printComparison(a.stdout, &rc)
		},
	}
	addClientFlags(compare, &mc)
	compare.Flags().StringVar(&metric, "metric", "", "primary measure, e.g. ndcg_cut_10")
	compare.Flags().Float64Var(&alpha, "alpha", 0, "significance level (default 0.05)")

	cmd.AddCommand(start, list, show, cancel, compare)
	return cmd
}

func waitRun(ctx context.Context, w io.Writer, c *client, id string) error {
	last := ""
	for {
		var r experiments.Run
		if _, err := c.do(ctx, "GET", "/v1/runs/"+url.PathEscape(id)+"?results=false", nil, &r); err != nil {
			return err
		}
		var parts []string
		for _, v := range r.Variants {
			parts = append(parts, v.Name+"="+string(v.Status))
		}
		if line := string(r.Status) + " " + strings.Join(parts, " "); line != last {
			fmt.Fprintf(w, "%s %s\n", id, line)
			last = line
		}
		if r.Status != experiments.StatusQueued && r.Status != experiments.StatusRunning {
			if err := printRun(w, &r); err != nil {
				return err
			}
			if r.Status != experiments.StatusSucceeded {
				return &exitError{code: exitFailure, err: fmt.Errorf("run %s %s: %s", id, r.Status, r.Error)}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func printRun(w io.Writer, r *experiments.Run) error {
	fmt.Fprintf(w, "run %s  experiment %s  project %s  base %s@%d  status %s\n", r.ID, r.Experiment, r.Project, r.Base.Branch, r.Base.Seq, r.Status)
	if r.Error != "" {
		fmt.Fprintf(w, "error: %s\n", r.Error)
	}
	var names []string
	for _, v := range r.Variants {
		for m := range v.Metrics {
			names = append(names, m)
		}
		break
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "VARIANT\tSTATUS\tFORK_MS\tEMBED_MS\tLOAD_MS\tINDEX_MS\tEVAL_MS\tP50\tQPS\t%s\n", strings.ToUpper(strings.Join(names, "\t")))
	for _, v := range r.Variants {
		vals := make([]string, len(names))
		for i, n := range names {
			vals[i] = fmt.Sprintf("%.4f", v.Metrics[n])
		}
		t := v.Timings
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%v\t%.0f\t%s\n", v.Name, v.Status, t.Fork, t.Embed, t.Load, t.Index, t.Eval,
			v.Latency.P50.Round(time.Microsecond), v.Latency.QPS, strings.Join(vals, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, v := range r.Variants {
		if v.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", v.Name, v.Error)
		}
	}
	if r.Verdict != nil {
		fmt.Fprintf(w, "verdict vs baseline %s: regression=%v accepted=%v\n", r.Verdict.Baseline, r.Verdict.Regression, r.Verdict.Accepted)
	}
	return nil
}

func printComparison(w io.Writer, rc *experiments.RunComparison) error {
	fmt.Fprintf(w, "%s vs %s: %s on %s\n", rc.B, rc.A, rc.Verdict, rc.Comparison.Primary)
	if err := rc.Comparison.WriteText(w, 0); err != nil {
		return err
	}
	fmt.Fprintf(w, "cost (B-A): p50 latency %+dus, qps %+.1f, index build %+.0fms, index size %+d bytes, embed %+.0fms\n",
		rc.LatencyP50DeltaUS, rc.QPSDelta, rc.IndexBuildDeltaMS, rc.IndexBytesDelta, rc.EmbedDeltaMS)
	if len(rc.Regressed) > 0 {
		fmt.Fprintln(w, "most regressed queries:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "QUERY\tA\tB\tDELTA\tOVERLAP\tENTERED\tLEFT")
		for _, q := range rc.Regressed {
			fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%+.4f\t%.2f\t%s\t%s\n", q.Query, q.A, q.B, q.Delta, q.Overlap, strings.Join(q.Entered, ","), strings.Join(q.Left, ","))
		}
		return tw.Flush()
	}
	return nil
}

// scheduleFile is a schedule in YAML or JSON, its spec inline.
func readSchedule(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &exitError{code: exitBadInput, err: err}
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, &exitError{code: exitBadInput, err: fmt.Errorf("%s: not valid YAML or JSON: %w", path, err)}
	}
	if spec, ok := m["spec"].(map[string]any); ok {
		if ds, ok := spec["dataset"].(map[string]any); ok {
			if dir, ok := ds["beir"].(string); ok && !filepath.IsAbs(dir) {
				if abs, err := filepath.Abs(dir); err == nil {
					ds["beir"] = abs
				}
			}
		}
	}
	return m, nil
}

func newScheduleCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "schedule", Short: "Manage scheduled (nightly) evaluation suites"}
	simple := func(use, short string, nargs int, run func(cmd *cobra.Command, c *client, args []string) ([]byte, error)) *cobra.Command {
		var c client
		sub := &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(nargs), RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := run(cmd, &c, args)
			if err != nil || raw == nil {
				return err
			}
			return printJSON(a.stdout, raw)
		}}
		addClientFlags(sub, &c)
		return sub
	}
	create := simple("create SCHEDULE.yaml", "Create a schedule (name, cron, metric, spec, alpha, threshold, auto_accept, webhook)", 1,
		func(cmd *cobra.Command, c *client, args []string) ([]byte, error) {
			m, err := readSchedule(args[0])
			if err != nil {
				return nil, err
			}
			return c.do(cmd.Context(), "POST", "/v1/schedules", m, nil)
		})
	update := simple("update ID SCHEDULE.yaml", "Replace a schedule's definition", 2,
		func(cmd *cobra.Command, c *client, args []string) ([]byte, error) {
			m, err := readSchedule(args[1])
			if err != nil {
				return nil, err
			}
			return c.do(cmd.Context(), "PUT", "/v1/schedules/"+url.PathEscape(args[0]), m, nil)
		})
	list := simple("list", "List schedules", 0, func(cmd *cobra.Command, c *client, _ []string) ([]byte, error) {
		var out struct {
			Schedules []experiments.Schedule `json:"schedules"`
		}
		raw, err := c.do(cmd.Context(), "GET", "/v1/schedules", nil, &out)
		if err != nil || c.json {
			return raw, err
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tCRON\tMETRIC\tBASELINE\tLAST_RUN\tPAUSED")
		for _, s := range out.Schedules {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\n", s.ID, s.Name, s.Cron, s.Metric, s.BaselineRun, s.LastRun, s.Paused)
		}
		return nil, tw.Flush()
	})
	show := simple("show ID", "Show a schedule", 1, func(cmd *cobra.Command, c *client, args []string) ([]byte, error) {
		return c.do(cmd.Context(), "GET", "/v1/schedules/"+url.PathEscape(args[0]), nil, nil)
	})
	del := simple("delete ID", "Delete a schedule (its runs stay)", 1, func(cmd *cobra.Command, c *client, args []string) ([]byte, error) {
		_, err := c.do(cmd.Context(), "DELETE", "/v1/schedules/"+url.PathEscape(args[0]), nil, nil)
		return nil, err
	})
	history := simple("history ID", "A schedule's runs with each variant's metrics, oldest first", 1, func(cmd *cobra.Command, c *client, args []string) ([]byte, error) {
		var out struct {
			History []experiments.HistoryPoint `json:"history"`
		}
		raw, err := c.do(cmd.Context(), "GET", "/v1/schedules/"+url.PathEscape(args[0])+"/history", nil, &out)
		if err != nil || c.json {
			return raw, err
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN\tTIME\tSTATUS\tBASELINE\tREGRESSION\tMETRICS")
		for _, p := range out.History {
			b, _ := json.Marshal(p.Metrics)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\n", p.Run, p.Time.Format(time.RFC3339), p.Status, p.Baseline, p.Regression, b)
		}
		return nil, tw.Flush()
	})
	accept := simple("accept ID RUN", "Accept a run of the schedule as its baseline", 2, func(cmd *cobra.Command, c *client, args []string) ([]byte, error) {
		return c.do(cmd.Context(), "POST", "/v1/schedules/"+url.PathEscape(args[0])+"/accept", map[string]string{"run_id": args[1]}, nil)
	})
	cmd.AddCommand(create, update, list, show, del, history, accept)
	return cmd
}
