package evals

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Measure is one evaluation measure at one cutoff, named as trec_eval
// names its output: Family "P" with Cutoff 10 prints as "P_10"; measures
// without a cutoff (map, recip_rank, ndcg, num_*) have Cutoff 0. For
// iprec_at_recall the cutoff is a recall level in hundredths (0..100):
// Cutoff 10 prints as "iprec_at_recall_0.10", and Cutoff 0 is the level
// 0.00, not "no cutoff".
type Measure struct {
	Family string
	Cutoff int
}

// String returns the trec_eval output name, e.g. "ndcg_cut_10" or
// "iprec_at_recall_0.50".
func (m Measure) String() string {
	if fi, ok := lookupFamily(m.Family); ok && families[fi].recallCut {
		return fmt.Sprintf("%s_%.2f", m.Family, float64(m.Cutoff)/100)
	}
	if m.Cutoff > 0 {
		return m.Family + "_" + strconv.Itoa(m.Cutoff)
	}
	return m.Family
}

// Depth is the number of ranks m looks at: its cutoff for rank-cutoff
// families (P_10 → 10), 0 (the whole ranking) for the others, including
// iprec_at_recall whose cutoff is a recall level.
func (m Measure) Depth() int {
	if fi, ok := lookupFamily(m.Family); ok && families[fi].recallCut {
		return 0
	}
	return m.Cutoff
}

// aggregation says how per-query values become the "all" value.
type aggregation int

const (
	aggMean  aggregation = iota // arithmetic mean over evaluated queries
	aggSum                      // total (trec_eval's num_ret, num_rel, num_rel_ret)
	aggCount                    // number of evaluated queries (num_q)
	aggGeo                      // geometric mean, values floored at minGeoMean (gm_map)
)

// minGeoMean is trec_eval's MIN_GEO_MEAN: per-query values below it count
// as it in a geometric mean, so that one zero does not zero the mean.
const minGeoMean = 0.00001

// infAPEpsilon is trec_eval's INFAP_EPSILON, the smoothing in infAP's
// estimate of precision among judged documents.
const infAPEpsilon = 0.00001

// recallLevels are trec_eval's default iprec_at_recall cutoffs
// 0.00, 0.10, ..., 1.00, in hundredths.
var recallLevels = []int{0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100}

type family struct {
	name      string
	cut       bool
	recallCut bool  // cutoffs are recall levels in hundredths (iprec_at_recall)
	defaults  []int // trec_eval's default cutoffs
	agg       aggregation
	doc       string
}

var standardCutoffs = []int{5, 10, 15, 20, 30, 100, 200, 500, 1000}

// families lists the supported measures in trec_eval's print order
// (measures.c), then this package's extensions.
var families = []family{
	{name: "num_q", agg: aggCount, doc: "number of queries evaluated"},
	{name: "num_ret", agg: aggSum, doc: "documents retrieved"},
	{name: "num_rel", agg: aggSum, doc: "relevant documents judged"},
	{name: "num_rel_ret", agg: aggSum, doc: "relevant documents retrieved"},
	{name: "map", doc: "average precision over all judged relevant documents"},
	{name: "gm_map", agg: aggGeo, doc: "geometric mean of per-query AP, each at least 0.00001 (only the all value is printed)"},
	{name: "Rprec", doc: "precision after R documents, R the judged relevant count"},
	{name: "bpref", doc: "binary preference: judged relevant above judged non-relevant, min(R, N) normalised"},
	{name: "recip_rank", doc: "reciprocal rank of the first relevant document"},
	{name: "iprec_at_recall", cut: true, recallCut: true, defaults: recallLevels, doc: "interpolated precision at recall levels 0.00..1.00"},
	{name: "P", cut: true, defaults: standardCutoffs, doc: "precision at k, divided by k"},
	{name: "recall", cut: true, defaults: standardCutoffs, doc: "relevant retrieved in top k / judged relevant"},
	{name: "infAP", doc: "inferred AP (Yilmaz & Aslam); qrels grade -1 marks pooled but unjudged"},
	{name: "ndcg", doc: "nDCG over the whole ranking, linear gain"},
	{name: "ndcg_cut", cut: true, defaults: standardCutoffs, doc: "nDCG at k, linear gain (trec_eval)"},
	{name: "map_cut", cut: true, defaults: standardCutoffs, doc: "average precision at k over all judged relevant"},
	{name: "success", cut: true, defaults: []int{1, 5, 10}, doc: "1 if a relevant document is in the top k (hit@k)"},
	{name: "recip_rank_cut", cut: true, defaults: standardCutoffs, doc: "reciprocal rank at k (MRR@k; trec_eval fork measure)"},
	{name: "ndcg_exp_cut", cut: true, defaults: standardCutoffs, doc: "nDCG at k with exponential gain 2^rel-1 (not in trec_eval)"},
}

