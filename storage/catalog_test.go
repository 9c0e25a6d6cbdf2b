package storage

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// clock is a settable time source for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func writeFile(t testing.TB, h *Head, name, content string) uint64 {
	t.Helper()
	a, err := h.Lookup(RootIno, name)
	if errors.Is(err, ErrNotExist) {
		a, err = h.Create(RootIno, name, 0o644, 0, 0)
	}
	ok(t, err)
	must[Attr](t)(h.SetAttr(a.Ino, SetAttrIn{Valid: SetSize, Size: 0}))
	must[int](t)(h.WriteAt(a.Ino, []byte(content), 0))
	return a.Ino
}

func readFile(t testing.TB, s *Store, branch string, at At, name string) string {
	t.Helper()
	v, err := s.OpenView("p", branch, at)
	ok(t, err)
	defer v.Close()
	a, err := v.Lookup(RootIno, name)
	if errors.Is(err, ErrNotExist) {
		return "<none>"
	}
	ok(t, err)
	return string(readAll(t, v, a.Ino))
}

func TestForkPoints(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)}
	s := openTest(t, &Options{GCInterval: -1, HistoryWindow: time.Hour, HistoryTick: time.Hour, Now: c.Now})
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	writeFile(t, h, "f", "v1")
	ok(t, h.Flush())
	s1 := h.Seq()
	s.Tick()
	t1 := c.Now()
	c.Add(10 * time.Second)
	writeFile(t, h, "f", "v2")
	must[Snapshot](t)(s.Snapshot("p", "main", "snap2", SnapshotOptions{}))
	s.Tick()
	c.Add(10 * time.Second)
	writeFile(t, h, "f", "v3")

	must[Branch](t)(s.Fork("p", "main", "at-time", AtTime(t1.Add(5*time.Second)), BranchOptions{}))
	must[Branch](t)(s.Fork("p", "main", "at-seq", AtSeq(s1), BranchOptions{}))
	must[Branch](t)(s.Fork("p", "", "at-snap", AtSnapshot("snap2"), BranchOptions{}))
	must[Branch](t)(s.Fork("p", "main", "at-head", AtHead(), BranchOptions{}))
	for _, tc := range []struct{ branch, want string }{
		{"at-time", "v1"}, {"at-seq", "v1"}, {"at-snap", "v2"}, {"at-head", "v3"}, {"main", "v3"},
	} {
		if got := readFile(t, s, tc.branch, AtHead(), "f"); got != tc.want {
			t.Errorf("%s reads %q, want %q", tc.branch, got, tc.want)
		}
	}
	if got := readFile(t, s, "main", AtSnapshot("snap2"), "f"); got != "v2" {
		t.Errorf("view at snapshot reads %q", got)
	}
	if b := must[Branch](t)(s.Branch("p", "at-snap")); b.Parent == 0 {
		t.Errorf("fork at snapshot has no parent branch")
	}

	// Bad points.
	if _, err := s.Fork("p", "main", "x", AtSeq(h.Seq()+1000), BranchOptions{}); !errors.Is(err, ErrFuture) {
		t.Errorf("future seq: %v", err)
	}
	if _, err := s.Fork("p", "main", "x", AtTime(c.Now().Add(time.Minute)), BranchOptions{}); !errors.Is(err, ErrFuture) {
		t.Errorf("future time: %v", err)
	}
	if _, err := s.Fork("p", "main", "x", AtTime(c.Now().Add(-2*time.Hour)), BranchOptions{}); !errors.Is(err, ErrBeforeHorizon) {
		t.Errorf("time before window: %v", err)
	}
	if _, err := s.Fork("p", "at-head", "x", AtSeq(s1), BranchOptions{}); !errors.Is(err, ErrBeforeHorizon) {
		t.Errorf("seq before branch start: %v", err)
	}
	c.Add(2 * time.Hour)
	writeFile(t, h, "f", "v4")
	s.Tick()
	if _, err := s.Fork("p", "main", "x", AtSeq(s1), BranchOptions{}); !errors.Is(err, ErrBeforeHorizon) {
		t.Errorf("seq before GC horizon: %v", err)
	}
	if _, err := s.Fork("p", "main", "x", AtSnapshot("nope"), BranchOptions{}); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("unknown snapshot: %v", err)
	}

	// The fork point of at-head (main at v3) is exact, where AtSeq of
	// its seq rounds down to a tick boundary (main at v2).
	fp := must[Branch](t)(s.Branch("p", "at-head")).ParentSeq
	if y := must[Branch](t)(s.Fork("p", "main", "y", AtSeq(fp), BranchOptions{})); y.ParentSeq == fp {
		t.Errorf("AtSeq(%d) was not rounded: the check below cannot fail", fp)
	}
	base := must[Branch](t)(s.Fork("p", "main", "base", AtForkPoint("at-head"), BranchOptions{}))
	if got := readFile(t, s, "base", AtHead(), "f"); got != "v3" || base.ParentSeq != fp {
		t.Errorf("fork at at-head's fork point reads %q at seq %d, want v3 at %d", got, base.ParentSeq, fp)
	}
	if _, err := s.Fork("p", "main", "z", AtForkPoint("main"), BranchOptions{}); !errors.Is(err, ErrNoParent) {
		t.Errorf("fork point of the root: %v", err)
	}
	if _, err := s.Fork("p", "main", "z", AtForkPoint("nope"), BranchOptions{}); !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("fork point of an unknown branch: %v", err)
	}
}

