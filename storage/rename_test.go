package storage

import (
	"errors"
	"testing"
)

// TestRenameBranch: a rename changes the name only. The branch keeps its
// ID, timeline, fork point and creation time, so its history, its
// snapshots and its children stay its own, before and after a reopen; the
// old name is free and a taken or invalid new name is refused.
func TestRenameBranch(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{GCInterval: -1})
	ok(t, err)
	_, _, err = s.CreateProject("p")
	ok(t, err)
	a := must[Branch](t)(s.Fork("p", "main", "a", AtHead(), BranchOptions{Labels: map[string]string{"k": "v"}}))
	h := must[*Head](t)(s.OpenHead("p", "a"))
	f := must[Attr](t)(h.Create(RootIno, "f", ModeRegular|0o644, 0, 0))
	must[int](t)(h.WriteAt(f.Ino, []byte("before"), 0))
	ok(t, h.Sync())
	sn := must[Snapshot](t)(s.Snapshot("p", "a", "a-snap", SnapshotOptions{}))
	if _, err := s.RenameBranch("p", "a", "b"); !errors.Is(err, ErrBusy) {
		t.Errorf("rename with an open head: %v", err)
	}
	ok(t, h.Close())
	must[Branch](t)(s.Fork("p", "a", "child", AtHead(), BranchOptions{}))
	must[Branch](t)(s.Fork("p", "main", "taken", AtHead(), BranchOptions{}))
	if _, err := s.RenameBranch("p", "a", "taken"); !errors.Is(err, ErrBranchExists) {
		t.Errorf("rename onto a taken name: %v", err)
	}
	if _, err := s.RenameBranch("p", "a", "Bad!"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("rename to an invalid name: %v", err)
	}
	b := must[Branch](t)(s.RenameBranch("p", "a", "b"))
	check := func() {
		t.Helper()
		got := must[Branch](t)(s.Branch("p", "b"))
		if got.ID != a.ID || got.Timeline != a.Timeline || got.ParentSeq != a.ParentSeq || !got.CreatedAt.Equal(a.CreatedAt) ||
			got.Parent != a.Parent || got.Labels["k"] != "v" || got.Name != "b" {
			t.Errorf("renamed %+v, was %+v", got, a)
		}
		if _, err := s.Branch("p", "a"); !errors.Is(err, ErrBranchNotFound) {
			t.Errorf("old name: %v", err)
		}
		c := must[Branch](t)(s.Branch("p", "child"))
		if c.Parent != a.ID {
			t.Errorf("child's parent %d, want %d", c.Parent, a.ID)
		}
		sns := must[[]Snapshot](t)(s.Snapshots("p"))
		if len(sns) != 1 || sns[0].Branch != a.ID || sns[0].Seq != sn.Seq {
			t.Errorf("snapshots %+v", sns)
		}
		// The history from before the rename is the branch's own.
		must[Branch](t)(s.Fork("p", "b", "pit", AtSeq(sn.Seq), BranchOptions{}))
		v := must[*View](t)(s.OpenView("p", "pit", AtHead()))
		fa := must[Attr](t)(v.Lookup(RootIno, "f"))
		buf := make([]byte, 6)
		if n, err := v.ReadAt(fa.Ino, buf, 0); n != 6 || string(buf) != "before" {
			t.Errorf("pit read %q %v", buf[:n], err)
		}
		ok(t, v.Close())
		ok(t, s.DeleteBranch("p", "pit", DeleteOptions{}))
		ok(t, s.Check())
	}
	if b.Name != "b" {
		t.Errorf("rename returned %+v", b)
	}
	check()
	ok(t, s.Close())
	s, err = Open(dir, &Options{GCInterval: -1})
	ok(t, err)
	defer s.Close()
	check()
	must[Branch](t)(s.Fork("p", "main", "a", AtHead(), BranchOptions{})) // the old name is free
	ok(t, s.Check())
}
