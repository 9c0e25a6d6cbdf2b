package evals

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// goldenQrels and goldenRun are a small hand-made TREC qrels/run pair that
// exercises every rule trec_eval applies:
//
//	q1: judged d1=2 d2=0 d3=1 d5=3 d9=1 d7=-1 → 4 relevant (d1 d3 d5 d9);
//	    positive gains 3,2,1,1. Retrieved d3 .9, d2 .8, d1 .8, d7 .5, d5 .4.
//	    d2 and d1 tie at .8: trec_eval breaks ties by docno descending, so
//	    the ranking is d3(g1) d2(g0) d1(g2) d7(unjudged) d5(g3).
//	q2: judged d4=1. Retrieved d8 d6 d4: first relevant at rank 3, only 3
//	    retrieved (P_5 still divides by 5).
//	q3: judged, not retrieved: ignored unless Complete (then all zeros).
//	q4: retrieved, not judged: always ignored.
//	q5: judged d1=0 only: evaluated, no relevant documents → all zeros.
const goldenQrels = `q1 0 d1 2
q1 0 d2 0
q1 0 d3 1
q1 0 d5 3
q1 0 d9 1
q1 0 d7 -1
q2 0 d4 1
q3 0 d1 1
q5 0 d1 0
`

const goldenRun = `q1 Q0 d3 1 0.9 golden
q1 Q0 d1 2 0.8 golden
q1 Q0 d2 3 0.8 golden
q1 Q0 d7 4 0.5 golden
q1 Q0 d5 5 0.4 golden
q2 Q0 d8 1 0.3 golden
q2 Q0 d6 2 0.2 golden
q2 Q0 d4 3 0.1 golden
q4 Q0 d1 1 1.0 golden
q5 Q0 d2 1 1.0 golden
`

func goldenInputs(t *testing.T) (Qrels, *Run) {
	t.Helper()
	q, err := ReadQrels(strings.NewReader(goldenQrels), "golden.qrels")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReadRun(strings.NewReader(goldenRun), "golden.run")
	if err != nil {
		t.Fatal(err)
	}
	return q, r
}

func near(a, b float64) bool { return math.Abs(a-b) < 5e-5 }

