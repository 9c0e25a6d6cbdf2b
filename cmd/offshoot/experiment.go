package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() {
	subcommands = append(subcommands, newExperimentCmd)
}

// newExperimentCmd is `offshoot experiment run SPEC.yaml`: the same as
// `offshoot run start SPEC.yaml --wait`.
func newExperimentCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "experiment", Short: "Run experiments (one branch per variant)"}
	var c client
	var cold bool
	var project specProject
	run := &cobra.Command{
		Use:     "run SPEC.yaml",
		Short:   "Start an experiment run, follow its variants' progress and print the results (run start --wait)",
		Example: "  offshoot experiment run ab.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return startRun(cmd.Context(), a, &c, args[0], project.given(cmd), true, cold, "", baselineGate{})
		},
	}
	addClientFlags(run, a, &c)
	addSpecProjectFlag(run, &project)
	addColdFlag(run, &cold)
	cmd.AddCommand(run)
	return cmd
}

// newEvalRunCmd is `offshoot eval run SPEC --baseline NAME`: run the spec
// once and exit 1 on a regression against the baseline (a run, or a
// schedule's accepted baseline run; run start --wait --baseline).
func newEvalRunCmd(a *app) *cobra.Command {
	var c client
	var baseline string
	var gate baselineGate
	var cold bool
	var project specProject
	cmd := &cobra.Command{
		Use:   "run SPEC.yaml --baseline RUN|SCHEDULE",
		Short: "Run an experiment spec once on the server; exit 1 on a regression against the baseline (for CI and cron)",
		Long: `eval run starts the spec's run, waits for it, and compares each variant with the
same-named variant of the baseline: a run id, or the id or name of a schedule,
whose accepted baseline run is used (so CI gates against what the nightly job
accepted). Exit status: 0 no regression, 1 a regression (or a failed run),
2 bad input, 5 no such baseline.`,
		Example: "  offshoot eval run nightly.yaml --baseline r-20261126-0001 --metric ndcg_cut_10",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if baseline == "" {
				return &exitError{code: exitBadInput, err: fmt.Errorf("--baseline is required (a run id, or a schedule's id or name, to compare with)")}
			}
			return startRun(cmd.Context(), a, &c, args[0], project.given(cmd), true, cold, baseline, gate)
		},
	}
	addClientFlags(cmd, a, &c)
	addSpecProjectFlag(cmd, &project)
	addColdFlag(cmd, &cold)
	cmd.Flags().StringVar(&baseline, "baseline", "", "the run to compare with, or a schedule (id or name) whose accepted baseline run to use (required)")
	cmd.Flags().StringVar(&gate.Metric, "metric", "ndcg_cut_10", "the measure that must not drop")
	cmd.Flags().Float64Var(&gate.Alpha, "alpha", 0.05, "significance level of a drop")
	cmd.Flags().Float64Var(&gate.Threshold, "threshold", 0, "also a regression when the mean drops by more than this")
	cmd.Flags().StringVar((*string)(&gate.Correction), "correction", "holm", "adjust the variants' p-values as one family: holm (family-wise), bh (false discovery rate) or none")
	return cmd
}
