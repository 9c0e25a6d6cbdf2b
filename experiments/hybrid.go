package experiments

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/offshootdb/offshoot/evals"
)

// A hybrid variant (type VariantHybrid) fuses the per-query rankings of a
// dense and a lexical variant of the same run, as ranx or Elasticsearch's
// hybrid retrievers do: it has no fork, runs once both have finished, and
// is recorded like any variant (metrics, per-query rankings, run
// comparison, TREC export). It fuses the rankings as recorded, each at
// most the spec's k deep; a deeper fusion needs a larger k.
//
// A fused hit's Distance is its negated fused score; ties rank by
// document id, so fusion is deterministic. A query's latency is the sum
// of the two variants' timed latencies (the searches run one after the
// other; the fusion itself takes microseconds).

// VariantHybrid is the VariantSpec.Type of a fusion of two variants.
const VariantHybrid = "hybrid"

// Fusion methods of a HybridSpec.
const (
	// FusionRRF is reciprocal rank fusion: a document scores
	// Σ 1/(k + rank) over the rankings it appears in (rank from 1).
	FusionRRF = "rrf"
	// FusionWeighted is weighted score fusion: each ranking's scores
	// (negated distances) min-max normalized to [0, 1] per query (all 1
	// when they are equal), a document scoring
	// alpha·dense + (1-alpha)·lexical, 0 for a ranking it is missing
	// from.
	FusionWeighted = "weighted"
)

// HybridSpec names the variants a hybrid variant fuses and how.
type HybridSpec struct {
	// Dense and Lexical name a dense variant (type "") and a lexical
	// variant of the same experiment, by concrete name: a sweep point's
	// name, such as "hnsw-ef40", for a swept variant.
	Dense   string `json:"dense"`
	Lexical string `json:"lexical"`
	// Fusion is FusionRRF ("rrf", the default) or FusionWeighted
	// ("weighted").
	Fusion string `json:"fusion,omitempty"`
	// K is RRF's rank constant, ≥ 1. Default 60 (Cormack et al.).
	K int `json:"k,omitempty"`
	// Alpha is weighted fusion's weight of the dense ranking, in [0, 1].
	// Default 0.5.
	Alpha *float64 `json:"alpha,omitempty"`
}

// withDefaults returns h with its defaults filled.
func (h HybridSpec) withDefaults() HybridSpec {
	if h.Fusion == "" {
		h.Fusion = FusionRRF
	}
	if h.Fusion == FusionRRF && h.K == 0 {
		h.K = 60
	}
	if h.Fusion == FusionWeighted && h.Alpha == nil {
		a := 0.5
		h.Alpha = &a
	}
	return h
}

func (v *VariantSpec) validateHybrid(f string) error {
	if v.Embedder != "" || v.RunFile != "" || v.Chunking != nil || v.Distance != "" || v.VectorType != "" || v.Quantization != "" ||
		v.Index != nil || v.Search != (SearchSpec{}) || v.Lexical != nil {
		return invalid(f, "a %s variant takes only name, hybrid and sweep (rrf_k or alpha): it fuses the rankings of two other variants", VariantHybrid)
	}
	h := v.Hybrid
	if h == nil {
		return invalid(f+".hybrid", "is required with type %s: name the dense and lexical variants to fuse", VariantHybrid)
	}
	if h.Dense == "" || h.Lexical == "" {
		return invalid(f+".hybrid", "name both variants to fuse: dense and lexical")
	}
	switch h.Fusion {
	case "", FusionRRF:
		if h.Alpha != nil {
			return invalid(f+".hybrid.alpha", "is weighted fusion's; rrf takes k")
		}
		if h.K < 0 {
			return invalid(f+".hybrid.k", "must be positive (default 60)")
		}
	case FusionWeighted:
		if h.K != 0 {
			return invalid(f+".hybrid.k", "is rrf's; weighted fusion takes alpha")
		}
		if a := h.Alpha; a != nil && !(*a >= 0 && *a <= 1) {
			return invalid(f+".hybrid.alpha", "must be in [0, 1]")
		}
	default:
		return invalid(f+".hybrid.fusion", "must be %s or %s, not %q", FusionRRF, FusionWeighted, h.Fusion)
	}
	if s := v.Sweep; s != nil {
		if len(s.EfSearch) > 0 || len(s.Probes) > 0 || len(s.M) > 0 || len(s.Lists) > 0 || len(s.Rerank) > 0 {
			return invalid(f+".sweep", "a %s variant sweeps only rrf_k or alpha; sweep the fused variants' own parameters on them", VariantHybrid)
		}
		rrf := h.Fusion == "" || h.Fusion == FusionRRF
		if rrf && len(s.Alpha) > 0 {
			return invalid(f+".sweep.alpha", "needs hybrid.fusion %s", FusionWeighted)
		}
		if !rrf && len(s.RRFK) > 0 {
			return invalid(f+".sweep.rrf_k", "needs hybrid.fusion %s", FusionRRF)
		}
		for j, k := range s.RRFK {
			if k < 1 {
				return invalid(fmt.Sprintf("%s.sweep.rrf_k[%d]", f, j), "must be positive")
			}
		}
		for j, a := range s.Alpha {
			if !(a >= 0 && a <= 1) {
				return invalid(fmt.Sprintf("%s.sweep.alpha[%d]", f, j), "must be in [0, 1]")
			}
		}
	}
	return nil
}

