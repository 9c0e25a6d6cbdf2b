package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/evals"
)

// TestDatasetSynth: the verb writes a collection the evals loader reads,
// the same bytes for the same seed; bad counts are bad input.
func TestDatasetSynth(t *testing.T) {
	ctx := context.Background()
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, dir := range []string{a, b} {
		out, stderr, code := run(t, ctx, "dataset", "synth", "--docs", "300", "--queries", "10", "--seed", "3", dir)
		if code != 0 || !strings.Contains(out, "300 documents, 10 queries, 100 judgments") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
		}
	}
	ds, err := evals.LoadBEIR(a, "test")
	if err != nil || len(ds.Corpus) != 300 || len(ds.Queries) != 10 {
		t.Fatalf("load: %v", err)
	}
	for _, f := range []string{"corpus.jsonl", "queries.jsonl", "qrels/test.tsv"} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if string(x) != string(y) {
			t.Errorf("%s differs between two runs with one seed", f)
		}
	}
	if _, stderr, code := run(t, ctx, "dataset", "synth", "--docs", "5", "--queries", "10", filepath.Join(t.TempDir(), "c")); code != exitBadInput {
		t.Errorf("docs < queries: exit %d (%s), want %d", code, stderr, exitBadInput)
	}
}
