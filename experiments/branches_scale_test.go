package experiments_test

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/experiments"
)

// TestListBranchesPagesMany forks many branches (metadata-only forks of
// an empty main) and pages through them with endpoint states asked for:
// every branch comes back exactly once, in the order of one unpaged list,
// and without compute no endpoint is filled.
func TestListBranchesPagesMany(t *testing.T) {
	t.Parallel()
	const n = 1500
	s, _ := branchService(t, experiments.Config{MaxBranches: -1, SweepInterval: -1})
	ctx := admin()
	for i := range n {
		parent := ""
		if i%10 != 0 {
			parent = fmt.Sprintf("b%05d", i-i%10) // ten-branch families under every tenth
		}
		if _, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: fmt.Sprintf("b%05d", i), ParentID: parent}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.ListBranches(ctx, experiments.ListBranchesRequest{Project: "p", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	want := all.Branches
	for all.Next != "" {
		if all, err = s.ListBranches(ctx, experiments.ListBranchesRequest{Project: "p", Limit: 1000, Cursor: all.Next}); err != nil {
			t.Fatal(err)
		}
		want = append(want, all.Branches...)
	}
	if len(want) != n+1 { // and main
		t.Fatalf("%d branches listed, want %d", len(want), n+1)
	}
	seen := map[string]bool{}
	var got []experiments.Branch
	req := experiments.ListBranchesRequest{Project: "p", Limit: 97, Endpoints: true}
	for {
		pg, err := s.ListBranches(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(pg.Branches) > req.Limit {
			t.Fatalf("page of %d, limit %d", len(pg.Branches), req.Limit)
		}
		for _, b := range pg.Branches {
			if seen[b.Name] {
				t.Fatalf("%s listed twice", b.Name)
			}
			seen[b.Name] = true
			if b.Endpoint != nil {
				t.Errorf("%s: endpoint %+v without compute", b.Name, b.Endpoint)
			}
		}
		got = append(got, pg.Branches...)
		if pg.Next == "" {
			break
		}
		req.Cursor = pg.Next
	}
	if len(got) != len(want) {
		t.Fatalf("paged %d branches, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Name != want[i].Name || got[i].ParentID != want[i].ParentID || got[i].Depth != want[i].Depth {
			t.Fatalf("branch %d: %s (parent %q depth %d), want %s (parent %q depth %d)", i,
				got[i].Name, got[i].ParentID, got[i].Depth, want[i].Name, want[i].ParentID, want[i].Depth)
		}
	}
}

// BenchmarkManyBranches measures what issue 20 asks to stay flat with the
// branch count: the first page of the branch list (10 branches, all of
// the small project, with endpoint states asked for) and a fork (CreateBranch of main, then its
// DeleteBranch, timed apart), in a project of 10 branches and in one of
// MANY_BENCH_BRANCHES (default 10,000), the two projects' calls
// interleaved; medians of MANY_BENCH_REPS (default 30) calls each, and
// the ratios many/few (goal ≤ 1.5 each).
func BenchmarkManyBranches(b *testing.B) {
	many := envInt("MANY_BENCH_BRANCHES", 10000)
	reps := envInt("MANY_BENCH_REPS", 30)
	ctx := admin()
	type side struct {
		s                   *experiments.Service
		list, fork, discard []float64
	}
	mk := func(n int) *side {
		s, _ := branchService(b, experiments.Config{MaxBranches: -1, SweepInterval: -1})
		for i := range n - 1 { // and main
			if _, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: fmt.Sprintf("b%05d", i)}); err != nil {
				b.Fatal(err)
			}
		}
		return &side{s: s}
	}
	t0 := time.Now()
	sides := []*side{mk(10), mk(many)}
	b.Logf("created %d branches in %v", many+9, time.Since(t0).Round(time.Millisecond))
	for i := 0; i < b.N; i++ {
		for rep := range reps {
			for j := range sides {
				sd := sides[(j+rep)%2]
				t := time.Now()
				pg, err := sd.s.ListBranches(ctx, experiments.ListBranchesRequest{Project: "p", Limit: 10, Endpoints: true})
				if err != nil || len(pg.Branches) == 0 {
					b.Fatalf("list: %v", err)
				}
				sd.list = append(sd.list, time.Since(t).Seconds()*1e3)
				name := fmt.Sprintf("fork-%d", rep)
				t = time.Now()
				if _, err := sd.s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: name}); err != nil {
					b.Fatal(err)
				}
				sd.fork = append(sd.fork, time.Since(t).Seconds()*1e3)
				t = time.Now()
				if err := sd.s.DeleteBranch(ctx, "p", name, false); err != nil {
					b.Fatal(err)
				}
				sd.discard = append(sd.discard, time.Since(t).Seconds()*1e3)
			}
		}
	}
	few, lots := sides[0], sides[1]
	for _, m := range []struct {
		name      string
		few, lots []float64
	}{{"list", few.list, lots.list}, {"fork", few.fork, lots.fork}, {"discard", few.discard, lots.discard}} {
		a, z := medianOf(m.few), medianOf(m.lots)
		b.ReportMetric(a, m.name+"-10-ms")
		b.ReportMetric(z, m.name+"-many-ms")
		b.ReportMetric(z/a, m.name+"-many/10")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func medianOf(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
