package evals

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// MinPermutations is the least number of random sign flips
// RandomizationTest accepts, and its default.
const MinPermutations = 10000

// DefaultResamples is BootstrapCI's default number of resamples.
const DefaultResamples = 10000

// tieEpsilon is how close two per-query values must be to count as a tie.
// Measures computed the same way on the same ranking are exactly equal;
// the slack only absorbs summation-order noise.
const tieEpsilon = 1e-9

func pairedDiffs(a, b []float64) ([]float64, error) {
	if len(a) != len(b) {
		return nil, fmt.Errorf("paired samples of length %d and %d: %w", len(a), len(b), ErrMismatch)
	}
	if len(a) == 0 {
		return nil, fmt.Errorf("no paired samples: %w", ErrInvalidArgument)
	}
	d := make([]float64, len(a))
	for i := range a {
		if math.IsNaN(a[i]) || math.IsNaN(b[i]) || math.IsInf(a[i], 0) || math.IsInf(b[i], 0) {
			return nil, fmt.Errorf("sample %d is not finite: %w", i, ErrInvalidArgument)
		}
		d[i] = b[i] - a[i]
	}
	return d, nil
}

func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
}

// RandomizationTest is the paired two-sided randomization (permutation)
// test of Fisher as used in IR (Smucker, Allan & Carterette 2007): under
// the null hypothesis the two systems are exchangeable per query, so each
// paired difference d_i = b_i - a_i keeps or flips its sign with
// probability 1/2. The p-value is the share of sign assignments whose
// |mean difference| is at least the observed one.
//
// With n pairs and 2^n <= permutations, all 2^n assignments are enumerated
// and p is exact. Otherwise permutations random assignments are drawn from
// a PCG generator seeded with seed, and p = (hits+1)/(permutations+1),
// counting the observed assignment, so p is never 0. permutations 0 means
// MinPermutations; fewer than MinPermutations is ErrInvalidArgument. Equal
// inputs give p = 1. Deterministic in its arguments; safe for concurrent
// use.
func RandomizationTest(a, b []float64, permutations int, seed uint64) (float64, error) {
	if permutations == 0 {
		permutations = MinPermutations
	}
	if permutations < MinPermutations {
		return 0, fmt.Errorf("randomization test: %d permutations, want >= %d: %w", permutations, MinPermutations, ErrInvalidArgument)
	}
	d, err := pairedDiffs(a, b)
	if err != nil {
		return 0, fmt.Errorf("randomization test: %w", err)
	}
	var obs, scale float64
	for _, x := range d {
		obs += x
		scale += math.Abs(x)
	}
	obs = math.Abs(obs)
	// Sums are compared with a relative slack so that an assignment equal
	// to the observed one in exact arithmetic is not lost to rounding.
	thresh := obs - 1e-12*math.Max(1, scale)
	n := len(d)
	if n < 63 && uint64(1)<<n <= uint64(permutations) {
		hits := 0
		total := 1 << n
		for mask := 0; mask < total; mask++ {
			var s float64
			for i, x := range d {
				if mask&(1<<i) != 0 {
					s -= x
				} else {
					s += x
				}
			}
			if math.Abs(s) >= thresh {
				hits++
			}
		}
		return float64(hits) / float64(total), nil
	}
	rng := newRand(seed)
	hits := 0
	for p := 0; p < permutations; p++ {
		var s float64
		var bits uint64
		for i, x := range d {
			if i%64 == 0 {
				bits = rng.Uint64()
			}
			if bits&1 != 0 {
				s -= x
			} else {
				s += x
			}
			bits >>= 1
		}
		if math.Abs(s) >= thresh {
			hits++
		}
	}
	return float64(hits+1) / float64(permutations+1), nil
}

// BootstrapCI returns the percentile bootstrap confidence interval of the
// mean paired difference mean(b - a): resamples resamplings of the query
// pairs with replacement (0 means DefaultResamples), interval bounds at the
// (1-confidence)/2 and (1+confidence)/2 quantiles of the resampled means
// (linear interpolation between order statistics). confidence 0 means
// 0.95. Deterministic in its arguments (PCG seeded with seed).
func BootstrapCI(a, b []float64, resamples int, confidence float64, seed uint64) (lo, hi float64, err error) {
	if resamples == 0 {
		resamples = DefaultResamples
	}
	if confidence == 0 {
		confidence = 0.95
	}
	if resamples < 100 || !(confidence > 0 && confidence < 1) {
		return 0, 0, fmt.Errorf("bootstrap: %d resamples at confidence %v: %w", resamples, confidence, ErrInvalidArgument)
	}
	d, err := pairedDiffs(a, b)
	if err != nil {
		return 0, 0, fmt.Errorf("bootstrap: %w", err)
	}
	rng := newRand(seed)
	n := len(d)
	means := make([]float64, resamples)
	for r := range means {
		var s float64
		for range n {
			s += d[rng.IntN(n)]
		}
		means[r] = s / float64(n)
	}
	sort.Float64s(means)
	alpha := 1 - confidence
	return quantile(means, alpha/2), quantile(means, 1-alpha/2), nil
}

// quantile of sorted xs at p in [0,1], interpolating linearly between order
// statistics (Hyndman & Fan type 7, the default of R and numpy).
func quantile(xs []float64, p float64) float64 {
	h := float64(len(xs)-1) * p
	i := int(math.Floor(h))
	if i >= len(xs)-1 {
		return xs[len(xs)-1]
	}
	return xs[i] + (h-float64(i))*(xs[i+1]-xs[i])
}

// WinTieLoss counts, per paired query, whether b beat a (wins), equalled
// it within 1e-9 (ties), or fell short (losses).
func WinTieLoss(a, b []float64) (wins, ties, losses int, err error) {
	d, err := pairedDiffs(a, b)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("win/tie/loss: %w", err)
	}
	for _, x := range d {
		switch {
		case x > tieEpsilon:
			wins++
		case x < -tieEpsilon:
			losses++
		default:
			ties++
		}
	}
	return wins, ties, losses, nil
}

// mean returns the arithmetic mean of xs (0 for none).
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