// TestGoldenPerQuery checks every measure against values computed by hand
// from the definitions in trec_eval's source (m_P.c, m_recall.c,
// m_success.c, m_recip_rank.c, m_map.c, m_map_cut.c, m_ndcg_cut.c, and
// form_res_rels.c for ranking and tie-breaking). Verification: each
// expression below was written out by hand from the rank/grade pattern in
// the goldenQrels comment, then evaluated with a separate Python one-liner
// (math.log2) to get the digits; the test asserts 4 decimals.
func TestGoldenPerQuery(t *testing.T) {
	q, r := goldenInputs(t)
	ms, err := ParseMeasures("num_ret", "num_rel", "num_rel_ret", "map", "recip_rank",
		"P.1,5,10", "recall.1,5", "ndcg", "ndcg_cut.3,5", "map_cut.3", "success.1,5",
		"recip_rank_cut.2", "ndcg_exp_cut.5")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(q, r, ms, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Queries, ","); got != "q1,q2,q5" {
		t.Fatalf("queries = %s, want q1,q2,q5 (judged and retrieved)", got)
	}
	log2 := math.Log2
	want := map[string]map[string]float64{
		"q1": {
			"num_ret": 5, "num_rel": 4, "num_rel_ret": 3,
			"P_1": 1, "P_5": 3.0 / 5, "P_10": 3.0 / 10,
			"recall_1": 1.0 / 4, "recall_5": 3.0 / 4,
			"success_1": 1, "success_5": 1,
			"recip_rank": 1, "recip_rank_cut_2": 1,
			// relevant at ranks 1, 3, 5 out of 4 relevant
			"map":       (1.0/1 + 2.0/3 + 3.0/5) / 4, // 0.5667
			"map_cut_3": (1.0/1 + 2.0/3) / 4,         // 0.4167
			// DCG@5 = 1/log2(2) + 2/log2(4) + 3/log2(6) = 3.1606
			// IDCG@5 = 3/log2(2) + 2/log2(3) + 1/log2(4) + 1/log2(5) = 5.1925
			"ndcg_cut_5": (1 + 2/log2(4) + 3/log2(6)) / (3 + 2/log2(3) + 1/log2(4) + 1/log2(5)), // 0.6087
			"ndcg":       (1 + 2/log2(4) + 3/log2(6)) / (3 + 2/log2(3) + 1/log2(4) + 1/log2(5)), // 0.6087
			// IDCG@3 is cut at 3 too: 3 + 2/log2(3) + 1/log2(4)
			"ndcg_cut_3": (1 + 2/log2(4)) / (3 + 2/log2(3) + 1/log2(4)), // 0.4200
			// gains 2^g-1: retrieved 1,3,7; ideal 7,3,1,1
			"ndcg_exp_cut_5": (1 + 3/log2(4) + 7/log2(6)) / (7 + 3/log2(3) + 1/log2(4) + 1/log2(5)), // 0.5302
		},
		"q2": {
			"num_ret": 3, "num_rel": 1, "num_rel_ret": 1,
			"P_1": 0, "P_5": 1.0 / 5, "P_10": 1.0 / 10,
			"recall_1": 0, "recall_5": 1,
			"success_1": 0, "success_5": 1,
			"recip_rank": 1.0 / 3, "recip_rank_cut_2": 0,
			"map": 1.0 / 3, "map_cut_3": 1.0 / 3,
			"ndcg_cut_5": 1 / log2(4), "ndcg": 1 / log2(4), "ndcg_cut_3": 1 / log2(4),
			"ndcg_exp_cut_5": 1 / log2(4),
		},
		"q5": {"num_ret": 1},
	}
	for qid, wm := range want {
		for i, m := range res.Measures {
			w := wm[m.String()] // absent means 0
			if got := res.PerQuery[qid][i]; !near(got, w) {
				t.Errorf("%s %s = %.6f, want %.6f", qid, m, got, w)
			}
		}
	}
	// Spot-check the digits quoted in the comments.
	for _, c := range []struct {
		m string
		v float64
	}{{"map", 0.5667}, {"map_cut_3", 0.4167}, {"ndcg_cut_5", 0.6087}, {"ndcg_cut_3", 0.4200}, {"ndcg_exp_cut_5", 0.5302}} {
		i, _ := res.Index(c.m)
		if got := math.Round(res.PerQuery["q1"][i]*1e4) / 1e4; got != c.v {
			t.Errorf("q1 %s = %.4f, want %.4f", c.m, got, c.v)
		}
	}
}

// TestGoldenAverages checks trec_eval's averaging: over queries with both
// judgments and results by default (q1,q2,q5 → divide by 3), over all
// judged queries with Complete (q3 adds a zero → divide by 4); num_*
// are totals, num_q the query count.
func TestGoldenAverages(t *testing.T) {
	q, r := goldenInputs(t)
	ms, _ := ParseMeasures("num_q", "num_ret", "num_rel", "P.5", "map", "recip_rank", "ndcg_cut.5")
	ndcg1 := 0.6086733692377279
	for _, c := range []struct {
		complete bool
		want     map[string]float64
	}{
		{false, map[string]float64{"num_q": 3, "num_ret": 9, "num_rel": 5,
			"P_5": (0.6 + 0.2) / 3, "map": (0.5666667 + 1.0/3) / 3, "recip_rank": (1 + 1.0/3) / 3, "ndcg_cut_5": (ndcg1 + 0.5) / 3}},
		{true, map[string]float64{"num_q": 4, "num_ret": 9, "num_rel": 6,
			"P_5": (0.6 + 0.2) / 4, "map": (0.5666667 + 1.0/3) / 4, "recip_rank": (1 + 1.0/3) / 4, "ndcg_cut_5": (ndcg1 + 0.5) / 4}},
	} {
		res, err := Evaluate(q, r, ms, Options{Complete: c.complete})
		if err != nil {
			t.Fatal(err)
		}
		for name, w := range c.want {
			if got, _ := res.Value(name); !near(got, w) {
				t.Errorf("complete=%v %s = %.6f, want %.6f", c.complete, name, got, w)
			}
		}
	}
}

