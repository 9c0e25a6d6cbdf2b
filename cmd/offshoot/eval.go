package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/evals"
)

func init() {
	subcommands = append(subcommands, newEvalCmd)
}

// evalFlags are the options shared by the eval verbs.
type evalFlags struct {
	qrels    string
	measures []string
	complete bool
	level    int
	maxDocs  int
	judged   bool
	numDocs  int
}

func (f *evalFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.qrels, "qrels", "", "relevance judgments, TREC (qid iter docno rel) or BEIR tsv (query-id corpus-id score); detected")
	fl.StringArrayVarP(&f.measures, "measure", "m", nil, "measure as in trec_eval -m, e.g. ndcg_cut.10 or P.5,10 (repeatable; default map, recip_rank, P.10, recall.100, ndcg_cut.10, success.10)")
	fl.BoolVarP(&f.complete, "complete", "c", false, "average over all judged queries, missing ones scoring 0 (trec_eval -c)")
	fl.IntVarP(&f.level, "relevance-level", "l", 1, "lowest grade that counts as relevant (trec_eval -l)")
	fl.IntVarP(&f.maxDocs, "max-docs", "M", 0, "evaluate only the first N documents of each ranking (trec_eval -M; 0: all)")
	fl.BoolVarP(&f.judged, "judged-only", "J", false, "drop unjudged retrieved documents before evaluating (trec_eval -J)")
	fl.IntVarP(&f.numDocs, "num-docs", "N", 0, "documents in the collection (trec_eval -N; no supported measure uses it)")
	_ = cmd.MarkFlagRequired("qrels")
}

// evaluate reads the qrels and each run file and scores them.
// evaluate scores each run file; every failure is bad input (exit 2): a
// flag, an unknown measure, a missing or malformed file.
func (f *evalFlags) evaluate(runs ...string) ([]*evals.Result, error) {
	out, err := f.evaluateFiles(runs...)
	if err != nil {
		return nil, &exitError{code: exitBadInput, err: err}
	}
	return out, nil
}

func (f *evalFlags) evaluateFiles(runs ...string) ([]*evals.Result, error) {
	if f.level < 1 {
		return nil, fmt.Errorf("--relevance-level %d: must be at least 1", f.level)
	}
	if f.maxDocs < 0 || f.numDocs < 0 {
		return nil, fmt.Errorf("--max-docs %d, --num-docs %d: must not be negative", f.maxDocs, f.numDocs)
	}
	ms, err := evals.ParseMeasures(f.measures...)
	if err != nil {
		return nil, err
	}
	qrels, err := evals.ReadQrelsFile(f.qrels)
	if err != nil {
		return nil, err
	}
	var out []*evals.Result
	for _, path := range runs {
		run, err := evals.ReadRunFile(path)
		if err != nil {
			return nil, err
		}
		res, err := evals.Evaluate(qrels, run, ms, f.options())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, res)
	}
	return out, nil
}

// options are the evals.Options the flags ask for.
func (f *evalFlags) options() evals.Options {
	return evals.Options{RelevanceLevel: f.level, Complete: f.complete, MaxResults: f.maxDocs, JudgedOnly: f.judged, NumDocs: f.numDocs}
}

func newEvalCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Score TREC run files with trec_eval's measures and compare runs",
		Long: `Standalone retrieval evaluation, no server or branch needed.

Measures follow trec_eval exactly (ranking by score, ties by docno
descending; P divides by k; recall and MAP by all judged relevant; nDCG with
the grades as linear gains). Supported -m families: ` + familyList() + `.`,
	}
	cmd.AddCommand(newEvalScoreCmd(), newEvalCompareCmd(), newEvalRunCmd(a))
	return cmd
}

func familyList() string {
	s := ""
	for i, f := range evals.MeasureFamilies() {
		if i > 0 {
			s += ", "
		}
		s += f[0]
	}
	return s
}

func newEvalScoreCmd() *cobra.Command {
	var f evalFlags
	var run, format string
	var perQuery bool
	cmd := &cobra.Command{
		Use:   "score --qrels QRELS --run RUN [-m ndcg_cut.10 -m recall.100 ...] [--per-query]",
		Short: "Print trec_eval-style lines: measure, query id or all, value",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := f.evaluate(run)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "trec":
				return res[0].WriteTREC(out, perQuery)
			case "text":
				return evals.NewRunReport(res[0]).WriteText(out, perQuery)
			case "json":
				return evals.NewRunReport(res[0]).WriteJSON(out)
			}
			return &exitError{code: exitBadInput, err: fmt.Errorf("--format %q: want trec, text or json", format)}
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&run, "run", "", "TREC run file (qid Q0 docno rank score tag)")
	cmd.Flags().BoolVarP(&perQuery, "per-query", "q", false, "also print each query's values (trec_eval -q)")
	cmd.Flags().StringVar(&format, "format", "trec", "output: trec (trec_eval lines), text (table) or json (report with per-query table)")
	_ = cmd.MarkFlagRequired("run")
	return cmd
}

func newEvalCompareCmd() *cobra.Command {
	var f evalFlags
	var opt evals.CompareOptions
	var asJSON bool
	var limit int
	cmd := &cobra.Command{
		Use:   "compare RUN_A RUN_B --qrels QRELS [-m ...]",
		Short: "Compare two runs per query: deltas, bootstrap CI, randomization test p-values",
		Long: `Compare run B against run A over the queries both were evaluated on:
per measure the means, delta (B - A), bootstrap confidence interval of the
delta at 1 - alpha, two-sided paired randomization test p-value (marked *
when below alpha) and per-query wins/ties/losses; then every query's delta
on the primary measure, the queries that got worse first. Deterministic for
a given --seed.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := f.evaluate(args[0], args[1])
			if err != nil {
				return err
			}
			if opt.Primary == "" && len(f.measures) > 0 {
				// The first -m the user gave, not the first in print order.
				if ms, err := evals.ParseMeasures(f.measures[0]); err == nil && len(ms) > 0 && !ms[0].IsCount() {
					opt.Primary = ms[0].String()
				}
			}
			c, err := evals.Compare(res[0], res[1], opt)
			if errors.Is(err, evals.ErrInvalidArgument) {
				return &exitError{code: exitBadInput, err: err}
			}
			if err != nil {
				return err
			}
			if asJSON {
				return c.WriteJSON(cmd.OutOrStdout())
			}
			return c.WriteText(cmd.OutOrStdout(), limit)
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.Float64Var(&opt.Alpha, "alpha", 0.05, "significance level")
	fl.IntVar(&opt.Permutations, "permutations", evals.MinPermutations, "random sign flips of the randomization test (at least 10000)")
	fl.IntVar(&opt.Resamples, "resamples", evals.DefaultResamples, "bootstrap resamples")
	fl.Uint64Var(&opt.Seed, "seed", 0, "random seed for the test and the bootstrap")
	fl.StringVar(&opt.Primary, "primary", "", "measure listed per query, e.g. ndcg_cut_10 (default: the first -m given, else the first non-count measure)")
	fl.IntVar(&limit, "limit", 20, "per-query lines in text output (0: all)")
	fl.BoolVar(&asJSON, "json", false, "print the comparison as JSON (all queries)")
	return cmd
}