func lookupFamily(name string) (int, bool) {
	for i, f := range families {
		if f.name == name {
			return i, true
		}
	}
	return 0, false
}

// MeasureFamilies returns the supported measure families with a one-line
// description each, in print order.
func MeasureFamilies() [][2]string {
	out := make([][2]string, len(families))
	for i, f := range families {
		out[i] = [2]string{f.name, f.doc}
	}
	return out
}

// DefaultMeasures is what Evaluate computes when given no measures:
// map, recip_rank, P_10, recall_100, ndcg_cut_10, success_10.
func DefaultMeasures() []Measure {
	ms, _ := ParseMeasures("map", "recip_rank", "P.10", "recall.100", "ndcg_cut.10", "success.10")
	return ms
}

// ParseMeasures parses trec_eval -m arguments: "name" or
// "name.k1,k2,...". A cutoff family given without cutoffs gets trec_eval's
// defaults (e.g. P → 5,10,15,20,30,100,200,500,1000; success → 1,5,10;
// iprec_at_recall → 0,.1,...,1). iprec_at_recall takes recall levels in
// [0, 1] with at most two decimals ("iprec_at_recall.0,.25,1").
// The result is deduplicated and in trec_eval's print order: by family as
// in measures.c, cutoffs ascending.
func ParseMeasures(specs ...string) ([]Measure, error) {
	cuts := map[int]map[int]bool{}
	for _, spec := range specs {
		name, params, hasParams := strings.Cut(strings.TrimSpace(spec), ".")
		fi, ok := lookupFamily(name)
		if !ok {
			return nil, fmt.Errorf("measure %q: %w", spec, ErrUnknownMeasure)
		}
		f := families[fi]
		if cuts[fi] == nil {
			cuts[fi] = map[int]bool{}
		}
		if !hasParams {
			for _, k := range f.defaults {
				cuts[fi][k] = true
			}
			if !f.cut {
				cuts[fi][0] = true
			}
			continue
		}
		if !f.cut {
			return nil, fmt.Errorf("measure %q: %s takes no cutoffs: %w", spec, name, ErrUnknownMeasure)
		}
		for _, p := range strings.Split(params, ",") {
			if f.recallCut {
				x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
				h := math.Round(x * 100)
				if err != nil || x < 0 || x > 1 || math.Abs(x*100-h) > 1e-9 {
					return nil, fmt.Errorf("measure %q: recall level %q must be in [0, 1] with at most two decimals: %w", spec, p, ErrUnknownMeasure)
				}
				cuts[fi][int(h)] = true
				continue
			}
			k, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || k < 1 {
				return nil, fmt.Errorf("measure %q: cutoff %q must be a positive integer: %w", spec, p, ErrUnknownMeasure)
			}
			cuts[fi][k] = true
		}
	}
	var out []Measure
	for fi, f := range families {
		ks := make([]int, 0, len(cuts[fi]))
		for k := range cuts[fi] {
			ks = append(ks, k)
		}
		sort.Ints(ks)
		for _, k := range ks {
			out = append(out, Measure{Family: f.name, Cutoff: k})
		}
	}
	return out, nil
}

