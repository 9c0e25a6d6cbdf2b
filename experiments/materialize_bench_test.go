package experiments

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/vectors"
)

// Knobs (environment) of BenchmarkMaterializedRerun and
// BenchmarkIncrementalRerun: MAT_BENCH_DOCS (synthetic documents, one
// chunk each, default 100000, the size), MAT_BENCH_QUERIES
// (default 100), MAT_BENCH_REPS (runs per side, default 3),
// MAT_BENCH_LOG (when set, the service logs to stderr: an incremental
// build's log line splits its delta's time).

// matBench is the stack both benchmarks run on: a synthetic BEIR corpus
// of MAT_BENCH_DOCS documents in the server's datasets directory, the
// real service with an embedding cache, one HNSW variant (384 dims,
// cosine, m 16, ef_construction 64, k 10), and a native cluster for the
// native path.
type matBench struct {
	b        *testing.B
	svc      *Service
	ctx      context.Context
	datasets string
	spec     ExperimentSpec
	reps     int
	native   cycleSide
}

func newMatBench(b *testing.B, embedder string) *matBench {
	docs := cycleEnvInt("MAT_BENCH_DOCS", 100000)
	queries := cycleEnvInt("MAT_BENCH_QUERIES", 100)
	mb := &matBench{b: b, datasets: b.TempDir(), reps: cycleEnvInt("MAT_BENCH_REPS", 3), ctx: WithCaller(context.Background(), LocalCaller)}
	dir := filepath.Join(mb.datasets, "synth")
	if _, err := evals.WriteSynth(dir, evals.SynthOptions{Docs: docs, Queries: queries, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	mb.svc = storeService(b, "bench", cycleSettings)
	mb.svc.cfg.DatasetsDir = mb.datasets
	if os.Getenv("MAT_BENCH_LOG") != "" {
		mb.svc.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	cache, err := vectors.OpenCache(filepath.Join(b.TempDir(), "embeddings"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cache.Close() })
	mb.svc.cfg.EmbedCache = cache
	mb.spec = ExperimentSpec{Name: "rerun", Project: "bench", Base: BranchPoint{Branch: "main"}, Dataset: DatasetSpec{BEIR: dir},
		Variants: []VariantSpec{{Name: "hnsw", Embedder: embedder, Index: &IndexSpec{Type: "hnsw", M: 16, EfConstruction: 64}}},
		Metrics:  []string{"ndcg_cut.10", "recall.10"}, K: 10, Concurrency: 1}
	mb.native = nativeCycleSide(b, "", false)
	return mb
}

// run runs mb's spec on dataset dir with reuse and returns its wall time
// (StartRun until WaitRun returns) and its variant.
func (mb *matBench) run(dir, reuse string) (time.Duration, VariantRun) {
	b := mb.b
	sp := mb.spec
	sp.Dataset = DatasetSpec{BEIR: dir}
	sp.Reuse = reuse
	t := time.Now()
	r, err := mb.svc.StartRun(mb.ctx, sp)
	if err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(mb.ctx, 2*time.Hour)
	defer cancel()
	if r, err = mb.svc.WaitRun(wctx, r.ID); err != nil {
		b.Fatal(err)
	}
	d := time.Since(t)
	v := r.Variants[0]
	if r.Status != StatusSucceeded || v.Materialization == nil {
		b.Fatalf("run %s (reuse %s): %s %q, materialization %+v", r.ID, reuse, r.Status, r.Error, v.Materialization)
	}
	b.Logf("reuse %s on %s: %.2f s, phases %+v, materialization reused %v, incremental %+v",
		reuse, filepath.Base(dir), d.Seconds(), v.Timings, v.Materialization.Reused, v.Materialization.Incremental)
	return d, v
}

// runNative runs the native path's cycle on dataset dir: CREATE DATABASE
// ... TEMPLATE, load the corpus' embeddings (computed before the clock
// starts, as the offshoot side's come from its cache), build the same
// HNSW index, run every query, DROP DATABASE. It has no way to reuse a
// build.
func (mb *matBench) runNative(dir string, rep int) time.Duration {
	b := mb.b
	ds, err := evals.LoadBEIR(dir, "test")
	if err != nil {
		b.Fatal(err)
	}
	spec, err := vectors.ParseSpec(mb.spec.Variants[0].Embedder)
	if err != nil {
		b.Fatal(err)
	}
	texts := make([]string, len(ds.Corpus))
	for i, d := range ds.Corpus {
		texts[i] = docText(d)
	}
	e, _, err := vectors.NewRegistry().NewFitted(spec, texts)
	if err != nil {
		b.Fatal(err)
	}
	vecs, err := e.EmbedDocuments(mb.ctx, texts)
	if err != nil {
		b.Fatal(err)
	}
	rows := make([]vectors.Row, len(vecs))
	for i, v := range vecs {
		rows[i] = vectors.Row{ID: ds.Corpus[i].ID, DocID: ds.Corpus[i].ID, Embedding: v}
	}
	qs := make([][]float32, len(ds.Queries))
	for i, q := range ds.Queries {
		if qs[i], err = e.EmbedQuery(mb.ctx, q.Text); err != nil {
			b.Fatal(err)
		}
	}
	p, err := runCycle(mb.ctx, mb.native, fmt.Sprintf("native-%d", rep), rows, qs)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("native on %s: %.2f s (load %v, index %v, query %v)", filepath.Base(dir), p.total.Seconds(),
		p.load.Round(time.Millisecond), p.index.Round(time.Millisecond), p.query.Round(time.Millisecond))
	return p.total
}

// sides runs fns in the rep's order (rotated by rep, so that each goes
// first in turn) and appends each one's seconds to out.
func sides(rep int, out [][]float64, fns ...func() time.Duration) {
	for i := range fns {
		j := (i + rep) % len(fns)
		out[j] = append(out[j], fns[j]().Seconds())
	}
}

// BenchmarkMaterializedRerun reruns one unchanged experiment (a synthetic
// corpus of MAT_BENCH_DOCS documents × 384 dims, hash-bow, one HNSW
// variant, m 16, ef_construction 64, k 10) on the real stack, as a
// server runs it with its embedding cache: cold (reuse: never; the
// embeddings come from the cache, the table is loaded and the index
// built) and the native path (a template database, load, build, query,
// drop) against reused (the variant forks the materialization the
// previous run kept and goes straight to evaluation). The sides take
// turns MAT_BENCH_REPS times each, which goes first rotating too, after
// one untimed cold run that fills the embedding cache; it reports the
// median wall time of a whole run per side and the ratios cold/reused
// and native/reused (higher is better), and the storage a
// materialization holds of its own (its delta) against what a full copy
// of its table and index takes (pg_total_relation_size).
func BenchmarkMaterializedRerun(b *testing.B) {
	mb := newMatBench(b, "hash-bow?dims=384")
	dir := mb.spec.Dataset.BEIR
	for i := 0; i < b.N; i++ {
		mb.run(dir, ReuseNever) // fills the embedding cache and keeps a materialization
		times := make([][]float64, 3)
		var last VariantRun
		for rep := range mb.reps {
			sides(rep, times,
				func() time.Duration { d, _ := mb.run(dir, ReuseNever); return d },
				func() time.Duration { d, v := mb.run(dir, ReuseAuto); last = v; return d },
				func() time.Duration { return mb.runNative(dir, rep) })
		}
		if !last.Materialization.Reused {
			b.Fatalf("the rerun did not reuse: %+v", last.Materialization)
		}
		mc, mr, mn := median(times[0]), median(times[1]), median(times[2])
		b.ReportMetric(mc, "cold-s")
		b.ReportMetric(mr, "reused-s")
		b.ReportMetric(mn, "native-s")
		b.ReportMetric(mc/mr, "cold/reused")
		b.ReportMetric(mn/mr, "native/reused")
		b.ReportMetric(last.Timings.Eval/1000, "reused-eval-s")
		b.Logf("cold %v s, reused %v s, native %v s", times[0], times[1], times[2])
		mb.reportStorage(last.Materialization.ID)
	}
}

// reportStorage reports the bytes materialization id holds of its own
// against a full copy of its table and index.
func (mb *matBench) reportStorage(id string) {
	b, ctx, svc := mb.b, mb.ctx, mb.svc
	m, err := svc.GetMaterialization(ctx, "bench", id)
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
	if m.CurrentBytes != nil {
		b.ReportMetric(float64(*m.CurrentBytes)/(1<<20), "mat-current-MiB")
		b.ReportMetric(float64(*m.CurrentBytes)/float64(full), "current/full")
	}
	b.Logf("materialization %s holds %d bytes, its table and index %d", m.ID, *m.DeltaBytes, full)
}

// BenchmarkIncrementalRerun reruns the experiment of
// BenchmarkMaterializedRerun (with an embedder whose vectors depend on
// each text alone, hash-bow idf=none, which incremental builds need)
// after a 1% corpus change: 0.5% of the documents added, 0.25% changed,
// 0.25% deleted. Each repetition changes the corpus the last one left
// (a chain, as nightly runs see it) and runs it three ways: incremental
// (the variant forks the previous corpus' materialization and applies the
// delta, embedding only new and changed documents), cold (reuse: never,
// embeddings from the cache) and the native path; a cold run that goes
// before the incremental side deletes its own materialization afterwards,
// so that the incremental side never finds the new corpus ready (one that
// goes after replaces the incremental side's, same key). Reports medians and the ratios
// cold/incremental and native/incremental (higher is better).
func BenchmarkIncrementalRerun(b *testing.B) {
	mb := newMatBench(b, "hash-bow?dims=384&idf=none")
	for i := 0; i < b.N; i++ {
		prev := mb.spec.Dataset.BEIR
		mb.run(prev, ReuseNever) // fills the cache, keeps the first corpus' materialization
		times := make([][]float64, 3)
		var last VariantRun
		for rep := range mb.reps {
			dir := filepath.Join(mb.datasets, fmt.Sprintf("synth-%d", rep+1))
			if err := writeChangedCorpus(prev, dir, rep+1); err != nil {
				b.Fatal(err)
			}
			done := false // the incremental side ran in this repetition
			sides(rep, times,
				func() time.Duration {
					d, v := mb.run(dir, ReuseAuto)
					done = true
					if v.Materialization.Incremental == nil {
						b.Fatalf("not incremental: %+v", v.Materialization)
					}
					last = v
					return d
				},
				func() time.Duration {
					d, v := mb.run(dir, ReuseNever)
					if done {
						return d // its materialization replaced the incremental side's, which the next repetition forks
					}
					if err := mb.svc.DeleteMaterialization(mb.ctx, "bench", v.Materialization.ID); err != nil {
						b.Fatal(err)
					}
					return d
				},
				func() time.Duration { return mb.runNative(dir, rep) })
			prev = dir
		}
		mi, mc, mn := median(times[0]), median(times[1]), median(times[2])
		b.ReportMetric(mi, "incremental-s")
		b.ReportMetric(mc, "cold-s")
		b.ReportMetric(mn, "native-s")
		b.ReportMetric(mc/mi, "cold/incremental")
		b.ReportMetric(mn/mi, "native/incremental")
		d := last.Materialization.Incremental
		b.ReportMetric(float64(d.Added+d.Changed+d.Deleted), "delta-docs")
		b.Logf("incremental %v s, cold %v s, native %v s; last delta %+v", times[0], times[1], times[2], *d)
		mb.reportStorage(last.Materialization.ID)
	}
}

// writeChangedCorpus writes into dst the BEIR collection of src with 1%
// of its documents changed: every 400th deleted, every 400th (offset 200)
// changed (a judged document is kept, since qrels may only name
// documents of the corpus), and one new document per 200, whose texts are new (they carry
// tag), so that the embedding cache has not seen them.
func writeChangedCorpus(src, dst string, tag int) error {
	ds, err := evals.LoadBEIR(src, "test")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dst, "qrels"), 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dst, "corpus.jsonl"))
	if err != nil {
		return err
	}
	judged := map[string]bool{}
	for _, docs := range ds.Qrels {
		for id := range docs {
			judged[id] = true
		}
	}
	enc := json.NewEncoder(f)
	for i, d := range ds.Corpus {
		switch {
		case i%400 == 0 && !judged[d.ID]: // the qrels name only documents of the corpus
			continue
		case i%400 == 200:
			d.Text += fmt.Sprintf(" revised %d", tag)
		}
		if err = enc.Encode(d); err != nil {
			break
		}
		if i%200 == 100 {
			n := evals.Doc{ID: fmt.Sprintf("new-%d-%d", tag, i), Title: d.Title, Text: fmt.Sprintf("%s addendum %d-%d", d.Text, tag, i)}
			if err = enc.Encode(n); err != nil {
				break
			}
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	for _, name := range []string{"queries.jsonl", filepath.Join("qrels", "test.tsv")} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
