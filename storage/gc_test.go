package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// countKeys counts the stored versions of kind in timeline tl whose key
// starts with the given fields (an inode for inodes and blocks, a
// directory for dirents).
func countKeys(t testing.TB, s *Store, kind byte, tl, ino uint64) int {
	t.Helper()
	lo := append(enc.TimelinePrefix(kind, tl), enc.U64(ino)...)
	hi := append(enc.TimelinePrefix(kind, tl), enc.U64(ino+1)...)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	ok(t, err)
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	ok(t, it.Error())
	return n
}

// TestGCTombstones: directory-entry and inode tombstones go once nothing
// reads through them, and stay while a child's branch point reads the
// versions they shadow or while they shadow the parent's data.
func TestGCTombstones(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	s := openTest(t, &Options{GCInterval: -1, HistoryWindow: 10 * time.Second, HistoryTick: time.Hour, Now: clk.Now})
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	d := must[Attr](t)(h.Mkdir(RootIno, "d", 0o755, 0, 0))
	f := must[Attr](t)(h.Create(d.Ino, "f", 0o644, 0, 0))
	for i := range 3 {
		must[int](t)(h.WriteAt(f.Ino, page(i+1), int64(i)*BlockSize))
	}
	ok(t, h.Sync())
	s.Tick()
	must[Branch](t)(s.Fork("p", "main", "c", AtHead(), BranchOptions{}))
	ok(t, h.Unlink(d.Ino, "f"))
	ok(t, h.Forget(f.Ino))
	ok(t, h.Rmdir(RootIno, "d"))
	hc := must[*Head](t)(s.OpenHead("p", "c"))
	ok(t, hc.Unlink(d.Ino, "f"))
	ok(t, hc.Forget(f.Ino))
	ok(t, hc.Close())

	pass := func() GCStats {
		t.Helper()
		for range 3 {
			clk.Add(6 * time.Second)
			s.Tick()
		}
		st := must[GCStats](t)(s.GC(context.Background()))
		if fst := must[GCStats](t)(s.GCFull(context.Background())); fst.Deleted != 0 {
			t.Fatalf("full pass after incremental deleted %d", fst.Deleted)
		}
		return st
	}
	main := must[Branch](t)(s.Branch("p", "main")).Timeline
	child := must[Branch](t)(s.Branch("p", "c")).Timeline
	pass()
	// The child's branch point reads d/f: main keeps its versions and its
	// tombstones; the child's tombstones shadow main's data.
	if n := countKeys(t, s, enc.KindBlock, main, f.Ino); n != 3 {
		t.Fatalf("main keeps %d blocks of f, want 3", n)
	}
	if n := countKeys(t, s, enc.KindInode, child, f.Ino); n != 1 {
		t.Fatalf("child keeps %d versions of f's inode, want its tombstone", n)
	}
	if n := countKeys(t, s, enc.KindDirent, child, d.Ino); n != 1 {
		t.Fatalf("child keeps %d versions of d/f, want its tombstone", n)
	}
	v := must[*View](t)(s.OpenView("p", "c", AtHead()))
	if _, err := v.Lookup(d.Ino, "f"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("child reads d/f after unlinking it: %v", err)
	}
	ok(t, v.Close())
	v = must[*View](t)(s.OpenView("p", "main", AtForkPoint("c")))
	if got := readAll(t, v, must[Attr](t)(v.Lookup(d.Ino, "f")).Ino); !bytes.Equal(got[:BlockSize], page(1)) || len(got) != 3*BlockSize {
		t.Fatal("the branch point reads d/f wrong")
	}
	ok(t, v.Close())
	ok(t, s.DeleteBranch("p", "c", DeleteOptions{}))
	st := pass()
	if st.Full {
		t.Fatal("second pass was full")
	}
	for _, k := range []struct {
		kind byte
		ino  uint64
		what string
	}{{enc.KindBlock, f.Ino, "blocks of f"}, {enc.KindInode, f.Ino, "inode f"}, {enc.KindInode, d.Ino, "inode d"},
		{enc.KindDirent, d.Ino, "entries of d"}} {
		if n := countKeys(t, s, k.kind, main, k.ino); n != 0 {
			t.Errorf("%s: %d versions left after the branch point went (stats %+v)", k.what, n, st)
		}
	}
	// The root's entry "d" was created and removed in main: its tombstone goes too.
	if n := countKeys(t, s, enc.KindDirent, main, RootIno); n != 0 {
		t.Errorf("entries of the root: %d versions left", n)
	}
	if _, pinned := s.cands.count(); pinned != 0 {
		t.Errorf("%d candidates still parked under read points that went away", pinned)
	}
	if _, err := h.Lookup(RootIno, "d"); err == nil {
		t.Fatal("d is back")
	}
	ok(t, h.Close())
}

