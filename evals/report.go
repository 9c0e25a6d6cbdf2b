package evals

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// MetricValue is one named value.
type MetricValue struct {
	Measure string  `json:"measure"`
	Value   float64 `json:"value"`
}

// QueryRow is one query's values, in the report's measure order.
type QueryRow struct {
	Query  string    `json:"query"`
	Values []float64 `json:"values"`
}

// RunReport is a run's metrics and per-query table, ready for JSON or text.
type RunReport struct {
	Run      string        `json:"run"`
	Queries  int           `json:"queries"`
	Measures []string      `json:"measures"`
	All      []MetricValue `json:"all"`
	PerQuery []QueryRow    `json:"per_query"`
}

// NewRunReport builds the report of r.
func NewRunReport(r *Result) *RunReport {
	rep := &RunReport{Run: r.Run, Queries: len(r.Queries)}
	for i, m := range r.Measures {
		rep.Measures = append(rep.Measures, m.String())
		rep.All = append(rep.All, MetricValue{Measure: m.String(), Value: r.All[i]})
	}
	for _, q := range r.Queries {
		rep.PerQuery = append(rep.PerQuery, QueryRow{Query: q, Values: r.PerQuery[q]})
	}
	return rep
}

// WriteJSON writes the report as indented JSON.
func (rep *RunReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the aggregate table and, with perQuery, the per-query
// table, aligned in columns with 4 decimals.
func (rep *RunReport) WriteText(w io.Writer, perQuery bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "run %s, %d queries\n", rep.Run, rep.Queries)
	for _, mv := range rep.All {
		fmt.Fprintf(tw, "%s\t%.4f\n", mv.Measure, mv.Value)
	}
	if perQuery {
		fmt.Fprintf(tw, "\nquery\t%s\n", strings.Join(rep.Measures, "\t"))
		for _, row := range rep.PerQuery {
			cells := make([]string, len(row.Values))
			for i, v := range row.Values {
				cells[i] = fmt.Sprintf("%.4f", v)
			}
			fmt.Fprintf(tw, "%s\t%s\n", row.Query, strings.Join(cells, "\t"))
		}
	}
	return tw.Flush()
}

// CompareOptions tune Compare. Zero fields take the defaults named.
type CompareOptions struct {
	// Alpha is the significance level. Default 0.05.
	Alpha float64
	// Permutations for RandomizationTest. Default MinPermutations.
	Permutations int
	// Resamples for BootstrapCI. Default DefaultResamples.
	Resamples int
	// Seed for both; the same seed gives the same p-values and intervals.
	// Default 0 is a valid seed.
	Seed uint64
	// Primary names the measure whose per-query deltas are listed
	// (e.g. "ndcg_cut_10"). Default: the first non-count measure.
	Primary string
}

// MeasureComparison is the paired comparison of one measure, B against A.
type MeasureComparison struct {
	Measure string  `json:"measure"`
	MeanA   float64 `json:"mean_a"`
	MeanB   float64 `json:"mean_b"`
	// Delta is MeanB - MeanA.
	Delta float64 `json:"delta"`
	// CILow and CIHigh bound the bootstrap confidence interval of Delta at
	// confidence 1 - Alpha.
	CILow  float64 `json:"ci_low"`
	CIHigh float64 `json:"ci_high"`
	// P is the two-sided randomization test p-value.
	P float64 `json:"p_value"`
	// Significant is P < Alpha.
	Significant bool `json:"significant"`
	// Wins, Ties and Losses count queries where B beat, equalled or lost
	// to A.
	Wins   int `json:"wins"`
	Ties   int `json:"ties"`
	Losses int `json:"losses"`
	// PHolm and PBH are P adjusted for the comparison's family of
	// measures (every non-count measure compared): Holm–Bonferroni
	// (family-wise error rate) and Benjamini–Hochberg (false discovery
	// rate). Compare them with Alpha directly. Significant stays on the
	// raw P, right for one pre-declared primary measure.
	PHolm float64 `json:"p_holm"`
	PBH   float64 `json:"p_bh"`
	// EffectSize is Cohen's d_z of the per-query deltas
	// (PairedEffectSize); absent when undefined (under two queries, or
	// the same nonzero delta on every query).
	EffectSize *float64 `json:"effect_size,omitempty"`
}

