package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments"
)

func init() {
	subcommands = append(subcommands, newRunCmd, newScheduleCmd)
}

// specProject is the -p/--project of a verb that runs a spec: the
// project of a spec that names none (default main). Set says it was
// given on the command line, when a spec naming another is refused.
type specProject struct {
	Name string
	Set  bool
}

// addSpecProjectFlag adds -p/--project to cmd.
func addSpecProjectFlag(cmd *cobra.Command, p *specProject) {
	cmd.Flags().StringVarP(&p.Name, "project", "p", "main", "project of a spec that names none (one that names another is refused)")
}

// given returns p with Set as cmd's command line says.
func (p specProject) given(cmd *cobra.Command) specProject {
	p.Set = cmd.Flags().Changed("project")
	return p
}

// readSpec reads and validates an experiment spec (YAML or JSON), in
// project p when it names none; a relative BEIR directory is made
// absolute from the working directory when it exists there (see
// localDataset).
func readSpec(path string, p specProject) (*experiments.ExperimentSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &exitError{code: exitBadInput, err: err}
	}
	sp, err := experiments.ParseSpecIn(b, p.Name)
	if err != nil {
		return nil, &exitError{code: exitBadInput, err: fmt.Errorf("%s: %w", path, err)}
	}
	if p.Set && sp.Project != p.Name {
		return nil, &exitError{code: exitBadInput, err: fmt.Errorf("--project %s: %s is a spec of project %s", p.Name, path, sp.Project)}
	}
	sp.Dataset.BEIR = localDataset(sp.Dataset.BEIR)
	return sp, nil
}

// localDataset makes a relative BEIR path that names a directory here
// absolute, for a server on this machine; any other path is sent as
// written, and the server takes a relative one relative to its datasets
// directory (where every dataset must lie).
func localDataset(dir string) string {
	if dir == "" || filepath.IsAbs(dir) {
		return dir
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return dir
	}
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

func newRunCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "run", Short: "Start, list, show, cancel and compare experiment runs"}

	var c client
	var wait, cold bool
	var baseline string
	var gate baselineGate
	var sproject specProject
	start := &cobra.Command{
		Use:     "start SPEC.yaml",
		Short:   "Start an experiment run; prints its id (--wait: waits and prints the results)",
		Example: "  offshoot run start ab.yaml --wait",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return startRun(cmd.Context(), a, &c, args[0], sproject.given(cmd), wait, cold, baseline, gate)
		},
	}
	addClientFlags(start, a, &c)
	addSpecProjectFlag(start, &sproject)
	start.Flags().BoolVar(&wait, "wait", false, "wait for the run to finish and print its results")
	addColdFlag(start, &cold)
	start.Flags().StringVar(&baseline, "baseline", "", "with --wait: compare each variant with the same-named variant of this run (an id, or a schedule's id or name for its accepted baseline) and exit 1 on a regression (for CI)")
	start.Flags().StringVar(&gate.Metric, "metric", "ndcg_cut_10", "with --baseline: the measure that must not drop")
	start.Flags().Float64Var(&gate.Alpha, "alpha", 0.05, "with --baseline: significance level of a drop")
	start.Flags().Float64Var(&gate.Threshold, "threshold", 0, "with --baseline: also a regression when the mean drops by more than this")
	start.Flags().StringVar((*string)(&gate.Correction), "correction", "holm", "with --baseline: adjust the variants' p-values as one family: holm, bh or none")

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
	addClientFlags(list, a, &lc)
	list.Flags().StringVar(&project, "project", "", "only this project")
	list.Flags().StringVar(&experiment, "experiment", "", "only this experiment")

	var sc client
	var plot string
	show := &cobra.Command{
		Use:     "show RUN",
		Short:   "Show a run: status, per-variant timings and metrics, recall–QPS points",
		Example: "  offshoot run show 20261127-142601-a3f2c1 --plot sweep.svg",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r struct {
				experiments.Run
				Sweep []experiments.SweepPoint `json:"sweep"`
			}
			raw, err := sc.do(cmd.Context(), "GET", "/v1/runs/"+url.PathEscape(args[0])+"?results=false", nil, &r)
			if err != nil {
				return err
			}
			if plot != "" {
				if err := os.WriteFile(plot, []byte(sweepSVG(r.ID, r.Sweep)), 0o644); err != nil {
					return err
				}
			}
			if sc.json {
				return printJSON(a.stdout, raw)
			}
			if err := printRun(a.stdout, &r.Run); err != nil {
				return err
			}
			if len(r.Sweep) > 1 {
				fmt.Fprintln(a.stdout, "recall–QPS (* Pareto-optimal):")
				for _, p := range r.Sweep {
					mark := " "
					if p.Pareto {
						mark = "*"
					}
					fmt.Fprintf(a.stdout, "  %s %-30s recall %.4f  qps %.1f\n", mark, p.Variant, p.Recall, p.QPS)
				}
			}
			return nil
		},
	}
	addClientFlags(show, a, &sc)
	show.Flags().StringVar(&plot, "plot", "", "write the recall–QPS plot of the run's variants to this SVG file")

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
	addClientFlags(cancel, a, &cc)

	var mc client
	var metric, htmlOut string
	var alpha float64
	var perQuery int
	var allowDiff bool
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
			if allowDiff {
				q.Set("allow_different_queries", "true")
			}
			var rc experiments.RunComparison
			raw, err := mc.do(cmd.Context(), "GET", "/v1/runs/compare?"+q.Encode(), nil, &rc)
			if err != nil {
				return err
			}
			if htmlOut != "" {
				var b strings.Builder
				if err := rc.WriteHTML(&b); err != nil {
					return err
				}
				if err := os.WriteFile(htmlOut, []byte(b.String()), 0o644); err != nil {
					return err
				}
			}
			if mc.json {
				return printJSON(a.stdout, raw)
			}
			return printComparison(a.stdout, &rc, perQuery)
		},
	}
	addClientFlags(compare, a, &mc)
	compare.Flags().StringVar(&metric, "metric", "", "primary measure, e.g. ndcg_cut_10")
	compare.Flags().Float64Var(&alpha, "alpha", 0, "significance level (default 0.05)")
	compare.Flags().StringVar(&htmlOut, "html", "", "also write an HTML report to this file")
	compare.Flags().IntVar(&perQuery, "queries", 10, "per-query lines of the primary measure, worst first (0: all)")
	compare.Flags().BoolVar(&allowDiff, "allow-different-queries", false, "compare runs that read different queries (refused by default: the paired tests would pair different questions)")

	cmd.AddCommand(start, list, show, cancel, compare, newRunExportCmd(a), newRunImportCmd(a))
	return cmd
}

