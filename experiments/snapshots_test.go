package experiments

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestSnapshotsKeepBranchScopes: a snapshot is read through the branch it
// was taken of, so a key limited to some branches neither forks, restores
// nor lists snapshots of others (nor of deleted branches), and cannot tell
// such a snapshot from one that does not exist.
func TestSnapshotsKeepBranchScopes(t *testing.T) {
	t.Parallel()
	s := storeService(t, "p", nil)
	admin := WithCaller(context.Background(), LocalCaller)
	if _, err := s.Query(admin, QueryRequest{Project: "p", Branch: "main", SQL: "CREATE TABLE secret (v text); INSERT INTO secret VALUES ('main only')"}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"feature/a", "feature/gone"} {
		if _, err := s.CreateBranch(admin, CreateBranchRequest{Project: "p", Name: b}); err != nil {
			t.Fatal(err)
		}
	}
	for sn, b := range map[string]string{"snap1": "main", "gone": "feature/gone"} {
		if _, err := s.CreateSnapshot(admin, CreateSnapshotRequest{Project: "p", Branch: b, Name: sn}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteBranch(admin, "p", "feature/gone", false); err != nil {
		t.Fatal(err)
	}
	key := WithCaller(context.Background(), Caller{KeyID: "k", Scopes: []Scope{mustScope(t, "write:p:feature/*")}})
	if _, err := s.CreateSnapshot(key, CreateSnapshotRequest{Project: "p", Branch: "feature/a", Name: "mine"}); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, c := range []struct {
		what string
		call func() error
	}{
		{"fork main", func() error {
			_, err := s.CreateBranch(key, CreateBranchRequest{Project: "p", Name: "feature/f", ParentID: "main"})
			return err
		}},
		{"restore snap1 into a new branch", func() error {
			_, err := s.RestoreSnapshot(key, RestoreRequest{Project: "p", Snapshot: "snap1", NewBranch: "feature/r"})
			return err
		}},
		{"restore snap1 onto feature/a", func() error {
			_, err := s.RestoreSnapshot(key, RestoreRequest{Project: "p", Snapshot: "snap1", Branch: "feature/a"})
			return err
		}},
		{"fork snap1", func() error {
			_, err := s.CreateBranch(key, CreateBranchRequest{Project: "p", Name: "feature/s", Snapshot: "snap1"})
			return err
		}},
		{"fork snap1 naming a readable parent", func() error {
			_, err := s.CreateBranch(key, CreateBranchRequest{Project: "p", Name: "feature/s", ParentID: "feature/a", Snapshot: "snap1"})
			return err
		}},
		{"restore a snapshot of a deleted branch", func() error {
			_, err := s.RestoreSnapshot(key, RestoreRequest{Project: "p", Snapshot: "gone", NewBranch: "feature/g"})
			return err
		}},
		{"restore a snapshot that does not exist", func() error {
			_, err := s.RestoreSnapshot(key, RestoreRequest{Project: "p", Snapshot: "nosuch", NewBranch: "feature/n"})
			return err
		}},
	} {
		err := c.call()
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: %v, want ErrForbidden", c.what, err)
			continue
		}
		if strings.Contains(c.what, "restore") {
			msgs = append(msgs, strings.NewReplacer("snap1", "S", "gone", "S", "nosuch", "S").Replace(err.Error()))
		}
	}
	for i := 1; i < len(msgs); i++ {
		m := msgs[i]
		if m != msgs[0] {
			t.Errorf("refusals differ, an oracle of snapshot names:\n%s\n%s", msgs[0], m)
		}
	}
	sns, err := s.ListSnapshots(key, "p")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sn := range sns {
		names = append(names, sn.Name)
	}
	if fmt.Sprint(names) != "[mine]" {
		t.Errorf("key lists snapshots %v, want [mine]", names)
	}
	if sns, err := s.ListSnapshots(admin, "p"); err != nil || len(sns) != 3 {
		t.Errorf("admin lists %d snapshots (%v), want 3", len(sns), err)
	}
	// What the key may read, it restores.
	if _, err := s.RestoreSnapshot(key, RestoreRequest{Project: "p", Snapshot: "mine", NewBranch: "feature/b"}); err != nil {
		t.Errorf("restore the key's own snapshot: %v", err)
	}
	if _, err := s.CreateBranch(key, CreateBranchRequest{Project: "p", Name: "feature/c", Snapshot: "mine"}); err != nil {
		t.Errorf("fork the key's own snapshot: %v", err)
	}
	if _, err := s.RestoreSnapshot(admin, RestoreRequest{Project: "p", Snapshot: "gone", NewBranch: "feature/g"}); err != nil {
		t.Errorf("admin restores a snapshot of a deleted branch: %v", err)
	}
}

// TestResetKeepsParentScope: a reset brings the parent's current head, so
// a key limited to feature/* does not reset its branch onto main, which
// it may not read; onto a parent it reads, it does.
func TestResetKeepsParentScope(t *testing.T) {
	t.Parallel()
	s := storeService(t, "p", nil)
	admin := WithCaller(context.Background(), LocalCaller)
	for _, b := range []CreateBranchRequest{{Project: "p", Name: "feature/x"}, {Project: "p", Name: "feature/y"}, {Project: "p", Name: "feature/y1", ParentID: "feature/y"}} {
		if _, err := s.CreateBranch(admin, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Query(admin, QueryRequest{Project: "p", Branch: "main", SQL: "CREATE TABLE later (v text); INSERT INTO later VALUES ('new on main')"}); err != nil {
		t.Fatal(err)
	}
	key := WithCaller(context.Background(), Caller{KeyID: "k", Scopes: []Scope{mustScope(t, "write:p:feature/*")}})
	if _, err := s.ResetBranch(key, "p", "feature/x", "", true); !errors.Is(err, ErrForbidden) {
		t.Errorf("reset of feature/x onto main: %v, want ErrForbidden", err)
	}
	if _, err := s.Query(key, QueryRequest{Project: "p", Branch: "feature/x", SQL: "SELECT v FROM later", ReadOnly: true}); err == nil {
		t.Errorf("the key reads main's new table on feature/x")
	}
	if _, err := s.ResetBranch(key, "p", "feature/y1", "", true); err != nil {
		t.Errorf("reset of feature/y1 onto feature/y: %v", err)
	}
}
