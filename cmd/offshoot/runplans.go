package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/offshootdb/offshoot/experiments"
)

// printPlansAndTiming prints, per variant, the plan its queries ran with
// (forced index scans and iterative scans marked) and how its latency was
// measured: percentiles at one client with their spread across passes,
// and QPS at one and at N clients.
func printPlansAndTiming(w io.Writer, r *experiments.Run) error {
	var plans, timed bool
	for _, v := range r.Variants {
		plans = plans || v.Plan != nil
		timed = timed || v.Timing != nil
	}
	if plans {
		fmt.Fprintln(w, "plans (EXPLAIN of the evaluation query under each variant's settings):")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, v := range r.Variants {
			if v.Plan == nil {
				continue
			}
			use := "no index"
			switch {
			case v.Plan.UsesIndex && v.Plan.Forced:
				use = "index (forced)"
			case v.Plan.UsesIndex:
				use = "index"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, use, v.Plan)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !timed {
		return nil
	}
	us := func(d time.Duration) string { return d.Round(time.Microsecond).String() }
	fmt.Fprintln(w, "latency (per query, 1 client, pooled over timed passes; ± is the spread across passes):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIANT\tCACHE\tWARMUP\tPASSES\tP50\tP95\tP99\tQPS@1\tCLIENTS\tQPS@N\tP99@N")
	for _, v := range r.Variants {
		t := v.Timing
		if t == nil {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s ±%s\t%s ±%s\t%s ±%s\t%.1f\t%d\t%.1f\t%s\n", v.Name, t.Cache, t.Warmup, t.Repeats,
			us(v.Latency.P50), us(t.P50Spread), us(v.Latency.P95), us(t.P95Spread), us(v.Latency.P99), us(t.P99Spread),
			v.Latency.QPS, t.Concurrent.Clients, t.Concurrent.QPS, us(t.Concurrent.P99))
	}
	return tw.Flush()
}