// startRun starts the run of the spec at path; with wait it follows it
// with a progress line per change of a variant's status or phase, prints
// the results and, with baseline, gates on a regression against that run.
// run start, experiment run and eval run all come here.
// addColdFlag adds --cold, which sets the spec's reuse to never.
func addColdFlag(cmd *cobra.Command, cold *bool) {
	cmd.Flags().BoolVar(cold, "cold", false, "build every variant from the base: no materialization is reused (the spec's reuse: never)")
}

func startRun(ctx context.Context, a *app, c *client, path string, project specProject, wait, cold bool, baseline string, gate baselineGate) error {
	sp, err := readSpec(path, project)
	if err != nil {
		return err
	}
	if cold {
		sp.Reuse = experiments.ReuseNever
	}
	if baseline != "" && !wait {
		return &exitError{code: exitBadInput, err: fmt.Errorf("--baseline needs --wait")}
	}
	if baseline != "" { // before anything runs: bad gate flags and an unknown baseline are bad input
		if err := gate.Check(sp); err != nil {
			var fe *experiments.FieldError
			if errors.As(err, &fe) {
				err = fmt.Errorf("--%s: %s", fe.Field, fe.Reason)
			}
			return &exitError{code: exitBadInput, err: err}
		}
		if baseline, err = resolveBaseline(ctx, c, baseline); err != nil {
			return err
		}
	}
	var r experiments.Run
	raw, err := c.do(ctx, "POST", "/v1/runs", sp, &r)
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
	if err := waitRun(ctx, a.stdout, c, r.ID); err != nil {
		return err
	}
	if baseline == "" {
		return nil
	}
	return checkBaseline(ctx, a.stdout, c, baseline, r.ID, sp, gate)
}

