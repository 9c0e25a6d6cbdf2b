package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/evals"
)

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "dataset",
			Short: "Make test collections",
		}
		cmd.AddCommand(newDatasetSynthCmd())
		return cmd
	})
}

func newDatasetSynthCmd() *cobra.Command {
	var o evals.SynthOptions
	cmd := &cobra.Command{
		Use:   "synth --docs N --queries Q [--seed S] [--relevant R] [--words W] OUT",
		Short: "Write a synthetic BEIR collection with known relevant documents",
		Long: `Writes OUT/corpus.jsonl, OUT/queries.jsonl and OUT/qrels/test.tsv.

Each query has three key words of its own; its relevant documents (R per
query, the first of grade 2) repeat them among background words, other
documents hold background words and at most one key word of some query.
Lexical and offline embedders therefore find the relevant documents, and a
run's measures show retrieval error, not noise. Documents are generated and
written one at a time, so a million documents take constant memory; the same
flags always write the same bytes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := evals.WriteSynth(args[0], o)
			if errors.Is(err, evals.ErrSynthOptions) {
				return &exitError{code: exitBadInput, err: err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d documents, %d queries, %d judgments\n", args[0], st.Docs, st.Queries, st.Judgments)
			return nil
		},
	}
	cmd.Flags().IntVar(&o.Docs, "docs", 10000, "documents")
	cmd.Flags().IntVar(&o.Queries, "queries", 100, "queries")
	cmd.Flags().Uint64Var(&o.Seed, "seed", 1, "seed: the same seed writes the same collection")
	cmd.Flags().IntVar(&o.Relevant, "relevant", 10, "relevant documents per query (at most docs/queries)")
	cmd.Flags().IntVar(&o.Words, "words", 60, "mean words per document")
	return cmd
}
