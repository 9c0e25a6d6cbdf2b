package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/experiments"
)

func init() {
	subcommands = append(subcommands, newDemoCmd)
}

// demoDataset is where demo looks for Cranfield when --dataset is not given.
const demoDataset = "../shared/datasets/cranfield"

func newDemoCmd(a *app) *cobra.Command {
	var c client
	var project, dataset string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the newcomer demo on a running server: an embedder A/B plus an ef_search sweep on Cranfield",
		Long: `demo forks demo/base from main (once), then runs one experiment on it with
three variants, each on its own copy-on-write fork: hash-bow vs hash-char
(256 dims, HNSW) and an HNSW ef_search sweep (10, 20, 40, 80). It prints a
progress line per variant and phase, the A/B comparison (verdict, deltas,
p-values) and the sweep's recall–QPS table with the Pareto-optimal points.
The forks are discarded afterwards; main and demo/base are not changed.

Start a server first (make run, or offshoot serve).`,
		Example: "  offshoot demo --dataset ../shared/datasets/cranfield",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), a, &c, project, dataset)
		},
	}
	addClientFlags(cmd, &c)
	cmd.Flags().StringVar(&project, "project", "main", "project to run in")
	cmd.Flags().StringVar(&dataset, "dataset", "", "Cranfield (a BEIR directory) (default "+demoDataset+" when it exists)")
	return cmd
}

func runDemo(ctx context.Context, a *app, c *client, project, dataset string) error {
	if dataset == "" {
		if fi, err := os.Stat(demoDataset); err != nil || !fi.IsDir() {
			return &exitError{code: exitBadInput, err: fmt.Errorf("--dataset is required (no %s here)", demoDataset)}
		}
		dataset = demoDataset
	}
	abs, err := filepath.Abs(dataset)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(abs, "corpus.jsonl")); err != nil {
		return &exitError{code: exitBadInput, err: fmt.Errorf("--dataset %s: not a BEIR directory: %w", dataset, err)}
	}
	// The base branch: forked from main once, reused afterwards.
	_, err = c.do(ctx, "POST", projectPath(project)+"/branches", map[string]any{"name": "demo/base"}, nil)
	var ee *exitError
	switch {
	case err == nil:
		fmt.Fprintf(a.stdout, "forked demo/base from main in project %s\n", project)
	case errors.As(err, &ee) && ee.code == exitConflict:
		fmt.Fprintln(a.stdout, "using the existing branch demo/base")
	default:
		return fmt.Errorf("fork demo/base: %w", err)
	}
	hnsw := &experiments.IndexSpec{Type: "hnsw"}
	sp := experiments.ExperimentSpec{
		Name: "demo", Project: project, Base: experiments.BranchPoint{Branch: "demo/base"},
		Dataset: experiments.DatasetSpec{BEIR: abs},
		Metrics: []string{"ndcg_cut.10", "recall.100"},
		Variants: []experiments.VariantSpec{
			{Name: "bow", Embedder: "hash-bow?dims=256", Index: hnsw},
			{Name: "char", Embedder: "hash-char?dims=256", Index: hnsw},
			{Name: "ef", Embedder: "hash-bow?dims=256", Index: hnsw, Sweep: &experiments.SweepSpec{EfSearch: []int{10, 20, 40, 80}}},
		},
	}
	var r experiments.Run
	if _, err := c.do(ctx, "POST", "/v1/runs", &sp, &r); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "run %s: %d variants, one fork each, on Cranfield (%s)\n", r.ID, len(r.Variants), abs)
	if err := waitRun(ctx, a.stdout, c, r.ID); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, "\nA/B: hash-bow (A) vs hash-char (B)")
	var rc experiments.RunComparison
	q := url.Values{"a": {r.ID + ":bow"}, "b": {r.ID + ":char"}, "metric": {"ndcg_cut_10"}}
	if _, err := c.do(ctx, "GET", "/v1/runs/compare?"+q.Encode(), nil, &rc); err != nil {
		return err
	}
	if err := printComparison(a.stdout, &rc); err != nil {
		return err
	}
	var sw struct {
		Sweep []experiments.SweepPoint `json:"sweep"`
	}
	if _, err := c.do(ctx, "GET", "/v1/runs/"+url.PathEscape(r.ID)+"?results=false", nil, &sw); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, "\nHNSW ef_search sweep (hash-bow), recall–QPS (* Pareto-optimal among all variants):")
	for _, p := range sw.Sweep {
		if !strings.HasPrefix(p.Variant, "ef-") {
			continue
		}
		mark := " "
		if p.Pareto {
			mark = "*"
		}
		fmt.Fprintf(a.stdout, "  %s %-30s recall %.4f  qps %.1f\n", mark, p.Variant, p.Recall, p.QPS)
	}
	fmt.Fprintf(a.stdout, "\nmore: offshoot run show %s --plot sweep.svg; offshoot run compare %s:bow %s:char --html ab.html\n", r.ID, r.ID, r.ID)
	return nil
}