func TestCatalogErrors(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	for _, name := range []string{"", "A", "-x", ".x", "a b", "a\x00", strings.Repeat("a", 64), "ü"} {
		if _, err := s.Fork("p", "main", name, AtHead(), BranchOptions{}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("branch name %q: %v", name, err)
		}
		if _, _, err := s.CreateProject(name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("project name %q: %v", name, err)
		}
		if _, err := s.Snapshot("p", "main", name, SnapshotOptions{}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("snapshot name %q: %v", name, err)
		}
	}
	for _, name := range []string{"a", "0", "feature/x-1.2_", strings.Repeat("a", 63)} {
		if !ValidName(name) {
			t.Errorf("valid name %q refused", name)
		}
	}
	if _, _, err := s.CreateProject("p"); !errors.Is(err, ErrProjectExists) {
		t.Errorf("duplicate project: %v", err)
	}
	if _, err := s.Fork("nope", "main", "x", AtHead(), BranchOptions{}); !errors.Is(err, ErrProjectNotFound) {
		t.Errorf("unknown project: %v", err)
	}
	if _, err := s.Fork("p", "nope", "x", AtHead(), BranchOptions{}); !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("unknown branch: %v", err)
	}
	must[Branch](t)(s.Fork("p", "main", "dev", AtHead(), BranchOptions{Protected: true, Labels: map[string]string{"k": "v"}}))
	if _, err := s.Fork("p", "main", "dev", AtHead(), BranchOptions{}); !errors.Is(err, ErrBranchExists) {
		t.Errorf("duplicate branch: %v", err)
	}
	if err := s.DeleteBranch("p", "dev", DeleteOptions{}); !errors.Is(err, ErrProtected) {
		t.Errorf("delete protected: %v", err)
	}
	if _, err := s.Reset("p", "dev", ResetOptions{}); !errors.Is(err, ErrProtected) {
		t.Errorf("reset protected: %v", err)
	}
	if _, err := s.Reset("p", "main", ResetOptions{}); !errors.Is(err, ErrNoParent) {
		t.Errorf("reset root: %v", err)
	}
	if err := s.DeleteBranch("p", "main", DeleteOptions{}); !errors.Is(err, ErrProtected) {
		t.Errorf("delete main: %v", err)
	}
	f := false
	must[Branch](t)(s.UpdateBranch("p", "dev", BranchUpdate{Protected: &f}))
	must[Branch](t)(s.Fork("p", "dev", "dev2", AtHead(), BranchOptions{}))
	if err := s.DeleteBranch("p", "dev", DeleteOptions{}); !errors.Is(err, ErrHasChildren) {
		t.Errorf("delete with children: %v", err)
	}
	h := must[*Head](t)(s.OpenHead("p", "dev2"))
	if err := s.DeleteBranch("p", "dev", DeleteOptions{Cascade: true}); !errors.Is(err, ErrBusy) {
		t.Errorf("delete with open head: %v", err)
	}
	ok(t, h.Close())
	if _, err := h.GetAttr(RootIno); !errors.Is(err, ErrClosed) {
		t.Errorf("closed head: %v", err)
	}
	ok(t, s.DeleteBranch("p", "dev", DeleteOptions{Cascade: true}))
	if bs := must[[]Branch](t)(s.Branches("p")); len(bs) != 1 {
		t.Errorf("branches after cascade: %+v", bs)
	}
	if _, err := s.OpenHead("p", "dev2"); !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("deleted branch: %v", err)
	}
	if err := s.DeleteSnapshot("p", "nope"); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("unknown snapshot: %v", err)
	}
}

