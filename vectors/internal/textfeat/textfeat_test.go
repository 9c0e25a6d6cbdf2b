package textfeat

import (
	"math"
	"reflect"
	"testing"
)

func TestWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"The wings of the aircraft.", []string{"wing", "aircraft"}},
		{"Studies: flies, glasses, status; x y", []string{"study", "fly", "glasse", "status"}},
		{"Mach-2 flow at 3.5 deg", []string{"mach", "flow", "deg"}},
		{"", nil},
	} {
		if got := Words(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Words(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCharNGrams(t *testing.T) {
	got := CharNGrams("Wing", 3, 4)
	want := []string{"<wi", "win", "ing", "ng>", "<win", "wing", "ing>"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
	if got := CharNGrams("ab", 5, 5); !reflect.DeepEqual(got, []string{"<ab>"}) {
		t.Fatalf("short word: %q", got)
	}
}

func TestLogMatchesMath(t *testing.T) {
	for _, x := range []float64{1, 2, math.E, 0.5, 1e-9, 3, 7.25, 1400, 1401.0 / 2, 1e12} {
		got, want := Log(x), math.Log(x)
		if math.Abs(got-want) > 1e-14*math.Max(1, math.Abs(want)) {
			t.Errorf("Log(%v) = %v, want %v", x, got, want)
		}
	}
	if Log(1) != 0 {
		t.Errorf("Log(1) = %v", Log(1))
	}
	if Log(0) != 0 || Log(-1) != 0 {
		t.Error("Log of non-positive must be 0")
	}
}

func TestHashStable(t *testing.T) {
	// Golden values: changing them changes every offline model.
	if got := Hash64(0, "wing"); got != 17511016147904346493 {
		t.Errorf("Hash64(0, wing) = %d", got)
	}
	if got := Hash64(7, "slipstream"); got != 16166966170529294728 {
		t.Errorf("Hash64(7, slipstream) = %d", got)
	}
	if Hash64(0, "wing") == Hash64(1, "wing") {
		t.Error("seed ignored")
	}
}
