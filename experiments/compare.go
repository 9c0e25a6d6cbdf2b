package experiments

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/offshootdb/offshoot/evals"
)

// CompareRequest names two run variants, as "RUN" (a run with one
// succeeded variant) or "RUN:VARIANT". B is compared against A.
type CompareRequest struct {
	A string `json:"a"`
	B string `json:"b"`
	// Metric is the primary measure for per-query deltas and the
	// regressed-queries list (trec_eval name, e.g. "ndcg_cut_10").
	// Default: the first measure of A's spec metrics that B's measure
	// too and comparisons test (not a count, not gm_map).
	Metric string `json:"metric,omitempty"`
	// Alpha is the significance level. Default 0.05.
	Alpha float64 `json:"alpha,omitempty"`
	// Regressed caps the regressed queries listed with their top-k
	// changes. Default 10.
	Regressed int `json:"regressed,omitempty"`
	// Seed seeds the randomization test and bootstrap. Default 0.
	Seed uint64 `json:"seed,omitempty"`
	// AllowDifferentQueries compares runs that read different queries
	// (their query fingerprints differ). Default false: such a
	// comparison is refused (ErrInvalid), since its p-values would pair
	// queries that are not the same questions.
	AllowDifferentQueries bool `json:"allow_different_queries,omitempty"`
}

// RunComparison is B against A: evals.Compare over the paired per-query
// measures, plus top-k changes of the queries that regressed most and
// cost deltas.
type RunComparison struct {
	A          string            `json:"a"`
	B          string            `json:"b"`
	Comparison *evals.Comparison `json:"comparison"`
	// Verdict is "better", "worse" or "no significant difference" on the
	// primary measure.
	Verdict   string        `json:"verdict"`
	Regressed []QueryChange `json:"regressed"`
	// Cost deltas, B minus A.
	LatencyP50DeltaUS int64   `json:"latency_p50_delta_us"`
	QPSDelta          float64 `json:"qps_delta"`
	IndexBuildDeltaMS float64 `json:"index_build_delta_ms"`
	IndexBytesDelta   int64   `json:"index_bytes_delta"`
	EmbedDeltaMS      float64 `json:"embed_delta_ms"`
	// Data says which of the data the two runs read differ (by
	// fingerprint; runs without provenance compare as equal) and
	// Warnings says it in words.
	Data     DataDiff `json:"data"`
	Warnings []string `json:"warnings,omitempty"`
}

// QueryChange is how one query's top-k changed from A to B.
type QueryChange struct {
	Query string  `json:"query"`
	A     float64 `json:"a"`
	B     float64 `json:"b"`
	Delta float64 `json:"delta"`
	// Overlap is |topA ∩ topB| / k.
	Overlap float64 `json:"overlap"`
	// Entered are documents in B's top-k but not A's; Left the reverse.
	Entered []string `json:"entered"`
	Left    []string `json:"left"`
	// Moved are documents in both whose rank changed (1-based ranks).
	Moved []RankMove `json:"moved"`
}

// DocsShown is how many documents per list (entered, left, moved) the
// printed forms of a comparison show before "+N more".
const DocsShown = 5

// DocList is docs as "d1, d2, ... +N more", at most n of them (n <= 0:
// DocsShown); "-" for none.
func DocList(docs []string, n int) string {
	if len(docs) == 0 {
		return "-"
	}
	if n <= 0 {
		n = DocsShown
	}
	if len(docs) <= n {
		return strings.Join(docs, ", ")
	}
	return strings.Join(docs[:n], ", ") + fmt.Sprintf(" +%d more", len(docs)-n)
}

// MoveList is moves as "doc from→to, ... +N more", at most n of them
// (n <= 0: DocsShown); "-" for none.
func MoveList(moves []RankMove, n int) string {
	s := make([]string, len(moves))
	for i, m := range moves {
		s[i] = fmt.Sprintf("%s %d→%d", m.Doc, m.From, m.To)
	}
	return DocList(s, n)
}

