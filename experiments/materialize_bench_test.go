package experiments

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/vectors"
)

// Knobs (environment) of BenchmarkMaterializedRerun: MAT_BENCH_DOCS
// (synthetic documents, one chunk each, default 100000, the issue's
// size), MAT_BENCH_QUERIES (default 100), MAT_BENCH_REPS (runs per side,
// default 3).

// BenchmarkMaterializedRerun reruns one unchanged experiment (a synthetic
// corpus of MAT_BENCH_DOCS documents × 384 dims, hash-bow, one HNSW
// variant, m 16, ef_construction 64, k 10) on the real stack, as a
// server runs it with its embedding cache: cold (reuse: never; the
// embeddings come from the cache, the table is loaded and the index
// built) against reused (the variant forks the materialization the
// previous run kept and goes straight to evaluation). The two sides
// alternate MAT_BENCH_REPS times each, which goes first alternating too,
// after one untimed cold run that fills the embedding cache; it reports
// the median wall time of a whole run (StartRun until WaitRun returns)
// per side and their ratio cold/reused (higher is better), and the
// storage a materialization holds of its own (its delta) against what a
// full copy of its table and index takes (pg_total_relation_size).
func BenchmarkMaterializedRerun(b *testing.B) {
	docs := cycleEnvInt("MAT_BENCH_DOCS", 100000)
	queries := cycleEnvInt("MAT_BENCH_QUERIES", 100)
	reps := cycleEnvInt("MAT_BENCH_REPS", 3)
	datasets := b.TempDir()
	dir := filepath.Join(datasets, "synth")
	if _, err := evals.WriteSynth(dir, evals.SynthOptions{Docs: docs, Queries: queries, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	svc := storeService(b, "bench", cycleSettings)
	svc.cfg.DatasetsDir = datasets
	cache, err := vectors.OpenCache(filepath.Join(b.TempDir(), "embeddings"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cache.Close() })
	svc.cfg.EmbedCache = cache
	ctx := WithCaller(context.Background(), LocalCaller)
	sp := ExperimentSpec{Name: "rerun", Project: "bench", Base: BranchPoint{Branch: "main"}, Dataset: DatasetSpec{BEIR: dir},
		Variants: []VariantSpec{{Name: "hnsw", Embedder: "hash-bow?dims=384", Index: &IndexSpec{Type: "hnsw", M: 16, EfConstruction: 64}}},
		Metrics:  []string{"ndcg_cut.10", "recall.10"}, K: 10, Concurrency: 1}
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
		b.Logf("reuse %s: %.2f s, phases %+v", reuse, d.Seconds(), v.Timings)
		return d, v
	}
	for i := 0; i < b.N; i++ {
		run(ReuseNever) // fills the embedding cache and keeps a materialization
		var cold, reused []float64
		var last VariantRun
		for rep := range reps {
			sides := []string{ReuseNever, ReuseAuto}
			if rep%2 == 1 {
				sides[0], sides[1] = sides[1], sides[0]
			}
			for _, side := range sides {
				d, v := run(side)
				if side == ReuseNever {
					cold = append(cold, d.Seconds())
				} else {
					reused, last = append(reused, d.Seconds()), v
				}
			}
		}
		mc, mr := median(cold), median(reused)
		b.ReportMetric(mc, "cold-s")
		b.ReportMetric(mr, "reused-s")
		b.ReportMetric(mc/mr, "cold/reused")
		b.ReportMetric(last.Timings.Eval/1000, "reused-eval-s")

		// Storage: the materialization's own bytes against a full copy of
		// its table and index.
		m, err := svc.GetMaterialization(ctx, "bench", last.Materialization.ID)
		if err != nil || m.DeltaBytes == nil {
			b.Fatalf("materialization %+v: %v", m, err)
		}
		if _, err := svc.cfg.Branches.Fork(ctx, "bench", m.Point, "size-probe"); err != nil {
			b.Fatal(err)
		}
		conn, release, err := svc.connect(ctx, "bench", "size-probe", ReadOnly)
		if err != nil {
			b.Fatal(err)
		}
		var full int64
		err = conn.QueryRow(ctx, "SELECT pg_total_relation_size($1)", runTable).Scan(&full)
		release()
		if err != nil {
			b.Fatal(err)
		}
		if err := svc.cfg.Branches.Discard(ctx, "bench", "size-probe"); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(*m.DeltaBytes)/(1<<20), "mat-delta-MiB")
		b.ReportMetric(float64(full)/(1<<20), "table+index-MiB")
		b.ReportMetric(float64(*m.DeltaBytes)/float64(full), "delta/full")
		b.Logf("cold %v s, reused %v s; materialization %s holds %d bytes, its table and index %d", cold, reused, m.ID, *m.DeltaBytes, full)
	}
}
