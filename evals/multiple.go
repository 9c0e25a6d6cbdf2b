package evals

import (
	"fmt"
	"math"
	"sort"
)

// Multiple comparisons: a sweep or a multi-measure comparison tests one
// hypothesis per measure or variant, so some raw p-values fall below alpha
// by chance alone. HolmAdjust controls the family-wise error rate,
// BHAdjust the false discovery rate; both return p-values to compare with
// alpha directly, in the order given.

// HolmAdjust returns the Holm–Bonferroni adjusted p-values of ps, in the
// order of ps: with p_(1) <= ... <= p_(m), adj_(i) = max over j <= i of
// min(1, (m-j+1) p_(j)). Rejecting every hypothesis whose adjusted p is
// below alpha controls the family-wise error rate at alpha under any
// dependence. Equal p-values get equal adjusted values; adjusted values
// never decrease with the raw ones. Each p must lie in [0, 1]
// (ErrInvalidArgument). Matches R's p.adjust(p, "holm").
func HolmAdjust(ps []float64) ([]float64, error) {
	order, err := pOrder(ps)
	if err != nil {
		return nil, fmt.Errorf("holm: %w", err)
	}
	m := len(ps)
	out := make([]float64, m)
	running := 0.0
	for rank, i := range order {
		running = math.Max(running, math.Min(1, float64(m-rank)*ps[i]))
		out[i] = running
	}
	return out, nil
}

// BHAdjust returns the Benjamini–Hochberg adjusted p-values (q-values) of
// ps, in the order of ps: with p_(1) <= ... <= p_(m), adj_(i) = min over
// j >= i of min(1, m/j p_(j)). Rejecting every hypothesis whose adjusted
// p is below alpha controls the false discovery rate at alpha for
// independent or positively dependent tests. Equal p-values get equal
// adjusted values; adjusted values never decrease with the raw ones. Each
// p must lie in [0, 1] (ErrInvalidArgument). Matches R's
// p.adjust(p, "BH").
func BHAdjust(ps []float64) ([]float64, error) {
	order, err := pOrder(ps)
	if err != nil {
		return nil, fmt.Errorf("benjamini-hochberg: %w", err)
	}
	m := len(ps)
	out := make([]float64, m)
	running := 1.0
	for rank := m - 1; rank >= 0; rank-- {
		i := order[rank]
		running = math.Min(running, math.Min(1, float64(m)/float64(rank+1)*ps[i]))
		out[i] = running
	}
	return out, nil
}

// pOrder checks ps and returns its indexes by p ascending (stable).
func pOrder(ps []float64) ([]int, error) {
	order := make([]int, len(ps))
	for i, p := range ps {
		if !(p >= 0 && p <= 1) {
			return nil, fmt.Errorf("p-value %d is %v, not in [0, 1]: %w", i, p, ErrInvalidArgument)
		}
		order[i] = i
	}
	sort.SliceStable(order, func(x, y int) bool { return ps[order[x]] < ps[order[y]] })
	return order, nil
}

// Adjustment names a multiple-comparison correction.
type Adjustment string

// The corrections Adjust knows. The zero value means AdjustHolm.
const (
	AdjustHolm Adjustment = "holm"
	AdjustBH   Adjustment = "bh"
	AdjustNone Adjustment = "none"
)

// Adjust applies the correction a to ps ("" is AdjustHolm; AdjustNone
// returns a copy). An unknown name is ErrInvalidArgument.
func Adjust(a Adjustment, ps []float64) ([]float64, error) {
	switch a {
	case "", AdjustHolm:
		return HolmAdjust(ps)
	case AdjustBH:
		return BHAdjust(ps)
	case AdjustNone:
		if _, err := pOrder(ps); err != nil {
			return nil, err
		}
		return append([]float64{}, ps...), nil
	}
	return nil, fmt.Errorf("correction %q (want holm, bh or none): %w", a, ErrInvalidArgument)
}

// PairedEffectSize is the standardized mean difference of paired samples
// (Cohen's d_z): mean(b - a) divided by the sample standard deviation
// (n - 1) of the per-pair differences. Its sign is that of the mean
// difference; by Cohen's rule of thumb |d| of 0.2, 0.5 and 0.8 are small,
// medium and large. ok is false when it is undefined: fewer than two
// pairs, or differences that are all equal and not all zero (zero
// spread); all-zero differences give 0. Lengths must match (ErrMismatch)
// and values be finite (ErrInvalidArgument).
func PairedEffectSize(a, b []float64) (d float64, ok bool, err error) {
	diffs, err := pairedDiffs(a, b)
	if err != nil {
		return 0, false, fmt.Errorf("effect size: %w", err)
	}
	if len(diffs) < 2 {
		return 0, false, nil
	}
	mu := mean(diffs)
	var ss float64
	for _, x := range diffs {
		ss += (x - mu) * (x - mu)
	}
	sd := math.Sqrt(ss / float64(len(diffs)-1))
	if sd <= tieEpsilon {
		if math.Abs(mu) <= tieEpsilon {
			return 0, true, nil
		}
		return 0, false, nil
	}
	return mu / sd, true, nil
}
