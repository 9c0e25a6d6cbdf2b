package experiments_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/experiments"
)

func TestPricesEstimate(t *testing.T) {
	p := experiments.Prices{ComputeHour: 0.36, StorageGiBMonth: 2}
	// 30 min of compute, 3 GiB kept for 15 days (half a month).
	c := p.Estimate(1800, 3<<30, 15*24*time.Hour)
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("compute", c.Compute, 0.18)
	near("storage", c.Storage, 3)
	near("total", c.Total, 3.18)
	if c.Currency != "USD" {
		t.Errorf("currency %q", c.Currency)
	}
	if z := p.Estimate(0, 1<<30, -time.Hour); z.Total != 0 {
		t.Errorf("negative age costs %v", z.Total)
	}
	if _, err := experiments.New(experiments.Config{ControlDir: t.TempDir(), Prices: &experiments.Prices{ComputeHour: -1}}); err == nil {
		t.Error("negative price accepted")
	}
}

func TestUsageCost(t *testing.T) {
	t.Parallel()
	later := time.Now().Add(24 * time.Hour)
	s, _ := branchService(t, experiments.Config{SweepInterval: -1, Now: func() time.Time { return later },
		Prices: &experiments.Prices{ComputeHour: 1, StorageGiBMonth: 1, Currency: "EUR"}})
	ctx := admin()
	if _, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: "feature/x"}); err != nil {
		t.Fatal(err)
	}
	u, err := s.ProjectUsage(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if u.Cost == nil || u.Cost.Currency != "EUR" || len(u.Branches) != 2 {
		t.Fatalf("usage %+v", u)
	}
	var sum float64
	var current, history uint64
	for _, b := range u.Branches {
		if b.Cost == nil {
			t.Fatalf("branch %s has no cost", b.Branch)
		}
		sum += b.Cost.Total
		if b.CurrentBytes+b.HistoryBytes != b.DeltaBytes {
			t.Errorf("branch %s: current %d + history %d != delta %d", b.Branch, b.CurrentBytes, b.HistoryBytes, b.DeltaBytes)
		}
		current, history = current+b.CurrentBytes, history+b.HistoryBytes
	}
	if u.CurrentBytes != current || u.HistoryBytes != history || u.CurrentBytes+u.HistoryBytes != u.DeltaBytes {
		t.Errorf("project: current %d history %d delta %d; branches sum to %d and %d", u.CurrentBytes, u.HistoryBytes, u.DeltaBytes, current, history)
	}
	if math.Abs(sum-u.Cost.Total) > 1e-12 {
		t.Errorf("project total %v, branches sum to %v", u.Cost.Total, sum)
	}
	b, err := s.GetBranch(ctx, "p", "feature/x")
	if err != nil {
		t.Fatal(err)
	}
	if b.Usage.Cost == nil || b.Usage.Cost.Currency != "EUR" {
		t.Errorf("branch usage cost %+v", b.Usage)
	}
	s2, _ := branchService(t, experiments.Config{SweepInterval: -1})
	if u, err := s2.ProjectUsage(ctx, "p"); err != nil || u.Cost != nil {
		t.Errorf("no prices: cost %+v, %v", u, err)
	}
}

func TestExpiryWarning(t *testing.T) {
	t.Parallel()
	s, _ := branchService(t, experiments.Config{SweepInterval: 20 * time.Millisecond})
	ctx := admin()
	for _, r := range []experiments.CreateBranchRequest{
		{Project: "p", Name: "short", TTL: "2s"}, // lead 200 ms (10% of TTL)
		{Project: "p", Name: "kept", TTL: "2s", Protected: true},
		{Project: "p", Name: "long", TTL: "1h"}, // lead 6 min: not yet
	} {
		if _, err := s.CreateBranch(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// The deletion's audit entry is written once the delete has
	// returned, so wait for the entry, not for the branch to be gone.
	deadline := time.Now().Add(30 * time.Second)
	var page *experiments.AuditPage
	for {
		var err error
		if page, err = s.AuditLog(ctx, experiments.AuditQuery{Limit: 1000}); err != nil {
			t.Fatal(err)
		}
		deleted := false
		for _, e := range page.Entries {
			deleted = deleted || e.Target == "p/short" && e.KeyID == "ttl-sweeper" && e.Action == "branch.delete"
		}
		if deleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("short not deleted 30 s after its 2 s TTL")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := s.GetBranch(ctx, "p", "short"); !errors.Is(err, experiments.ErrNotFound) {
		t.Errorf("short after its deletion: %v", err)
	}
	warned := map[string]int{}
	var warnAt, delAt time.Time
	for _, e := range page.Entries {
		if e.Action == "branch.expiring" {
			warned[e.Target]++
			warnAt = e.Time
			if e.KeyID != "ttl-sweeper" || e.Detail == "" {
				t.Errorf("warning entry %+v", e)
			}
		}
		if e.Target == "p/short" && e.KeyID == "ttl-sweeper" && e.Action != "branch.expiring" {
			delAt = e.Time
		}
	}
	if warned["p/short"] != 1 || len(warned) != 1 {
		t.Fatalf("want one warning for p/short, got %v", warned)
	}
	if delAt.IsZero() || !warnAt.Before(delAt) {
		t.Errorf("warning at %v not before deletion at %v", warnAt, delAt)
	}
}