// TestTieBreakDocnoDescending pins trec_eval's tie rule: equal scores are
// ordered by docno descending (strcmp(docno2, docno1) in comp_sim_docno),
// whatever the rank column or file order says.
func TestTieBreakDocnoDescending(t *testing.T) {
	got := Rank([]ScoredDoc{{"a", 1}, {"c", 1}, {"b", 2}, {"B", 1}, {"10", 1}, {"9", 1}})
	var ids []string
	for _, d := range got {
		ids = append(ids, d.DocID)
	}
	// byte order: "10" < "9" < "B" < "a" < "c"
	if s := strings.Join(ids, " "); s != "b c a B 9 10" {
		t.Fatalf("rank order = %q, want %q", s, "b c a B 9 10")
	}
	// If ties were broken ascending, q1's map would be (1+2/2+3/5)/4 = 0.65.
	q, r := goldenInputs(t)
	res, err := Evaluate(q, r, []Measure{{Family: "map"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v := res.PerQuery["q1"][0]; !near(v, 0.5667) {
		t.Fatalf("q1 map = %.4f, want 0.5667 (ties docno descending)", v)
	}
}

func TestRelevanceLevel(t *testing.T) {
	q, r := goldenInputs(t)
	ms, _ := ParseMeasures("num_rel", "P.5", "ndcg_cut.5")
	res, err := Evaluate(q, r, ms, Options{RelevanceLevel: 2})
	if err != nil {
		t.Fatal(err)
	}
	// q1 with level 2: relevant d1(2), d5(3) at ranks 3 and 5; gains unchanged.
	if v := res.PerQuery["q1"]; v[0] != 2 || !near(v[1], 0.4) || !near(v[2], 0.6087) {
		t.Fatalf("q1 at level 2 = %v, want [2 0.4 0.6087]", v)
	}
}

func TestEvaluateErrors(t *testing.T) {
	q, _ := goldenInputs(t)
	dup := &Run{Name: "x", Results: map[string][]ScoredDoc{"q1": {{"d1", 1}, {"d1", 0.5}}}}
	if _, err := Evaluate(q, dup, nil, Options{}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("duplicate doc: err = %v, want ErrDuplicate", err)
	}
	none := &Run{Name: "x", Results: map[string][]ScoredDoc{"zz": {{"d1", 1}}}}
	if _, err := Evaluate(q, none, nil, Options{}); !errors.Is(err, ErrNoQueries) {
		t.Errorf("disjoint queries: err = %v, want ErrNoQueries", err)
	}
	if _, err := Evaluate(q, none, []Measure{{Family: "P"}}, Options{}); !errors.Is(err, ErrUnknownMeasure) {
		t.Errorf("P without cutoff: err = %v, want ErrUnknownMeasure", err)
	}
}

func TestParseMeasures(t *testing.T) {
	ms, err := ParseMeasures("ndcg_cut.10", "recall.100", "P.10,5", "P.5", "recip_rank", "success")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.String())
	}
	want := "recip_rank P_5 P_10 recall_100 ndcg_cut_10 success_1 success_5 success_10"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("measures = %q, want %q", got, want)
	}
	for _, bad := range []string{"bogus", "P.0", "P.x", "map.10", "P."} {
		if _, err := ParseMeasures(bad); !errors.Is(err, ErrUnknownMeasure) {
			t.Errorf("ParseMeasures(%q) err = %v, want ErrUnknownMeasure", bad, err)
		}
	}
}