// Options tune Evaluate. The zero value is trec_eval's default.
type Options struct {
	// RelevanceLevel is the lowest grade that counts as relevant
	// (trec_eval -l). Values below 1 mean 1, the default. nDCG gains are
	// the grades themselves whatever the level.
	RelevanceLevel int
	// Complete averages over every judged query, a query missing from the
	// run counting as an empty ranking (0 for every measure) — trec_eval
	// -c. By default only queries with both judgments and results count.
	Complete bool
	// MaxResults evaluates only the first MaxResults documents of each
	// query's ranking, in evaluation order (trec_eval -M). 0, the
	// default, means all.
	MaxResults int
	// JudgedOnly drops every retrieved document that has no judgment
	// (absent from qrels, or judged with a negative grade) before
	// evaluating, closing up the ranks (trec_eval -J). num_ret then counts
	// judged documents only.
	JudgedOnly bool
	// NumDocs is the number of documents in the collection (trec_eval -N).
	// It is accepted for trec_eval compatibility; no measure in this
	// package depends on it, as none of them does in trec_eval 10.0.
	// 0, the default, means unknown.
	NumDocs int
}

// Result holds per-query and aggregate values of a set of measures.
// Values are index-aligned with Measures.
type Result struct {
	// Run is the name of the evaluated run.
	Run string
	// Measures in print order.
	Measures []Measure
	// Queries evaluated, in trec_eval order (byte-wise ascending).
	Queries []string
	// PerQuery maps a query id to its values; gm_map's is the query's AP
	// (its all value is their geometric mean).
	PerQuery map[string][]float64
	// All holds the aggregates: the mean over Queries, except num_q (the
	// number of queries) and num_ret, num_rel, num_rel_ret (totals), as
	// trec_eval reports them.
	All []float64
}

// Index returns the position of the measure named name (e.g. "P_10").
func (r *Result) Index(name string) (int, bool) {
	for i, m := range r.Measures {
		if m.String() == name {
			return i, true
		}
	}
	return 0, false
}

// Value returns the aggregate of the measure named name.
func (r *Result) Value(name string) (float64, bool) {
	i, ok := r.Index(name)
	if !ok {
		return 0, false
	}
	return r.All[i], true
}

// Column returns the per-query values of the measure named name, aligned
// with Queries.
func (r *Result) Column(name string) ([]float64, bool) {
	i, ok := r.Index(name)
	if !ok {
		return nil, false
	}
	out := make([]float64, len(r.Queries))
	for j, q := range r.Queries {
		out[j] = r.PerQuery[q][i]
	}
	return out, true
}

