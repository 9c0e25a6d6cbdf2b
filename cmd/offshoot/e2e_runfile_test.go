package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/evals/evalstest"
)

// TestE2ERunExportImport drives interop through the CLI against the real
// server: `run export` writes a variant's rankings, `eval score -c` of
// that file prints exactly the metrics the run recorded, and an external
// run brought in by `run import` is compared with `run compare`, with
// p-values.
func TestE2ERunExportImport(t *testing.T) {
	s := newE2EServer(t)
	cranfield := evalstest.Cranfield(t)
	metrics := []string{"map", "Rprec", "bpref", "ndcg_cut.10", "recall.100"}
	mj, _ := json.Marshal(metrics)
	spec := fmt.Sprintf(`{"name": "interop", "project": "main", "base": {"branch": "main"},
		"dataset": {"beir": %q}, "metrics": %s,
		"variants": [{"name": "bow16", "embedder": "hash-bow?dims=16"}]}`, cranfield, mj)
	var started struct{ ID string }
	s.must(202, "POST", "/v1/runs", json.RawMessage(spec), &started)
	var run struct {
		Status, Error string
		Variants      []struct {
			Name    string
			Metrics map[string]float64
		}
	}
	deadline := time.Now().Add(4 * time.Minute)
	for {
		s.must(200, "GET", "/v1/runs/"+started.ID+"?results=false", nil, &run)
		if run.Status != "queued" && run.Status != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run still %s after 4 minutes\n%s", run.Status, s.log())
		}
		time.Sleep(300 * time.Millisecond)
	}
	if run.Status != "succeeded" || len(run.Variants) != 1 {
		t.Fatalf("run %s: %s %+v\n%s", run.Status, run.Error, run.Variants, s.log())
	}
	recorded := run.Variants[0].Metrics
	dir := t.TempDir()
	exported := filepath.Join(dir, "bow16.run")
	if out, err := runCLI(t, "run", "export", started.ID, "-o", exported, "--server", s.http); err != nil {
		t.Fatalf("run export: %v\n%s", err, out)
	}

	// eval score -c on the exported file: the recorded metrics, exactly.
	args := []string{"eval", "score", "-c", "--qrels", filepath.Join(cranfield, "qrels", "test.tsv"), "--run", exported, "--format", "json"}
	for _, m := range metrics {
		args = append(args, "-m", m)
	}
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("eval score: %v\n%s", err, out)
	}
	var rep evals.RunReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Run != "bow16" || len(rep.All) != len(recorded) {
		t.Fatalf("report of run %q with %d measures, recorded %v", rep.Run, len(rep.All), recorded)
	}
	for _, v := range rep.All {
		if w, ok := recorded[v.Measure]; !ok || v.Value != w {
			t.Errorf("eval score of the export: %s = %v, recorded %v", v.Measure, v.Value, w)
		}
	}
	out, err = runCLI(t, "run", "export", started.ID+":bow16", "--format", "jsonl", "--server", s.http)
	if err != nil || strings.Count(out, "\n") != 225 || !strings.HasPrefix(out, `{"query":`) {
		t.Errorf("jsonl export: %v, %d lines", err, strings.Count(out, "\n"))
	}

	// An external system: the exported rankings upside down, worse on
	// nearly every query.
	ext, err := evals.ReadRunFile(exported)
	if err != nil {
		t.Fatal(err)
	}
	for q, docs := range ext.Results {
		ranked := evals.Rank(docs)
		for i := range ranked {
			ranked[i].Score = float64(i)
		}
		sort.Slice(ranked, func(i, j int) bool { return ranked[i].Score > ranked[j].Score })
		ext.Results[q] = ranked
	}
	ext.Name = "upside-down"
	f, err := os.Create(filepath.Join(dir, "upside.run"))
	if err != nil {
		t.Fatal(err)
	}
	if err := evals.WriteRun(f, ext); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err = runCLI(t, "run", "import", started.ID, f.Name(), "--name", "upside", "--server", s.http)
	if err != nil || !strings.Contains(out, "imported") || !strings.Contains(out, "ndcg_cut_10") {
		t.Fatalf("run import: %v\n%s", err, out)
	}
	out, err = runCLI(t, "run", "compare", started.ID+":bow16", started.ID+":upside", "--metric", "ndcg_cut_10", "--json", "--server", s.http)
	if err != nil {
		t.Fatalf("run compare: %v\n%s", err, out)
	}
	var cmp struct {
		Verdict    string
		Comparison struct {
			Measures []struct {
				Measure     string
				Delta       float64
				P           float64 `json:"p_value"`
				Significant bool
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &cmp); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, m := range cmp.Comparison.Measures {
		if m.Measure == "ndcg_cut_10" || m.Measure == "map" {
			found++
			if m.Delta >= 0 || !m.Significant || m.P <= 0 || m.P >= 0.05 {
				t.Errorf("%s: %+v", m.Measure, m)
			}
		}
	}
	if found != 2 || cmp.Verdict != "worse" {
		t.Errorf("comparison %s: %+v", cmp.Verdict, cmp.Comparison.Measures)
	}
	// The same name again is a conflict; the server never reads a client path.
	if _, err := runCLI(t, "run", "import", started.ID, f.Name(), "--name", "upside", "--server", s.http); err == nil {
		t.Error("second import under the same name accepted")
	}
}
