package experiments

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/internal/procstatus"
	"github.com/offshootdb/offshoot/vectors"
)

// Knobs (environment) of BenchmarkScale: SCALE_BENCH_DOCS (synthetic
// documents, one chunk each, default 20000; the target is
// 1000000), SCALE_BENCH_REPS (index builds per side, default 3), and
// SCALE_BENCH_DEFAULT_CAP (a duration; see capDefaultBuild).

// procStatusKB reads a field of /proc/self/status in kB.
func procStatusKB(tb testing.TB, field string) int64 {
	tb.Helper()
	n, err := procstatus.Bytes(field)
	if err != nil {
		tb.Fatal(err)
	}
	return n >> 10
}

// BenchmarkScale runs one experiment over a synthetic corpus of
// SCALE_BENCH_DOCS documents × 384 dims (hash-bow, one HNSW variant, m 16,
// ef_construction 64, 100 queries) through the service as a server runs it,
// and reports per-phase wall time and the peak RSS increase of the
// process that holds the service (VmHWM reset before the run through
// /proc/self/clear_refs; Postgres' own memory is not counted). Then, on
// the run's kept fork, it builds the same index SCALE_BENCH_REPS times
// with the maintenance_work_mem and parallel workers the run chose
// (vectors.SizeBuild) and as often with the server's defaults, the two
// interleaved, and reports the median build times and their ratio
// default/sized (higher is better).
func BenchmarkScale(b *testing.B) {
	docs := cycleEnvInt("SCALE_BENCH_DOCS", 20000)
	reps := cycleEnvInt("SCALE_BENCH_REPS", 3)
	datasets := b.TempDir()
	dir := filepath.Join(datasets, "synth")
	if _, err := evals.WriteSynth(dir, evals.SynthOptions{Docs: docs, Queries: 100, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	e := newRunEnvConfig(b, Config{DatasetsDir: datasets}, true)
	sp := ExperimentSpec{Name: "scale", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: DatasetSpec{BEIR: dir},
		Variants: []VariantSpec{{Name: "hnsw", Embedder: "hash-bow?dims=384", Index: &IndexSpec{Type: "hnsw", M: 16, EfConstruction: 64}}},
		Metrics:  []string{"ndcg_cut.10", "recall.100"}, K: 100, Concurrency: 1, KeepBranches: true}
	for i := 0; i < b.N; i++ {
		runtime.GC()
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			b.Fatalf("reset peak RSS: %v", err)
		}
		rss0 := procStatusKB(b, "VmRSS")
		r, err := e.svc.StartRun(e.ctx, sp)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(e.ctx, 6*time.Hour)
		r, err = e.svc.WaitRun(ctx, r.ID)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		hwm := procStatusKB(b, "VmHWM")
		v := r.Variants[0]
		if r.Status != StatusSucceeded {
			b.Fatalf("run %s: %s %+v", r.Status, r.Error, v)
		}
		tm := v.Timings
		b.ReportMetric(tm.Embed/1000, "embed-s")
		b.ReportMetric(tm.Load/1000, "load-s")
		b.ReportMetric(tm.Index/1000, "index-s")
		b.ReportMetric(tm.Eval/1000, "eval-s")
		b.ReportMetric((tm.Fork+tm.Embed+tm.Load+tm.Index+tm.Eval)/1000, "run-s")
		b.ReportMetric(float64(hwm-rss0)/1024, "peak-rss-increase-MiB")
		b.ReportMetric(float64(v.IndexBuild.MaintenanceWorkMem)/(1<<20), "sized-mwm-MiB")
		b.ReportMetric(float64(v.IndexBuild.ParallelWorkers), "sized-workers")
		b.ReportMetric(v.Metrics["recall_100"], "recall@100")
		b.Logf("%d docs: phases %+v, peak RSS +%.1f MiB, index build %+v", docs, tm, float64(hwm-rss0)/1024, *v.IndexBuild)

		if cap, err := time.ParseDuration(os.Getenv("SCALE_BENCH_DEFAULT_CAP")); err == nil {
			capDefaultBuild(b, e, v, tm.Index/1000, cap)
			continue
		}
		// Index builds on the kept fork: sized vs the server's defaults.
		conn, release, err := e.svc.connect(e.ctx, "p", v.Branch, ReadWrite)
		if err != nil {
			b.Fatal(err)
		}
		tbl := vectors.Table{Name: runTable, Dims: 384}
		base := vectors.Index{Method: vectors.HNSW, Metric: vectors.Cosine, M: 16, EfConstruction: 64}
		sized := base
		sized.MaintenanceWorkMem, sized.ParallelWorkers = v.IndexBuild.MaintenanceWorkMemSetting, v.IndexBuild.ParallelWorkers
		var dSized, dDefault []float64
		for rep := range reps {
			sides := []struct {
				ix  vectors.Index
				out *[]float64
			}{{sized, &dSized}, {base, &dDefault}}
			if rep%2 == 1 {
				sides[0], sides[1] = sides[1], sides[0]
			}
			for _, sd := range sides {
				if err := vectors.DropIndex(e.ctx, conn, tbl, sd.ix); err != nil {
					b.Fatal(err)
				}
				info, err := vectors.CreateIndex(e.ctx, conn, tbl, sd.ix)
				if err != nil {
					b.Fatal(err)
				}
				*sd.out = append(*sd.out, info.BuildTime.Seconds())
			}
		}
		release()
		ms, md := median(dSized), median(dDefault)
		b.ReportMetric(ms, "build-sized-s")
		b.ReportMetric(md, "build-default-s")
		b.ReportMetric(md/ms, "default/sized")
		b.Logf("index builds sized %v, server default %v", dSized, dDefault)
		if err := e.br.Discard(e.ctx, "p", v.Branch); err != nil {
			b.Fatal(err)
		}
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// capDefaultBuild is the build comparison for corpora whose build with the
// server's defaults takes hours (1M x 384: the graph outgrows 64 MB after
// a few percent of the rows and pgvector inserts the rest one by one on
// disk): on the run's kept fork, one build with the defaults, stopped at
// cap. Its progress when stopped (the heap blocks its scan had handed to
// the graph, pg_stat_progress_create_index) gives a lower bound of its
// time, cap / fraction done, since the build only slows down as its graph
// grows; the ratio is taken against the run's own sized build
// (sizedSeconds, its index phase). Reports default-done (the fraction),
// default-lower-bound-s and default/sized-lower-bound.
func capDefaultBuild(b *testing.B, e *runEnv, v VariantRun, sizedSeconds float64, cap time.Duration) {
	// The run built its index on a fork with the endpoint's default
	// shared_buffers, and restarted it with buffers sized for the
	// evaluation; the default build gets what the sized one had.
	if v.Provenance != nil && v.Provenance.Settings["shared_buffers"] != "" && e.svc.cfg.Compute != nil {
		e.svc.cfg.Compute.SetSettings("p", v.Branch, nil)
		if err := e.svc.cfg.Compute.Suspend(e.ctx, "p", v.Branch); err != nil {
			b.Fatal(err)
		}
	}
	conn, release, err := e.svc.connect(e.ctx, "p", v.Branch, ReadWrite)
	if err != nil {
		b.Fatal(err)
	}
	defer release()
	watch, releaseWatch, err := e.svc.connect(e.ctx, "p", v.Branch, ReadWrite)
	if err != nil {
		b.Fatal(err)
	}
	defer releaseWatch()
	tbl := vectors.Table{Name: runTable, Dims: 384}
	ix := vectors.Index{Method: vectors.HNSW, Metric: vectors.Cosine, M: 16, EfConstruction: 64}
	if err := vectors.DropIndex(e.ctx, conn, tbl, ix); err != nil {
		b.Fatal(err)
	}
	var last vectors.BuildProgress
	var lastAt time.Duration // into the build, of last
	var mu sync.Mutex
	wctx, stopWatch := context.WithCancel(e.ctx)
	watched := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(watched)
		vectors.WatchBuild(wctx, watch, tbl, 5*time.Second, func(p vectors.BuildProgress) {
			mu.Lock()
			last, lastAt = p, time.Since(start)
			mu.Unlock()
		})
	}()
	ctx, cancel := context.WithTimeout(e.ctx, cap)
	info, err := vectors.CreateIndex(ctx, conn, tbl, ix)
	took := time.Since(start)
	cancel()
	stopWatch()
	<-watched
	if err == nil {
		b.ReportMetric(info.BuildTime.Seconds(), "build-default-s")
		b.ReportMetric(info.BuildTime.Seconds()/sizedSeconds, "default/sized")
		b.Logf("default build finished in %v; sized (the run's) %.1f s", info.BuildTime, sizedSeconds)
		return
	}
	if ctx.Err() == nil {
		b.Fatal(err)
	}
	mu.Lock()
	p, at := last, lastAt
	mu.Unlock()
	if p.BlocksTotal == 0 || p.BlocksDone == 0 {
		b.Fatalf("default build stopped at %v without progress to read (last %+v)", took, p)
	}
	// The last reading, not the cap: what was done by then.
	done := float64(p.BlocksDone) / float64(p.BlocksTotal)
	bound := at.Seconds() / done
	b.ReportMetric(done, "default-done")
	b.ReportMetric(bound, "default-lower-bound-s")
	b.ReportMetric(bound/sizedSeconds, "default/sized-lower-bound")
	b.Logf("default build stopped after %v; at %v it was at %+v (%.1f%% of the heap): at least %.0f s, %.2fx the sized build's %.1f s",
		took.Round(time.Second), at.Round(time.Second), p, 100*done, bound, bound/sizedSeconds, sizedSeconds)
}
