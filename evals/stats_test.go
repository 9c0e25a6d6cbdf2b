package evals

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestRandomizationIdenticalRuns(t *testing.T) {
	for _, n := range []int{5, 50, 225} {
		a := make([]float64, n)
		for i := range a {
			a[i] = float64(i%7) / 7
		}
		p, err := RandomizationTest(a, a, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if p != 1 {
			t.Fatalf("n=%d identical runs: p = %v, want 1", n, p)
		}
	}
}

func TestRandomizationConstantShift(t *testing.T) {
	const seed = 7
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	a := make([]float64, 50)
	b := make([]float64, 50)
	for i := range a {
		a[i] = rng.Float64() * 0.5
		b[i] = a[i] + 0.3
	}
	p, err := RandomizationTest(a, b, 20000, seed)
	if err != nil {
		t.Fatal(err)
	}
	// Only the observed and the all-flipped assignment reach |mean| 0.3:
	// p = (hits+1)/(N+1) with hits ≈ N/2^49 ≈ 0.
	if p >= 0.001 {
		t.Fatalf("constant shift: p = %v, want < 0.001", p)
	}
	// Direction does not matter (two-sided).
	p2, _ := RandomizationTest(b, a, 20000, seed)
	if p2 != p {
		t.Fatalf("two-sided test not symmetric: %v vs %v", p, p2)
	}
}

// TestRandomizationExactSmall: with 5 pairs all 2^5 = 32 sign assignments
// are enumerated (32 <= 10,000). The differences are (1, 1, 1, 1, -1), so
// each assignment yields five terms of ±1 and |sum| >= 3 (the observed
// |1+1+1+1-1|) exactly when at most one term disagrees with the rest:
// 2 (all agree) + 2*5 (one disagrees) = 12 assignments, p = 12/32 = 0.375.
func TestRandomizationExactSmall(t *testing.T) {
	a := []float64{0, 0, 0, 0, 1}
	b := []float64{1, 1, 1, 1, 0}
	p, err := RandomizationTest(a, b, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p != 12.0/32 {
		t.Fatalf("p = %v, want 0.375", p)
	}
}

func TestRandomizationNullIsUniformish(t *testing.T) {
	// Under the null (a and b drawn alike) p-values are roughly uniform:
	// out of 40 independent trials, expect about 2 below 0.05 and many
	// above 0.5. A test that always says "significant" fails here.
	const seed = 11
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	low, high := 0, 0
	for trial := range 40 {
		a := make([]float64, 30)
		b := make([]float64, 30)
		for i := range a {
			a[i], b[i] = rng.Float64(), rng.Float64()
		}
		p, err := RandomizationTest(a, b, 10000, uint64(trial))
		if err != nil {
			t.Fatal(err)
		}
		if p < 0.05 {
			low++
		}
		if p > 0.5 {
			high++
		}
	}
	if low > 8 || high < 10 {
		t.Fatalf("under the null: %d of 40 p<0.05, %d p>0.5", low, high)
	}
}

func TestRandomizationDeterministicAndValidates(t *testing.T) {
	a := []float64{0.1, 0.5, 0.3, 0.9, 0.2, 0.4, 0.6, 0.8, 0.7, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55}
	b := []float64{0.2, 0.4, 0.5, 0.9, 0.1, 0.6, 0.6, 0.9, 0.6, 0.25, 0.15, 0.35, 0.45, 0.3, 0.75}
	p1, _ := RandomizationTest(a, b, 10000, 3)
	p2, _ := RandomizationTest(a, b, 10000, 3)
	if p1 != p2 || p1 <= 0 || p1 > 1 {
		t.Fatalf("p = %v then %v", p1, p2)
	}
	if _, err := RandomizationTest(a, b, 999, 3); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("999 permutations: err = %v", err)
	}
	if _, err := RandomizationTest(a, b[:3], 0, 3); !errors.Is(err, ErrMismatch) {
		t.Fatalf("unpaired: err = %v", err)
	}
	if _, err := RandomizationTest(nil, nil, 0, 3); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty: err = %v", err)
	}
}

func TestBootstrapCI(t *testing.T) {
	const seed = 5
	t.Logf("seed %d", seed)
	// Constant shift: every resample has mean exactly 0.2.
	a := []float64{0.1, 0.4, 0.3, 0.7}
	b := []float64{0.3, 0.6, 0.5, 0.9}
	lo, hi, err := BootstrapCI(a, b, 0, 0, seed)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(lo-0.2) > 1e-12 || math.Abs(hi-0.2) > 1e-12 {
		t.Fatalf("constant shift CI = [%v, %v], want [0.2, 0.2]", lo, hi)
	}
	// Noisy shift: the 95% CI contains the true shift, and is narrower at
	// 80% confidence.
	rng := rand.New(rand.NewPCG(seed, 2))
	a = make([]float64, 200)
	b = make([]float64, 200)
	for i := range a {
		a[i] = rng.Float64()
		b[i] = a[i] + 0.1 + rng.NormFloat64()*0.1
	}
	lo, hi, err = BootstrapCI(a, b, 10000, 0.95, seed)
	if err != nil {
		t.Fatal(err)
	}
	if !(lo < 0.1 && 0.1 < hi) || hi-lo > 0.06 {
		t.Fatalf("CI = [%.4f, %.4f], want it to contain 0.1 and be narrow", lo, hi)
	}
	lo80, hi80, _ := BootstrapCI(a, b, 10000, 0.80, seed)
	if !(lo80 > lo && hi80 < hi) {
		t.Fatalf("80%% CI [%.4f, %.4f] not inside 95%% CI [%.4f, %.4f]", lo80, hi80, lo, hi)
	}
	lo2, hi2, _ := BootstrapCI(a, b, 10000, 0.95, seed)
	if lo2 != lo || hi2 != hi {
		t.Fatal("same seed gave a different interval")
	}
	if _, _, err := BootstrapCI(a, b, 10, 0.95, seed); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("10 resamples: err = %v", err)
	}
	if _, _, err := BootstrapCI(a, b, 0, 1.5, seed); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("confidence 1.5: err = %v", err)
	}
}

func TestWinTieLoss(t *testing.T) {
	w, ti, l, err := WinTieLoss([]float64{0.1, 0.5, 0.3, 1.0 / 3}, []float64{0.2, 0.4, 0.3, 1 - 2.0/3})
	if err != nil {
		t.Fatal(err)
	}
	if w != 1 || ti != 2 || l != 1 {
		t.Fatalf("W/T/L = %d/%d/%d, want 1/2/1", w, ti, l)
	}
}