// QueryDelta is one query's primary-measure values in A and B.
type QueryDelta struct {
	Query string  `json:"query"`
	A     float64 `json:"a"`
	B     float64 `json:"b"`
	Delta float64 `json:"delta"`
}

// Comparison is the significance comparison of two evaluated runs.
type Comparison struct {
	RunA         string              `json:"run_a"`
	RunB         string              `json:"run_b"`
	Queries      int                 `json:"queries"`
	Alpha        float64             `json:"alpha"`
	Permutations int                 `json:"permutations"`
	Resamples    int                 `json:"resamples"`
	Seed         uint64              `json:"seed"`
	Measures     []MeasureComparison `json:"measures"`
	// Primary is the measure of PerQuery.
	Primary string `json:"primary"`
	// PerQuery lists every paired query by Delta ascending (the queries
	// that got worse first), ties by query id.
	PerQuery []QueryDelta `json:"per_query"`
}

// Compare compares run B against run A per measure over the queries both
// evaluated (paired by query id), with means, delta, bootstrap CI,
// randomization p-value, significance at Alpha and win/tie/loss counts.
// Measures that are not Compared are skipped.
// a and b must have the same measures
// (ErrMismatch) and share at least one query. Deterministic in opt.Seed.
func Compare(a, b *Result, opt CompareOptions) (*Comparison, error) {
	if opt.Alpha == 0 {
		opt.Alpha = 0.05
	}
	if !(opt.Alpha > 0 && opt.Alpha < 1) {
		return nil, fmt.Errorf("compare: alpha %v: %w", opt.Alpha, ErrInvalidArgument)
	}
	if opt.Permutations == 0 {
		opt.Permutations = MinPermutations
	}
	if opt.Resamples == 0 {
		opt.Resamples = DefaultResamples
	}
	if len(a.Measures) != len(b.Measures) {
		return nil, fmt.Errorf("compare: %d measures vs %d: %w", len(a.Measures), len(b.Measures), ErrMismatch)
	}
	for i := range a.Measures {
		if a.Measures[i] != b.Measures[i] {
			return nil, fmt.Errorf("compare: measure %s vs %s: %w", a.Measures[i], b.Measures[i], ErrMismatch)
		}
	}
	var queries []string
	for _, q := range a.Queries {
		if _, ok := b.PerQuery[q]; ok {
			queries = append(queries, q)
		}
	}
	if len(queries) == 0 {
		return nil, fmt.Errorf("compare: no query evaluated in both runs: %w", ErrMismatch)
	}
	c := &Comparison{RunA: a.Run, RunB: b.Run, Queries: len(queries), Alpha: opt.Alpha,
		Permutations: opt.Permutations, Resamples: opt.Resamples, Seed: opt.Seed}
	primary := -1
	for i, m := range a.Measures {
		if !m.Compared() {
			continue
		}
		if (opt.Primary == "" && primary < 0) || m.String() == opt.Primary {
			primary = i
		}
		xa := make([]float64, len(queries))
		xb := make([]float64, len(queries))
		for j, q := range queries {
			xa[j], xb[j] = a.PerQuery[q][i], b.PerQuery[q][i]
		}
		p, err := RandomizationTest(xa, xb, opt.Permutations, opt.Seed)
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", m, err)
		}
		lo, hi, err := BootstrapCI(xa, xb, opt.Resamples, 1-opt.Alpha, opt.Seed)
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", m, err)
		}
		w, t, l, err := WinTieLoss(xa, xb)
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", m, err)
		}
		ma, mb := mean(xa), mean(xb)
		mc := MeasureComparison{Measure: m.String(), MeanA: ma, MeanB: mb, Delta: mb - ma,
			CILow: lo, CIHigh: hi, P: p, Significant: p < opt.Alpha, Wins: w, Ties: t, Losses: l}
		if d, ok, err := PairedEffectSize(xa, xb); err == nil && ok {
			mc.EffectSize = &d
		}
		c.Measures = append(c.Measures, mc)
	}
	if err := c.adjust(); err != nil {
		return nil, err
	}
	if primary < 0 {
		if opt.Primary != "" {
			return nil, fmt.Errorf("compare: primary measure %q not evaluated: %w", opt.Primary, ErrUnknownMeasure)
		}
		return nil, fmt.Errorf("compare: no comparable measure (only counts): %w", ErrInvalidArgument)
	}
	c.Primary = a.Measures[primary].String()
	for _, q := range queries {
		va, vb := a.PerQuery[q][primary], b.PerQuery[q][primary]
		c.PerQuery = append(c.PerQuery, QueryDelta{Query: q, A: va, B: vb, Delta: vb - va})
	}
	sort.SliceStable(c.PerQuery, func(i, j int) bool {
		if c.PerQuery[i].Delta != c.PerQuery[j].Delta {
			return c.PerQuery[i].Delta < c.PerQuery[j].Delta
		}
		return c.PerQuery[i].Query < c.PerQuery[j].Query
	})
	return c, nil
}

