package evals

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

// The readers take untrusted files: whatever the bytes, they return data
// or an error that classifies the problem, and never panic.

func classified(err error) bool {
	return errors.Is(err, ErrFormat) || errors.Is(err, ErrDuplicate)
}

func FuzzReadRun(f *testing.F) {
	f.Add(goldenRun)
	f.Add("1 Q0 a 1 1e309 x\n")
	f.Add("# c\n\n1 Q0 a 1 -0 x y z\n")
	f.Fuzz(func(t *testing.T, in string) {
		run, err := ReadRun(strings.NewReader(in), "fuzz")
		if err != nil {
			if !classified(err) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		for _, docs := range run.Results {
			if len(docs) == 0 {
				t.Fatal("empty ranking")
			}
		}
	})
}

func FuzzReadQrels(f *testing.F) {
	f.Add(goldenQrels)
	f.Add("query-id\tcorpus-id\tscore\n1\t2\t3\n")
	f.Add("1 2 3\n4 5 6 7\n")
	f.Fuzz(func(t *testing.T, in string) {
		q, err := ReadQrels(strings.NewReader(in), "fuzz")
		if err != nil {
			if !classified(err) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if q.NumJudgments() == 0 {
			t.Fatal("no judgments without error")
		}
	})
}

func FuzzReadCorpus(f *testing.F) {
	f.Add(`{"_id":"d1","title":"t","text":"x"}` + "\n")
	f.Add(`{"_id":"d1","text":"x"} {"_id":"d2"}` + "\n")
	f.Add("null\n")
	f.Fuzz(func(t *testing.T, in string) {
		docs, err := ReadCorpus(strings.NewReader(in), "fuzz")
		if err != nil {
			if !classified(err) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		for _, d := range docs {
			if d.ID == "" {
				t.Fatal("empty id accepted")
			}
		}
	})
}

// FuzzEvaluateTrecEvalOptions: any run evaluated against the golden qrels
// with every measure under any -l, -M, -J and -c gives finite values in
// [0, 1] for the averaged measures (trec_eval's iprec_at_recall would give
// nan for an empty -J ranking; Evaluate gives 0).
func FuzzEvaluateTrecEvalOptions(f *testing.F) {
	f.Add(goldenRun, 1, 0, false, false)
	f.Add("q1 Q0 zz 1 1 x\nq2 Q0 zz 1 1 x\n", 2, 1, true, true)
	f.Add("q1 Q0 d1 1 1 x\nq1 Q0 d7 1 1 x\n", 3, 1, true, false)
	qrels, err := ReadQrels(strings.NewReader(goldenQrels), "golden.qrels")
	if err != nil {
		f.Fatal(err)
	}
	var specs []string
	for _, fam := range MeasureFamilies() {
		specs = append(specs, fam[0])
	}
	ms, err := ParseMeasures(specs...)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string, level, maxDocs int, judged, complete bool) {
		run, err := ReadRun(strings.NewReader(in), "fuzz")
		if err != nil || level < 1 || level > 5 || maxDocs < 0 || maxDocs > 100 {
			return
		}
		res, err := Evaluate(qrels, run, ms, Options{RelevanceLevel: level, MaxResults: maxDocs, JudgedOnly: judged, Complete: complete})
		if err != nil {
			if !errors.Is(err, ErrNoQueries) {
				t.Fatalf("evaluate: %v", err)
			}
			return
		}
		for i, m := range res.Measures {
			vals := []float64{res.All[i]}
			for _, q := range res.Queries {
				vals = append(vals, res.PerQuery[q][i])
			}
			for _, v := range vals {
				if v != v || (!m.IsCount() && (v < 0 || v > 1)) {
					t.Fatalf("%s = %v", m, v)
				}
			}
		}
	})
}

// FuzzFlatRecord: a line jsonRecord's fast path decodes is one that
// encoding/json decodes to the same fields.
func FuzzFlatRecord(f *testing.F) {
	f.Add(`{"_id":"d1","title":"t","text":"x"}`)
	f.Add(` { "_id" : "d1" , "text" : "a \"quoted\" \u00e9 \ud83d\ude00 word\\" , "x":"y","text":"z"} `)
	f.Add(`{"_id":"d1","text":"x","n":1}`)
	f.Add(`{"_id":"d1","text":"x"}}`)
	f.Add("{\"_id\":\"d1\",\"text\":\"\xff\"}")
	f.Add(`{"_id":"d1","te\u0078t":"x"}`)
	f.Fuzz(func(t *testing.T, line string) {
		req, opt := []string{"_id", "text"}, []string{"title"}
		fast, ok := flatRecord(line, req, opt)
		if !ok {
			return
		}
		slow, err := decodeRecord("fuzz", 1, line, req, opt)
		if idErr := checkID("fuzz", 1, fast); (err == nil) != (idErr == nil) {
			t.Fatalf("%q: fast path %v (%v), encoding/json: %v", line, fast, idErr, err)
		}
		if err == nil && !maps.Equal(fast, slow) {
			t.Fatalf("%q: fast path %v, encoding/json %v", line, fast, slow)
		}
	})
}