func TestWriteTREC(t *testing.T) {
	q, r := goldenInputs(t)
	ms, _ := ParseMeasures("num_q", "num_rel", "P.5")
	res, err := Evaluate(q, r, ms, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := res.WriteTREC(&b, true); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"num_rel               \tq1\t4\n" +
		"P_5                   \tq1\t0.6000\n" +
		"num_rel               \tq2\t1\n" +
		"P_5                   \tq2\t0.2000\n" +
		"num_rel               \tq5\t0\n" +
		"P_5                   \tq5\t0.0000\n" +
		"num_q                 \tall\t3\n" +
		"num_rel               \tall\t5\n" +
		"P_5                   \tall\t0.2667\n"
	if b.String() != want {
		t.Fatalf("WriteTREC:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestGoldenTrecEvalExtras checks gm_map, Rprec, bpref, infAP and
// iprec_at_recall, and the -l, -c, -M and -J options, on the golden pair
// against values computed by hand from trec_eval 10.0's m_gm_map.c,
// m_Rprec.c, m_bpref.c, m_infap.c, m_iprec_at_recall.c, meas_avg.c and
// form_res_rels.c. Level 1, q1 ranks d3(1) d2(0) d1(2) d7(pooled,
// unjudged) d5(3) — d2 above d1 by the docno-descending tie rule, which
// is what costs d1 its bpref credit: R=4, one judged non-relevant (d2), relevant at ranks
// 1, 3, 5, precision 1, .5, 2/3, .5, .6 at ranks 1..5. q2 retrieves two
// unpooled documents above its one relevant d4. q5 has no relevant
// document. Absent entries mean 0.
func TestGoldenTrecEvalExtras(t *testing.T) {
	q, r := goldenInputs(t)
	ms, err := ParseMeasures("num_ret", "map", "gm_map", "Rprec", "bpref", "infAP",
		"iprec_at_recall.0,.3,.4,.5,.7,.8,.9,1")
	if err != nil {
		t.Fatal(err)
	}
	const e = infAPEpsilon
	type qv map[string]float64
	cases := []struct {
		name string
		opt  Options
		want map[string]qv // query → measure → value
		all  qv
	}{
		{"default", Options{}, map[string]qv{
			"q1": {"num_ret": 5, "map": (1 + 2.0/3 + 3.0/5) / 4,
				"Rprec": 2.0 / 4, // d3 d2 d1 d7: two relevant among the first R=4
				"bpref": 1.0 / 4, // d3 above all non-relevant: 1; d1, d5 below d2: 1 - min(1,4)/min(1,4) = 0
				// j=0: 1; j=2: 1/3 + 2/3·(2/2)·(1+ε)/(2+2ε); j=4 (d7 counts as pooled above): 1/5 + 4/5·(4/4)·(2+ε)/(3+2ε)
				"infAP": (1 + (1.0/3 + 2.0/3*(1+e)/(2+2*e)) + (1.0/5 + 4.0/5*(2+e)/(3+2*e))) / 4,
				// cutoffs round(x·4): .0,.3 → 0,1 → from rank 1: 1; .4,.5 → 2 → from rank 3: max(2/3,.5,.6);
				// .7,.8 → 3 → from rank 5: .6; .9, 1 → 4 > 3 retrieved: 0
				"iprec_at_recall_0.00": 1, "iprec_at_recall_0.30": 1, "iprec_at_recall_0.40": 2.0 / 3,
				"iprec_at_recall_0.50": 2.0 / 3, "iprec_at_recall_0.70": 0.6, "iprec_at_recall_0.80": 0.6},
			"q2": {"num_ret": 3, "map": 1.0 / 3, "Rprec": 0,
				"bpref":                1,       // unpooled d8, d6 are not non-relevant for bpref
				"infAP":                1.0 / 3, // j=2: 1/3 + 2/3·(0/2)·…
				"iprec_at_recall_0.00": 1.0 / 3, "iprec_at_recall_0.30": 1.0 / 3, "iprec_at_recall_0.40": 1.0 / 3,
				"iprec_at_recall_0.50": 1.0 / 3, "iprec_at_recall_0.70": 1.0 / 3, "iprec_at_recall_0.80": 1.0 / 3,
				"iprec_at_recall_0.90": 1.0 / 3, "iprec_at_recall_1.00": 1.0 / 3},
			"q5": {"num_ret": 1},
		}, qv{"gm_map": math.Exp((math.Log((1+2.0/3+3.0/5)/4) + math.Log(1.0/3) + math.Log(minGeoMean)) / 3)}},
		{"complete", Options{Complete: true}, nil, qv{
			// q3 (judged, not retrieved) joins with AP 0 → floor 0.00001
			"gm_map": math.Exp((math.Log((1+2.0/3+3.0/5)/4) + math.Log(1.0/3) + 2*math.Log(minGeoMean)) / 4),
			"bpref":  (0.25 + 1) / 4, "Rprec": 0.5 / 4}},
		{"level2", Options{RelevanceLevel: 2}, map[string]qv{
			// relevant d1(2) d5(3) at ranks 3, 5; non-relevant d3 d2 d9
			"q1": {"num_ret": 5, "map": (1.0/3 + 2.0/5) / 2, "Rprec": 0,
				"bpref":                0, // both below d3, d2: 1 - min(2,2)/min(3,2)
				"infAP":                ((1.0/3 + 2.0/3*(2.0/2)*e/(2+2*e)) + (1.0/5 + 4.0/5*(4.0/4)*(1+e)/(3+2*e))) / 2,
				"iprec_at_recall_0.00": 0.4, "iprec_at_recall_0.30": 0.4, "iprec_at_recall_0.40": 0.4,
				"iprec_at_recall_0.50": 0.4, "iprec_at_recall_0.70": 0.4, "iprec_at_recall_0.80": 0.4,
				"iprec_at_recall_0.90": 0.4, "iprec_at_recall_1.00": 0.4},
			"q2": {"num_ret": 3}, // d4 (grade 1) is not relevant at level 2
			"q5": {"num_ret": 1},
		}, nil},
		{"judged only", Options{JudgedOnly: true}, map[string]qv{
			// q1 without d7: d3(1) d2(0) d1(2) d5(3)
			"q1": {"num_ret": 4, "map": (1 + 2.0/3 + 3.0/4) / 4, "Rprec": 3.0 / 4, "bpref": 1.0 / 4,
				"infAP": (1 + (1.0/3 + 2.0/3*(2.0/2)*(1+e)/(2+2*e)) + (1.0/4 + 3.0/4*(3.0/3)*(2+e)/(3+2*e))) / 4,
				// precision 1, .5, 2/3, 3/4: from rank 3 on the best is 3/4; 4 relevant never retrieved
				"iprec_at_recall_0.00": 1, "iprec_at_recall_0.30": 1, "iprec_at_recall_0.40": 3.0 / 4,
				"iprec_at_recall_0.50": 3.0 / 4, "iprec_at_recall_0.70": 3.0 / 4, "iprec_at_recall_0.80": 3.0 / 4},
			// q2 keeps only d4, at rank 1
			"q2": {"num_ret": 1, "map": 1, "Rprec": 1, "bpref": 1, "infAP": 1,
				"iprec_at_recall_0.00": 1, "iprec_at_recall_0.30": 1, "iprec_at_recall_0.40": 1,
				"iprec_at_recall_0.50": 1, "iprec_at_recall_0.70": 1, "iprec_at_recall_0.80": 1,
				"iprec_at_recall_0.90": 1, "iprec_at_recall_1.00": 1},
			"q5": {}, // nothing judged retrieved: empty ranking
		}, nil},
		{"max 3", Options{MaxResults: 3}, map[string]qv{
			// q1 cut to d3 d2 d1
			"q1": {"num_ret": 3, "map": (1 + 2.0/3) / 4, "Rprec": 2.0 / 4, "bpref": 1.0 / 4,
				"infAP":                (1 + (1.0/3 + 2.0/3*(2.0/2)*(1+e)/(2+2*e))) / 4,
				"iprec_at_recall_0.00": 1, "iprec_at_recall_0.30": 1, "iprec_at_recall_0.40": 2.0 / 3,
				"iprec_at_recall_0.50": 2.0 / 3},
			"q2": {"num_ret": 3, "map": 1.0 / 3, "bpref": 1, "infAP": 1.0 / 3,
				"iprec_at_recall_0.00": 1.0 / 3, "iprec_at_recall_0.30": 1.0 / 3, "iprec_at_recall_0.40": 1.0 / 3,
				"iprec_at_recall_0.50": 1.0 / 3, "iprec_at_recall_0.70": 1.0 / 3, "iprec_at_recall_0.80": 1.0 / 3,
				"iprec_at_recall_0.90": 1.0 / 3, "iprec_at_recall_1.00": 1.0 / 3},
			"q5": {"num_ret": 1},
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := Evaluate(q, r, ms, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			for qid, wm := range c.want {
				for i, m := range res.Measures {
					if m.Family == "gm_map" {
						continue
					}
					if got := res.PerQuery[qid][i]; !near(got, wm[m.String()]) {
						t.Errorf("%s %s = %.6f, want %.6f", qid, m, got, wm[m.String()])
					}
				}
			}
			for name, w := range c.all {
				if got, ok := res.Value(name); !ok || !near(got, w) {
					t.Errorf("all %s = %.6f, want %.6f", name, got, w)
				}
			}
		})
	}
}

// TestParseRecallLevels: iprec_at_recall takes recall levels, defaults to
// trec_eval's eleven, and prints them with two decimals.
func TestParseRecallLevels(t *testing.T) {
	for _, c := range []struct {
		spec, want string
		ok         bool
	}{
		{"iprec_at_recall", "iprec_at_recall_0.00 iprec_at_recall_0.10 iprec_at_recall_0.20 iprec_at_recall_0.30 iprec_at_recall_0.40 iprec_at_recall_0.50 iprec_at_recall_0.60 iprec_at_recall_0.70 iprec_at_recall_0.80 iprec_at_recall_0.90 iprec_at_recall_1.00", true},
		{"iprec_at_recall.1,.1,.25,0", "iprec_at_recall_0.00 iprec_at_recall_0.10 iprec_at_recall_0.25 iprec_at_recall_1.00", true},
		{"iprec_at_recall.1.5", "", false},
		{"iprec_at_recall.0.125", "", false},
		{"gm_map", "gm_map", true},
		{"bpref.10", "", false},
	} {
		ms, err := ParseMeasures(c.spec)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok=%v", c.spec, err, c.ok)
			continue
		}
		var names []string
		for _, m := range ms {
			names = append(names, m.String())
			if m.Depth() != 0 {
				t.Errorf("%s: depth %d, want 0", m, m.Depth())
			}
		}
		if got := strings.Join(names, " "); got != c.want {
			t.Errorf("%s: %q, want %q", c.spec, got, c.want)
		}
	}
}

// TestCompareSkipsGeometric: gm_map's per-query values are AP, so a
// comparison leaves it out rather than print their arithmetic mean
// under its name.
func TestCompareSkipsGeometric(t *testing.T) {
	q, r := goldenInputs(t)
	ms, _ := ParseMeasures("gm_map", "map")
	res, err := Evaluate(q, r, ms, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compare(res, res, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Measures) != 1 || c.Measures[0].Measure != "map" || c.Primary != "map" {
		t.Fatalf("compared %+v, primary %s; want map alone", c.Measures, c.Primary)
	}
}
