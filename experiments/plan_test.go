package experiments

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/evals/evalstest"
	"github.com/offshootdb/offshoot/vectors"
)

// TestRunPlans sweeps ef_search on Cranfield (1400 rows, k 100), where
// the planner prefers a sequential scan and sort over the HNSW index, and
// ef_search 10 and 40 would cap the hits below k without iterative
// scans. Every ANN point must be recorded with a plan that scans its
// index (forced where the planner would not), return k hits, and, as the
// fork's own index statistics show, have run every measured query on the
// index.
func TestRunPlans(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	sp := e.spec(VariantSpec{Name: "exact", Embedder: "hash-bow?dims=64"},
		VariantSpec{Name: "hnsw", Embedder: "hash-bow?dims=64", Index: &IndexSpec{Type: "hnsw"},
			Sweep: &SweepSpec{EfSearch: []int{10, 40, 200}}},
		// 70 rows a list: one probe holds fewer than k.
		VariantSpec{Name: "ivf", Embedder: "hash-bow?dims=64", Index: &IndexSpec{Type: "ivfflat", Lists: 20},
			Sweep: &SweepSpec{Probes: []int{1, 4}}})
	sp.Metrics, sp.K, sp.KeepBranches, sp.Concurrency = []string{"recall.100"}, 100, true, 1
	sp.Timing = TimingSpec{Repeats: 2, Clients: 2}
	r := e.run(t, sp)
	if r.Status != StatusSucceeded {
		t.Fatalf("status %s: %s %+v", r.Status, r.Error, r.Variants)
	}
	forced := 0
	type forkIndex struct{ branch, index string }
	wantScans := map[forkIndex]int64{} // index scans the run made
	for _, v := range r.Variants {
		p := v.Plan
		if p == nil {
			t.Fatalf("variant %s: no plan", v.Name)
		}
		t.Logf("%s: plan %s, ann recall %.4f, %s", v.Name, p, deref(v.ANNRecall), v.Timing)
		if v.Spec.Index == nil {
			if p.UsesIndex || p.Index != "" || !slices.Contains(p.Nodes, "Seq Scan") {
				t.Errorf("exact variant %s: plan %+v", v.Name, p)
			}
			continue
		}
		// The invariant: an index point was measured on its index.
		if !p.UsesIndex || p.Index != v.IndexName || slices.Contains(p.Nodes, "Seq Scan") || !slices.Contains(p.Nodes, "Index Scan") {
			t.Errorf("index point %s recorded with plan %+v (index %s)", v.Name, p, v.IndexName)
		}
		if p.Forced {
			forced++
			if slices.Contains(p.PlannerNodes, "Index Scan") {
				t.Errorf("%s: forced although the planner scanned the index: %+v", v.Name, p)
			}
		}
		// ef_search below k, and IVFFlat: iterative scans, and no
		// truncated rankings.
		wantIter := "off"
		if v.Spec.Search.EfSearch < sp.K {
			wantIter = "relaxed_order"
		}
		if v.Spec.Index.Type == "ivfflat" && (p.IterativeScan != "relaxed_order" || p.Probes != v.Spec.Search.Probes || p.Rows != sp.K) {
			t.Errorf("%s: plan settings %+v", v.Name, p)
		}
		if v.Spec.Index.Type == "hnsw" && (p.IterativeScan != wantIter || p.EfSearch != v.Spec.Search.EfSearch || p.Rows != sp.K) {
			t.Errorf("%s: plan settings %+v, want iterative %s", v.Name, p, wantIter)
		}
		for _, q := range v.Results {
			if len(q.Hits) != sp.K {
				t.Fatalf("%s: query %s has %d hits, want %d", v.Name, q.Query, len(q.Hits), sp.K)
			}
		}
		// Capped, HNSW's recall@100 at ef_search 10 would be at most 0.1.
		if v.ANNRecall == nil || (v.Spec.Index.Type == "hnsw" && *v.ANNRecall <= 0.5) || *v.ANNRecall <= 0 {
			t.Errorf("%s: ann recall %v: capped?", v.Name, deref(v.ANNRecall))
		}
		// Ranking pass, warm-up, timed passes, concurrent pass.
		ts := r.Spec.Timing
		wantScans[forkIndex{v.Branch, v.IndexName}] += int64(len(v.Results) * (1 + ts.Warmup + 2*ts.Repeats))
	}
	if forced == 0 {
		t.Error("no point was forced: the planner took the index everywhere, so this test proves nothing")
	}
	// Independent of the recorded plans: the fork's statistics count an
	// index scan per measured query of every index point.
	for fi, want := range wantScans {
		conn, release, err := e.br.Conn(e.ctx, "p", fi.branch, ReadOnly)
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		ix := fi.index
		var got int64
		for range 100 { // backends flush their statistics as they exit
			if _, err := conn.Exec(e.ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
				t.Fatal(err)
			}
			if err := conn.QueryRow(e.ctx, "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = $1", ix).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got >= want {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got != want {
			t.Errorf("index %s: %d index scans, want %d (one per measured query)", ix, got, want)
		}
	}
}

// TestRunIterativeScanOff rejects a sweep whose ef_search would cap
// recall@k when iterative scans are off, naming the field.
func TestRunIterativeScanOff(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	sp := e.spec(VariantSpec{Name: "exact", Embedder: "hash-bow?dims=64"},
		VariantSpec{Name: "hnsw", Embedder: "hash-bow?dims=64", Index: &IndexSpec{Type: "hnsw"},
			Search: SearchSpec{IterativeScan: IterativeOff}, Sweep: &SweepSpec{EfSearch: []int{100, 20}}})
	sp.Metrics, sp.K = []string{"recall.100"}, 100
	_, err := e.svc.StartRun(e.ctx, sp)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "variants[1].sweep.ef_search[1]" {
		t.Fatalf("start: %v, want an error naming variants[1].sweep.ef_search[1]", err)
	}
	// With ef_search ≥ k the same spec runs, iterative scans off. An
	// IVFFlat point whose one probe holds fewer than k rows (70 a list)
	// fails, naming the field, rather than report a capped recall.
	sp.Variants[1].Sweep.EfSearch = []int{100}
	sp.Variants = append(sp.Variants, VariantSpec{Name: "ivf", Embedder: "hash-bow?dims=64", Index: &IndexSpec{Type: "ivfflat", Lists: 20},
		Search: SearchSpec{Probes: 1, IterativeScan: IterativeOff}})
	sp.Timing = TimingSpec{Repeats: 1, Clients: 1}
	r := e.run(t, sp)
	if r.Status != StatusPartial {
		t.Fatalf("status %s: %s %+v", r.Status, r.Error, r.Variants)
	}
	if v := r.Variants[1]; v.Status != StatusSucceeded || v.Plan == nil || !v.Plan.UsesIndex || v.Plan.IterativeScan != "off" {
		t.Errorf("%s: %s %q plan %+v", v.Name, v.Status, v.Error, v.Plan)
	}
	if v := r.Variants[2]; v.Status != StatusFailed || !strings.Contains(v.Error, "search.probes") || v.Metrics != nil || v.ANNRecall != nil {
		t.Errorf("%s: %s %q, metrics %v", v.Name, v.Status, v.Error, v.Metrics)
	}
}

// TestRunTiming checks the shape of the latency record: percentiles in
// order in every pass, the pooled stats and the concurrent pass, the
// configured passes and clients, and a cold run restarting Postgres.
func TestRunTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	for _, ts := range []TimingSpec{{Repeats: 3}, {Repeats: 2, Clients: 3, Cache: CacheCold}} {
		sp := e.spec(VariantSpec{Name: "hnsw", Embedder: "hash-bow?dims=64", Index: &IndexSpec{Type: "hnsw"}})
		sp.Timing = ts
		r := e.run(t, sp)
		if r.Status != StatusSucceeded {
			t.Fatalf("%+v: status %s: %s %+v", ts, r.Status, r.Error, r.Variants)
		}
		v := r.Variants[0]
		tr := v.Timing
		if tr == nil {
			t.Fatal("no timing")
		}
		t.Logf("%+v: %v; %s", ts, v.Latency, tr)
		ordered := func(what string, s evals.LatencyStats, n, clients int) {
			if s.Count != n || s.Clients != clients || s.P50 <= 0 || s.P50 > s.P95 || s.P95 > s.P99 || s.P99 > s.Max || s.QPS <= 0 {
				t.Errorf("%s: %+v, want %d queries at %d clients, 0 < p50 ≤ p95 ≤ p99 ≤ max", what, s, n, clients)
			}
		}
		nq := len(v.Results)
		ordered("pooled", v.Latency, nq*ts.Repeats, 1)
		clients := ts.Clients
		if clients == 0 {
			clients = min(runtime.NumCPU(), 64) // the default
		}
		ordered("concurrent", tr.Concurrent, nq*ts.Repeats, clients)
		if len(tr.Passes) != ts.Repeats {
			t.Fatalf("%d passes, want %d", len(tr.Passes), ts.Repeats)
		}
		lo, hi := tr.Passes[0].P50, tr.Passes[0].P50
		for _, p := range tr.Passes {
			ordered("pass", p, nq, 1)
			lo, hi = min(lo, p.P50), max(hi, p.P50)
		}
		if tr.P50Spread != hi-lo || tr.P95Spread < 0 || tr.P99Spread < 0 {
			t.Errorf("spread p50 %v (passes %v..%v) p95 %v p99 %v", tr.P50Spread, lo, hi, tr.P95Spread, tr.P99Spread)
		}
		wantWarm, wantCache, wantRestarts := 1, CacheWarm, 0
		if ts.Cache == CacheCold {
			wantWarm, wantCache, wantRestarts = 0, CacheCold, ts.Repeats+1
		}
		if e.br.restarts != wantRestarts {
			t.Errorf("%d restarts of Postgres, want %d", e.br.restarts, wantRestarts)
		}
		if tr.Cache != wantCache || tr.Warmup != wantWarm || tr.Repeats != ts.Repeats {
			t.Errorf("timing %+v", tr)
		}
		for _, q := range v.Results {
			if q.LatencyUS < 0 {
				t.Errorf("query %s latency %d", q.Query, q.LatencyUS)
			}
		}
	}
}

// TestRunColdOnStore times a run with a cold cache on the real stack: the
// fork's endpoint is restarted (suspended and woken) before every timed
// pass, and the point is still measured on its index.
func TestRunColdOnStore(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	svc := storeService(t, "p", nil)
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), LocalCaller), 5*time.Minute)
	defer cancel()
	sp := ExperimentSpec{Name: "cold", Project: "p", Base: BranchPoint{Branch: "main"}, KeepBranches: true,
		Dataset: DatasetSpec{BEIR: evalstest.Cranfield(t)}, Metrics: []string{"recall.100"},
		Timing:   TimingSpec{Repeats: 2, Clients: 2, Cache: CacheCold},
		Variants: []VariantSpec{{Name: "hnsw", Embedder: "hash-bow?dims=32", Index: &IndexSpec{Type: "hnsw"}, Search: SearchSpec{EfSearch: 20}}}}
	r, err := svc.StartRun(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	done, err := svc.WaitRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	v := done.Variants[0]
	if done.Status != StatusSucceeded || v.Timing == nil || v.Plan == nil {
		t.Fatalf("run %s %q: %+v", done.Status, done.Error, v)
	}
	if v.Timing.Cache != CacheCold || len(v.Timing.Passes) != 2 || v.Timing.Concurrent.Clients != 2 ||
		!v.Plan.UsesIndex || v.Plan.IterativeScan != "relaxed_order" {
		t.Errorf("timing %+v plan %+v", v.Timing, v.Plan)
	}
	ep, err := svc.Endpoint(ctx, "p", v.Branch)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan %s; %s; endpoint %+v", v.Plan, v.Timing, ep)
	if ep.Wakes < 1+3 { // the first start, then a restart before each of 2 passes and the concurrent one
		t.Errorf("endpoint woke %d times, want at least 4", ep.Wakes)
	}
}

