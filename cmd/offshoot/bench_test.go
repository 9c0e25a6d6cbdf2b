package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestBenchReportRows(t *testing.T) {
	in := `goos: linux
BenchmarkDepth20vs1Read-2    1   5 ns/op   900 ns/read-depth1   1500 ns/read-depth20   1.667 depth20/depth1
BenchmarkNoRatio-2           	     100	  99 ns/op
BenchmarkRewriteOnePercent-2   1   7 ns/op   2.5 child-%-of-parent
BenchmarkCustom   1   5 ns/op   80000 offshoot_vectors/s   9000 baseline_vectors/s   8.9 ratio
    BenchmarkCustom: a log line
PASS
`
	results, err := parseBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	rows := benchRows(results)
	if len(rows) != 3 {
		t.Fatalf("got %d rows, want 3: %+v", len(rows), rows)
	}
	if r := rows[0]; !strings.Contains(r.name, "depth 20 vs depth 1") || r.offshoot != 1500 || r.baseline != 900 || r.ratio != 1.667 || r.goal == nil || !r.goal.met(r.ratio) {
		t.Errorf("depth row = %+v", r)
	}
	if r := rows[1]; r.baseline != 100 || r.ratio != 0.025 || !r.goal.met(r.ratio) {
		t.Errorf("rewrite row = %+v", r)
	}
	if r := rows[2]; r.name != "Custom" || r.unit != "vectors/s" || r.ratio != 8.9 || r.goal != nil {
		t.Errorf("convention row = %+v", r)
	}
	var b bytes.Buffer
	writeBenchTable(&b, rows)
	if !strings.Contains(b.String(), "| 1.667 | ≤ 2 | yes |") {
		t.Errorf("table:\n%s", b.String())
	}
	if _, err := parseBench(strings.NewReader("BenchmarkX-2 1 abc ns/op\n")); err == nil {
		t.Error("malformed metric accepted")
	}
}

func TestBenchGoal(t *testing.T) {
	if g := atMost(1.2); !g.met(1.1) || g.met(1.3) || g.String() != "≤ 1.2" {
		t.Errorf("max goal wrong: %v", g)
	}
	if g := atLeast(5); !g.met(6) || g.met(4) || g.String() != "≥ 5" {
		t.Errorf("min goal wrong: %v", g)
	}
}