// RankMove is a document's rank in A and in B.
type RankMove struct {
	Doc  string `json:"doc"`
	From int    `json:"from"`
	To   int    `json:"to"`
}

// CompareRuns compares two run variants (read scope on both projects).
// Runs that read different queries are refused unless
// req.AllowDifferentQueries; different judgments or corpora are compared
// with a warning (RunComparison.Warnings).
func (s *Service) CompareRuns(ctx context.Context, req CompareRequest) (*RunComparison, error) {
	runA, va, err := s.resolveVariant(ctx, "a", req.A)
	if err != nil {
		return nil, err
	}
	runB, vb, err := s.resolveVariant(ctx, "b", req.B)
	if err != nil {
		return nil, err
	}
	if req.Metric == "" {
		req.Metric = specPrimary(runA.Spec.Metrics, runB.Spec.Metrics)
	}
	return compareVariants(req, va, vb, runA.Provenance, runB.Provenance)
}

// specPrimary is the first of a's metrics that comparisons test and b's
// metrics measure too: the measure the spec names first, which is what
// its user looks at (trec_eval's order, the default of evals.Compare,
// would put recall before ndcg_cut). "" when there is none.
func specPrimary(a, b []string) string {
	nb, err := comparedMeasures(b)
	if err != nil {
		return ""
	}
	for _, m := range a { // one at a time: ParseMeasures returns trec_eval's order
		na, err := comparedMeasures([]string{m})
		if err != nil {
			return ""
		}
		for _, n := range na {
			if slices.Contains(nb, n) {
				return n
			}
		}
	}
	return ""
}

// Check reports what is wrong with g as a gate on runs of sp, before any
// run: a Metric sp does not measure (by its trec_eval output name, e.g.
// ndcg_cut_10) or that runs are not compared on (a count, gm_map), an
// Alpha outside (0, 1), a negative Threshold or an unknown Correction,
// as a *FieldError naming metric, alpha, threshold or correction. sp
// must be valid. Pure; safe for concurrent use.
func (g Gate) Check(sp *ExperimentSpec) error {
	names, err := comparedMeasures(sp.Metrics)
	if err != nil {
		return invalid("metrics", "%v", err)
	}
	switch {
	case !slices.Contains(names, g.Metric):
		return invalid("metric", "%q is not among the measures the spec's runs are compared on: %s", g.Metric, strings.Join(names, ", "))
	case g.Alpha != 0 && !(g.Alpha > 0 && g.Alpha < 1):
		return invalid("alpha", "%v is not in (0, 1)", g.Alpha)
	case g.Threshold < 0:
		return invalid("threshold", "must not be negative")
	}
	if _, err := evals.Adjust(g.Correction, nil); err != nil {
		return invalid("correction", "%v", err)
	}
	return nil
}

// comparedMeasures lists the output names (ndcg_cut_10) of the measures
// of metrics that comparisons test, in trec_eval's order: the ones a run can
// be judged on (not the counts, not gm_map).
func comparedMeasures(metrics []string) ([]string, error) {
	ms, err := evals.ParseMeasures(metrics...)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range ms {
		if m.Compared() {
			names = append(names, m.String())
		}
	}
	return names, nil
}

