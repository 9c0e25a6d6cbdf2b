package evals

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode"
)

func tokens(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// tfidfRun is a small lexical retriever for tests: score(d) = Σ over query
// terms of (1+log tf) * log(N/df), top depth documents per query. With
// titleOnly it indexes titles only, a deliberately weaker system.
func tfidfRun(ds *Dataset, name string, titleOnly bool, depth int) *Run {
	tf := make([]map[string]int, len(ds.Corpus))
	df := map[string]int{}
	for i, d := range ds.Corpus {
		text := d.Title
		if !titleOnly {
			text += " " + d.Text
		}
		tf[i] = map[string]int{}
		for _, w := range tokens(text) {
			tf[i][w]++
		}
		for w := range tf[i] {
			df[w]++
		}
	}
	n := float64(len(ds.Corpus))
	run := &Run{Name: name, Results: map[string][]ScoredDoc{}}
	for _, q := range ds.Queries {
		var scored []ScoredDoc
		terms := tokens(q.Text)
		for i, d := range ds.Corpus {
			var s float64
			for _, w := range terms {
				if c := tf[i][w]; c > 0 {
					s += (1 + math.Log(float64(c))) * math.Log(n/float64(df[w]))
				}
			}
			if s > 0 {
				scored = append(scored, ScoredDoc{DocID: d.ID, Score: s})
			}
		}
		scored = Rank(scored)
		if len(scored) > depth {
			scored = scored[:depth]
		}
		run.Results[q.ID] = scored
	}
	return run
}

// TestCranfieldQrelsAsRun: a run that ranks each query's judged documents
// by their grade is the ideal ranking, so nDCG, MAP, recall, MRR and
// success are exactly 1 for every query.
func TestCranfieldQrelsAsRun(t *testing.T) {
	ds := loadCranfield(t)
	run := &Run{Name: "oracle", Results: map[string][]ScoredDoc{}}
	for q, docs := range ds.Qrels {
		for d, g := range docs {
			run.Results[q] = append(run.Results[q], ScoredDoc{DocID: d, Score: float64(g)})
		}
	}
	ms, _ := ParseMeasures("num_q", "ndcg", "ndcg_cut.10", "ndcg_exp_cut.10", "map", "recall.1000", "recip_rank", "success.1", "P.5")
	res, err := Evaluate(ds.Qrels, run, ms, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ndcg", "ndcg_cut_10", "ndcg_exp_cut_10", "map", "recall_1000", "recip_rank", "success_1"} {
		col, _ := res.Column(name)
		for i, v := range col {
			if math.Abs(v-1) > 1e-12 {
				t.Fatalf("%s of query %s = %v, want 1", name, res.Queries[i], v)
			}
		}
	}
	// P_5 = min(#relevant, 5)/5 per query.
	col, _ := res.Column("P_5")
	for i, q := range res.Queries {
		if want := math.Min(float64(len(ds.Qrels[q])), 5) / 5; col[i] != want {
			t.Fatalf("P_5 of %s = %v, want %v", q, col[i], want)
		}
	}
	if n, _ := res.Value("num_q"); n != 225 {
		t.Fatalf("num_q = %v, want 225", n)
	}
	// Reversing the oracle (worst grade first) keeps recall but not nDCG.
	for q := range run.Results {
		for i := range run.Results[q] {
			run.Results[q][i].Score = -run.Results[q][i].Score
		}
	}
	rev, err := Evaluate(ds.Qrels, run, ms, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := rev.Value("recall_1000"); v != 1 {
		t.Fatalf("reversed recall_1000 = %v, want 1", v)
	}
	if v, _ := rev.Value("ndcg_cut_10"); v >= 0.99 {
		t.Fatalf("reversed ndcg_cut_10 = %v, want < 1", v)
	}
}

// TestCranfieldCompareSystems ranks Cranfield with full-text and title-only
// TF-IDF and compares them: full text must be significantly better, the
// comparison must be reproducible byte for byte, and comparing a run with
// itself must find nothing.
func TestCranfieldCompareSystems(t *testing.T) {
	ds := loadCranfield(t)
	full := tfidfRun(ds, "tfidf-full", false, 100)
	title := tfidfRun(ds, "tfidf-title", true, 100)
	ms, _ := ParseMeasures("ndcg_cut.10", "P.10", "recall.100", "map_cut.100", "recip_rank_cut.10", "success.10")
	ra, err := Evaluate(ds.Qrels, title, ms, Options{Complete: true})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Evaluate(ds.Qrels, full, ms, Options{Complete: true})
	if err != nil {
		t.Fatal(err)
	}
	nd, _ := rb.Value("ndcg_cut_10")
	t.Logf("cranfield tf-idf full text ndcg_cut_10 = %.4f", nd)
	if nd < 0.2 || nd > 0.6 {
		t.Fatalf("full-text tf-idf ndcg_cut_10 = %.4f, outside the plausible 0.2..0.6", nd)
	}
	cmp, err := Compare(ra, rb, CompareOptions{Seed: 1, Primary: "ndcg_cut_10"})
	if err != nil {
		t.Fatal(err)
	}
	if cmp.Queries != 225 || cmp.Primary != "ndcg_cut_10" {
		t.Fatalf("queries %d primary %s", cmp.Queries, cmp.Primary)
	}
	m, _ := cmp.Measure("ndcg_cut_10")
	if !m.Significant || m.Delta <= 0 || m.P >= 0.001 || !(m.CILow > 0 && m.CILow <= m.Delta && m.Delta <= m.CIHigh) {
		t.Fatalf("full vs title ndcg_cut_10: %+v, want a significant improvement with CI around delta", m)
	}
	if m.Wins+m.Ties+m.Losses != 225 || m.Wins <= m.Losses {
		t.Fatalf("W/T/L = %d/%d/%d", m.Wins, m.Ties, m.Losses)
	}
	// Worst queries first.
	for i := 1; i < len(cmp.PerQuery); i++ {
		if cmp.PerQuery[i].Delta < cmp.PerQuery[i-1].Delta {
			t.Fatalf("per-query deltas not ascending at %d", i)
		}
	}
	if cmp.PerQuery[0].Delta >= 0 {
		t.Fatalf("expected some query to get worse, worst delta %v", cmp.PerQuery[0].Delta)
	}
	// Deterministic: same inputs, same bytes.
	var j1, j2 bytes.Buffer
	cmp.WriteJSON(&j1)
	again, _ := Compare(ra, rb, CompareOptions{Seed: 1, Primary: "ndcg_cut_10"})
	again.WriteJSON(&j2)
	if !bytes.Equal(j1.Bytes(), j2.Bytes()) {
		t.Fatal("comparison not deterministic")
	}
	var back Comparison
	if err := json.Unmarshal(j1.Bytes(), &back); err != nil || back.Measures[0].P != m.P {
		t.Fatalf("JSON round trip: %v", err)
	}
	// A run against itself: p = 1, zero delta, all ties.
	self, err := Compare(rb, rb, CompareOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range self.Measures {
		if m.P != 1 || m.Delta != 0 || m.Significant || m.Ties != 225 || m.CILow != 0 || m.CIHigh != 0 {
			t.Fatalf("self comparison %+v", m)
		}
	}
	var txt bytes.Buffer
	if err := cmp.WriteText(&txt, 5); err != nil {
		t.Fatal(err)
	}
	out := txt.String()
	for _, want := range []string{"A = tfidf-title, B = tfidf-full, 225 paired queries", "ndcg_cut_10", "95% CI", "... 220 more"} {
		if !strings.Contains(out, want) {
			t.Fatalf("text report lacks %q:\n%s", want, out)
		}
	}
	t.Logf("\n%s", out)
}

// TestSyntheticScale evaluates a lexical retriever on a generated dataset
// whose relevant documents carry the query words: it must find them
// (high recall) and rank higher grades higher (high nDCG), and a run with
// its top 10 shuffled must be significantly worse.
func TestSyntheticScale(t *testing.T) {
	const seed = 2026
	t.Logf("seed %d", seed)
	ds, err := Synthetic(SyntheticConfig{Seed: seed, Docs: 5000, Queries: 200, RelevantPerQuery: 8})
	if err != nil {
		t.Fatal(err)
	}
	run := tfidfRun(ds, "tfidf", false, 100)
	ms, _ := ParseMeasures("ndcg_cut.10", "recall.100")
	res, err := Evaluate(ds.Qrels, run, ms, Options{Complete: true})
	if err != nil {
		t.Fatal(err)
	}
	nd, _ := res.Value("ndcg_cut_10")
	rc, _ := res.Value("recall_100")
	if rc != 1 || nd < 0.95 {
		t.Fatalf("synthetic: recall_100 %.4f ndcg_cut_10 %.4f, want 1 and >= 0.95", rc, nd)
	}
	worse := &Run{Name: "reversed", Results: map[string][]ScoredDoc{}}
	for q, docs := range run.Results {
		top := Rank(docs)
		var out []ScoredDoc
		for i, d := range top {
			s := d.Score
			if i < 10 {
				s = float64(1000 + i) // reverse the top 10
			}
			out = append(out, ScoredDoc{DocID: d.DocID, Score: s})
		}
		worse.Results[q] = out
	}
	rw, err := Evaluate(ds.Qrels, worse, ms, Options{Complete: true})
	if err != nil {
		t.Fatal(err)
	}
	cmp, err := Compare(res, rw, CompareOptions{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := cmp.Measure("ndcg_cut_10"); !m.Significant || m.Delta >= 0 || m.CIHigh >= 0 {
		t.Fatalf("reversed top 10: %+v, want significantly worse", m)
	}
	if m, _ := cmp.Measure("recall_100"); m.Delta != 0 || m.P != 1 {
		t.Fatalf("recall_100 should not move when only the top 10 is reordered: %+v", m)
	}
}