// Evaluate scores run against qrels with trec_eval's semantics: each
// query's documents are ranked by score descending, ties broken by
// document id descending; a document is relevant if its grade is at least
// the relevance level; P@k divides by k; recall, MAP and map_cut divide by
// the number of judged relevant documents (0 when there are none); nDCG
// uses the grades as gains with log2(rank+1) discounts and an ideal ranking
// cut at the same k. Queries absent from qrels are ignored; queries absent
// from the run are ignored unless opt.Complete. With no measures,
// DefaultMeasures are used. A document retrieved twice for one query is an
// error (ErrDuplicate); no query to evaluate is ErrNoQueries.
func Evaluate(qrels Qrels, run *Run, measures []Measure, opt Options) (*Result, error) {
	if len(measures) == 0 {
		measures = DefaultMeasures()
	}
	fams := make([]family, len(measures))
	for i, m := range measures {
		fi, ok := lookupFamily(m.Family)
		if !ok {
			return nil, fmt.Errorf("evaluate: measure %q: %w", m.Family, ErrUnknownMeasure)
		}
		f := families[fi]
		bad := f.cut != (m.Cutoff > 0) || m.Cutoff < 0
		if f.recallCut {
			bad = m.Cutoff < 0 || m.Cutoff > 100
		}
		if bad {
			return nil, fmt.Errorf("evaluate: measure %s: bad cutoff %d: %w", m.Family, m.Cutoff, ErrUnknownMeasure)
		}
		fams[i] = families[fi]
	}
	if opt.MaxResults < 0 || opt.NumDocs < 0 {
		return nil, fmt.Errorf("evaluate: max results %d, num docs %d: must not be negative: %w", opt.MaxResults, opt.NumDocs, ErrFormat)
	}
	level := opt.RelevanceLevel
	if level < 1 {
		level = 1
	}
	opt.RelevanceLevel = level
	res := &Result{Run: run.Name, Measures: measures, PerQuery: map[string][]float64{}, All: make([]float64, len(measures))}
	for _, qid := range qrels.QueryIDs() {
		docs, ok := run.Results[qid]
		if !ok && !opt.Complete {
			continue
		}
		vals, err := evalQuery(qrels[qid], docs, measures, opt)
		if err != nil {
			return nil, fmt.Errorf("evaluate: query %q: %w", qid, err)
		}
		res.Queries = append(res.Queries, qid)
		res.PerQuery[qid] = vals
	}
	if len(res.Queries) == 0 {
		return nil, fmt.Errorf("evaluate: %w", ErrNoQueries)
	}
	for i, f := range fams {
		var sum float64
		for _, q := range res.Queries {
			sum += res.PerQuery[q][i]
		}
		switch f.agg {
		case aggMean:
			res.All[i] = sum / float64(len(res.Queries))
		case aggSum:
			res.All[i] = sum
		case aggCount:
			res.All[i] = float64(len(res.Queries))
		case aggGeo:
			var logs float64
			for _, q := range res.Queries {
				logs += math.Log(max(res.PerQuery[q][i], minGeoMean))
			}
			res.All[i] = math.Exp(logs / float64(len(res.Queries)))
		}
	}
	return res, nil
}

// Grades of retrieved documents that have no usable judgment, as
// trec_eval's form_res_rels.c marks them.
const (
	relNonPool  = -1 // not in qrels
	relUnjudged = -2 // in qrels with a negative grade: pooled, not judged
)