// compareVariants compares vb against va; pa and pb are their runs'
// provenance (nil when unknown).
func compareVariants(req CompareRequest, va, vb *VariantRun, pa, pb *Provenance) (*RunComparison, error) {
	diff := diffData(pa, pb)
	warnings := diff.Warnings(pa, pb)
	if diff.Queries && !req.AllowDifferentQueries {
		return nil, invalid("allow_different_queries", "%s; significance tests pair queries by id, so they are refused across different query sets unless allowed (allow_different_queries, --allow-different-queries)", warnings[0])
	}
	ra, err := variantResult(va)
	if err != nil {
		return nil, invalid("a", "%v", err)
	}
	rb, err := variantResult(vb)
	if err != nil {
		return nil, invalid("b", "%v", err)
	}
	if req.Regressed == 0 {
		req.Regressed = 10
	}
	// Runs may measure different sets (a CI spec with one metric against
	// a nightly one with five): compare what both measured.
	if ra, rb, err = commonMeasures(ra, rb); err != nil {
		return nil, err
	}
	if req.Alpha != 0 && !(req.Alpha > 0 && req.Alpha < 1) {
		return nil, invalid("alpha", "%v is not in (0, 1)", req.Alpha)
	}
	c, err := evals.Compare(ra, rb, evals.CompareOptions{Alpha: req.Alpha, Primary: req.Metric, Seed: req.Seed})
	if err != nil {
		field := "metric" // no such measure, or none comparable
		if errors.Is(err, evals.ErrMismatch) {
			field = "b" // its queries do not pair with a's
		}
		return nil, invalid(field, "%v", err)
	}
	out := &RunComparison{A: req.A, B: req.B, Comparison: c, Verdict: "no significant difference",
		LatencyP50DeltaUS: (vb.Latency.P50 - va.Latency.P50).Microseconds(), QPSDelta: vb.Latency.QPS - va.Latency.QPS,
		IndexBuildDeltaMS: vb.Timings.Index - va.Timings.Index, IndexBytesDelta: vb.IndexBytes - va.IndexBytes,
		EmbedDeltaMS: vb.Timings.Embed - va.Timings.Embed, Data: diff, Warnings: warnings}
	if m, ok := c.Measure(c.Primary); ok && m.Significant {
		out.Verdict = "better"
		if m.Delta < 0 {
			out.Verdict = "worse"
		}
	}
	hitsA, hitsB := hitsByQuery(va), hitsByQuery(vb)
	for _, qd := range c.PerQuery {
		if qd.Delta >= 0 || len(out.Regressed) == req.Regressed {
			break
		}
		out.Regressed = append(out.Regressed, topKChange(qd, hitsA[qd.Query], hitsB[qd.Query]))
	}
	return out, nil
}

func hitsByQuery(v *VariantRun) map[string][]string {
	out := make(map[string][]string, len(v.Results))
	for _, q := range v.Results {
		ids := make([]string, len(q.Hits))
		for i, h := range q.Hits {
			ids[i] = h.Doc
		}
		out[q.Query] = ids
	}
	return out
}

func topKChange(qd evals.QueryDelta, a, b []string) QueryChange {
	ch := QueryChange{Query: qd.Query, A: qd.A, B: qd.B, Delta: qd.Delta, Entered: []string{}, Left: []string{}, Moved: []RankMove{}}
	rankA, rankB := map[string]int{}, map[string]int{}
	for i, d := range a {
		rankA[d] = i + 1
	}
	for i, d := range b {
		rankB[d] = i + 1
	}
	common := 0
	for _, d := range b {
		if ra, ok := rankA[d]; !ok {
			ch.Entered = append(ch.Entered, d)
		} else {
			common++
			if ra != rankB[d] {
				ch.Moved = append(ch.Moved, RankMove{Doc: d, From: ra, To: rankB[d]})
			}
		}
	}
	for _, d := range a {
		if _, ok := rankB[d]; !ok {
			ch.Left = append(ch.Left, d)
		}
	}
	if k := max(len(a), len(b)); k > 0 {
		ch.Overlap = float64(common) / float64(k)
	}
	return ch
}

// variantResult rebuilds the evals.Result of a recorded variant.
func variantResult(v *VariantRun) (*evals.Result, error) {
	if v.Status != StatusSucceeded {
		return nil, fmt.Errorf("variant %s is %s", v.Name, v.Status)
	}
	ms := make([]evals.Measure, len(v.Measures))
	for i, name := range v.Measures {
		ms[i] = measureOf(name)
	}
	r := &evals.Result{Run: v.Name, Measures: ms, PerQuery: map[string][]float64{}, All: make([]float64, len(ms))}
	for _, q := range v.Results {
		if q.Values != nil {
			r.Queries = append(r.Queries, q.Query)
			r.PerQuery[q.Query] = q.Values
		}
	}
	sort.Strings(r.Queries)
	for i, m := range v.Measures {
		r.All[i] = v.Metrics[m]
	}
	return r, nil
}