func TestResetAndDelete(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	writeFile(t, h, "f", "main1")
	must[Branch](t)(s.Fork("p", "main", "dev", AtHead(), BranchOptions{}))
	c := must[*Head](t)(s.OpenHead("p", "dev"))
	writeFile(t, c, "f", "dev1")
	if _, err := s.Reset("p", "dev", ResetOptions{}); !errors.Is(err, ErrBusy) {
		t.Errorf("reset with open head: %v", err)
	}
	ok(t, c.Close())
	must[Branch](t)(s.Fork("p", "dev", "grandchild", AtHead(), BranchOptions{}))
	writeFile(t, h, "f", "main2")
	must[Branch](t)(s.Reset("p", "dev", ResetOptions{Snapshot: "before-reset"}))
	if got := readFile(t, s, "dev", AtHead(), "f"); got != "main2" {
		t.Errorf("dev after reset: %q", got)
	}
	if got := readFile(t, s, "", AtSnapshot("before-reset"), "f"); got != "dev1" {
		t.Errorf("old head snapshot: %q", got)
	}
	if got := readFile(t, s, "grandchild", AtHead(), "f"); got != "dev1" {
		t.Errorf("grandchild after parent reset: %q", got)
	}
	must[Branch](t)(s.Reset("p", "dev", ResetOptions{Discard: true}))
	ok(t, s.DeleteSnapshot("p", "before-reset"))
	if got := readFile(t, s, "grandchild", AtHead(), "f"); got != "dev1" {
		t.Errorf("grandchild after snapshot delete: %q", got)
	}
	ok(t, s.DeleteBranch("p", "grandchild", DeleteOptions{}))
	// Every timeline but main's and dev's current one is gone now.
	s.mu.Lock()
	n := len(s.cat.timelines)
	s.mu.Unlock()
	if n != 2 {
		t.Errorf("%d timelines left, want 2", n)
	}
}

// TestResetOntoSnapshot: a root branch with a child is put back onto a
// snapshot of itself in place: it reads the snapshot, keeps its ID and
// fork point, its child keeps reading what it forked, and the state it
// left is kept as a snapshot, which GC and Check respect.
func TestResetOntoSnapshot(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	writeFile(t, h, "f", "v1")
	must[Snapshot](t)(s.Snapshot("p", "main", "pre", SnapshotOptions{}))
	writeFile(t, h, "f", "v2")
	must[Branch](t)(s.Fork("p", "main", "child", AtHead(), BranchOptions{}))
	writeFile(t, h, "g", "new")
	if _, err := s.Reset("p", "main", ResetOptions{To: AtSnapshot("pre")}); !errors.Is(err, ErrBusy) {
		t.Errorf("reset with open head: %v", err)
	}
	ok(t, h.Close())
	if _, err := s.Reset("p", "main", ResetOptions{To: AtSeq(1)}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("reset onto a seq: %v", err)
	}
	if _, err := s.Reset("p", "main", ResetOptions{To: AtSnapshot("nope")}); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("reset onto an unknown snapshot: %v", err)
	}
	old := must[Branch](t)(s.Branch("p", "main"))
	nb := must[Branch](t)(s.Reset("p", "main", ResetOptions{To: AtSnapshot("pre"), Snapshot: "post"}))
	if nb.ID != old.ID || nb.Timeline == old.Timeline || nb.ParentSeq != old.ParentSeq {
		t.Errorf("reset onto a snapshot: %+v, was %+v", nb, old)
	}
	if got := readFile(t, s, "main", AtHead(), "f"); got != "v1" {
		t.Errorf("main after reset onto pre: %q", got)
	}
	if got := readFile(t, s, "child", AtHead(), "f"); got != "v2" {
		t.Errorf("child after its parent's reset: %q", got)
	}
	if got := readFile(t, s, "", AtSnapshot("post"), "g"); got != "new" {
		t.Errorf("the state main left: %q", got)
	}
	ok(t, s.DeleteSnapshot("p", "pre"))
	must[GCStats](t)(s.GC(context.Background()))
	if got := readFile(t, s, "main", AtHead(), "f"); got != "v1" {
		t.Errorf("main after its snapshot was deleted and GC: %q", got)
	}
	ok(t, s.Check())
}

