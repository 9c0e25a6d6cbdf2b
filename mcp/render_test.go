package mcp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments"
)

// TestRenderComparison: compare_runs' text shows adjusted p-values, the
// effect size, data warnings and at most five documents per list.
func TestRenderComparison(t *testing.T) {
	var docs []string
	for i := range 80 {
		docs = append(docs, fmt.Sprintf("doc%02d", i))
	}
	d := 0.8
	rc := &experiments.RunComparison{A: "r:a", B: "r:b", Verdict: "worse", Warnings: []string{"the relevance judgments differ"},
		Comparison: &evals.Comparison{Primary: "P_10", Alpha: 0.05, Measures: []evals.MeasureComparison{{Measure: "P_10", P: 0.01, PHolm: 0.02, PBH: 0.015, EffectSize: &d}}},
		Regressed:  []experiments.QueryChange{{Query: "q1", A: 1, Delta: -1, Entered: docs, Left: docs[:2]}}}
	out := renderComparison(rc)
	for _, want := range []string{"p=0.0100 (Holm 0.0200, BH 0.0150)", "effect d +0.80", "warning: the relevance judgments differ",
		"entered doc00, doc01, doc02, doc03, doc04 +75 more, left doc00, doc01\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "doc05") {
		t.Errorf("more than five documents:\n%s", out)
	}
}

// TestRenderBranchKeptAndBlocked: a reset's or restore's text names the
// snapshot keeping the old head, and an expired branch still there says
// why.
func TestRenderBranchKeptAndBlocked(t *testing.T) {
	exp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	got := renderBranch(&experiments.Branch{Name: "dev", Project: "p", Snapshot: "dev.reset.42", ExpiresAt: &exp,
		ExpiryBlocked: "not deleted: branch dev has 1 descendant branches"})
	for _, want := range []string{"old head kept as snapshot dev.reset.42", "(not deleted: branch dev has 1 descendant branches)"} {
		if !strings.Contains(got, want) {
			t.Errorf("renderBranch: %q lacks %q", got, want)
		}
	}
}
