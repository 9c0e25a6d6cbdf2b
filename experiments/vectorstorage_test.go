package experiments

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals/evalstest"
)

// TestVectorStorageSpec: vector types and binary quantization are
// validated with errors naming the field, rerank sweeps like any search
// parameter (one fork for all its points) and defaults to 4k, and the
// materialization key tells the storage types apart while a plain vector
// variant's key stays what it was before they existed.
func TestVectorStorageSpec(t *testing.T) {
	good := `
name: q
project: p
base: {branch: main}
dataset: {beir: /data/cranfield}
metrics: [recall.10]
variants:
  - {name: half, embedder: "hash-bow?dims=128", vector_type: halfvec, index: {type: hnsw}}
  - name: bq
    embedder: hash-bow?dims=128
    quantization: binary
    index: {type: hnsw, m: 16}
    sweep: {rerank: [10, 40], ef_search: [40, 80]}
`
	sp, err := ParseSpec([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range sp.Concrete() {
		names = append(names, v.Name)
	}
	if want := []string{"half", "bq-ef40-rerank10", "bq-ef40-rerank40", "bq-ef80-rerank10", "bq-ef80-rerank40"}; !slices.Equal(names, want) {
		t.Errorf("concrete variants %v, want %v", names, want)
	}
	vrs := make([]VariantRun, 0, len(sp.Concrete()))
	for _, v := range sp.Concrete() {
		vrs = append(vrs, VariantRun{Name: v.Name, Spec: v})
	}
	if g := buildGroups(vrs); len(g) != 2 || len(g[1]) != 4 {
		t.Errorf("groups %v: want the rerank and ef_search points on one fork", g)
	}
	if n := rerankFor(sp.Variants[1], 10); n != 40 {
		t.Errorf("default rerank for k 10: %d, want 40", n)
	}
	if n := rerankFor(sp.Variants[1], 4000); n != maxRerank {
		t.Errorf("default rerank for 4000 rows: %d, want %d", n, maxRerank)
	}

	for _, tc := range []struct{ edit, field, says string }{
		{`variants: [{name: a, embedder: hash-bow, vector_type: float8}]`, "variants[0].vector_type", "vector or halfvec"},
		{`variants: [{name: a, embedder: hash-bow, quantization: product, index: {type: hnsw}}]`, "variants[0].quantization", "none or binary"},
		{`variants: [{name: a, embedder: hash-bow, quantization: binary}]`, "variants[0].quantization", "index.type hnsw or ivfflat"},
		{`variants: [{name: a, embedder: hash-bow, quantization: binary, index: {type: none}}]`, "variants[0].quantization", "index.type hnsw or ivfflat"},
		{`variants: [{name: a, embedder: hash-bow, distance: hamming, quantization: binary, index: {type: hnsw}}]`, "variants[0].distance", "re-ranks its candidates"},
		{`variants: [{name: a, embedder: hash-bow, index: {type: hnsw}, search: {rerank: 40}}]`, "variants[0].search.rerank", "quantization binary"},
		{`variants: [{name: a, embedder: hash-bow, index: {type: hnsw}, sweep: {rerank: [40]}}]`, "variants[0].sweep.rerank", "quantization binary"},
		{`variants: [{name: a, embedder: hash-bow, quantization: binary, index: {type: hnsw}, search: {rerank: 5}}]`, "variants[0].search.rerank", "at least the 10 rows"},
		{`variants: [{name: a, embedder: hash-bow, quantization: binary, index: {type: hnsw}, search: {rerank: 20000}}]`, "variants[0].search.rerank", "at most 10000"},
		{`variants: [{name: a, embedder: hash-bow, quantization: binary, index: {type: hnsw}, sweep: {rerank: [40, 9]}}]`, "variants[0].sweep.rerank[1]", "at least the 10 rows"},
		{`variants: [{name: a, embedder: hash-bow, quantization: binary, index: {type: hnsw}, sweep: {rerank: [0]}}]`, "variants[0].sweep.rerank[0]", "at least the 10 rows"},
		{`variants: [{name: a, embedder: hash-bow, quantization: binary, chunking: {size: 200}, index: {type: hnsw}, search: {rerank: 20}}]`, "variants[0].search.rerank", "at least the 40 rows"},
		{`variants: [{name: a, embedder: hash-bow, quantization: binary, index: {type: hnsw}, search: {ef_search: 30, iterative_scan: "off"}}]`, "variants[0].search.ef_search", "rerank candidates"},
		{`variants: [{name: a, embedder: "hash-bow?dims=3000", index: {type: hnsw}}]`, "variants[0].embedder", "vector_type halfvec indexes up to 4000"},
		{`variants: [{name: a, embedder: "hash-bow?dims=5000", vector_type: halfvec, index: {type: ivfflat}}]`, "variants[0].embedder", "halfvec columns of at most 4000"},
		{`variants: [{name: a, embedder: "openai:text-embedding-3-large?dims=3072", index: {type: hnsw}}]`, "variants[0].embedder", "at most 2000"},
		// Binary quantization keeps the full embeddings, which a column
		// holds up to 16000 dimensions: below the bit index's 64000.
		{`variants: [{name: a, embedder: "hash-bow?dims=70000", quantization: binary, index: {type: hnsw}}]`, "variants[0].embedder", "stores at most 16000 in a vector column"},
		{`variants: [{name: a, embedder: "hash-bow?dims=20000"}]`, "variants[0].embedder", "stores at most 16000 in a vector column"},
		{`variants: [{name: a, embedder: "hash-bow?dims=16001", vector_type: halfvec}]`, "variants[0].embedder", "stores at most 16000 in a halfvec column"},
		{`variants: [{name: a, type: run_file, run_file: x.run, vector_type: halfvec}]`, "variants[0]", "only name and run_file"},
	} {
		_, err := ParseSpec([]byte(patchYAML(good, tc.edit)))
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: error %v, want field %s saying %q", tc.edit, err, tc.field, tc.says)
		}
	}
	// Allowed: exact search on halfvec, halfvec and binary past the
	// vector index limit, every re-rank distance, rerank ≥ 4k chunked.
	for _, edit := range []string{
		`variants: [{name: a, embedder: hash-bow, vector_type: halfvec}]`,
		`variants: [{name: a, embedder: "hash-bow?dims=16000"}]`,
		`variants: [{name: a, embedder: "hash-bow?dims=16000", quantization: binary, index: {type: hnsw}}]`,
		`variants: [{name: a, embedder: "hash-bow?dims=3000", vector_type: halfvec, index: {type: hnsw}}]`,
		`variants: [{name: a, embedder: "hash-bow?dims=5000", quantization: binary, index: {type: ivfflat}}]`,
		`variants: [{name: a, embedder: hash-bow, quantization: binary, vector_type: halfvec, distance: l2, index: {type: hnsw}}]`,
		`variants: [{name: a, embedder: hash-bow, quantization: binary, distance: ip, index: {type: ivfflat}, search: {rerank: 10}}]`,
		`variants: [{name: a, embedder: hash-bow, quantization: binary, chunking: {size: 200}, index: {type: hnsw}, search: {rerank: 40, iterative_scan: "off", ef_search: 40}}]`,
	} {
		if _, err := ParseSpec([]byte(patchYAML(good, edit))); err != nil {
			t.Errorf("%s: %v", edit, err)
		}
	}

	// Keys: a plain vector variant's key has no storage fields (its id is
	// the one it had before vector types), and each storage type has a
	// key of its own.
	svc := &Service{cfg: Config{Branches: materializingBranches{}}}
	run := &Run{Provenance: &Provenance{}}
	base := VariantSpec{Name: "v", Embedder: "hash-bow?dims=128", Index: &IndexSpec{Type: "hnsw"}}
	ids := map[string]string{}
	for name, edit := range map[string]func(v *VariantSpec){
		"vector":         func(*VariantSpec) {},
		"vector-explict": func(v *VariantSpec) { v.VectorType, v.Quantization = VectorTypeVector, QuantizationNone },
		"halfvec":        func(v *VariantSpec) { v.VectorType = VectorTypeHalfVec },
		"binary":         func(v *VariantSpec) { v.Quantization = QuantizationBinary },
		"binary-halfvec": func(v *VariantSpec) { v.VectorType, v.Quantization = VectorTypeHalfVec, QuantizationBinary },
		"binary-rerank":  func(v *VariantSpec) { v.Quantization, v.Search.Rerank = QuantizationBinary, 100 },
	} {
		v := base
		edit(&v)
		k := svc.materializationKey(run, v)
		if k == nil {
			t.Fatalf("%s: no key", name)
		}
		ids[name] = k.ID()
		if name == "vector" && (k.VectorType != "" || k.Quantization != "") {
			t.Errorf("a vector variant's key %+v names its storage", k)
		}
	}
	if ids["vector"] != ids["vector-explict"] || ids["binary"] != ids["binary-rerank"] {
		t.Errorf("keys of the same build differ: %v", ids)
	}
	for _, pair := range [][2]string{{"vector", "halfvec"}, {"vector", "binary"}, {"halfvec", "binary"}, {"binary", "binary-halfvec"}, {"halfvec", "binary-halfvec"}} {
		if ids[pair[0]] == ids[pair[1]] {
			t.Errorf("%s and %s share key %s", pair[0], pair[1], ids[pair[0]])
		}
	}
}

// materializingBranches is a RunBranches that claims to keep
// materializations, for computing keys.
type materializingBranches struct{ RunBranches }

func (materializingBranches) Keep(context.Context, string, string, string) (BranchPoint, error) {
	return BranchPoint{}, nil
}
func (materializingBranches) Drop(context.Context, string, BranchPoint) error { return nil }

// TestVectorStorageRun runs Cranfield (1400 documents, hash-rp at 256
// dims: dense vectors whose sign bits approximate their angle) on the
// real stack with every storage type. Exact search on halfvec gives
// metrics within 0.002 of vector's, not always equal ones: half precision
// rounds each component to 11 significant bits (relative error ≤ 2⁻¹¹),
// which moves distances by about 1e-3 and so swaps only near ties
// (measured: equal here; hash-bow at 256 dims: nDCG@10 Δ −2.7e-5). The
// halfvec HNSW index is smaller than the vector one and the binary
// (bit) index smaller still; every indexed point records its build,
// ANN recall and a plan that scans its own index, and the binary points'
// ANN recall is against the full-precision exact search (the exact
// vector variant's rankings), which re-ranking every row reaches.
// A rerun reuses every materialization; a variant whose storage type
// changed forks the materialization of its new type, and one whose type
// was never built misses.
func TestVectorStorageRun(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	svc := storeService(t, "p", nil)
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), LocalCaller), 10*time.Minute)
	defer cancel()
	conn, release, err := svc.connect(ctx, "p", "main", ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	loadSQLDataset(t, conn, evalstest.Cranfield(t))
	release()
	const emb = "hash-rp?dims=256"
	hnsw := &IndexSpec{Type: "hnsw", M: 8, EfConstruction: 32}
	sp := ExperimentSpec{Name: "quant", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: sqlDataset,
		Metrics: []string{"ndcg_cut.10", "recall.10"}, Timing: TimingSpec{Repeats: 1, Clients: 1},
		Variants: []VariantSpec{
			{Name: "exact", Embedder: emb},
			{Name: "exact-half", Embedder: emb, VectorType: VectorTypeHalfVec},
			{Name: "hnsw", Embedder: emb, Index: hnsw},
			{Name: "hnsw-half", Embedder: emb, VectorType: VectorTypeHalfVec, Index: hnsw},
			{Name: "bq", Embedder: emb, Quantization: QuantizationBinary, Index: hnsw, Sweep: &SweepSpec{Rerank: []int{20, 40, 200}}},
			// Every list probed and every row a candidate: re-ranking
			// gives exact search, so its ANN recall against the
			// full-precision exact search is 1 (and would not be against
			// Hamming search).
			{Name: "bq-ivf", Embedder: emb, Quantization: QuantizationBinary, Index: &IndexSpec{Type: "ivfflat", Lists: 10},
				Search: SearchSpec{Probes: 10, Rerank: 1400}},
		}}
	run := func(sp ExperimentSpec) (*Run, map[string]VariantRun) {
		t.Helper()
		r, err := svc.StartRun(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		if r, err = svc.WaitRun(ctx, r.ID); err != nil || r.Status != StatusSucceeded {
			var errs []string
			for _, v := range r.Variants {
				errs = append(errs, v.Name+": "+string(v.Status)+" "+v.Error)
			}
			t.Fatalf("run: %v %s %s: %s", err, r.Status, r.Error, strings.Join(errs, "; "))
		}
		by := map[string]VariantRun{}
		for _, v := range r.Variants {
			by[v.Name] = v
		}
		return r, by
	}
	r1, by := run(sp)
	ex, half := by["exact"], by["exact-half"]
	for _, m := range []string{"ndcg_cut_10", "recall_10"} {
		a, b := ex.Metrics[m], half.Metrics[m]
		t.Logf("exact %s: vector %.6f, halfvec %.6f (Δ %.2g)", m, a, b, b-a)
		if a == 0 || math.Abs(a-b) > 0.002 {
			t.Errorf("exact %s: vector %.6f, halfvec %.6f", m, a, b)
		}
	}
	if half.Plan == nil || half.Plan.UsesIndex || half.ANNRecall != nil || half.IndexName != "" {
		t.Errorf("exact halfvec: plan %+v, recall %v, index %q", half.Plan, fmtp(half.ANNRecall), half.IndexName)
	}
	for _, name := range []string{"hnsw", "hnsw-half", "bq-rerank20", "bq-rerank40", "bq-rerank200", "bq-ivf"} {
		v := by[name]
		p := v.Plan
		t.Logf("%s: index %s %d bytes, build %.0f ms (%+v), ann recall %v, p50 %v, plan %s", name, v.IndexName, v.IndexBytes,
			v.Timings.Index, v.IndexBuild, fmtp(v.ANNRecall), v.Latency.P50, p)
		if v.IndexBytes <= 0 || v.IndexBuild == nil || v.Timings.Index <= 0 || v.ANNRecall == nil || v.Latency.P50 <= 0 {
			t.Errorf("%s: index %d bytes, build %+v %.1f ms, recall %v, latency %+v", name, v.IndexBytes, v.IndexBuild, v.Timings.Index,
				fmtp(v.ANNRecall), v.Latency)
		}
		if p == nil || !p.UsesIndex || p.Index != v.IndexName || !slices.Contains(p.Nodes, "Index Scan") || slices.Contains(p.Nodes, "Seq Scan") {
			t.Errorf("%s: plan %+v does not scan its index %s", name, p, v.IndexName)
		}
		if strings.HasPrefix(name, "bq") != (p != nil && p.Rerank == v.Spec.Search.Rerank && p.Rerank > 0) {
			t.Errorf("%s: plan rerank %+v", name, p)
		}
	}
	vec, hv, bq := by["hnsw"], by["hnsw-half"], by["bq-rerank40"]
	if !(bq.IndexBytes < hv.IndexBytes && hv.IndexBytes < vec.IndexBytes) {
		t.Errorf("index bytes: vector %d, halfvec %d, binary %d: want decreasing", vec.IndexBytes, hv.IndexBytes, bq.IndexBytes)
	}
	if !strings.HasSuffix(bq.IndexName, "_hamming_idx") || !strings.Contains(bq.Provenance.IndexDDL, "bit_hamming_ops") ||
		!strings.Contains(bq.Provenance.IndexDDL, "binary_quantize") || bq.Provenance.Settings["rerank"] != "40" {
		t.Errorf("binary index %s: %s, settings %v", bq.IndexName, bq.Provenance.IndexDDL, bq.Provenance.Settings)
	}
	if !strings.Contains(hv.Provenance.IndexDDL, "halfvec_cosine_ops") {
		t.Errorf("halfvec index: %s", hv.Provenance.IndexDDL)
	}
	// Binary ANN recall is against the full-precision exact search: the
	// exact vector variant's rankings.
	for _, name := range []string{"bq-rerank20", "bq-rerank40", "bq-rerank200", "bq-ivf"} {
		if got, want := *by[name].ANNRecall, overlap(t, by[name], ex); math.Abs(got-want) > 1e-9 {
			t.Errorf("%s: ann recall %.6f, overlap with full-precision exact search %.6f", name, got, want)
		}
	}
	if r := *by["bq-ivf"].ANNRecall; r != 1 {
		t.Errorf("re-ranking every row: ann recall %.4f, want 1", r)
	}
	if a, b := *by["bq-rerank20"].ANNRecall, *by["bq-rerank200"].ANNRecall; a >= b {
		t.Errorf("ann recall with 20 candidates %.4f, with 200 %.4f: re-ranking does nothing?", a, b)
	}
	// halfvec's index is measured against exact search on what its table
	// holds: the exact halfvec variant's rankings.
	if got, want := *hv.ANNRecall, overlap(t, hv, half); math.Abs(got-want) > 1e-9 {
		t.Errorf("hnsw-half: ann recall %.6f, overlap with exact halfvec search %.6f", got, want)
	}

	// A rerun reuses every materialization, with the same results.
	_, by2 := run(sp)
	for name, v := range by2 {
		if u := v.Materialization; u == nil || !u.Reused || u.ID != by[name].Materialization.ID || u.CreatedByRun != r1.ID {
			t.Errorf("rerun %s: %+v", name, u)
		}
		same(t, v, by[name])
	}
	// A changed type: hnsw as halfvec forks what hnsw-half built; as
	// binary halfvec, a build nobody made, it misses.
	changed := sp
	changed.Variants = []VariantSpec{
		{Name: "hnsw", Embedder: emb, VectorType: VectorTypeHalfVec, Index: hnsw},
		{Name: "bq-half", Embedder: emb, VectorType: VectorTypeHalfVec, Quantization: QuantizationBinary, Index: hnsw},
	}
	_, by3 := run(changed)
	if u := by3["hnsw"].Materialization; u == nil || !u.Reused || u.ID != hv.Materialization.ID || u.ID == vec.Materialization.ID {
		t.Errorf("hnsw as halfvec: %+v, want the materialization of hnsw-half %s", u, hv.Materialization.ID)
	}
	bh := by3["bq-half"]
	if u := bh.Materialization; u == nil || u.Reused {
		t.Errorf("binary over halfvec: %+v, want a build", u)
	}
	// The bits are the same, but a parallel HNSW build's page count varies
	// by a few pages from build to build.
	if bh.ANNRecall == nil || bh.IndexBytes >= hv.IndexBytes || bh.Plan == nil || !bh.Plan.UsesIndex {
		t.Errorf("binary over halfvec: recall %v, index %d bytes (halfvec: %d), plan %+v", fmtp(bh.ANNRecall), bh.IndexBytes, hv.IndexBytes, bh.Plan)
	}
}

// overlap is the mean share of b's top-k documents in a's top-k, over
// b's queries: a's ANN recall against b when b is an exact search.
func overlap(t *testing.T, a, b VariantRun) float64 {
	t.Helper()
	top := map[string][]RankedDoc{}
	for _, q := range a.Results {
		top[q.Query] = q.Hits
	}
	sum := 0.0
	for _, q := range b.Results {
		in := map[string]bool{}
		for _, h := range q.Hits {
			in[h.Doc] = true
		}
		n := 0
		for _, h := range top[q.Query] {
			if in[h.Doc] {
				n++
			}
		}
		sum += float64(n) / float64(len(q.Hits))
	}
	return sum / float64(len(b.Results))
}

// TestVectorStorageIncremental: halfvec and binary materializations are
// brought up to date document by document like vector ones (the delta
// goes into the halfvec column, the bit index is maintained in place),
// and exact search on the maintained halfvec table equals a cold run's.
func TestVectorStorageIncremental(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	svc := storeService(t, "p", nil)
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), LocalCaller), 10*time.Minute)
	defer cancel()
	conn, release, err := svc.connect(ctx, "p", "main", ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	loadSQLDataset(t, conn, evalstest.Cranfield(t))
	release()
	const emb = "hash-rp?dims=128&idf=none"
	sp := ExperimentSpec{Name: "quant-incr", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: sqlDataset,
		Metrics: []string{"ndcg_cut.10"}, Timing: TimingSpec{Repeats: 1, Clients: 1},
		Variants: []VariantSpec{
			{Name: "half", Embedder: emb, VectorType: VectorTypeHalfVec},
			{Name: "bq", Embedder: emb, VectorType: VectorTypeHalfVec, Quantization: QuantizationBinary, Index: &IndexSpec{Type: "hnsw"}},
		}}
	run := func(sp ExperimentSpec) []VariantRun {
		t.Helper()
		r, err := svc.StartRun(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		if r, err = svc.WaitRun(ctx, r.ID); err != nil || r.Status != StatusSucceeded {
			t.Fatalf("run: %v %+v", err, r.Variants)
		}
		return r.Variants
	}
	r1 := run(sp)
	if _, err := svc.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: `
		DELETE FROM docs WHERE id IN (SELECT id FROM docs ORDER BY id DESC LIMIT 7);
		UPDATE docs SET body = body || ' revised' WHERE id IN (SELECT id FROM docs ORDER BY id LIMIT 7);
		INSERT INTO docs SELECT 'new-' || g, 'a new report on the boundary layer of a swept wing, number ' || g FROM generate_series(1, 14) g`}); err != nil {
		t.Fatal(err)
	}
	r2 := run(sp)
	for i, v := range r2 {
		d := v.Materialization.Incremental
		if d == nil || d.From != r1[i].Materialization.ID || d.Added != 14 || d.Changed != 7 || d.Deleted != 7 || v.Rows != 1407 {
			t.Errorf("%s: materialization %+v, %d rows; want built incrementally from %s", v.Name, v.Materialization, v.Rows, r1[i].Materialization.ID)
		}
	}
	if v := r2[1]; v.ANNRecall == nil || v.Plan == nil || !v.Plan.UsesIndex || v.Timings.Index != 0 {
		t.Errorf("maintained binary index: recall %v, plan %+v, index build %.0f ms", fmtp(v.ANNRecall), v.Plan, v.Timings.Index)
	}
	cold := sp
	cold.Reuse = ReuseNever
	r3 := run(cold)
	same(t, r2[0], r3[0])
	t.Logf("binary over halfvec, ANN recall@10: maintained in place %v, built cold %v", fmtp(r2[1].ANNRecall), fmtp(r3[1].ANNRecall))
}
