package experiments

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
)

// Knobs (environment) of BenchmarkLexicalRerun: LEX_BENCH_DOCS (synthetic
// documents, default 100000), LEX_BENCH_QUERIES (default 100),
// LEX_BENCH_REPS (runs per side, default 3).

// BenchmarkLexicalRerun reruns one unchanged experiment with a lexical
// variant (Postgres full-text search: english, ts_rank, OR queries, k 10)
// over a synthetic corpus of LEX_BENCH_DOCS documents on the real stack:
// cold (reuse: never; the corpus is copied into the tsvector table and
// the GIN index built) against reused (the variant forks the
// materialization the previous run kept and goes straight to
// evaluation). The sides alternate LEX_BENCH_REPS times each, which goes
// first alternating too, after one untimed cold run; timing is one
// warm-up and one timed pass at one client. It reports the median wall
// time of a whole run (StartRun until WaitRun returns) per side, their
// ratio cold/reused (higher is better), and the cold build's load and
// GIN build times and index size.
func BenchmarkLexicalRerun(b *testing.B) {
	docs := cycleEnvInt("LEX_BENCH_DOCS", 100000)
	queries := cycleEnvInt("LEX_BENCH_QUERIES", 100)
	reps := cycleEnvInt("LEX_BENCH_REPS", 3)
	datasets := b.TempDir()
	dir := filepath.Join(datasets, "synth")
	if _, err := evals.WriteSynth(dir, evals.SynthOptions{Docs: docs, Queries: queries, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	svc := storeService(b, "bench", cycleSettings)
	svc.cfg.DatasetsDir = datasets
	ctx := WithCaller(context.Background(), LocalCaller)
	sp := ExperimentSpec{Name: "lexrerun", Project: "bench", Base: BranchPoint{Branch: "main"}, Dataset: DatasetSpec{BEIR: dir},
		Variants: []VariantSpec{{Name: "bm", Type: VariantLexical}},
		Metrics:  []string{"ndcg_cut.10", "recall.10"}, K: 10, Concurrency: 1, Timing: TimingSpec{Warmup: 1, Repeats: 1, Clients: 1}}
	run := func(reuse string) (time.Duration, VariantRun) {
		sp := sp
		sp.Reuse = reuse
		t := time.Now()
		r, err := svc.StartRun(ctx, sp)
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Hour)
		defer cancel()
		if r, err = svc.WaitRun(wctx, r.ID); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t)
		v := r.Variants[0]
		if r.Status != StatusSucceeded || v.Materialization == nil || v.Materialization.Reused != (reuse == ReuseAuto) {
			b.Fatalf("run %s (reuse %s): %s %q, materialization %+v", r.ID, reuse, r.Status, r.Error, v.Materialization)
		}
		b.Logf("reuse %s: %.2f s, phases %+v, ndcg@10 %.4f", reuse, d.Seconds(), v.Timings, v.Metrics["ndcg_cut_10"])
		return d, v
	}
	median := func(xs []float64) float64 {
		xs = slices.Clone(xs)
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	for i := 0; i < b.N; i++ {
		run(ReuseNever) // keeps a materialization
		var cold, reused, load, index []float64
		var built VariantRun
		for rep := range reps {
			sides := []string{ReuseNever, ReuseAuto}
			if rep%2 == 1 {
				sides[0], sides[1] = sides[1], sides[0]
			}
			for _, side := range sides {
				d, v := run(side)
				if side == ReuseNever {
					cold = append(cold, d.Seconds())
					load, index = append(load, v.Timings.Load), append(index, v.Timings.Index)
					built = v
				} else {
					reused = append(reused, d.Seconds())
				}
			}
		}
		b.Logf("cold %v s, reused %v s", cold, reused)
		c, r := median(cold), median(reused)
		b.ReportMetric(c, "cold_s")
		b.ReportMetric(r, "reused_s")
		b.ReportMetric(c/r, "cold/reused")
		b.ReportMetric(median(load), "load_ms")
		b.ReportMetric(median(index), "gin_build_ms")
		b.ReportMetric(float64(built.IndexBytes)/(1<<20), "gin_MiB")
	}
}
