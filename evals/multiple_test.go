package evals

import (
	"errors"
	"math"
	"testing"
)

func TestAdjustedPValues(t *testing.T) {
	for _, tc := range []struct {
		name     string
		p        []float64
		holm, bh []float64
	}{
		{"none", []float64{}, []float64{}, []float64{}},
		{"one", []float64{0.03}, []float64{0.03}, []float64{0.03}},
		// Sorted 0.005, 0.01, 0.03, 0.04. Holm: 4·0.005, 3·0.01,
		// 2·0.03, max(1·0.04, 0.06). BH from the top: 0.04,
		// min(4/3·0.03, 0.04), 2·0.01, min(4·0.005, 0.02).
		{"unsorted", []float64{0.01, 0.04, 0.03, 0.005}, []float64{0.03, 0.06, 0.06, 0.02}, []float64{0.02, 0.04, 0.04, 0.02}},
		// Monotonicity: BH's 3·0.01 and 1.5·0.02 exceed 0.025 above them.
		{"bh step-up", []float64{0.01, 0.02, 0.025}, []float64{0.03, 0.04, 0.04}, []float64{0.025, 0.025, 0.025}},
		// Ties keep equal adjusted values.
		{"ties", []float64{0.01, 0.5, 0.01}, []float64{0.03, 0.5, 0.03}, []float64{0.015, 0.5, 0.015}},
		// Capped at 1; Holm's max carries the cap down the order.
		{"cap", []float64{0.6, 0.5}, []float64{1, 1}, []float64{0.6, 0.6}},
		{"zero", []float64{0, 1}, []float64{0, 1}, []float64{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct {
				name string
				fn   func([]float64) ([]float64, error)
				want []float64
			}{{"holm", HolmAdjust, tc.holm}, {"bh", BHAdjust, tc.bh}} {
				got, err := c.fn(tc.p)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(c.want) {
					t.Fatalf("%s(%v) = %v, want %v", c.name, tc.p, got, c.want)
				}
				for i := range got {
					if math.Abs(got[i]-c.want[i]) > 1e-12 {
						t.Errorf("%s(%v) = %v, want %v", c.name, tc.p, got, c.want)
						break
					}
				}
			}
		})
	}
	for _, bad := range [][]float64{{-0.1}, {1.5}, {math.NaN()}} {
		if _, err := HolmAdjust(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("holm %v: %v", bad, err)
		}
		if _, err := BHAdjust(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("bh %v: %v", bad, err)
		}
	}
	if got, err := Adjust(AdjustNone, []float64{0.2, 0.01}); err != nil || got[0] != 0.2 || got[1] != 0.01 {
		t.Errorf("none: %v %v", got, err)
	}
	if _, err := Adjust("bonferroni", []float64{0.2}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown correction: %v", err)
	}
}

func TestPairedEffectSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a, b   []float64
		want   float64
		wantOK bool
	}{
		// Differences 0.1, 0.2, 0.3: mean 0.2, sd sqrt(0.02/2) = 0.1.
		{"d=2", []float64{0, 0, 0}, []float64{0.1, 0.2, 0.3}, 2, true},
		{"negative", []float64{0.1, 0.2, 0.3}, []float64{0, 0, 0}, -2, true},
		// Differences 1, -1: mean 0.
		{"balanced", []float64{0, 1}, []float64{1, 0}, 0, true},
		// Differences 0.5, 0.1, 0.3, 0.1: mean 0.25, sd sqrt(0.11/3).
		{"four", []float64{0, 0.4, 0.2, 0.5}, []float64{0.5, 0.5, 0.5, 0.6}, 0.25 / math.Sqrt(0.11/3), true},
		{"identical", []float64{0.3, 0.4}, []float64{0.3, 0.4}, 0, true},
		{"constant shift", []float64{0.3, 0.4}, []float64{0.4, 0.5}, 0, false},
		{"one pair", []float64{0.3}, []float64{0.5}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok, err := PairedEffectSize(tc.a, tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.wantOK || math.Abs(d-tc.want) > 1e-9 {
				t.Errorf("d = %v (ok %v), want %v (ok %v)", d, ok, tc.want, tc.wantOK)
			}
		})
	}
	if _, _, err := PairedEffectSize([]float64{1}, []float64{1, 2}); !errors.Is(err, ErrMismatch) {
		t.Errorf("mismatch: %v", err)
	}
}

// TestCompareAdjustsAcrossMeasures: Compare reports each measure's Holm
// and BH p over the family of measures it compared, and an effect size.
func TestCompareAdjustsAcrossMeasures(t *testing.T) {
	ms := []Measure{{Family: "P", Cutoff: 10}, {Family: "recip_rank"}, {Family: "num_ret"}}
	a := &Result{Run: "a", Measures: ms, PerQuery: map[string][]float64{}, All: make([]float64, 3)}
	b := &Result{Run: "b", Measures: ms, PerQuery: map[string][]float64{}, All: make([]float64, 3)}
	for q := range 8 {
		id := string(rune('a' + q))
		a.Queries, b.Queries = append(a.Queries, id), append(b.Queries, id)
		a.PerQuery[id] = []float64{0.2, 0.5, 10}
		// P_10 improves on every query; recip_rank moves both ways.
		b.PerQuery[id] = []float64{0.3 + 0.01*float64(q), 0.5 + 0.1*float64(q%2*2-1), 10}
	}
	c, err := Compare(a, b, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Measures) != 2 {
		t.Fatalf("measures %+v", c.Measures)
	}
	raw := []float64{c.Measures[0].P, c.Measures[1].P}
	holm, _ := HolmAdjust(raw)
	bh, _ := BHAdjust(raw)
	for i, m := range c.Measures {
		if m.PHolm != holm[i] || m.PBH != bh[i] || m.PHolm < m.P || m.PBH < m.P {
			t.Errorf("%s: p %v holm %v bh %v, want holm %v bh %v", m.Measure, m.P, m.PHolm, m.PBH, holm[i], bh[i])
		}
	}
	// Every P_10 delta is positive: exact p = 2/256, Holm doubles it.
	if m := c.Measures[0]; m.P != 2.0/256 || m.PHolm != 4.0/256 || m.EffectSize == nil || *m.EffectSize <= 0.8 {
		t.Errorf("P_10: p %v holm %v effect %v", m.P, m.PHolm, FormatEffect(m.EffectSize))
	}
	if m := c.Measures[1]; m.EffectSize == nil || *m.EffectSize != 0 {
		t.Errorf("recip_rank deltas average 0: effect %v", FormatEffect(m.EffectSize))
	}
}