// evalQuery computes every measure for one query.
func evalQuery(judged map[string]int, docs []ScoredDoc, measures []Measure, opt Options) ([]float64, error) {
	level := opt.RelevanceLevel
	ranked := Rank(docs)
	if err := checkDupDocs(ranked); err != nil {
		return nil, err
	}
	if opt.MaxResults > 0 && len(ranked) > opt.MaxResults {
		ranked = ranked[:opt.MaxResults]
	}
	rels := make([]int, 0, len(ranked)) // grade at each rank; relNonPool or relUnjudged if none
	for _, d := range ranked {
		g, ok := judged[d.DocID]
		switch {
		case !ok:
			g = relNonPool
		case g < 0:
			g = relUnjudged
		}
		if opt.JudgedOnly && g < 0 {
			continue
		}
		rels = append(rels, g)
	}
	numRel, numNonrel := 0, 0
	var gains []int // positive grades of all judged documents, descending
	for _, g := range judged {
		switch {
		case g >= level:
			numRel++
		case g >= 0:
			numNonrel++
		}
		if g > 0 {
			gains = append(gains, g)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(gains)))
	relevant := func(i int) bool { return rels[i] >= level }
	numRelRet := 0
	for i := range rels {
		if relevant(i) {
			numRelRet++
		}
	}

	vals := make([]float64, len(measures))
	for mi, m := range measures {
		k := m.Depth()
		n := len(rels)
		if k > 0 && k < n {
			n = k
		}
		var v float64
		switch m.Family {
		case "num_q":
			v = 1
		case "num_ret":
			v = float64(len(rels))
		case "num_rel":
			v = float64(numRel)
		case "num_rel_ret":
			v = float64(numRelRet)
		case "P":
			for i := 0; i < n; i++ {
				if relevant(i) {
					v++
				}
			}
			v /= float64(k)
		case "recall":
			if numRel > 0 {
				for i := 0; i < n; i++ {
					if relevant(i) {
						v++
					}
				}
				v /= float64(numRel)
			}
		case "success":
			for i := 0; i < n; i++ {
				if relevant(i) {
					v = 1
					break
				}
			}
		case "recip_rank", "recip_rank_cut":
			for i := 0; i < n; i++ {
				if relevant(i) {
					v = 1 / float64(i+1)
					break
				}
			}
		case "Rprec":
			// m_Rprec.c: relevant among the first min(R, num_ret), over R.
			if r := min(numRel, len(rels)); r > 0 {
				for i := 0; i < r; i++ {
					if relevant(i) {
						v++
					}
				}
				v /= float64(numRel)
			}
		case "bpref":
			v = bpref(rels, level, numRel, numNonrel)
		case "infAP":
			v = infAP(rels, level, numRel)
		case "iprec_at_recall":
			v = iprecAtRecall(rels, level, numRel, numRelRet, m.Cutoff)
		case "map", "map_cut", "gm_map":
			if numRel > 0 {
				hits := 0
				for i := 0; i < n; i++ {
					if relevant(i) {
						hits++
						v += float64(hits) / float64(i+1)
					}
				}
				v /= float64(numRel)
			}
		case "ndcg", "ndcg_cut", "ndcg_exp_cut":
			gain := func(g int) float64 { return float64(g) }
			if m.Family == "ndcg_exp_cut" {
				gain = func(g int) float64 { return math.Exp2(float64(g)) - 1 }
			}
			var dcg, idcg float64
			for i := 0; i < n; i++ {
				if rels[i] > 0 {
					dcg += gain(rels[i]) / math.Log2(float64(i+2))
				}
			}
			ni := len(gains)
			if k > 0 && k < ni {
				ni = k
			}
			for i := 0; i < ni; i++ {
				idcg += gain(gains[i]) / math.Log2(float64(i+2))
			}
			if idcg > 0 {
				v = dcg / idcg
			}
		default:
			return nil, fmt.Errorf("measure %q: %w", m.Family, ErrUnknownMeasure)
		}
		vals[mi] = v
	}
	return vals, nil
}

// bpref is m_bpref.c: over the judged relevant documents retrieved, the
// fraction of judged non-relevant documents not ranked above each, where
// both counts are capped at R: Σ (1 - min(nonrel above, R) / min(N, R)) / R
// with N the judged non-relevant documents of the query. Unjudged and
// unpooled documents are skipped.
func bpref(rels []int, level, numRel, numNonrel int) float64 {
	var v float64
	nonrel := 0
	for _, g := range rels {
		switch {
		case g < 0:
			continue
		case g < level:
			nonrel++
		case nonrel > 0:
			v += 1 - float64(min(nonrel, numRel))/float64(min(numNonrel, numRel))
		default:
			v++
		}
	}
	if numRel > 0 {
		v /= float64(numRel)
	}
	return v
}

// infAP is m_infap.c: at each judged relevant document at 0-based rank
// j > 0, 1/(j+1) + j/(j+1) · (above/j) · (rel+ε)/(rel+nonrel+2ε), where
// above counts the judged and pooled-but-unjudged documents above it and
// rel, nonrel the judged relevant and non-relevant ones; 1 at rank 0;
// summed and divided by R. Unpooled documents count as non-relevant by
// their rank only.
func infAP(rels []int, level, numRel int) float64 {
	var v float64
	var relSoFar, nonrel, unjudged float64
	for j, g := range rels {
		switch {
		case g == relNonPool:
			continue
		case g == relUnjudged:
			unjudged++
			continue
		case g < level:
			nonrel++
			continue
		}
		relSoFar++
		if j == 0 {
			v++
			continue
		}
		fj := float64(j)
		v += 1/(fj+1) + (fj/(fj+1))*((relSoFar-1+nonrel+unjudged)/fj)*
			((relSoFar-1+infAPEpsilon)/(relSoFar-1+nonrel+2*infAPEpsilon))
	}
	if numRel > 0 {
		v /= float64(numRel)
	}
	return v
}