// validateParts checks, with types the type of every concrete variant of
// the spec by name, that h names a dense and a lexical variant (so
// neither is a hybrid: fusions do not nest, and cannot cycle).
func (h *HybridSpec) validateParts(f string, types map[string]string) error {
	for _, p := range []struct{ field, name, want, what string }{
		{"dense", h.Dense, "", "dense (no type)"},
		{"lexical", h.Lexical, VariantLexical, VariantLexical},
	} {
		typ, ok := types[p.name]
		if !ok {
			return invalid(f+"."+p.field, "no variant %q in the experiment (a swept variant is named by its points, such as %q)", p.name, p.name+"-ef40")
		}
		if typ != p.want {
			t := typ
			if t == "" {
				t = "dense"
			}
			return invalid(f+"."+p.field, "variant %q is %s; want a %s variant", p.name, t, p.what)
		}
	}
	return nil
}

// expandHybrid is Expand for a hybrid variant with a sweep: one point per
// rrf_k or alpha, named "<name>-k60" or "<name>-alpha0.3".
func (v VariantSpec) expandHybrid() []VariantSpec {
	var out []VariantSpec
	point := func(suffix string, set func(h *HybridSpec)) {
		x := v
		x.Sweep = nil
		h := *v.Hybrid
		set(&h)
		x.Hybrid = &h
		x.Name = v.Name + suffix
		out = append(out, x)
	}
	for _, k := range v.Sweep.RRFK {
		point("-k"+strconv.Itoa(k), func(h *HybridSpec) { h.K = k })
	}
	for _, a := range v.Sweep.Alpha {
		point("-alpha"+strconv.FormatFloat(a, 'f', -1, 64), func(h *HybridSpec) { h.Alpha = &a })
	}
	if len(out) == 0 {
		x := v
		x.Sweep = nil
		out = append(out, x)
	}
	return out
}

// Fuse fuses a dense and a lexical ranking of one query (hits best first,
// Distance ascending) by h, and returns the first k of the fused ranking:
// score descending, ties by document id; a hit's Distance is its negated
// fused score. The same inputs give the same output, bit for bit.
func Fuse(h HybridSpec, dense, lexical []RankedDoc, k int) []RankedDoc {
	h = h.withDefaults()
	scores := map[string]float64{}
	add := func(hits []RankedDoc, w float64) {
		switch h.Fusion {
		case FusionWeighted:
			if len(hits) == 0 {
				return
			}
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, d := range hits {
				lo, hi = min(lo, -d.Distance), max(hi, -d.Distance)
			}
			for _, d := range hits {
				norm := 1.0
				if hi > lo {
					norm = (-d.Distance - lo) / (hi - lo)
				}
				scores[d.Doc] += w * norm
			}
		default:
			for i, d := range hits {
				scores[d.Doc] += 1 / float64(h.K+i+1)
			}
		}
	}
	wd, wl := 1.0, 1.0
	if h.Fusion == FusionWeighted {
		wd, wl = *h.Alpha, 1-*h.Alpha
	}
	add(dense, wd)
	add(lexical, wl)
	out := make([]RankedDoc, 0, len(scores))
	for d, s := range scores {
		out = append(out, RankedDoc{Doc: d, Distance: -s})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Distance != out[j].Distance {
			return out[i].Distance < out[j].Distance
		}
		return out[i].Doc < out[j].Doc
	})
	if len(out) > k {
		out = out[:k]
	}
	return out
}

