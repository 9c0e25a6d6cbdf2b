package experiments

import (
	"context"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
)

// heapPeak samples the live Go heap (what the last garbage collection
// found reachable, runtime/metrics /gc/heap/live:bytes) until stop, and
// returns its peak above the live heap when it started. Live heap, not
// allocated heap: garbage between collections depends on GC pacing
// (slower under the race detector), what a run holds does not. The GC
// target is lowered meanwhile so collections, and samples, are frequent.
func heapPeak(t *testing.T) (stop func() uint64) {
	t.Helper()
	old := debug.SetGCPercent(10)
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := read()
	var mu sync.Mutex
	peak := base
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			v := read()
			mu.Lock()
			peak = max(peak, v)
			mu.Unlock()
		}
	}()
	return func() uint64 {
		close(quit)
		<-done
		debug.SetGCPercent(old)
		mu.Lock()
		defer mu.Unlock()
		return peak - base
	}
}

// TestStreamingRun runs an HNSW experiment over a synthetic corpus far
// larger than a load batch and checks that the service's heap grows with
// the batch, not with the corpus, that the index build reported its
// progress with Postgres' counters and that the build's sizing is
// recorded.
func TestStreamingRun(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	const (
		docs  = 12000
		dims  = 384
		batch = 128
	)
	datasets := t.TempDir()
	dir := filepath.Join(datasets, "synth")
	if _, err := evals.WriteSynth(dir, evals.SynthOptions{Docs: docs, Queries: 40, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	// Without the embedding cache: its memory is pebble's memtables and
	// block cache, bounded by their options (about 16 MiB by default),
	// not by the corpus or the batch, and they would blur the measure.
	e := newRunEnvConfig(t, Config{DatasetsDir: datasets, IngestBatch: batch, IndexMemoryBudget: 256 << 20}, false)
	sp := ExperimentSpec{Name: "scale", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: DatasetSpec{BEIR: dir},
		Variants: []VariantSpec{{Name: "hnsw", Embedder: "hash-bow?dims=384", Index: &IndexSpec{Type: "hnsw", M: 8, EfConstruction: 32}}},
		Metrics:  []string{"ndcg_cut.10", "recall.100"}, K: 100, Concurrency: 1}

	stop := heapPeak(t)
	r, err := e.svc.StartRun(e.ctx, sp)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	// Watch the run as the progress adapters do.
	var indexProgress []PhaseProgress
	ctx, cancel := context.WithTimeout(e.ctx, 3*time.Minute)
	defer cancel()
	for {
		cur, err := e.svc.GetRun(ctx, r.ID)
		if err != nil {
			stop()
			t.Fatal(err)
		}
		if v := cur.Variants[0]; v.Phase == "index" && v.Progress != nil {
			indexProgress = append(indexProgress, *v.Progress)
		}
		if cur.Status.done() {
			r = cur
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	grown := stop()

	v := r.Variants[0]
	if r.Status != StatusSucceeded || r.Docs != docs || v.Rows != docs {
		t.Fatalf("run %s (%s), %d docs, %d rows: %+v", r.Status, r.Error, r.Docs, v.Rows, v)
	}
	// The synthetic queries' key words are in their relevant documents
	// only, so a lexical embedder finds most of them.
	if v.Metrics["recall_100"] < 0.5 {
		t.Errorf("recall_100 %.4f: the synthetic relevant documents were not found (%v)", v.Metrics["recall_100"], v.Metrics)
	}
	// What one batch holds: per row its text (under 1 KiB here), the
	// vector and the COPY's encoding of both, with room for the
	// collector; and a fixed 8 MiB for the run record, connections and
	// the test's own sampling. The corpus is ~90× a
	// batch: holding it, as runs did before they streamed, grew the live
	// heap by 27 MiB here (streaming: under 2 MiB).
	rowBytes := uint64(dims*4*2 + 2048)
	bound := uint64(8<<20) + 8*batch*rowBytes
	t.Logf("heap peak growth %.1f MiB, bound %.1f MiB, corpus as rows %.1f MiB", mib(grown), mib(bound), mib(docs*rowBytes))
	if grown > bound {
		t.Errorf("heap grew %.1f MiB during the run, more than %.1f MiB for batches of %d rows", mib(grown), mib(bound), batch)
	}

	b := v.IndexBuild
	if b == nil || b.EstimatedBytes <= 0 || b.MaintenanceWorkMem < b.EstimatedBytes || b.MaintenanceWorkMemSetting == "" ||
		b.BudgetBytes != 256<<20 || b.ParallelWorkers != min(max(runtime.NumCPU()-1, 2), 7) {
		t.Errorf("index build record %+v", b)
	}
	counted := false
	for _, p := range indexProgress {
		if (p.Unit == "tuples" || p.Unit == "blocks") && p.Done > 0 && p.Total >= p.Done && p.Detail != "" {
			counted = true
		}
	}
	if !counted {
		t.Errorf("no index build progress with counters: %+v", indexProgress)
	}
	t.Logf("index progress readings %d, timings %+v", len(indexProgress), v.Timings)
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