// commonMeasures narrows a and b to the measures both hold, in a's order.
func commonMeasures(a, b *evals.Result) (*evals.Result, *evals.Result, error) {
	var names []string
	for _, m := range a.Measures {
		if _, ok := b.Index(m.String()); ok {
			names = append(names, m.String())
		}
	}
	if len(names) == 0 {
		return nil, nil, invalid("b", "measures nothing that a measures (a: %v, b: %v)", a.Measures, b.Measures)
	}
	if len(names) == len(a.Measures) && len(names) == len(b.Measures) {
		return a, b, nil
	}
	return onlyMeasures(a, names), onlyMeasures(b, names), nil
}

// onlyMeasures is r with just the named measures, in that order.
func onlyMeasures(r *evals.Result, names []string) *evals.Result {
	idx := make([]int, len(names))
	out := &evals.Result{Run: r.Run, Queries: r.Queries, PerQuery: map[string][]float64{}, All: make([]float64, len(names))}
	for i, n := range names {
		idx[i], _ = r.Index(n)
		out.Measures = append(out.Measures, r.Measures[idx[i]])
		out.All[i] = r.All[idx[i]]
	}
	for q, vals := range r.PerQuery {
		v := make([]float64, len(idx))
		for i, j := range idx {
			v[i] = vals[j]
		}
		out.PerQuery[q] = v
	}
	return out
}

// measureOf inverts evals.Measure.String: "ndcg_cut_10" → {ndcg_cut, 10}.
func measureOf(name string) evals.Measure {
	if i := strings.LastIndexByte(name, '_'); i > 0 {
		if k, err := strconv.Atoi(name[i+1:]); err == nil && k > 0 {
			return evals.Measure{Family: name[:i], Cutoff: k}
		}
	}
	return evals.Measure{Family: name}
}

