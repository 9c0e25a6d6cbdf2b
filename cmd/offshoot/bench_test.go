package main

import (
	"strings"
	"testing"
)

func TestParseBench(t *testing.T) {
	in := `goos: linux
BenchmarkFork/1GiB-2         	       1	  1234 ns/op	   0.52 offshoot_ms	  0.50 baseline_ms	 1.04 ratio
BenchmarkNoRatio-2           	     100	  99 ns/op
BenchmarkCopy   1   5 ns/op   80000 offshoot_vectors/s   9000 baseline_vectors/s   8.9 ratio
PASS
`
	rows, err := parseBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2: %+v", len(rows), rows)
	}
	if r := rows[0]; r.name != "Fork/1GiB" || r.offshoot != 0.52 || r.baseline != 0.5 || r.ratio != 1.04 || r.unit != "ms" {
		t.Errorf("row 0 = %+v", r)
	}
	if r := rows[1]; r.name != "Copy" || r.unit != "vectors/s" || r.ratio != 8.9 {
		t.Errorf("row 1 = %+v", r)
	}
	if _, err := parseBench(strings.NewReader("BenchmarkX-2 1 abc ns/op\n")); err == nil {
		t.Error("malformed metric accepted")
	}
}

func TestBenchGoal(t *testing.T) {
	if g := (benchGoal{bound: 1.2, max: true}); !g.met(1.1) || g.met(1.3) || g.String() != "≤ 1.2" {
		t.Errorf("max goal wrong: %v", g)
	}
	if g := (benchGoal{bound: 5}); !g.met(6) || g.met(4) || g.String() != "≥ 5" {
		t.Errorf("min goal wrong: %v", g)
	}
}
