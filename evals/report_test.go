package evals

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestRunReport(t *testing.T) {
	q, r := goldenInputs(t)
	ms, _ := ParseMeasures("P.5", "ndcg_cut.5")
	res, err := Evaluate(q, r, ms, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep := NewRunReport(res)
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back RunReport
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Run != "golden" || back.Queries != 3 || len(back.PerQuery) != 3 || back.PerQuery[1].Query != "q2" ||
		back.All[0].Measure != "P_5" || !near(back.All[1].Value, 0.3696) || !near(back.PerQuery[0].Values[1], 0.6087) {
		t.Fatalf("JSON report round trip: %+v", back)
	}
	var txt bytes.Buffer
	if err := rep.WriteText(&txt, true); err != nil {
		t.Fatal(err)
	}
	want := `run golden, 3 queries
P_5         0.2667
ndcg_cut_5  0.3696

query  P_5     ndcg_cut_5
q1     0.6000  0.6087
q2     0.2000  0.5000
q5     0.0000  0.0000
`
	if txt.String() != want {
		t.Fatalf("text report:\n%s\nwant:\n%s", txt.String(), want)
	}
}

func TestCompareValidates(t *testing.T) {
	q, r := goldenInputs(t)
	p5, _ := ParseMeasures("P.5")
	p10, _ := ParseMeasures("P.10")
	counts, _ := ParseMeasures("num_ret")
	a, _ := Evaluate(q, r, p5, Options{})
	b, _ := Evaluate(q, r, p10, Options{})
	if _, err := Compare(a, b, CompareOptions{}); !errors.Is(err, ErrMismatch) {
		t.Fatalf("different measures: err = %v", err)
	}
	c, _ := Evaluate(q, r, counts, Options{})
	if _, err := Compare(c, c, CompareOptions{}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("only counts: err = %v", err)
	}
	if _, err := Compare(a, a, CompareOptions{Primary: "P_10"}); !errors.Is(err, ErrUnknownMeasure) {
		t.Fatalf("unknown primary: err = %v", err)
	}
	if _, err := Compare(a, a, CompareOptions{Alpha: 2}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("alpha 2: err = %v", err)
	}
	other := &Run{Name: "o", Results: map[string][]ScoredDoc{"q1": {{"d1", 1}}}}
	o, _ := Evaluate(q, other, p5, Options{})
	cmp, err := Compare(a, o, CompareOptions{})
	if err != nil || cmp.Queries != 1 || !strings.Contains(cmp.PerQuery[0].Query, "q1") {
		t.Fatalf("partial overlap: %v %+v", err, cmp)
	}
}