// runHybrid evaluates hybrid variant v of run: the recorded rankings of
// the variants it fuses (which must have succeeded) fused query by
// query, recorded and scored as any variant's.
func (s *Service) runHybrid(ctx context.Context, run *Run, v VariantSpec, ds *evals.Dataset) VariantRun {
	vr := VariantRun{Name: v.Name, Spec: v, Status: StatusRunning}
	fail := func(err error) VariantRun {
		vr.Status, vr.Error, vr.Phase = statusOf(ctx, StatusFailed), "eval: "+err.Error(), "eval"
		return vr
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	t := time.Now()
	rec, err := s.getRunRecord(run.ID)
	if err != nil {
		return fail(err)
	}
	h := v.Hybrid.withDefaults()
	vr.Provenance = &VariantProvenance{ModelID: "fusion:" + h.Fusion, Settings: map[string]string{
		settingFusion: h.Fusion, settingHybridDense: h.Dense, settingHybridLexical: h.Lexical}}
	if h.Fusion == FusionRRF {
		vr.Provenance.Settings["rrf_k"] = strconv.Itoa(h.K)
	} else {
		vr.Provenance.Settings["alpha"] = strconv.FormatFloat(*h.Alpha, 'g', -1, 64)
	}
	parts := [2]map[string]QueryRanking{}
	for i, name := range []string{h.Dense, h.Lexical} {
		var part *VariantRun
		for j := range rec.Variants {
			if rec.Variants[j].Name == name {
				part = &rec.Variants[j]
			}
		}
		if part == nil {
			return fail(fmt.Errorf("no variant %q in run %s", name, run.ID))
		}
		if part.Status != StatusSucceeded {
			return fail(fmt.Errorf("variant %s is %s (%s): nothing to fuse", name, part.Status, part.Error))
		}
		rs, err := s.loadResults(run.ID, name)
		if err != nil {
			return fail(err)
		}
		parts[i] = make(map[string]QueryRanking, len(rs))
		for _, q := range rs {
			parts[i][q.Query] = q
		}
	}
	queries := make([]string, 0, len(ds.Queries))
	for _, q := range ds.Queries {
		queries = append(queries, q.ID)
	}
	sort.Strings(queries)
	results := s.newResultWriter(run.ID, v.Name)
	rankings := make(map[string][]string, len(queries))
	timed := make(map[string]int64, len(queries))
	durs := make([]time.Duration, 0, len(queries))
	var wall time.Duration
	for _, q := range queries {
		d, l := parts[0][q], parts[1][q]
		qr := QueryRanking{Query: q, Hits: Fuse(h, d.Hits, l.Hits, run.Spec.K), LatencyUS: d.LatencyUS + l.LatencyUS}
		ids := make([]string, len(qr.Hits))
		for i, hit := range qr.Hits {
			ids[i] = hit.Doc
		}
		rankings[q], timed[q] = ids, qr.LatencyUS
		lat := time.Duration(qr.LatencyUS) * time.Microsecond
		durs, wall = append(durs, lat), wall+lat
		if err := results.add(qr); err != nil {
			return fail(err)
		}
	}
	if err := results.flush(); err != nil {
		return fail(err)
	}
	if len(durs) > 0 {
		if vr.Latency, err = evals.SummarizeLatency(durs, max(wall, time.Nanosecond), 1); err != nil {
			return fail(err)
		}
	}
	if err := s.recordMeasures(run, v.Name, ds, rankings, timed, &vr); err != nil {
		return fail(err)
	}
	vr.Timings.Eval = ms(time.Since(t))
	vr.Status, vr.Phase = StatusSucceeded, ""
	return vr
}