// adjust sets PHolm and PBH over c.Measures.
func (c *Comparison) adjust() error {
	ps := make([]float64, len(c.Measures))
	for i, m := range c.Measures {
		ps[i] = m.P
	}
	holm, err := HolmAdjust(ps)
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	bh, err := BHAdjust(ps)
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	for i := range c.Measures {
		c.Measures[i].PHolm, c.Measures[i].PBH = holm[i], bh[i]
	}
	return nil
}

// FormatEffect formats an effect size as "+0.42", or "n/a" when undefined.
func FormatEffect(d *float64) string {
	if d == nil {
		return "n/a"
	}
	return fmt.Sprintf("%+.2f", *d)
}

// Measure returns the comparison of the measure named name (e.g. "P_10").
func (c *Comparison) Measure(name string) (MeasureComparison, bool) {
	for _, m := range c.Measures {
		if m.Measure == name {
			return m, true
		}
	}
	return MeasureComparison{}, false
}

// WriteJSON writes the comparison as indented JSON.
func (c *Comparison) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}

// WriteText writes the comparison for people: one line per measure (means,
// delta, CI, p, Holm and BH adjusted p, a '*' when significant, effect
// size d, wins/ties/losses), then the
// primary measure per query, worst first; limit bounds the per-query lines
// (0 means all).
func (c *Comparison) WriteText(w io.Writer, limit int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "A = %s, B = %s, %d paired queries, alpha %g, %d permutations, %d bootstrap resamples, seed %d\n",
		c.RunA, c.RunB, c.Queries, c.Alpha, c.Permutations, c.Resamples, c.Seed)
	fmt.Fprintf(tw, "measure\tA\tB\tdelta\t%g%% CI\tp\tp_holm\tp_bh\tsig\td\tW/T/L\n", 100*(1-c.Alpha))
	for _, m := range c.Measures {
		sig := ""
		if m.Significant {
			sig = "*"
		}
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%+.4f\t[%+.4f, %+.4f]\t%.4f\t%.4f\t%.4f\t%s\t%s\t%d/%d/%d\n",
			m.Measure, m.MeanA, m.MeanB, m.Delta, m.CILow, m.CIHigh, m.P, m.PHolm, m.PBH, sig, FormatEffect(m.EffectSize), m.Wins, m.Ties, m.Losses)
	}
	fmt.Fprintf(tw, "\nper query %s (worst first)\nquery\tA\tB\tdelta\n", c.Primary)
	for i, q := range c.PerQuery {
		if limit > 0 && i >= limit {
			fmt.Fprintf(tw, "... %d more\n", len(c.PerQuery)-limit)
			break
		}
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%+.4f\n", q.Query, q.A, q.B, q.Delta)
	}
	return tw.Flush()
}
