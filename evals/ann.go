package evals

import (
	"fmt"
	"maps"
	"slices"
)

// ANNRecall is the recall of an approximate top-k against the exact top-k
// on the same embeddings: |approx[:k] ∩ exact[:k]| / |exact[:k]|. Ids
// repeated in approx count once. If exact is empty there is nothing to
// miss and the recall is 1. k < 1 is ErrInvalidArgument.
func ANNRecall(exact, approx []string, k int) (float64, error) {
	if k < 1 {
		return 0, fmt.Errorf("ann recall: k = %d: %w", k, ErrInvalidArgument)
	}
	if len(exact) > k {
		exact = exact[:k]
	}
	if len(approx) > k {
		approx = approx[:k]
	}
	if len(exact) == 0 {
		return 1, nil
	}
	want := make(map[string]bool, len(exact))
	for _, id := range exact {
		want[id] = true
	}
	hit := 0
	for _, id := range approx {
		if want[id] {
			hit++
			delete(want, id)
		}
	}
	return float64(hit) / float64(len(exact)), nil
}

// MeanANNRecall averages ANNRecall over queries: exact and approx map query
// id to ranked ids. Every query of exact must be in approx (a query the
// index answered with nothing should map to an empty list), else
// ErrMismatch. It returns the mean and the per-query recalls.
func MeanANNRecall(exact, approx map[string][]string, k int) (float64, map[string]float64, error) {
	if len(exact) == 0 {
		return 0, nil, fmt.Errorf("ann recall: no queries: %w", ErrInvalidArgument)
	}
	per := make(map[string]float64, len(exact))
	var sum float64
	// Summed in query order, so that the same rankings give the same
	// mean to the last bit.
	for _, q := range slices.Sorted(maps.Keys(exact)) {
		ex := exact[q]
		ap, ok := approx[q]
		if !ok {
			return 0, nil, fmt.Errorf("ann recall: query %q has no approximate results: %w", q, ErrMismatch)
		}
		r, err := ANNRecall(ex, ap, k)
		if err != nil {
			return 0, nil, err
		}
		per[q] = r
		sum += r
	}
	return sum / float64(len(exact)), per, nil
}
