package main

import (
	"testing"

	"github.com/offshootdb/offshoot/experiments"
)

// TestE2EUsageSurvivesRestart: the compute seconds, wakes and compute cost
// a project's usage reports are kept across a restart of the server
// (compute counts them in memory; the service records them in the control
// database when it stops).
func TestE2EUsageSurvivesRestart(t *testing.T) {
	s := newE2EServer(t)
	s.exec("main", "CREATE TABLE items (id int PRIMARY KEY)", "INSERT INTO items VALUES (1)")
	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "dev"}, nil)
	s.exec("dev", "INSERT INTO items VALUES (2)")
	var before experiments.Usage
	s.must(200, "GET", "/v1/projects/main/usage", nil, &before)
	if before.Wakes < 2 || before.ComputeSeconds <= 0 || before.Cost == nil || before.Cost.Compute <= 0 {
		t.Fatalf("usage before the restart: %d wakes, %.3f compute seconds, cost %+v", before.Wakes, before.ComputeSeconds, before.Cost)
	}

	s.stop()
	s.start()
	var after experiments.Usage
	s.must(200, "GET", "/v1/projects/main/usage", nil, &after)
	if after.Wakes < before.Wakes || after.ComputeSeconds < before.ComputeSeconds || after.Cost == nil || after.Cost.Compute < before.Cost.Compute {
		t.Fatalf("usage after a restart: %d wakes, %.3f compute seconds, cost %+v; before: %d, %.3f, %+v",
			after.Wakes, after.ComputeSeconds, after.Cost, before.Wakes, before.ComputeSeconds, before.Cost)
	}
	byBranch := map[string]experiments.BranchUsage{}
	for _, b := range after.Branches {
		byBranch[b.Branch] = b
	}
	for _, b := range before.Branches {
		if a := byBranch[b.Branch]; a.Wakes < b.Wakes || a.ComputeSeconds < b.ComputeSeconds {
			t.Errorf("branch %s after a restart: %d wakes, %.3f s; before %d, %.3f s", b.Branch, a.Wakes, a.ComputeSeconds, b.Wakes, b.ComputeSeconds)
		}
	}
	// Waking again adds to the kept totals.
	s.exec("dev", "INSERT INTO items VALUES (3)")
	var again experiments.Usage
	s.must(200, "GET", "/v1/projects/main/usage", nil, &again)
	if again.Wakes <= after.Wakes {
		t.Fatalf("wakes after a wake following the restart: %d, want more than %d", again.Wakes, after.Wakes)
	}
	// The record of a deleted branch goes: a branch created under its
	// name after a restart starts from zero.
	s.must(204, "DELETE", branchPath("dev"), nil, nil)
	s.stop()
	s.start()
	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "dev"}, nil)
	var fresh experiments.Usage
	s.must(200, "GET", "/v1/projects/main/usage", nil, &fresh)
	for _, b := range fresh.Branches {
		if b.Branch == "dev" && (b.Wakes != 0 || b.ComputeSeconds != 0) {
			t.Fatalf("branch dev created again after a restart following its deletion: %d wakes, %.3f s, want none", b.Wakes, b.ComputeSeconds)
		}
	}
}