// TestGCConcurrentWrites runs GC passes, ticks and short-lived forks while
// a head rewrites blocks: reads stay right, and once the writer stops an
// incremental pass leaves nothing for a full pass (no write registered
// during a pass is lost).
func TestGCConcurrentWrites(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	s := openTest(t, &Options{GCInterval: -1, HistoryWindow: 5 * time.Second, HistoryTick: time.Hour, GCBatch: 20, HeadBufferBytes: 2 * BlockSize, Now: clk.Now})
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	f := must[Attr](t)(h.Create(RootIno, "f", 0o644, 0, 0))
	const blocks = 40
	want := make([]byte, blocks*BlockSize)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			blk := rng.IntN(blocks)
			p := page(i)
			if _, err := h.WriteAt(f.Ino, p, int64(blk)*BlockSize); err != nil {
				done <- err
				return
			}
			copy(want[blk*BlockSize:], p)
			if i%7 == 0 {
				if err := h.Flush(); err != nil {
					done <- err
					return
				}
			}
		}
	}()
	for i := range 60 {
		clk.Add(time.Second)
		s.Tick()
		if i%5 == 0 {
			name := fmt.Sprintf("e%d", i)
			must[Branch](t)(s.Fork("p", "main", name, AtHead(), BranchOptions{}))
			if i%10 == 0 {
				must[Snapshot](t)(s.Snapshot("p", name, "s"+name, SnapshotOptions{}))
			}
			ok(t, s.DeleteBranch("p", name, DeleteOptions{}))
			if i%10 == 0 && i > 0 {
				ok(t, s.DeleteSnapshot("p", fmt.Sprintf("se%d", i-10)))
			}
		}
		must[GCStats](t)(s.GC(context.Background()))
	}
	close(stop)
	ok(t, <-done)
	ok(t, h.Flush())
	for range 8 {
		clk.Add(time.Second)
		s.Tick()
	}
	must[GCStats](t)(s.GC(context.Background()))
	if st := must[GCStats](t)(s.GCFull(context.Background())); st.Deleted != 0 {
		t.Fatalf("full pass after incremental deleted %d", st.Deleted)
	}
	if got := readAll(t, h, f.Ino); !bytes.Equal(got, want[:len(got)]) {
		t.Fatal("content differs after GC")
	}
}

// TestGCCandidatesAcrossRestart: a clean close saves the GC candidates,
// so the first pass after reopening is incremental, keeps what a snapshot
// still reads (the parked candidates come back, and park again) and
// collects it once the snapshot goes, with nothing left for a full pass
// to find; the saved records are gone once the store is open, so a crash
// finds none. A store closed before its first (full) pass finished saves
// nothing and starts with a full pass.
func TestGCCandidatesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	opts := &Options{GCInterval: -1, HistoryWindow: 10 * time.Second, HistoryTick: time.Hour, Now: clk.Now}
	age := func(s *Store) {
		for range 3 {
			clk.Add(6 * time.Second)
			s.Tick()
		}
	}
	reopen := func(s *Store) *Store {
		t.Helper()
		ok(t, s.Close())
		s = must[*Store](t)(Open(dir, opts))
		ok(t, s.Check()) // no saved candidates left in the open store
		return s
	}
	s := must[*Store](t)(Open(dir, opts))
	defer func() { _ = s.Close() }()
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	f := must[Attr](t)(h.Create(RootIno, "f", 0o644, 0, 0))
	const blocks, rewritten = 64, 32
	for i := range blocks {
		must[int](t)(h.WriteAt(f.Ino, page(i), int64(i)*BlockSize))
	}
	ok(t, h.Sync())
	age(s)
	if st := must[GCStats](t)(s.GC(context.Background())); !st.Full {
		t.Fatalf("first pass after Open: %+v, want a full one", st)
	}
	must[Snapshot](t)(s.Snapshot("p", "main", "before", SnapshotOptions{}))
	for i := range rewritten {
		must[int](t)(h.WriteAt(f.Ino, page(1000+i), int64(i)*BlockSize))
	}
	ok(t, h.Close())
	tl := must[Branch](t)(s.Branch("p", "main")).Timeline
	s = reopen(s)
	v := must[*View](t)(s.OpenView("p", "main", AtSnapshot("before")))
	for i := range rewritten {
		got := make([]byte, BlockSize)
		must[int](t)(v.ReadAt(f.Ino, got, int64(i)*BlockSize))
		if !bytes.Equal(got, page(i)) {
			t.Fatalf("block %d at the snapshot changed", i)
		}
	}
	ok(t, v.Close())
	age(s)
	st := must[GCStats](t)(s.GC(context.Background()))
	if st.Full || st.Candidates == 0 || st.Deleted != 0 {
		t.Fatalf("first pass after a clean reopen: %+v, want an incremental pass that keeps what the snapshot reads", st)
	}
	if active, pinned := s.cands.count(); active != 0 || pinned == 0 {
		t.Fatalf("after the pass: %d active and %d parked candidates, want only parked ones", active, pinned)
	}
	// Closed and reopened again while the versions are parked under the
	// snapshot: they come back with the candidates.
	s = reopen(s)
	ok(t, s.DeleteSnapshot("p", "before"))
	age(s)
	st = must[GCStats](t)(s.GC(context.Background()))
	if st.Full || st.Deleted < rewritten {
		t.Fatalf("pass after the snapshot went: %+v, want an incremental pass deleting the %d old versions", st, rewritten)
	}
	if n := countKeys(t, s, enc.KindBlock, tl, f.Ino); n != blocks {
		t.Fatalf("%d block versions left, want %d", n, blocks)
	}
	if fst := must[GCStats](t)(s.GCFull(context.Background())); fst.Deleted != 0 {
		t.Fatalf("a full pass after the incremental ones deleted %d versions", fst.Deleted)
	}
	// What a crash leaves (pebble's consistent copy of the open store):
	// no saved candidates, so the first pass is a full one; closed before
	// that pass, it saves none either.
	crashed := filepath.Join(t.TempDir(), "crashed")
	ok(t, s.db.Checkpoint(crashed))
	c := must[*Store](t)(Open(crashed, opts))
	ok(t, c.Close())
	c = must[*Store](t)(Open(crashed, opts))
	defer func() { _ = c.Close() }()
	if st := must[GCStats](t)(c.GC(context.Background())); !st.Full {
		t.Fatalf("first pass after a crash: %+v, want a full one", st)
	}
}
