package experiments

import (
	"context"
	"errors"
	"fmt"
	stdhtml "html"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/evals/evalstest"
)

// TestRunProvenance: two runs of one spec on the same data record equal
// fingerprints and what they ran with; a changed judgment changes the
// qrels fingerprint and compare warns; changed queries are refused unless
// allowed.
func TestRunProvenance(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	// Connections to main are closed before each run: a fork is CREATE
	// DATABASE ... TEMPLATE main, which needs main to be idle.
	onMain := func(fn func(*pgx.Conn)) {
		t.Helper()
		mc, release, err := e.br.Conn(e.ctx, "p", "main", ReadWrite)
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		fn(mc)
	}
	exec := func(sql string) {
		t.Helper()
		onMain(func(mc *pgx.Conn) {
			if _, err := mc.Exec(e.ctx, sql); err != nil {
				t.Fatal(err)
			}
		})
	}
	onMain(func(mc *pgx.Conn) { loadSQLDataset(t, mc, e.dir) })
	sp := e.spec(VariantSpec{Name: "exact", Embedder: "hash-bow?dims=64"},
		VariantSpec{Name: "hnsw", Embedder: "hash-bow?dims=64", Index: &IndexSpec{Type: "hnsw", M: 8, EfConstruction: 32}})
	sp.Dataset = sqlDataset
	run := func() *Run {
		t.Helper()
		r := e.run(t, sp)
		if r.Status != StatusSucceeded || r.Provenance == nil {
			t.Fatalf("run %s: %s, provenance %v", r.Status, r.Error, r.Provenance)
		}
		return r
	}
	r1, r2 := run(), run()
	p1, p2 := r1.Provenance, r2.Provenance
	if p1.Data.Corpus != p2.Data.Corpus || p1.Data.Queries != p2.Data.Queries || p1.Data.Qrels != p2.Data.Qrels {
		t.Errorf("same data, different fingerprints:\n%+v\n%+v", p1.Data, p2.Data)
	}
	if d := p1.Data; d.Corpus.Rows != 1400 || d.Queries.Rows != 225 || d.Qrels.Rows == 0 || d.Base.Branch != "main" || d.Base.Seq == 0 ||
		len(d.Corpus.SHA256) != 64 || d.Corpus.SHA256 == d.Queries.SHA256 {
		t.Errorf("fingerprint %+v", d)
	}
	if p1.K != 10 || p1.Metrics.Version != MetricsVersion || p1.Machine.Cores < 1 || p1.Machine.MemoryBytes <= 0 {
		t.Errorf("provenance %+v", p1)
	}
	for _, v := range r1.Variants {
		vp := v.Provenance
		if vp == nil {
			t.Fatalf("variant %s has no provenance", v.Name)
		}
		if !strings.Contains(vp.Postgres, "PostgreSQL 15") || vp.PGVector == "" || vp.Dims != 64 || vp.ModelID == "" ||
			vp.Normalization != "l2" || vp.Distance != "cosine" || vp.Settings["maintenance_work_mem"] == "" ||
			vp.Settings["max_parallel_maintenance_workers"] == "" {
			t.Errorf("variant %s provenance %+v", v.Name, vp)
		}
		indexed := v.Name == "hnsw"
		if indexed != strings.HasPrefix(vp.IndexDDL, "CREATE INDEX") || (indexed && !strings.Contains(vp.IndexDDL, "hnsw")) ||
			indexed != (vp.Settings["hnsw.ef_search"] != "") {
			t.Errorf("variant %s: index DDL %q, settings %v", v.Name, vp.IndexDDL, vp.Settings)
		}
	}
	var text strings.Builder
	if err := WriteProvenance(&text, r1); err != nil || !strings.Contains(text.String(), "sha256 "+p1.Data.Qrels.SHA256[:12]) ||
		!strings.Contains(text.String(), "CREATE INDEX") {
		t.Errorf("provenance text (%v):\n%s", err, text.String())
	}
	same, err := e.svc.CompareRuns(e.ctx, CompareRequest{A: r1.ID + ":exact", B: r2.ID + ":exact"})
	if err != nil || same.Data != (DataDiff{}) || len(same.Warnings) != 0 {
		t.Fatalf("same data: %v, %+v %v", err, same.Data, same.Warnings)
	}

	// One judgment changes.
	exec("UPDATE judged SET g = g + 1 WHERE ctid = (SELECT min(ctid) FROM judged)")
	r3 := run()
	if p3 := r3.Provenance.Data; p3.Qrels == p1.Data.Qrels || p3.Qrels.Rows != p1.Data.Qrels.Rows || p3.Queries != p1.Data.Queries || p3.Corpus != p1.Data.Corpus {
		t.Errorf("one qrels line changed: %+v vs %+v", p3, p1.Data)
	}
	cmp, err := e.svc.CompareRuns(e.ctx, CompareRequest{A: r1.ID + ":exact", B: r3.ID + ":exact"})
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Data.Qrels || cmp.Data.Queries || len(cmp.Warnings) != 1 || !strings.Contains(cmp.Warnings[0], "judgments differ") {
		t.Errorf("qrels changed: %+v %q", cmp.Data, cmp.Warnings)
	}

	// One query's text changes: significance tests are refused unless
	// allowed.
	exec("UPDATE qs SET q = q || ' again' WHERE id = (SELECT min(id) FROM qs)")
	r4 := run()
	req := CompareRequest{A: r1.ID + ":exact", B: r4.ID + ":exact"}
	var fe *FieldError
	if _, err := e.svc.CompareRuns(e.ctx, req); !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != "allow_different_queries" {
		t.Errorf("different queries compared: %v", err)
	}
	req.AllowDifferentQueries = true
	cmp, err = e.svc.CompareRuns(e.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Data.Queries || !strings.Contains(strings.Join(cmp.Warnings, "\n"), "queries differ") || cmp.Comparison.Queries == 0 {
		t.Errorf("allowed: %+v %q", cmp.Data, cmp.Warnings)
	}
}

// TestFingerprint: a set's checksum ignores row order and changes with
// any row, including where one field ends and the next begins.
func TestFingerprint(t *testing.T) {
	fp := func(rows ...[]string) SetFingerprint {
		var f fingerprint
		for _, r := range rows {
			f.add(r...)
		}
		return f.result()
	}
	base := fp([]string{"q1", "d1", "1"}, []string{"q1", "d2", "0"}, []string{"q2", "d1", "2"})
	for _, tc := range []struct {
		name  string
		other SetFingerprint
		equal bool
	}{
		{"same", fp([]string{"q1", "d1", "1"}, []string{"q1", "d2", "0"}, []string{"q2", "d1", "2"}), true},
		{"reordered", fp([]string{"q2", "d1", "2"}, []string{"q1", "d1", "1"}, []string{"q1", "d2", "0"}), true},
		{"one grade", fp([]string{"q1", "d1", "1"}, []string{"q1", "d2", "1"}, []string{"q2", "d1", "2"}), false},
		{"one row less", fp([]string{"q1", "d1", "1"}, []string{"q1", "d2", "0"}), false},
		{"duplicate row", fp([]string{"q1", "d1", "1"}, []string{"q1", "d2", "0"}, []string{"q2", "d1", "2"}, []string{"q2", "d1", "2"}), false},
		{"field boundary", fp([]string{"q1", "d1", "1"}, []string{"q1d", "2", "0"}, []string{"q2", "d1", "2"}), false},
	} {
		if got := tc.other == base; got != tc.equal {
			t.Errorf("%s: equal %v, want %v (%+v vs %+v)", tc.name, got, tc.equal, tc.other, base)
		}
	}
	var empty fingerprint
	if r := empty.result(); r.Rows != 0 || len(r.SHA256) != 64 {
		t.Errorf("empty: %+v", r)
	}
	ds := &evals.Dataset{Corpus: []evals.Doc{{ID: "d1", Text: "x"}}, Queries: []evals.Query{{ID: "q1", Text: "y"}},
		Qrels: evals.Qrels{"q1": {"d1": 1}}}
	docs := corpus{docs: 1, each: func(_ context.Context, fn func(evals.Doc) error) error {
		for _, d := range ds.Corpus {
			if err := fn(d); err != nil {
				return err
			}
		}
		return nil
	}}
	a, err := fingerprintDataset(context.Background(), BranchPoint{Branch: "main", Seq: 7}, ds, docs)
	if err != nil {
		t.Fatal(err)
	}
	ds.Qrels["q1"]["d1"] = 2
	if b, _ := fingerprintDataset(context.Background(), BranchPoint{Branch: "main", Seq: 7}, ds, docs); b.Qrels == a.Qrels || b.Corpus != a.Corpus || b.Queries != a.Queries {
		t.Errorf("one judgment changed: %+v vs %+v", b, a)
	}

	// A BEIR corpus fingerprinted by the scan that opens it is the one a
	// pass of its own gives.
	var scan fingerprint
	col, err := evals.OpenBEIRFunc(evalstest.Cranfield(t), "test", func(_ int, d evals.Doc) { scan.add(d.ID, d.Title, d.Text) })
	if err != nil {
		t.Fatal(err)
	}
	got := scan.result()
	want, err := corpusFingerprint(context.Background(), beirCorpus(col, nil, nil))
	if err != nil || got != want || got.Rows != 1400 {
		t.Errorf("fingerprint of the opening scan %+v, of a pass %+v (%v)", got, want, err)
	}
	if f, err := corpusFingerprint(context.Background(), beirCorpus(col, &got, nil)); err != nil || f != got {
		t.Errorf("a known fingerprint: %+v %v", f, err)
	}
}

// TestGateJudgesAdjustedP: the gate compares the Holm- (or BH-) adjusted
// p with alpha, over every variant judged together.
func TestGateJudgesAdjustedP(t *testing.T) {
	drop := func(p float64) evals.MeasureComparison {
		return evals.MeasureComparison{Measure: "ndcg_cut_10", MeanA: 0.5, MeanB: 0.45, Delta: -0.05, P: p}
	}
	for _, tc := range []struct {
		name string
		gate Gate
		ps   []float64
		want []bool // regression per variant
		adj  []float64
	}{
		// Raw 0.03 < 0.05, but Holm over two variants makes it 0.06.
		{"holm keeps a lone raw hit", Gate{Metric: "ndcg_cut_10"}, []float64{0.03, 0.5}, []bool{false, false}, []float64{0.06, 0.5}},
		{"no correction flags it", Gate{Metric: "ndcg_cut_10", Correction: evals.AdjustNone}, []float64{0.03, 0.5}, []bool{true, false}, []float64{0.03, 0.5}},
		// BH: 0.02·2/1 = 0.04 and 0.04·2/2 = 0.04, both below 0.05;
		// Holm: 0.04 and max(0.04, 0.04).
		{"bh", Gate{Metric: "ndcg_cut_10", Correction: evals.AdjustBH}, []float64{0.02, 0.04}, []bool{true, true}, []float64{0.04, 0.04}},
		{"holm", Gate{Metric: "ndcg_cut_10"}, []float64{0.02, 0.04}, []bool{true, true}, []float64{0.04, 0.04}},
		{"holm three", Gate{Metric: "ndcg_cut_10"}, []float64{0.02, 0.03, 0.04}, []bool{false, false, false}, []float64{0.06, 0.06, 0.06}},
		// A threshold still flags a drop the test does not.
		{"threshold", Gate{Metric: "ndcg_cut_10", Threshold: 0.01}, []float64{0.5}, []bool{true}, []float64{0.5}},
		{"one variant", Gate{Metric: "ndcg_cut_10"}, []float64{0.03}, []bool{true}, []float64{0.03}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var names []string
			var ms []evals.MeasureComparison
			for i, p := range tc.ps {
				names, ms = append(names, fmt.Sprintf("v%d", i)), append(ms, drop(p))
			}
			got, err := tc.gate.Judge(names, ms)
			if err != nil {
				t.Fatal(err)
			}
			for i, vv := range got {
				if vv.Variant != names[i] || vv.Regression != tc.want[i] || vv.P != tc.ps[i] ||
					vv.PAdjusted < tc.adj[i]-1e-12 || vv.PAdjusted > tc.adj[i]+1e-12 {
					t.Errorf("variant %d: %+v, want regression %v adjusted p %v", i, vv, tc.want[i], tc.adj[i])
				}
			}
		})
	}
	if _, err := (Gate{Metric: "m", Correction: "sidak"}).Judge([]string{"v"}, []evals.MeasureComparison{drop(0.1)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown correction: %v", err)
	}
}

// TestRegressedDocListsCapped: the printed forms of a comparison show at
// most DocsShown documents per list, then "+N more"; the record keeps all.
func TestRegressedDocListsCapped(t *testing.T) {
	for _, tc := range []struct {
		docs []string
		n    int
		want string
	}{
		{nil, 0, "-"},
		{[]string{"a", "b"}, 0, "a, b"},
		{[]string{"a", "b", "c", "d", "e"}, 0, "a, b, c, d, e"},
		{[]string{"a", "b", "c", "d", "e", "f", "g"}, 0, "a, b, c, d, e +2 more"},
		{[]string{"a", "b", "c"}, 1, "a +2 more"},
	} {
		if got := DocList(tc.docs, tc.n); got != tc.want {
			t.Errorf("DocList(%v, %d) = %q, want %q", tc.docs, tc.n, got, tc.want)
		}
	}
	if got := MoveList([]RankMove{{"a", 1, 2}, {"b", 3, 1}}, 1); got != "a 1→2 +1 more" {
		t.Errorf("MoveList = %q", got)
	}
	// A is perfect on q0 with 80 documents; B retrieves 80 others.
	variant := func(prefix string, v float64) *VariantRun {
		vr := &VariantRun{Name: prefix, Status: StatusSucceeded, Measures: []string{"P_10"}, Metrics: map[string]float64{"P_10": v}}
		for q := range 3 {
			qr := QueryRanking{Query: fmt.Sprintf("q%d", q), Values: []float64{v}}
			for d := range 80 {
				qr.Hits = append(qr.Hits, RankedDoc{Doc: fmt.Sprintf("%s-doc%02d", prefix, d)})
			}
			vr.Results = append(vr.Results, qr)
		}
		return vr
	}
	rc, err := compareVariants(CompareRequest{A: "a", B: "b"}, variant("a", 1), variant("b", 0), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.Regressed) != 3 || len(rc.Regressed[0].Entered) != 80 {
		t.Fatalf("regressed %+v", rc.Regressed)
	}
	var page strings.Builder
	if err := rc.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	html := stdhtml.UnescapeString(page.String())
	if !strings.Contains(html, "<td>b-doc00, b-doc01, b-doc02, b-doc03, b-doc04 +75 more</td>") || strings.Contains(html, "b-doc05") ||
		!strings.Contains(html, "+75 more</td><td>-</td>") {
		t.Errorf("HTML report:\n%s", html)
	}
}