func deref(f *float64) float64 {
	if f == nil {
		return -1
	}
	return *f
}

func TestPlanNodes(t *testing.T) {
	for _, tc := range []struct {
		name, explain string
		nodes, index  []string
		err           bool
	}{
		{"seq scan", `[{"Plan": {"Node Type": "Limit", "Plans": [{"Node Type": "Sort", "Plans": [{"Node Type": "Seq Scan", "Relation Name": "t"}]}]}}]`,
			[]string{"Limit", "Sort", "Seq Scan"}, nil, false},
		{"index scan", `[{"Plan": {"Node Type": "Limit", "Plans": [{"Node Type": "Index Scan", "Index Name": "t_hnsw"}]}}]`,
			[]string{"Limit", "Index Scan"}, []string{"t_hnsw"}, false},
		{"two children", `[{"Plan": {"Node Type": "Append", "Plans": [{"Node Type": "Index Scan", "Index Name": "a"}, {"Node Type": "Bitmap Index Scan", "Index Name": "b"}]}}]`,
			[]string{"Append", "Index Scan", "Bitmap Index Scan"}, []string{"a", "b"}, false},
		{"no plan", `[]`, nil, nil, true},
		{"not json", `Seq Scan on t`, nil, nil, true},
		{"no node type", `[{"Plan": {}}]`, nil, nil, true},
	} {
		nodes, index, err := planNodes([]byte(tc.explain))
		if (err != nil) != tc.err || !slices.Equal(nodes, tc.nodes) || !slices.Equal(index, tc.index) {
			t.Errorf("%s: nodes %v index %v err %v, want %v %v err %v", tc.name, nodes, index, err, tc.nodes, tc.index, tc.err)
		}
	}
}