// iprecAtRecall is m_iprec_at_recall.c for one recall level in hundredths:
// the cutoff is round(level · R) relevant documents (half away from zero,
// lround); the value is the highest precision at any rank at or after
// the one where that many relevant documents have been retrieved, 0 if
// they never are. Level 0 takes the first relevant document's rank. An
// empty ranking scores 0 (trec_eval would divide 0 by 0 there, which only
// -J can produce).
func iprecAtRecall(rels []int, level, numRel, numRelRet, hundredths int) float64 {
	if len(rels) == 0 {
		return 0
	}
	cut := int(math.Round(float64(hundredths) / 100 * float64(numRel)))
	if cut > numRelRet {
		return 0
	}
	best := float64(numRelRet) / float64(len(rels))
	hits, from := 0, len(rels)
	for i, g := range rels {
		if g >= level {
			hits++
			if hits == max(cut, 1) {
				from = i
			}
		}
	}
	hits = 0
	for i, g := range rels {
		if g >= level {
			hits++
		}
		if i >= from {
			best = max(best, float64(hits)/float64(i+1))
		}
	}
	return best
}

// checkDupDocs reports a document id that occurs twice in a ranking.
func checkDupDocs(ranked []ScoredDoc) error {
	seen := make(map[string]bool, len(ranked))
	for _, d := range ranked {
		if seen[d.DocID] {
			return fmt.Errorf("document %q retrieved twice: %w", d.DocID, ErrDuplicate)
		}
		seen[d.DocID] = true
	}
	return nil
}

// IsCount reports whether m is an integer bookkeeping measure (num_q,
// num_ret, num_rel, num_rel_ret): summed rather than averaged, printed as
// an integer, and left out of comparisons.
func (m Measure) IsCount() bool {
	fi, ok := lookupFamily(m.Family)
	return ok && (families[fi].agg == aggSum || families[fi].agg == aggCount)
}

// Compared reports whether Compare tests m: not a count measure (num_*),
// and not gm_map, whose per-query values are AP, whose arithmetic mean
// is map (compare map, or the logs).
func (m Measure) Compared() bool {
	return !m.IsCount() && !m.geometric()
}

// geometric reports whether m is averaged by geometric mean (gm_map).
func (m Measure) geometric() bool {
	fi, ok := lookupFamily(m.Family)
	return ok && families[fi].agg == aggGeo
}

// WriteTREC prints r the way trec_eval does: with perQuery, every
// measure of every query ("%-22s\t%s\t%6.4f", query order, then measure
// order), then the "all" lines. num_q and gm_map are printed only for
// "all", as trec_eval prints them; counts
// print as integers.
func (r *Result) WriteTREC(w io.Writer, perQuery bool) error {
	line := func(m Measure, qid string, v float64) error {
		var err error
		if m.IsCount() {
			_, err = fmt.Fprintf(w, "%-22s\t%s\t%d\n", m.String(), qid, int64(math.Round(v)))
		} else {
			_, err = fmt.Fprintf(w, "%-22s\t%s\t%6.4f\n", m.String(), qid, v)
		}
		return err
	}
	if perQuery {
		for _, q := range r.Queries {
			for i, m := range r.Measures {
				if m.Family == "num_q" || m.Family == "gm_map" {
					continue
				}
				if err := line(m, q, r.PerQuery[q][i]); err != nil {
					return err
				}
			}
		}
	}
	for i, m := range r.Measures {
		if err := line(m, "all", r.All[i]); err != nil {
			return err
		}
	}
	return nil
}