// resolveVariant finds "RUN" or "RUN:VARIANT" and its run.
func (s *Service) resolveVariant(ctx context.Context, field, ref string) (*Run, *VariantRun, error) {
	if ref == "" {
		return nil, nil, invalid(field, "is required: RUN or RUN:VARIANT")
	}
	id, name, _ := strings.Cut(ref, ":")
	r, err := s.GetRun(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if name == "" {
		var ok []int
		for i, v := range r.Variants {
			if v.Status == StatusSucceeded {
				ok = append(ok, i)
			}
		}
		if len(ok) != 1 {
			return nil, nil, invalid(field, "run %s has %d succeeded variants; name one as %s:VARIANT", id, len(ok), id)
		}
		return r, &r.Variants[ok[0]], nil
	}
	for i := range r.Variants {
		if r.Variants[i].Name == name {
			return r, &r.Variants[i], nil
		}
	}
	return nil, nil, fmt.Errorf("variant %q of run %s: %w", name, id, ErrNotFound)
}

// SweepPoint is one variant on the recall–QPS plane.
type SweepPoint struct {
	Variant string  `json:"variant"`
	Recall  float64 `json:"recall"`
	QPS     float64 `json:"qps"`
	// Pareto is true when no other point has both higher recall and
	// higher QPS (and is strictly better in one).
	Pareto bool `json:"pareto"`
}

// SweepPoints returns a run's succeeded variants as recall–QPS points,
// by recall ascending: recall is the ANN recall against exact search when
// the variant has an index, else 1 (exact search).
func SweepPoints(r *Run) []SweepPoint {
	var pts []SweepPoint
	for _, v := range r.Variants {
		if v.Status != StatusSucceeded {
			continue
		}
		rec := 1.0
		if v.ANNRecall != nil {
			rec = *v.ANNRecall
		}
		pts = append(pts, SweepPoint{Variant: v.Name, Recall: rec, QPS: v.Latency.QPS})
	}
	for i := range pts {
		pts[i].Pareto = true
		for j := range pts {
			if i != j && pts[j].Recall >= pts[i].Recall && pts[j].QPS >= pts[i].QPS &&
				(pts[j].Recall > pts[i].Recall || pts[j].QPS > pts[i].QPS) {
				pts[i].Pareto = false
				break
			}
		}
	}
	sort.SliceStable(pts, func(i, j int) bool {
		if pts[i].Recall != pts[j].Recall {
			return pts[i].Recall < pts[j].Recall
		}
		return pts[i].QPS > pts[j].QPS
	})
	return pts
}

var comparisonHTML = template.Must(template.New("cmp").Funcs(template.FuncMap{
	"f4":     func(x float64) string { return strconv.FormatFloat(x, 'f', 4, 64) },
	"sign":   func(x float64) string { return fmt.Sprintf("%+.4f", x) },
	"docs":   func(xs []string) string { return DocList(xs, DocsShown) },
	"moves":  func(ms []RankMove) string { return MoveList(ms, DocsShown) },
	"effect": evals.FormatEffect,
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.B}} vs {{.A}}</title></head>
<body class="offshoot-compare">
<h1>{{.B}} vs {{.A}}</h1>
<p class="verdict">{{.Verdict}} on {{.Comparison.Primary}} ({{.Comparison.Queries}} queries, alpha {{.Comparison.Alpha}})</p>
{{range .Warnings}}<p class="warning">warning: {{.}}</p>
{{end}}<table class="measures"><thead><tr><th>measure</th><th>A</th><th>B</th><th>delta</th><th>CI</th><th>p</th><th>p (Holm)</th><th>p (BH)</th><th>effect d</th><th>win/tie/loss</th></tr></thead><tbody>
{{range .Comparison.Measures}}<tr{{if .Significant}} class="significant"{{end}}><td>{{.Measure}}</td><td>{{f4 .MeanA}}</td><td>{{f4 .MeanB}}</td><td>{{sign .Delta}}</td><td>[{{f4 .CILow}}, {{f4 .CIHigh}}]</td><td>{{f4 .P}}</td><td>{{f4 .PHolm}}</td><td>{{f4 .PBH}}</td><td>{{effect .EffectSize}}</td><td>{{.Wins}}/{{.Ties}}/{{.Losses}}</td></tr>
{{end}}</tbody></table>
<p class="cost">p50 latency {{.LatencyP50DeltaUS}} µs, QPS {{f4 .QPSDelta}}, index build {{f4 .IndexBuildDeltaMS}} ms, index size {{.IndexBytesDelta}} bytes, embedding {{f4 .EmbedDeltaMS}} ms (B − A)</p>
{{if .Regressed}}<h2>Most regressed queries</h2>
<table class="regressed"><thead><tr><th>query</th><th>A</th><th>B</th><th>delta</th><th>overlap</th><th>entered</th><th>left</th><th>moved</th></tr></thead><tbody>
{{range .Regressed}}<tr><td>{{.Query}}</td><td>{{f4 .A}}</td><td>{{f4 .B}}</td><td>{{sign .Delta}}</td><td>{{f4 .Overlap}}</td><td>{{docs .Entered}}</td><td>{{docs .Left}}</td><td>{{moves .Moved}}</td></tr>
{{end}}</tbody></table>{{end}}
</body></html>
`))

// WriteHTML writes the comparison as an unstyled HTML report (classes
// offshoot-compare, verdict, warning, measures, significant, cost,
// regressed for the web UI to style). Document lists show DocsShown
// documents each, then "+N more". Values are escaped.
func (c *RunComparison) WriteHTML(w io.Writer) error {
	return comparisonHTML.Execute(w, c)
}
