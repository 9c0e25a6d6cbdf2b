package main

import (
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments"
)

// planRun is a run with an exact variant and an HNSW point measured on
// its index with sequential scans forced off.
func planRun() *experiments.Run {
	lat := evals.LatencyStats{Count: 450, Clients: 1, P50: 300 * time.Microsecond, P95: 900 * time.Microsecond, P99: 2 * time.Millisecond, QPS: 950}
	tr := &experiments.TimingReport{Cache: "warm", Warmup: 1, Repeats: 2, P50Spread: 20 * time.Microsecond,
		Concurrent: evals.LatencyStats{Clients: 4, QPS: 3100.5, P99: 3 * time.Millisecond}}
	return &experiments.Run{ID: "r1", Experiment: "ab", Project: "p", Status: experiments.StatusSucceeded, Variants: []experiments.VariantRun{
		{Name: "exact", Status: experiments.StatusSucceeded, Latency: lat, Timing: tr,
			Plan: &experiments.PlanSummary{Nodes: []string{"Limit", "Sort", "Seq Scan"}, Rows: 100}},
		{Name: "hnsw-ef200", Status: experiments.StatusSucceeded, Latency: lat, Timing: tr,
			Plan: &experiments.PlanSummary{Nodes: []string{"Limit", "Index Scan"}, Index: "chunks_hnsw", UsesIndex: true, Forced: true,
				PlannerNodes: []string{"Limit", "Sort", "Seq Scan"}, EfSearch: 200, IterativeScan: "off", Rows: 100}},
	}}
}

func TestPrintRunPlans(t *testing.T) {
	var b strings.Builder
	if err := printRun(&b, planRun()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"exact       no index        Limit > Sort > Seq Scan limit=100",
		"hnsw-ef200  index (forced)  Limit > Index Scan on chunks_hnsw (forced; planner: Limit > Sort > Seq Scan) ef_search=200 iterative=off limit=100",
		"CACHE", "QPS@N", "300µs ±20µs", "3100.5",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("run show lacks %q:\n%s", want, out)
		}
	}
}