func TestIterativeFor(t *testing.T) {
	hnsw, ivf := &IndexSpec{Type: "hnsw"}, &IndexSpec{Type: "ivfflat"}
	for _, tc := range []struct {
		name  string
		v     VariantSpec
		fetch int
		want  string
		err   bool
	}{
		{"hnsw ef below k, auto", VariantSpec{Index: hnsw, Search: SearchSpec{EfSearch: 10}}, 100, "relaxed_order", false},
		{"hnsw ef equal k, auto", VariantSpec{Index: hnsw, Search: SearchSpec{EfSearch: 100}}, 100, "off", false},
		{"hnsw default ef covers k", VariantSpec{Index: hnsw}, 400, "off", false},
		{"hnsw default ef below chunked fetch", VariantSpec{Index: hnsw}, 4000, "relaxed_order", false},
		{"hnsw ef below k, off", VariantSpec{Index: hnsw, Search: SearchSpec{EfSearch: 10, IterativeScan: IterativeOff}}, 100, "", true},
		{"hnsw strict", VariantSpec{Index: hnsw, Search: SearchSpec{EfSearch: 10, IterativeScan: IterativeStrict}}, 100, "strict_order", false},
		{"ivfflat auto", VariantSpec{Index: ivf, Search: SearchSpec{Probes: 1}}, 10, "relaxed_order", false},
		{"ivfflat off", VariantSpec{Index: ivf, Search: SearchSpec{IterativeScan: IterativeOff}}, 10, "off", false},
	} {
		got, err := iterativeFor(tc.v, tc.fetch)
		if string(got) != tc.want || (err != nil) != tc.err {
			t.Errorf("%s: %q %v, want %q err %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// TestExplainPoint plans a query on a small table: the planner sorts a
// sequential scan, so the point is forced onto its index; an index the
// query cannot use (built for another metric) fails even when forced,
// with the reason.
func TestExplainPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	ctx := context.Background()
	conn := pgtest.New(t, nil).Connect(t)
	tbl := vectors.Table{Name: "small", Dims: 3}
	if err := vectors.CreateTable(ctx, conn, tbl); err != nil {
		t.Fatal(err)
	}
	var rows []vectors.Row
	for i := range 50 {
		rows = append(rows, vectors.Row{ID: fmt.Sprint(i), DocID: fmt.Sprint(i), Embedding: []float32{float32(i), 1, float32(i % 7)}})
	}
	if _, err := vectors.Load(ctx, conn, tbl, rows, vectors.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	l2, err := vectors.CreateIndex(ctx, conn, tbl, vectors.Index{Method: vectors.HNSW, Metric: vectors.L2})
	if err != nil {
		t.Fatal(err)
	}
	q := vectors.Query{Vector: []float32{1, 2, 3}, K: 20, Metric: vectors.L2, EfSearch: 40}
	ps, err := explainPoint(ctx, conn, tbl, &q, l2.Name)
	if err != nil || !ps.UsesIndex || ps.Index != l2.Name || !ps.Forced || !q.ForceIndex || !slices.Contains(ps.PlannerNodes, "Seq Scan") {
		t.Errorf("l2 point: %+v, %v; want forced onto %s", ps, err, l2.Name)
	}
	q = vectors.Query{Vector: []float32{1, 2, 3}, K: 20, Metric: vectors.Cosine, EfSearch: 40}
	ps, err = explainPoint(ctx, conn, tbl, &q, l2.Name)
	if err == nil || ps.UsesIndex || !strings.Contains(err.Error(), "does not scan index "+l2.Name) {
		t.Errorf("cosine query on an l2 index: %+v, %v; want an error naming the index", ps, err)
	}

	// Binary quantization: the Hamming candidate scan is forced onto the
	// bit index; a binary query has no use of the vector index, nor a
	// plain query of the bit index, and either is an error.
	bit, err := vectors.CreateIndex(ctx, conn, tbl, vectors.Index{Method: vectors.HNSW, Metric: vectors.L2, Binary: true})
	if err != nil {
		t.Fatal(err)
	}
	q = vectors.Query{Vector: []float32{1, 2, 3}, K: 5, Metric: vectors.L2, EfSearch: 40, Rerank: 20}
	ps, err = explainPoint(ctx, conn, tbl, &q, bit.Name)
	if err != nil || !ps.UsesIndex || ps.Index != bit.Name || !ps.Forced || ps.Rerank != 20 || !strings.Contains(ps.String(), "rerank=20") {
		t.Errorf("binary point: %+v, %v; want forced onto %s", ps, err, bit.Name)
	}
	q = vectors.Query{Vector: []float32{1, 2, 3}, K: 5, Metric: vectors.L2, EfSearch: 40, Rerank: 20}
	if ps, err = explainPoint(ctx, conn, tbl, &q, l2.Name); err == nil || ps.UsesIndex {
		t.Errorf("binary query on the vector index: %+v, %v; want an error", ps, err)
	}
	q = vectors.Query{Vector: []float32{1, 2, 3}, K: 5, Metric: vectors.L2, EfSearch: 40}
	if ps, err = explainPoint(ctx, conn, tbl, &q, bit.Name); err == nil || ps.UsesIndex {
		t.Errorf("plain query on the bit index: %+v, %v; want an error", ps, err)
	}
}

// TestTimingWarmup: warm-up 0 is the default, one pass (a warm cache
// always gets one), and the error for a count out of range says so; it
// used to say "must be in 1..20" while accepting 0.
func TestTimingWarmup(t *testing.T) {
	for _, tc := range []struct {
		warmup, want int
		err          string
	}{
		{0, 1, ""},
		{1, 1, ""},
		{20, 20, ""},
		{-1, 0, "timing.warmup: must be in 1..20, or 0 for the default (1)"},
		{21, 0, "timing.warmup: must be in 1..20, or 0 for the default (1)"},
	} {
		ts := TimingSpec{Warmup: tc.warmup}
		err := ts.validate()
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("warmup %d: %v, want %s", tc.warmup, err, tc.err)
		case tc.err == "" && (err != nil || ts.Warmup != tc.want):
			t.Errorf("warmup %d: %v, warmup %d, want %d", tc.warmup, err, ts.Warmup, tc.want)
		}
	}
}
