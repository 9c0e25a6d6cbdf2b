package evals

import (
	"errors"
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