func TestFormatVersion(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{GCInterval: -1})
	ok(t, err)
	ok(t, s.db.Set([]byte("\x00format"), []byte{0, 0, 0, 99}, nil))
	ok(t, s.Close())
	if _, err := Open(dir, nil); !errors.Is(err, ErrFormat) {
		t.Fatalf("open with unknown format: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)}
	s := openTest(t, &Options{GCInterval: -1, Now: c.Now})
	_, _, err := s.CreateProject("p")
	ok(t, err)
	soon := c.Now().Add(time.Minute)
	must[Branch](t)(s.Fork("p", "main", "tmp", AtHead(), BranchOptions{ExpiresAt: soon}))
	must[Branch](t)(s.Fork("p", "main", "kept", AtHead(), BranchOptions{ExpiresAt: soon, Protected: true}))
	must[Branch](t)(s.Fork("p", "main", "parent", AtHead(), BranchOptions{ExpiresAt: soon}))
	must[Branch](t)(s.Fork("p", "parent", "child", AtHead(), BranchOptions{}))
	must[Snapshot](t)(s.Snapshot("p", "main", "snap", SnapshotOptions{ExpiresAt: soon}))
	st := must[GCStats](t)(s.GC(context.Background()))
	if st.ExpiredBranches != 0 || st.ExpiredSnapshots != 0 {
		t.Fatalf("expired too early: %+v", st)
	}
	c.Add(2 * time.Minute)
	st = must[GCStats](t)(s.GC(context.Background()))
	if st.ExpiredBranches != 1 || st.ExpiredSnapshots != 1 {
		t.Fatalf("expiry: %+v", st)
	}
	var names []string
	for _, b := range must[[]Branch](t)(s.Branches("p")) {
		names = append(names, b.Name)
	}
	if strings.Join(names, ",") != "child,kept,main,parent" {
		t.Fatalf("branches after expiry: %v", names)
	}
	if sn := must[[]Snapshot](t)(s.Snapshots("p")); len(sn) != 0 {
		t.Fatalf("snapshots after expiry: %v", sn)
	}
}

// TestResetOntoSnapshotKeepsForkPoint: a branch reset onto a snapshot of
// another branch keeps its fork point from its parent (the base of a merge
// back), and the store keeps that point readable once nothing else reads
// it, through GC past the history window and a reopen, until the branch
// lets go of it (reset onto its parent, delete).
func TestResetOntoSnapshotKeepsForkPoint(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	opts := &Options{GCInterval: -1, HistoryWindow: time.Minute, HistoryTick: time.Second, Now: c.Now}
	s, err := Open(dir, opts)
	ok(t, err)
	_, _, err = s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	writeFile(t, h, "f", "base")
	ok(t, h.Sync())
	dev := must[Branch](t)(s.Fork("p", "main", "dev", AtHead(), BranchOptions{}))
	c.Add(2 * time.Second)
	writeFile(t, h, "f", "main2") // shadows what dev forked from
	ok(t, h.Sync())
	must[Branch](t)(s.Fork("p", "main", "other", AtHead(), BranchOptions{}))
	o := must[*Head](t)(s.OpenHead("p", "other"))
	writeFile(t, o, "f", "other")
	ok(t, o.Close())
	must[Snapshot](t)(s.Snapshot("p", "other", "s1", SnapshotOptions{}))
	ok(t, s.DeleteBranch("p", "other", DeleteOptions{}))
	d := must[*Head](t)(s.OpenHead("p", "dev"))
	writeFile(t, d, "f", "dev1")
	ok(t, d.Close())

	nb := must[Branch](t)(s.Reset("p", "dev", ResetOptions{To: AtSnapshot("s1"), Discard: true}))
	if nb.ParentSeq != dev.ParentSeq || nb.BaseTimeline == 0 {
		t.Errorf("reset onto s1: %+v, was %+v", nb, dev)
	}
	ok(t, s.DeleteSnapshot("p", "s1")) // dev's timeline still reads it
	c.Add(5 * time.Minute)
	writeFile(t, h, "f", "main3")
	ok(t, h.Sync())
	c.Add(5 * time.Minute)
	must[GCStats](t)(s.GC(context.Background()))
	check := func() {
		t.Helper()
		if got := readFile(t, s, "dev", AtHead(), "f"); got != "other" {
			t.Errorf("dev after reset onto s1: %q", got)
		}
		if got := readFile(t, s, "main", AtForkPoint("dev"), "f"); got != "base" {
			t.Errorf("dev's fork point after GC: %q", got)
		}
		ok(t, s.Check())
	}
	check()
	ok(t, h.Close())
	ok(t, s.Close())
	s, err = Open(dir, opts)
	ok(t, err)
	defer s.Close()
	must[GCStats](t)(s.GC(context.Background()))
	check()
	// Reset onto its parent, the branch forks anew: the old point goes.
	must[Branch](t)(s.Reset("p", "dev", ResetOptions{Discard: true}))
	if b := must[Branch](t)(s.Branch("p", "dev")); b.BaseTimeline != 0 {
		t.Errorf("after a reset onto its parent: base timeline %d", b.BaseTimeline)
	}
	must[GCStats](t)(s.GC(context.Background()))
	if got := readFile(t, s, "main", AtForkPoint("dev"), "f"); got != "main3" {
		t.Errorf("dev's fork point after reset: %q", got)
	}
	ok(t, s.DeleteBranch("p", "dev", DeleteOptions{}))
	ok(t, s.Check())
}

// TestResetAutoNames: resets in a row at the same seq each keep the old
// head under a name of their own.
func TestResetAutoNames(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	must[Branch](t)(s.Fork("p", "main", "dev", AtHead(), BranchOptions{}))
	for range 3 {
		must[Branch](t)(s.Reset("p", "dev", ResetOptions{}))
	}
	if sns := must[[]Snapshot](t)(s.Snapshots("p")); len(sns) != 3 {
		t.Errorf("snapshots after three resets: %+v", sns)
	}
}

// TestMainNeverExpires: an expiry on a project's main branch is refused,
// and one written before that was refused does not stop GC.
func TestMainNeverExpires(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	past := time.Now().Add(-time.Hour)
	if _, err := s.UpdateBranch("p", "main", BranchUpdate{ExpiresAt: &past}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("expiry on main: %v", err)
	}
	var never time.Time
	must[Branch](t)(s.UpdateBranch("p", "main", BranchUpdate{ExpiresAt: &never}))
	// As an older version left it.
	s.mu.Lock()
	_, b, err := s.branchLocked("p", "main")
	if err == nil {
		nb := copyBranch(b)
		nb.ExpiresAt = past
		bt := s.db.NewBatch()
		putRecord(bt, enc.KindBranch, nb.ID, &nb)
		err = bt.Commit(nil)
		s.cat.putBranch(&nb)
	}
	s.mu.Unlock()
	ok(t, err)
	must[GCStats](t)(s.GC(context.Background()))
	must[Branch](t)(s.Branch("p", "main"))
}
