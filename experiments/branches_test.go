package experiments_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/storage"
)

// branchService is a Service over a real store whose project p was
// created in storage directly (no cluster: these calls never start Postgres).
func branchService(t testing.TB, cfg experiments.Config) (*experiments.Service, *storage.Store) {
	t.Helper()
	dir := t.TempDir()
	st, err := storage.Open(filepath.Join(dir, "store"), &storage.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	cfg.ControlDir, cfg.Store = filepath.Join(dir, "control"), st
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := experiments.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if err := st.Check(); err != nil {
			t.Error(err)
		}
		st.Close()
	})
	return s, st
}

func TestBranchLifecycle(t *testing.T) {
	t.Parallel()
	s, _ := branchService(t, experiments.Config{MaxBranches: 4, SweepInterval: -1})
	ctx := admin()
	fork := func(name, parent string, labels map[string]string) error {
		_, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: name, ParentID: parent, Labels: labels})
		return err
	}
	if err := fork("feature/x", "", map[string]string{"team": "a"}); err != nil {
		t.Fatal(err)
	}
	if err := fork("feature/x/y", "feature/x", nil); err != nil {
		t.Fatal(err)
	}
	if err := fork("b", "", nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, parent string
		want         error
	}{
		{"feature/x", "", experiments.ErrConflict},
		{"Bad Name", "", experiments.ErrInvalid},
		{"c", "nope", experiments.ErrNotFound},
		{"c", "", experiments.ErrCapacity}, // the fifth branch
	} {
		if err := fork(c.name, c.parent, nil); !errors.Is(err, c.want) {
			t.Errorf("fork %s from %q: %v, want %v", c.name, c.parent, err, c.want)
		}
	}
	page, err := s.ListBranches(ctx, experiments.ListBranchesRequest{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	var tree []string
	for _, b := range page.Branches {
		tree = append(tree, string(rune('0'+b.Depth))+b.Name)
	}
	if got := mustJSON(t, tree); got != `["0main","1b","1feature/x","2feature/x/y"]` {
		t.Errorf("tree %s", got)
	}
	page, err = s.ListBranches(ctx, experiments.ListBranchesRequest{Project: "p", Limit: 3})
	if err != nil || len(page.Branches) != 3 || page.Next == "" {
		t.Fatalf("page 1: %+v %v", page, err)
	}
	if _, err := s.ListBranches(ctx, experiments.ListBranchesRequest{Project: "p", Limit: 3, Cursor: "not a cursor!"}); !errors.Is(err, experiments.ErrInvalid) {
		t.Errorf("a malformed cursor: %v", err)
	}
	if page.Total == nil || *page.Total != 4 || page.Branches[0].Usage != nil {
		t.Errorf("page 1: total %v, usage %+v", page.Total, page.Branches[0].Usage)
	}
	withUsage, err := s.ListBranches(ctx, experiments.ListBranchesRequest{Project: "p", Limit: 3, Usage: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range withUsage.Branches {
		if u := b.Usage; u == nil || u.Branch != b.Name || u.CurrentBytes+u.HistoryBytes != u.DeltaBytes || b.Endpoint != nil {
			t.Errorf("%s listed with usage: %+v, endpoint %+v", b.Name, u, b.Endpoint)
		}
	}
	page, err = s.ListBranches(ctx, experiments.ListBranchesRequest{Project: "p", Limit: 3, Cursor: page.Next})
	if err != nil || len(page.Branches) != 1 || page.Next != "" {
		t.Fatalf("page 2: %+v %v", page, err)
	}
	page, _ = s.ListBranches(ctx, experiments.ListBranchesRequest{Project: "p", Labels: map[string]string{"team": "a"}})
	if len(page.Branches) != 1 || page.Branches[0].Name != "feature/x" {
		t.Errorf("label filter: %+v", page.Branches)
	}
	page, _ = s.ListBranches(ctx, experiments.ListBranchesRequest{Project: "p", Prefix: "feature/"})
	if len(page.Branches) != 2 {
		t.Errorf("prefix filter: %+v", page.Branches)
	}

	if err := s.DeleteBranch(ctx, "p", "feature/x", false); !errors.Is(err, experiments.ErrConflict) {
		t.Errorf("delete parent without cascade: %v", err)
	}
	if err := s.DeleteBranch(ctx, "p", "main", false); !errors.Is(err, experiments.ErrConflict) {
		t.Errorf("delete main: %v", err)
	}
	yes := true
	if _, err := s.UpdateBranch(ctx, experiments.UpdateBranchRequest{Project: "p", Branch: "b", Protected: &yes}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBranch(ctx, "p", "b", false); !errors.Is(err, experiments.ErrConflict) {
		t.Errorf("delete protected: %v", err)
	}
	newName := "renamed"
	if _, err := s.UpdateBranch(ctx, experiments.UpdateBranchRequest{Project: "p", Branch: "b", Name: &newName}); !errors.Is(err, experiments.ErrConflict) {
		t.Errorf("rename protected: %v", err)
	}
	if err := s.DeleteBranch(ctx, "p", "feature/x", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetBranch(ctx, "p", "feature/x/y"); !errors.Is(err, experiments.ErrNotFound) {
		t.Errorf("cascade left the child: %v", err)
	}
	// A read scope on feature/* sees only matching branches and cannot fork.
	reader := experiments.WithCaller(context.Background(), experiments.Caller{KeyID: "r", Scopes: []experiments.Scope{{Role: experiments.RoleRead, Project: "p", Branches: "b*"}}})
	page, err = s.ListBranches(reader, experiments.ListBranchesRequest{Project: "p"})
	if err != nil || len(page.Branches) != 1 || page.Branches[0].Name != "b" {
		t.Errorf("scoped list: %+v %v", page, err)
	}
	if _, err := s.CreateBranch(reader, experiments.CreateBranchRequest{Project: "p", Name: "b2"}); !errors.Is(err, experiments.ErrForbidden) {
		t.Errorf("fork with read scope: %v", err)
	}
}

func TestTTLSweeper(t *testing.T) {
	t.Parallel()
	s, _ := branchService(t, experiments.Config{SweepInterval: 50 * time.Millisecond})
	ctx := admin()
	for _, r := range []experiments.CreateBranchRequest{
		{Project: "p", Name: "short", TTL: "1s"},
		{Project: "p", Name: "kept", TTL: "1s", Protected: true},
		{Project: "p", Name: "long", TTL: "1h"},
	} {
		if _, err := s.CreateBranch(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: "bad", TTL: "soon"}); !errors.Is(err, experiments.ErrInvalid) {
		t.Errorf("bad ttl: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.GetBranch(ctx, "p", "short")
		if errors.Is(err, experiments.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("short still there 30 s after its 1 s TTL")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, b := range []string{"kept", "long"} {
		if _, err := s.GetBranch(ctx, "p", b); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
	page, err := s.AuditLog(ctx, experiments.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range page.Entries {
		found = found || (e.KeyID == "ttl-sweeper" && e.Target == "p/short" && e.Result == "ok")
	}
	if !found {
		t.Errorf("sweeper deletion not audited: %+v", page.Entries)
	}
}

// TestOrphanForkIsNotMain: a fork of a snapshot whose branch was deleted
// has no parent, yet it is an ordinary branch (renamed, deleted, swept),
// while main stays undeletable.
func TestOrphanForkIsNotMain(t *testing.T) {
	t.Parallel()
	s, _ := branchService(t, experiments.Config{SweepInterval: -1})
	ctx := admin()
	if _, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSnapshot(ctx, experiments.CreateSnapshotRequest{Project: "p", Branch: "gone", Name: "pin"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBranch(ctx, "p", "gone", false); err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: "orphan", Snapshot: "pin"})
	if err != nil {
		t.Fatal(err)
	}
	if b.ParentID != "" {
		t.Errorf("orphan's parent %q", b.ParentID)
	}
	name := "orphan2"
	if _, err := s.UpdateBranch(ctx, experiments.UpdateBranchRequest{Project: "p", Branch: "orphan", Name: &name}); err != nil {
		t.Errorf("rename the orphan: %v", err)
	}
	if err := s.DeleteBranch(ctx, "p", name, false); err != nil {
		t.Errorf("delete the orphan: %v", err)
	}
	if err := s.DeleteBranch(ctx, "p", "main", false); !errors.Is(err, experiments.ErrConflict) {
		t.Errorf("delete main: %v", err)
	}
}

// TestUpdateBranchAllOrNothing: an update that is refused changes none of
// its fields; a rename goes with the other fields in one request.
func TestUpdateBranchAllOrNothing(t *testing.T) {
	t.Parallel()
	s, st := branchService(t, experiments.Config{SweepInterval: -1})
	ctx := admin()
	for _, n := range []string{"victim", "taken"} {
		if _, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	str := func(v string) *string { return &v }
	yes, no := true, false
	for _, c := range []struct {
		what string
		req  experiments.UpdateBranchRequest
		want error
	}{
		{"ttl and an invalid name", experiments.UpdateBranchRequest{TTL: str("3s"), Name: str("Bad Name!")}, experiments.ErrInvalid},
		{"labels and a taken name", experiments.UpdateBranchRequest{Labels: map[string]string{"k": "v"}, Name: str("taken")}, experiments.ErrConflict},
		{"protection and a bad ttl", experiments.UpdateBranchRequest{Protected: &yes, TTL: str("soon")}, experiments.ErrInvalid},
	} {
		c.req.Project, c.req.Branch = "p", "victim"
		if _, err := s.UpdateBranch(ctx, c.req); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.what, err, c.want)
		}
		b, err := st.Branch("p", "victim")
		if err != nil {
			t.Fatal(err)
		}
		if !b.ExpiresAt.IsZero() || b.Protected || len(b.Labels) != 0 {
			t.Errorf("%s: refused, yet the branch changed: %+v", c.what, b)
		}
	}
	b, err := s.UpdateBranch(ctx, experiments.UpdateBranchRequest{Project: "p", Branch: "victim", Name: str("rn9"), Protected: &yes})
	if err != nil || b.Name != "rn9" || !b.Protected {
		t.Fatalf("rename and protect: %+v %v", b, err)
	}
	if _, err := s.UpdateBranch(ctx, experiments.UpdateBranchRequest{Project: "p", Branch: "rn9", Name: str("rn10")}); !errors.Is(err, experiments.ErrConflict) {
		t.Errorf("rename a protected branch: %v", err)
	}
	b, err = s.UpdateBranch(ctx, experiments.UpdateBranchRequest{Project: "p", Branch: "rn9", Name: str("rn10"), Protected: &no})
	if err != nil || b.Name != "rn10" || b.Protected {
		t.Fatalf("unprotect and rename: %+v %v", b, err)
	}
}

// TestResetTwice: resets in a row with nothing written between both keep
// the old head, each under its own snapshot, which the answer names.
func TestResetTwice(t *testing.T) {
	t.Parallel()
	s, _ := branchService(t, experiments.Config{SweepInterval: -1})
	ctx := admin()
	if _, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: "ttl3"}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range 2 {
		b, err := s.ResetBranch(ctx, "p", "ttl3", "", false)
		if err != nil {
			t.Fatalf("reset %d: %v", i+1, err)
		}
		if b.Snapshot == "" || seen[b.Snapshot] {
			t.Errorf("reset %d kept the old head as %q", i+1, b.Snapshot)
		}
		seen[b.Snapshot] = true
	}
	b, err := s.ResetBranch(ctx, "p", "ttl3", "", true)
	if err != nil || b.Snapshot != "" {
		t.Errorf("reset with discard: snapshot %q, %v", b.Snapshot, err)
	}
	sns, err := s.ListSnapshots(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range sns {
		delete(seen, sn.Name)
	}
	if len(seen) != 0 {
		t.Errorf("answers named snapshots that are not there: %v (have %+v)", seen, sns)
	}
}

// TestTTLSweeperBlocked: an expired branch the sweeper cannot delete (it
// has a child) is tried, logged and audited once, says why it is still
// there, and goes once its child does. The main branch cannot be given a
// TTL.
func TestTTLSweeperBlocked(t *testing.T) {
	t.Parallel()
	s, _ := branchService(t, experiments.Config{SweepInterval: 20 * time.Millisecond})
	ctx := admin()
	if _, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: "parent", TTL: "1s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "p", Name: "kid", ParentID: "parent"}); err != nil {
		t.Fatal(err)
	}
	refusals := func() int {
		page, err := s.AuditLog(ctx, experiments.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range page.Entries {
			if e.Action == "branch.delete" && e.Target == "p/parent" && e.Result == "error" {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for refusals() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper never tried the expired parent")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // some 25 sweeps
	if n := refusals(); n != 1 {
		t.Errorf("%d audited refusals, want 1", n)
	}
	b, err := s.GetBranch(ctx, "p", "parent")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.ExpiryBlocked, "descendant") {
		t.Errorf("expired parent, still here because %q", b.ExpiryBlocked)
	}
	page, err := s.ListBranches(ctx, experiments.ListBranchesRequest{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	for _, lb := range page.Branches {
		if lb.Name == "parent" && lb.ExpiryBlocked != b.ExpiryBlocked {
			t.Errorf("listed: %q", lb.ExpiryBlocked)
		}
	}
	if err := s.DeleteBranch(ctx, "p", "kid", false); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := s.GetBranch(ctx, "p", "parent"); errors.Is(err, experiments.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("parent still there after its child went")
		}
		time.Sleep(20 * time.Millisecond)
	}

	ttl, off := "1h", "0s"
	if _, err := s.UpdateBranch(ctx, experiments.UpdateBranchRequest{Project: "p", Branch: "main", TTL: &ttl}); !errors.Is(err, experiments.ErrInvalid) {
		t.Errorf("a TTL on main: %v", err)
	}
	if _, err := s.UpdateBranch(ctx, experiments.UpdateBranchRequest{Project: "p", Branch: "main", TTL: &off}); err != nil {
		t.Errorf("clearing main's TTL: %v", err)
	}
	if b, err := s.GetBranch(ctx, "p", "main"); err != nil || b.ExpiresAt != nil {
		t.Errorf("main: %+v %v", b, err)
	}
}
