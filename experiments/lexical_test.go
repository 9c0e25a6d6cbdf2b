package experiments

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/evals/evalstest"
)

// TestLexicalHybrid runs Cranfield on the real stack with a dense
// variant, lexical variants (Postgres full-text search: OR, AND and
// websearch queries, ts_rank and ts_rank_cd, chunked) and hybrids of the
// dense and the lexical one (RRF over a k sweep, weighted fusion over an
// alpha sweep). Every variant produces metrics above a floor; the
// lexical ranking equals a full-text query written by hand on the fork;
// the fused rankings are Fuse of the recorded ones; the same spec again
// reuses the lexical materialization and gives the same numbers and
// rankings, bit for bit; a hybrid's rankings export as a TREC run that
// reads back to the recorded ranking and score.
func TestLexicalHybrid(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	svc := storeService(t, "p", nil)
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), LocalCaller), 10*time.Minute)
	defer cancel()
	alpha := 0.5
	sp := ExperimentSpec{Name: "lex", Project: "p", Base: BranchPoint{Branch: "main"},
		Dataset: DatasetSpec{BEIR: evalstest.Cranfield(t)}, Metrics: []string{"ndcg_cut.10", "recall.100", "map"}, K: 100,
		Timing: TimingSpec{Warmup: 1, Repeats: 1, Clients: 1}, KeepBranches: true,
		Variants: []VariantSpec{
			{Name: "dense", Embedder: "hash-bow?dims=256"},
			{Name: "bm", Type: VariantLexical},
			{Name: "bm-cd", Type: VariantLexical, Lexical: &LexicalSpec{Rank: RankTSCD}},
			{Name: "bm-norm", Type: VariantLexical, Lexical: &LexicalSpec{Normalization: 1}},
			{Name: "bm-and", Type: VariantLexical, Lexical: &LexicalSpec{Query: LexicalAnd}},
			{Name: "bm-web", Type: VariantLexical, Lexical: &LexicalSpec{Query: LexicalWebsearch}},
			{Name: "bm-chunked", Type: VariantLexical, Chunking: &ChunkSpec{Size: 300, Overlap: 50}},
			{Name: "rrf", Type: VariantHybrid, Hybrid: &HybridSpec{Dense: "dense", Lexical: "bm"}, Sweep: &SweepSpec{RRFK: []int{10, 60}}},
			{Name: "wsum", Type: VariantHybrid, Hybrid: &HybridSpec{Dense: "dense", Lexical: "bm", Fusion: FusionWeighted, Alpha: &alpha},
				Sweep: &SweepSpec{Alpha: []float64{0.3, 0.7}}},
		}}
	run := func(sp ExperimentSpec) *Run {
		t.Helper()
		r, err := svc.StartRun(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		done, err := svc.WaitRun(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if done.Status != StatusSucceeded {
			t.Fatalf("run %s: %s %q %+v", done.ID, done.Status, done.Error, done.Variants)
		}
		return done
	}
	r1 := run(sp)
	byName := map[string]*VariantRun{}
	for i := range r1.Variants {
		v := &r1.Variants[i]
		byName[v.Name] = v
		t.Logf("%-12s ndcg@10 %.4f recall@100 %.4f map %.4f  rows %d index %d bytes  p50 %v", v.Name, v.Metrics["ndcg_cut_10"],
			v.Metrics["recall_100"], v.Metrics["map"], v.Rows, v.IndexBytes, v.Latency.P50)
	}
	names := []string{"dense", "bm", "bm-cd", "bm-norm", "bm-and", "bm-web", "bm-chunked", "rrf-k10", "rrf-k60", "wsum-alpha0.3", "wsum-alpha0.7"}
	if len(r1.Variants) != len(names) {
		t.Fatalf("%d variants, want %v", len(r1.Variants), names)
	}
	for i, n := range names {
		if r1.Variants[i].Name != n {
			t.Fatalf("variant %d is %s, want %s", i, r1.Variants[i].Name, n)
		}
	}
	// Floors well below what each reaches on Cranfield, far above what
	// a broken ranking gets (ndcg@10 near 0).
	for _, n := range []string{"bm", "bm-cd", "bm-norm", "bm-chunked", "rrf-k10", "rrf-k60", "wsum-alpha0.3", "wsum-alpha0.7"} {
		if got := byName[n].Metrics["ndcg_cut_10"]; got < 0.2 {
			t.Errorf("%s: ndcg@10 %.4f, want ≥ 0.2", n, got)
		}
	}
	// On Cranfield, fusion beats both systems it fuses.
	if rrf, d, l := byName["rrf-k60"].Metrics["ndcg_cut_10"], byName["dense"].Metrics["ndcg_cut_10"], byName["bm"].Metrics["ndcg_cut_10"]; rrf <= max(d, l) {
		t.Errorf("ndcg@10: rrf %.4f, dense %.4f, lexical %.4f", rrf, d, l)
	}
	// ANDing every term of a natural-language query (plainto_tsquery,
	// and websearch_to_tsquery without operators) matches few documents:
	// why OR is the default.
	for _, n := range []string{"bm-and", "bm-web"} {
		if and, or := byName[n].Metrics["recall_100"], byName["bm"].Metrics["recall_100"]; and >= or/2 {
			t.Errorf("recall@100: %s %.4f, OR %.4f; want far below", n, and, or)
		}
	}
	// The lexical fork: rows, a GIN index, a materialization; the
	// search-time settings share it.
	bm := byName["bm"]
	if bm.Rows != 1400 || bm.IndexName != lexIndex || bm.IndexBytes <= 0 || bm.Timings.Load == 0 || bm.Timings.Index == 0 ||
		bm.Materialization == nil || bm.Materialization.Reused || bm.Materialization.Note != "" || bm.ModelID != "postgres-fts:english" ||
		bm.Provenance == nil || !strings.Contains(bm.Provenance.IndexDDL, "gin (tsv)") || bm.Provenance.Settings["lexical.query"] != "or" {
		t.Errorf("lexical variant: %+v", bm)
	}
	t.Logf("lexical plan: %s", bm.Plan)
	if bm.Plan == nil || len(bm.Plan.Nodes) == 0 || bm.Plan.Rows != 100 {
		t.Errorf("lexical plan: %+v", bm.Plan)
	}
	m, err := svc.GetMaterialization(ctx, "p", bm.Materialization.ID)
	if err != nil || m.Key.Layout != lexLayout || m.Key.TextSearchConfig != "english" || m.Key.Index.Type != "gin" || m.Key.Embedder != "" ||
		m.Key.Retriever() != "postgres-fts:english" || m.Rows != 1400 || m.IndexBytes != bm.IndexBytes || m.Key.Corpus != r1.Provenance.Data.Corpus {
		t.Errorf("lexical materialization: %+v (%v)", m, err)
	}
	for _, n := range []string{"bm-cd", "bm-norm", "bm-and", "bm-web"} {
		if byName[n].Branch != bm.Branch {
			t.Errorf("%s ran on %s, not on the shared fork %s", n, byName[n].Branch, bm.Branch)
		}
	}
	if c := byName["bm-chunked"]; c.Branch == bm.Branch || c.Rows <= 1400 || c.Materialization.ID == bm.Materialization.ID {
		t.Errorf("chunked lexical variant: %d rows on %s, materialization %+v", c.Rows, c.Branch, c.Materialization)
	}
	if d := byName["dense"]; d.Materialization == nil || d.Materialization.ID == bm.Materialization.ID {
		t.Errorf("dense and lexical materializations: %+v, %+v", d.Materialization, bm.Materialization)
	}

	var prov bytes.Buffer
	if err := WriteProvenance(&prov, r1); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"  bm: Postgres full-text search, text search configuration english; chunking one chunk per document\n",
		"lexical.query=or", "  rrf-k60: fusion of dense and bm\n", "rrf_k=60", "  wsum-alpha0.3: fusion of dense and bm\n", "alpha=0.3"} {
		if !strings.Contains(prov.String(), want) {
			t.Errorf("provenance lacks %q:\n%s", want, prov.String())
		}
	}

	// The lexical ranking is what a full-text query written by hand gives
	// on the fork: the query's lexemes ORed, ranked by ts_rank.
	conn, release, err := svc.connect(ctx, "p", bm.Branch, ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string]string{}
	ds, err := evals.LoadBEIR(evalstest.Cranfield(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range ds.Queries {
		texts[q.ID] = q.Text
	}
	for _, qr := range bm.Results[:3] {
		var lexemes []string
		if err := conn.QueryRow(ctx, "SELECT array_agg(lexeme ORDER BY lexeme) FROM unnest(to_tsvector('english', $1))", texts[qr.Query]).Scan(&lexemes); err != nil {
			t.Fatal(err)
		}
		for i, l := range lexemes {
			lexemes[i] = "'" + l + "'"
		}
		rows, err := conn.Query(ctx, "SELECT doc_id, ts_rank(tsv, $1::tsquery) AS r FROM offshoot_exp_lexical WHERE tsv @@ $1::tsquery ORDER BY r DESC, doc_id LIMIT 100",
			strings.Join(lexemes, " | "))
		if err != nil {
			t.Fatal(err)
		}
		var want []RankedDoc
		for rows.Next() {
			var d string
			var r float32
			if err := rows.Scan(&d, &r); err != nil {
				t.Fatal(err)
			}
			want = append(want, RankedDoc{Doc: d, Distance: -float64(r)})
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		if len(want) < 10 || !reflect.DeepEqual(qr.Hits, want) {
			t.Errorf("query %s (%d lexemes): recorded %d hits %v, by hand %d %v", qr.Query, len(lexemes), len(qr.Hits), head(qr.Hits), len(want), head(want))
		}
	}
	release()

	// The fused rankings are the recorded rankings fused.
	for _, n := range []string{"rrf-k10", "rrf-k60", "wsum-alpha0.3", "wsum-alpha0.7"} {
		h := byName[n]
		if len(h.Results) != 225 || h.Latency.Count != 225 || h.Spec.Hybrid == nil {
			t.Fatalf("%s: %d rankings, latency %+v", n, len(h.Results), h.Latency)
		}
		for i, qr := range h.Results {
			want := Fuse(*h.Spec.Hybrid, byName["dense"].Results[i].Hits, bm.Results[i].Hits, 100)
			if !reflect.DeepEqual(qr.Hits, want) {
				t.Fatalf("%s query %s: %v, want %v", n, qr.Query, head(qr.Hits), head(want))
			}
		}
	}

	// Again: the lexical forks are reused; every number and ranking is
	// the same, fusion included.
	for _, v := range r1.Variants {
		if v.Kept && v.Branch != "" {
			_ = svc.DeleteBranch(ctx, "p", v.Branch, false)
		}
	}
	sp.KeepBranches = false
	r2 := run(sp)
	for i, v := range r2.Variants {
		if v.Spec.Type == VariantLexical {
			if u := v.Materialization; u == nil || !u.Reused || u.ID != r1.Variants[i].Materialization.ID || v.Timings.Load != 0 || v.Timings.Index != 0 {
				t.Errorf("%s again: materialization %+v, timings %+v", v.Name, u, v.Timings)
			}
		}
		same(t, v, r1.Variants[i])
	}

	// A hybrid compares with the variants it fuses like any variant.
	cmp, err := svc.CompareRuns(ctx, CompareRequest{A: r2.ID + ":dense", B: r2.ID + ":rrf-k60", Metric: "ndcg_cut_10"})
	if err != nil || cmp.Comparison.Queries != 225 || cmp.Verdict != "better" {
		t.Errorf("rrf-k60 against dense: %+v (%v)", cmp, err)
	} else {
		t.Logf("rrf-k60 against dense: %s (%d queries)", cmp.Verdict, cmp.Comparison.Queries)
	}

	// A hybrid's rankings export as a TREC run that reads back to the
	// recorded ranking, and scores as recorded.
	var buf bytes.Buffer
	if err := svc.ExportRun(ctx, r2.ID+":rrf-k60", ExportTREC, &buf); err != nil {
		t.Fatal(err)
	}
	back, err := evals.ReadRun(&buf, "rrf-k60")
	if err != nil {
		t.Fatal(err)
	}
	h := byName["rrf-k60"]
	for _, qr := range h.Results {
		got := evals.Rank(back.Results[qr.Query])
		if len(got) != len(qr.Hits) {
			t.Fatalf("exported query %s: %d hits, recorded %d", qr.Query, len(got), len(qr.Hits))
		}
		for i := range got {
			if got[i].DocID != qr.Hits[i].Doc {
				t.Fatalf("exported query %s rank %d: %s, recorded %s", qr.Query, i+1, got[i].DocID, qr.Hits[i].Doc)
			}
		}
	}
	ms, _ := evals.ParseMeasures(sp.Metrics...)
	er, err := evals.Evaluate(ds.Qrels, back, ms, evals.Options{Complete: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range er.Measures {
		if er.All[i] != h.Metrics[m.String()] {
			t.Errorf("exported run's %s: %v, recorded %v", m, er.All[i], h.Metrics[m.String()])
		}
	}
}

func head(hs []RankedDoc) []RankedDoc { return hs[:min(len(hs), 3)] }

// TestLexicalIncremental: lexical materializations (one document per
// row, and chunked) are brought up to date document by document after the
// base's corpus changed (0.5% deleted, 0.5% changed, 1% added): the delta
// is recorded, the GIN index is maintained, not built, and since ts_rank
// reads no corpus statistics the rankings equal a cold build's exactly.
func TestLexicalIncremental(t *testing.T) {
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
	sp := ExperimentSpec{Name: "lexincr", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: sqlDataset,
		Metrics: []string{"ndcg_cut.10", "recall.100"}, K: 100, Timing: TimingSpec{Warmup: 1, Repeats: 1, Clients: 1},
		Variants: []VariantSpec{
			{Name: "bm", Type: VariantLexical},
			{Name: "bm-chunked", Type: VariantLexical, Chunking: &ChunkSpec{Size: 300, Overlap: 50}},
		}}
	run := func(sp ExperimentSpec) *Run {
		t.Helper()
		r, err := svc.StartRun(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		if r, err = svc.WaitRun(ctx, r.ID); err != nil || r.Status != StatusSucceeded {
			t.Fatalf("run: %v %+v", err, r)
		}
		return r
	}
	r1 := run(sp)
	for _, q := range []string{
		"DELETE FROM docs WHERE id IN (SELECT id FROM docs ORDER BY id DESC LIMIT 7)",
		"UPDATE docs SET body = body || ' revised boundary layer' WHERE id IN (SELECT id FROM docs ORDER BY id LIMIT 7)",
		"INSERT INTO docs SELECT 'new-' || g, 'a new report on the boundary layer of a swept wing, number ' || g FROM generate_series(1, 14) g",
	} {
		if _, err := svc.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: q}); err != nil {
			t.Fatal(err)
		}
	}
	r2 := run(sp)
	for i, v := range r2.Variants {
		u := v.Materialization
		want := IncrementalDelta{From: r1.Variants[i].Materialization.ID, Docs: 1407, Added: 14, Changed: 7, Deleted: 7}
		if u == nil || u.Reused || u.Note != "" || u.Incremental == nil {
			t.Fatalf("%s after the corpus changed: %+v", v.Name, u)
		}
		got := *u.Incremental
		if got.RowsInserted < 21 || got.RowsDeleted < 14 || v.Timings.Index != 0 || v.Timings.Embed != 0 ||
			v.Rows != r1.Variants[i].Rows-got.RowsDeleted+got.RowsInserted {
			t.Errorf("%s: delta %+v, %d rows, timings %+v", v.Name, got, v.Rows, v.Timings)
		}
		got.RowsInserted, got.RowsDeleted = 0, 0
		if got != want {
			t.Errorf("%s: delta %+v, want %+v", v.Name, got, want)
		}
	}
	cold := sp
	cold.Reuse = ReuseNever
	r3 := run(cold)
	for i := range r2.Variants {
		if r3.Variants[i].Materialization.Incremental != nil || r3.Variants[i].Timings.Index == 0 {
			t.Errorf("cold %s: %+v", r3.Variants[i].Name, r3.Variants[i].Materialization)
		}
		same(t, r2.Variants[i], r3.Variants[i])
	}
}

// TestLexicalLoadErrors: a text search configuration the server lacks
// fails the variant in its load phase, saying which; a document whose
// tsvector would pass Postgres' 1 MB limit fails it suggesting chunking,
// and the same corpus chunked loads and finds it.
func TestLexicalLoadErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	svc := storeService(t, "p", nil)
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), LocalCaller), 5*time.Minute)
	defer cancel()
	if _, err := svc.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: `CREATE TABLE docs(id text, body text);
		INSERT INTO docs VALUES ('small', 'supersonic boundary layer'),
			('huge', (SELECT string_agg('word' || g, ' ') FROM generate_series(1, 150000) g) || ' hypersonic');
		CREATE TABLE qs(id text, q text); INSERT INTO qs VALUES ('1', 'hypersonic flow');
		CREATE TABLE judged(q text, d text, g int); INSERT INTO judged VALUES ('1', 'huge', 1)`}); err != nil {
		t.Fatal(err)
	}
	r, err := svc.StartRun(ctx, ExperimentSpec{Name: "lexbad", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: sqlDataset,
		Timing: TimingSpec{Warmup: 1, Repeats: 1, Clients: 1},
		Variants: []VariantSpec{
			{Name: "klingon", Type: VariantLexical, Lexical: &LexicalSpec{TextSearchConfig: "klingon"}},
			{Name: "whole", Type: VariantLexical},
			{Name: "chunked", Type: VariantLexical, Chunking: &ChunkSpec{Size: 100000}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err = svc.WaitRun(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusPartial {
		t.Errorf("run %s: %s", r.Status, r.Error)
	}
	for i, want := range []string{`no text search configuration "klingon"`, "split long documents with chunking"} {
		if v := r.Variants[i]; v.Status != StatusFailed || v.Phase != "load" || !strings.Contains(v.Error, want) {
			t.Errorf("%s: %s in %s: %s", v.Name, v.Status, v.Phase, v.Error)
		}
	}
	if v := r.Variants[2]; v.Status != StatusSucceeded || v.Rows < 10 || v.Metrics["recip_rank"] != 1 {
		t.Errorf("chunked: %s %s, %d rows, metrics %v", v.Status, v.Error, v.Rows, v.Metrics)
	}
}

// TestFuse: RRF and weighted fusion by hand on two small rankings, ties
// by document id.
func TestFuse(t *testing.T) {
	dense := []RankedDoc{{Doc: "a", Distance: 0.125}, {Doc: "b", Distance: 0.25}, {Doc: "c", Distance: 0.625}}
	lex := []RankedDoc{{Doc: "c", Distance: -4}, {Doc: "d", Distance: -2}, {Doc: "a", Distance: -1}}
	// Scores computed at run time, as Fuse does (constant expressions
	// would be exact, not float64).
	rrf := func(k int, ranks ...int) float64 {
		s := 0.0
		for _, r := range ranks {
			s += 1 / float64(k+r)
		}
		return -s
	}
	alpha, third := 0.25, 1.0
	third /= 3
	for _, tc := range []struct {
		name string
		h    HybridSpec
		lex  []RankedDoc
		k    int
		want []RankedDoc
	}{
		// a and c tie (1/11 + 1/13; a first), b and d too (1/12).
		{"rrf", HybridSpec{K: 10}, lex, 10, []RankedDoc{{"a", rrf(10, 1, 3)}, {"c", rrf(10, 3, 1)}, {"b", rrf(10, 2)}, {"d", rrf(10, 2)}}},
		{"rrf cut", HybridSpec{K: 10}, lex, 2, []RankedDoc{{"a", rrf(10, 1, 3)}, {"c", rrf(10, 3, 1)}}},
		{"rrf default k", HybridSpec{}, nil, 10, []RankedDoc{{"a", rrf(60, 1)}, {"b", rrf(60, 2)}, {"c", rrf(60, 3)}}},
		// Dense normalized: a 1, b 0.75, c 0; lexical: c 1, d 1/3, a 0;
		// a and d tie.
		{"weighted", HybridSpec{Fusion: FusionWeighted, Alpha: &alpha}, lex, 10,
			[]RankedDoc{{"c", -0.75}, {"a", -0.25}, {"d", -(0.75 * third)}, {"b", -(0.25 * 0.75)}}},
		// One hit, or equal scores: normalized to 1.
		{"weighted flat", HybridSpec{Fusion: FusionWeighted}, []RankedDoc{{"d", -3}}, 10,
			[]RankedDoc{{"a", -0.5}, {"d", -0.5}, {"b", -(0.5 * 0.75)}, {"c", 0}}},
	} {
		got := Fuse(tc.h, dense, tc.lex, tc.k)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		if again := Fuse(tc.h, dense, tc.lex, tc.k); !reflect.DeepEqual(again, got) {
			t.Errorf("%s: not deterministic: %v then %v", tc.name, got, again)
		}
	}
}

// TestLexicalHybridSpecErrors: bad lexical and hybrid specs are refused
// with errors naming the field.
func TestLexicalHybridSpecErrors(t *testing.T) {
	base := `{"name":"e","project":"p","base":{"branch":"main"},"dataset":{"beir":"d"},"variants":[` +
		`{"name":"dense","embedder":"hash-bow?dims=8","sweep":{"ef_search":[10,20]},"index":{"type":"hnsw"}},` +
		`{"name":"bm","type":"lexical"},`
	for _, tc := range []struct{ variant, field, msg string }{
		{`{"name":"x","type":"lexical","embedder":"hash-bow?dims=8"}`, "variants[2].embedder", "takes no embedder"},
		{`{"name":"x","type":"lexical","index":{"type":"hnsw"}}`, "variants[2]", "takes only name, chunking and lexical"},
		{`{"name":"x","type":"lexical","lexical":{"text_search_config":"english; drop table x"}}`, "variants[2].lexical.text_search_config", "not a text search configuration"},
		{`{"name":"x","type":"lexical","lexical":{"rank":"bm25"}}`, "variants[2].lexical.rank", "ts_rank or ts_rank_cd"},
		{`{"name":"x","type":"lexical","lexical":{"normalization":64}}`, "variants[2].lexical.normalization", "0..63"},
		{`{"name":"x","type":"lexical","lexical":{"query":"phrase"}}`, "variants[2].lexical.query", "or, and or websearch"},
		{`{"name":"x","lexical":{}}`, "variants[2].lexical", "needs type lexical"},
		{`{"name":"x","type":"hybrid"}`, "variants[2].hybrid", "is required with type hybrid"},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"dense-ef10"}}`, "variants[2].hybrid", "dense and lexical"},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"dense","lexical":"bm"}}`, "variants[2].hybrid.dense", `no variant "dense"`},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"bm","lexical":"bm"}}`, "variants[2].hybrid.dense", "is lexical; want a dense"},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"dense-ef10","lexical":"dense-ef20"}}`, "variants[2].hybrid.lexical", "is dense; want a lexical"},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"dense-ef10","lexical":"y"}},{"name":"y","type":"hybrid","hybrid":{"dense":"dense-ef10","lexical":"x"}}`,
			"variants[2].hybrid.lexical", "is hybrid; want a lexical"},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"dense-ef10","lexical":"bm","fusion":"max"}}`, "variants[2].hybrid.fusion", "rrf or weighted"},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"dense-ef10","lexical":"bm","fusion":"weighted","alpha":1.5}}`, "variants[2].hybrid.alpha", "[0, 1]"},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"dense-ef10","lexical":"bm","alpha":0.5}}`, "variants[2].hybrid.alpha", "rrf takes k"},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"dense-ef10","lexical":"bm"},"sweep":{"alpha":[0.5]}}`, "variants[2].sweep.alpha", "needs hybrid.fusion weighted"},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"dense-ef10","lexical":"bm"},"sweep":{"rrf_k":[0]}}`, "variants[2].sweep.rrf_k[0]", "positive"},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"dense-ef10","lexical":"bm"},"sweep":{"ef_search":[10]}}`, "variants[2].sweep", "sweeps only rrf_k or alpha"},
		{`{"name":"x","type":"hybrid","hybrid":{"dense":"dense-ef10","lexical":"bm"},"embedder":"hash-bow?dims=8"}`, "variants[2]", "takes only name, hybrid and sweep"},
		{`{"name":"x","embedder":"hash-bow?dims=8","sweep":{"rrf_k":[10]}}`, "variants[2].sweep", "need type hybrid"},
		{`{"name":"x","type":"bm25"}`, "variants[2].type", "lexical, hybrid or run_file"},
	} {
		_, err := DecodeSpec([]byte(base + tc.variant + "]}"))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %s: ...%s...", tc.variant, err, tc.field, tc.msg)
		}
	}
	sp, err := DecodeSpec([]byte(base + `{"name":"h","type":"hybrid","hybrid":{"dense":"dense-ef20","lexical":"bm","fusion":"weighted"},"sweep":{"alpha":[0,0.25,1]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range sp.Concrete() {
		got = append(got, v.Name)
		if v.Type == VariantHybrid && (v.Hybrid.Alpha == nil || v.Sweep != nil) {
			t.Errorf("%s: %+v", v.Name, v.Hybrid)
		}
	}
	if want := []string{"dense-ef10", "dense-ef20", "bm", "h-alpha0", "h-alpha0.25", "h-alpha1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("concrete variants %v, want %v", got, want)
	}
	if a := *sp.Concrete()[4].Hybrid.Alpha; a != 0.25 {
		t.Errorf("h-alpha0.25 has alpha %v", a)
	}
}