// waitRun follows run id until it ends, with a progress bar per variant
// and phase, then prints its results; a run that did not succeed is an
// error.
func waitRun(ctx context.Context, w io.Writer, c *client, id string) error {
	pr := newRunProgress(w)
	for {
		var r experiments.Run
		if _, err := c.do(ctx, "GET", "/v1/runs/"+url.PathEscape(id)+"?results=false", nil, &r); err != nil {
			return err
		}
		pr.update(&r)
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
	seen := map[string]bool{}
	var names []string
	for _, v := range r.Variants {
		for m := range v.Metrics {
			if !seen[m] {
				seen[m] = true
				names = append(names, m)
			}
		}
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
	if err := printPlansAndTiming(w, r); err != nil {
		return err
	}
	for _, v := range r.Variants {
		if v.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", v.Name, v.Error)
		}
	}
	writeMaterializations(w, r)
	if r.Verdict != nil {
		fmt.Fprintf(w, "verdict vs baseline %s: regression=%v accepted=%v\n", r.Verdict.Baseline, r.Verdict.Regression, r.Verdict.Accepted)
		if r.Verdict.Reason != "" {
			fmt.Fprintf(w, "  %s\n", r.Verdict.Reason)
		}
		for _, vv := range r.Verdict.Variants {
			if vv.Reason != "" {
				fmt.Fprintf(w, "  %s: %s\n", vv.Variant, vv.Reason)
			}
		}
	}
	return experiments.WriteProvenance(w, r)
}

// printComparison prints rc for people, with at most perQuery per-query
// lines (0: all).
func printComparison(w io.Writer, rc *experiments.RunComparison, perQuery int) error {
	fmt.Fprintf(w, "%s vs %s: %s on %s\n", rc.B, rc.A, rc.Verdict, rc.Comparison.Primary)
	for _, warn := range rc.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if err := rc.Comparison.WriteText(w, perQuery); err != nil {
		return err
	}
	fmt.Fprintf(w, "cost (B-A): p50 latency %+dus, qps %+.1f, index build %+.0fms, index size %+d bytes, embed %+.0fms\n",
		rc.LatencyP50DeltaUS, rc.QPSDelta, rc.IndexBuildDeltaMS, rc.IndexBytesDelta, rc.EmbedDeltaMS)
	if len(rc.Regressed) > 0 {
		fmt.Fprintln(w, "most regressed queries:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "QUERY\tA\tB\tDELTA\tOVERLAP\tENTERED\tLEFT\tMOVED")
		for _, q := range rc.Regressed {
			fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%+.4f\t%.2f\t%s\t%s\t%s\n", q.Query, q.A, q.B, q.Delta, q.Overlap,
				experiments.DocList(q.Entered, 0), experiments.DocList(q.Left, 0), experiments.MoveList(q.Moved, 0))
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
			if dir, ok := ds["beir"].(string); ok {
				ds["beir"] = localDataset(dir)
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
		addClientFlags(sub, a, &c)
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

// sweepSVG plots recall (x) against QPS (y, log scale), Pareto points
// filled and joined, the ann-benchmarks view of a sweep.
func sweepSVG(title string, pts []experiments.SweepPoint) string {
	const w, h, m = 640.0, 420.0, 60.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="20" font-size="14">%s: recall vs QPS</text>`+"\n", m, html.EscapeString(title))
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/><line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n",
		m, h-m, w-m/2, h-m, m, h-m, m, m/2)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">recall</text><text x="10" y="%.0f">QPS (log)</text>`+"\n", w/2, h-m/3, m/2+10)
	if len(pts) == 0 {
		b.WriteString("</svg>\n")
		return b.String()
	}
	minR, maxR, minQ, maxQ := 1.0, 0.0, math.Inf(1), 0.0
	for _, p := range pts {
		minR, maxR = math.Min(minR, p.Recall), math.Max(maxR, p.Recall)
		q := math.Max(p.QPS, 1e-3)
		minQ, maxQ = math.Min(minQ, q), math.Max(maxQ, q)
	}
	if maxR-minR < 1e-9 {
		minR, maxR = minR-0.05, maxR+0.05
	}
	if maxQ/minQ < 1.01 {
		minQ, maxQ = minQ/1.5, maxQ*1.5
	}
	x := func(r float64) float64 { return m + (r-minR)/(maxR-minR)*(w-1.5*m) }
	y := func(q float64) float64 {
		return h - m - (math.Log(math.Max(q, 1e-3))-math.Log(minQ))/(math.Log(maxQ)-math.Log(minQ))*(h-1.5*m)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%.3f</text><text x="%.0f" y="%.0f" text-anchor="end">%.3f</text>`+"\n", m, h-m+15, minR, w-m/2, h-m+15, maxR)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%.0f</text><text x="%.0f" y="%.0f" text-anchor="end">%.0f</text>`+"\n", m-4, h-m, minQ, m-4, m/2+8, maxQ)
	var front []string
	for _, p := range pts {
		fill := "white"
		if p.Pareto {
			fill = "steelblue"
			front = append(front, fmt.Sprintf("%.1f,%.1f", x(p.Recall), y(p.QPS)))
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s" stroke="steelblue"><title>%s recall %.4f qps %.1f</title></circle>`+"\n",
			x(p.Recall), y(p.QPS), fill, html.EscapeString(p.Variant), p.Recall, p.QPS)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="9">%s</text>`+"\n", x(p.Recall)+6, y(p.QPS)-6, html.EscapeString(p.Variant))
	}
	if len(front) > 1 {
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="steelblue"/>`+"\n", strings.Join(front, " "))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// resolveBaseline names the run a --baseline means: a run id as is, or
// the accepted baseline run of the schedule with that id or name.
func resolveBaseline(ctx context.Context, c *client, name string) (string, error) {
	_, err := c.do(ctx, "GET", "/v1/runs/"+url.PathEscape(name)+"?results=false", nil, nil)
	var ee *exitError
	if err == nil || !errors.As(err, &ee) || ee.code != exitNotFound {
		return name, err
	}
	var out struct {
		Schedules []experiments.Schedule `json:"schedules"`
	}
	if _, err := c.do(ctx, "GET", "/v1/schedules", nil, &out); err != nil {
		return "", err
	}
	for _, sc := range out.Schedules {
		if sc.ID != name && sc.Name != name {
			continue
		}
		if sc.BaselineRun == "" {
			return "", &exitError{code: exitNotFound, err: fmt.Errorf("--baseline %s: schedule %s has no accepted baseline run yet (offshoot schedule accept %s RUN)", name, sc.ID, sc.ID)}
		}
		return sc.BaselineRun, nil
	}
	return "", &exitError{code: exitNotFound, err: fmt.Errorf("--baseline %s: no run with that id and no schedule with that id or name (offshoot run list, offshoot schedule list)", name)}
}

// baselineGate is what run start --baseline checks.
type baselineGate = experiments.Gate

// checkBaseline compares every variant of run with the same-named variant
// of baseline and fails on a significant drop of the gate's metric or a
// drop beyond its threshold.
func checkBaseline(ctx context.Context, w io.Writer, c *client, baseline, run string, sp *experiments.ExperimentSpec, gate baselineGate) error {
	var names []string
	var ms []evals.MeasureComparison
	for _, v := range sp.Concrete() {
		q := url.Values{"a": {baseline + ":" + v.Name}, "b": {run + ":" + v.Name}, "metric": {gate.Metric}, "alpha": {fmt.Sprint(gate.Alpha)},
			"allow_different_queries": {"true"}}
		var rc experiments.RunComparison
		if _, err := c.do(ctx, "GET", "/v1/runs/compare?"+q.Encode(), nil, &rc); err != nil {
			return err
		}
		m, ok := rc.Comparison.Measure(gate.Metric)
		if !ok {
			return &exitError{code: exitBadInput, err: fmt.Errorf("--metric %s was not measured", gate.Metric)}
		}
		for _, warn := range rc.Warnings {
			fmt.Fprintf(w, "%s: warning: %s\n", v.Name, warn)
		}
		names, ms = append(names, v.Name), append(ms, m)
	}
	verdicts, err := gate.Judge(names, ms)
	if err != nil {
		return &exitError{code: exitBadInput, err: err}
	}
	var regressed []string
	for _, vv := range verdicts {
		status := "ok"
		if vv.Regression {
			status = "REGRESSION: " + vv.Reason
			regressed = append(regressed, vv.Variant)
		}
		fmt.Fprintf(w, "%s: %s %.4f -> %.4f (%+.4f, p=%.4g, %s-adjusted p=%.4g) %s\n", vv.Variant, gate.Metric, vv.Baseline, vv.Current, vv.Delta, vv.P, vv.Correction, vv.PAdjusted, status)
	}
	if len(regressed) > 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("regression against %s in %s", baseline, strings.Join(regressed, ", "))}
	}
	return nil
}
