package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals/evalstest"
)

// TestE2EExperimentRun runs an A/B experiment on Cranfield through the real
// server: each variant forks a real copy-on-write branch of main, loads and
// searches there, and the forks are discarded afterwards; the base is
// pinned by a snapshot so it can be forked again at the same point.
func TestE2EExperimentRun(t *testing.T) {
	s := newE2EServer(t)
	cranfield := evalstest.Cranfield(t)
	// A table on main that every fork must see and no run may change.
	s.exec("main", "CREATE TABLE items (id int PRIMARY KEY)", "INSERT INTO items VALUES (1), (2)")
	spec := fmt.Sprintf(`{"name": "ab", "project": "main", "base": {"branch": "main"},
		"dataset": {"beir": %q}, "metrics": ["ndcg_cut.10", "recall.100"],
		"variants": [
			{"name": "bow64", "embedder": "hash-bow?dims=64", "index": {"type": "hnsw"}},
			{"name": "bow8", "embedder": "hash-bow?dims=8"}
		]}`, cranfield)
	var started struct{ ID string }
	s.must(202, "POST", "/v1/runs", json.RawMessage(spec), &started)
	if started.ID == "" {
		t.Fatal("no run id")
	}
	type variant struct {
		Name, Status, Error, Branch string
		ForkSeq                     uint64 `json:"fork_seq"`
		Kept                        bool
		Rows                        int64
		StorageDelta                *int64   `json:"storage_delta_bytes"`
		ANNRecall                   *float64 `json:"ann_recall"`
		Metrics                     map[string]float64
		Results                     []struct {
			Query string
			Hits  []struct{ Doc string }
		}
	}
	var run struct {
		Status, Error string
		Base          struct {
			Branch, Snapshot string
			Seq              uint64
		}
		Queries  int
		Variants []variant
	}
	deadline := time.Now().Add(4 * time.Minute)
	for {
		s.must(200, "GET", "/v1/runs/"+started.ID, nil, &run)
		if run.Status != "queued" && run.Status != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run still %s after 4 minutes\n%s", run.Status, s.log())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if run.Status != "succeeded" {
		t.Fatalf("run %s: %s %+v\n%s", run.Status, run.Error, run.Variants, s.log())
	}
	if run.Base.Branch != "main" || run.Base.Seq == 0 || !strings.HasPrefix(run.Base.Snapshot, "run-base.") {
		t.Errorf("base not pinned: %+v", run.Base)
	}
	if run.Queries != 225 || len(run.Variants) != 2 {
		t.Fatalf("queries %d, variants %d", run.Queries, len(run.Variants))
	}
	for _, v := range run.Variants {
		if v.Status != "succeeded" || v.Rows != 1400 || v.Kept || !strings.HasPrefix(v.Branch, "exp/ab/") || v.ForkSeq < run.Base.Seq {
			t.Errorf("variant %+v", v)
		}
		if v.StorageDelta == nil || *v.StorageDelta <= 0 {
			t.Errorf("variant %s: no storage delta recorded", v.Name)
		}
		if v.Metrics["ndcg_cut_10"] <= 0 {
			t.Errorf("variant %s: metrics %v", v.Name, v.Metrics)
		}
		if len(v.Results) != 225 || len(v.Results[0].Hits) != 100 {
			t.Errorf("variant %s: %d rankings recorded, want 225 of 100 hits", v.Name, len(v.Results))
		}
	}
	if r := run.Variants[0].ANNRecall; r == nil || *r < 0.9 {
		t.Errorf("HNSW variant ANN recall %v", deref(r))
	}
	// 64 dimensions beat 8 on Cranfield, significantly.
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
	s.must(200, "GET", "/v1/runs/compare?a="+started.ID+":bow8&b="+started.ID+":bow64", nil, &cmp)
	found := false
	for _, m := range cmp.Comparison.Measures {
		if m.Measure == "ndcg_cut_10" {
			found = true
			if m.Delta <= 0 || !m.Significant {
				t.Errorf("ndcg_cut_10: %+v (verdict %s)", m, cmp.Verdict)
			}
		}
	}
	if !found {
		t.Errorf("no ndcg_cut_10 in comparison %+v", cmp)
	}
	// The forks are gone, main is untouched, and the pinned base forks again.
	var page struct{ Branches []struct{ Name string } }
	s.must(200, "GET", "/v1/projects/main/branches?prefix=exp/", nil, &page)
	if len(page.Branches) != 0 {
		t.Errorf("forks left behind: %+v", page.Branches)
	}
	if got := s.ids("main"); got != "1,2" {
		t.Errorf("main changed: %s", got)
	}
	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "rerun", "snapshot": run.Base.Snapshot}, nil)
	if got := s.ids("rerun"); got != "1,2" {
		t.Errorf("fork of the pinned base: %s", got)
	}
	// main against the pinned base: the diff shows nothing.
	var d struct {
		Schema struct{ Changed bool }
		Tables []struct{ Table, Status string }
	}
	s.must(200, "GET", "/v1/projects/main/branches/main/diff?against=rerun", nil, &d)
	if d.Schema.Changed || len(d.Tables) != 0 {
		t.Errorf("main changed since the run's base: %+v", d)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
