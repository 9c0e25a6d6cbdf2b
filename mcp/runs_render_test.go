package mcp

import (
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments"
)

func TestRenderRunPlan(t *testing.T) {
	r := &experiments.Run{ID: "r1", Experiment: "ab", Project: "p", Status: experiments.StatusSucceeded, Variants: []experiments.VariantRun{
		{Name: "hnsw-ef10", Status: experiments.StatusSucceeded, Metrics: map[string]float64{"recall_100": 0.9},
			Latency: evals.LatencyStats{P50: time.Millisecond, P95: 2 * time.Millisecond, P99: 3 * time.Millisecond, QPS: 900},
			Timing:  &experiments.TimingReport{Cache: "warm", Concurrent: evals.LatencyStats{Clients: 2, QPS: 1700}},
			Plan: &experiments.PlanSummary{Nodes: []string{"Limit", "Index Scan"}, Index: "ix", UsesIndex: true,
				EfSearch: 10, IterativeScan: "relaxed_order", Rows: 100}},
	}}
	s := summarize(r)
	if p := s.Variants[0].Plan; p == nil || !p.UsesIndex || s.Variants[0].Clients != 2 || s.Variants[0].QPSClients != 1700 {
		t.Errorf("summary %+v", s.Variants[0])
	}
	out := renderRun(s)
	for _, want := range []string{"p99=3.00ms qps=900.0 qps@2=1700.0 (warm cache)", "plan: Limit > Index Scan on ix ef_search=10 iterative=relaxed_order limit=100"} {
		if !strings.Contains(out, want) {
			t.Errorf("get_run text lacks %q:\n%s", want, out)
		}
	}
}
