package experiments_test

import (
	"fmt"
	"testing"

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
