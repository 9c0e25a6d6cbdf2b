package storage

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// TestGCNamed: a pass deletes the versions rewrites in place shadowed by
// key (named versions); a version a snapshot reads is kept and goes by
// an ordinary visit once the snapshot does; and a named version that a
// walking visit deleted in between (what a full pass running while the
// rewrite is registered does) is visited by walking, so nothing is
// deleted or uncounted twice.
func TestGCNamed(t *testing.T) {
	for _, batch := range []int{0, 3} { // the default, and batches that end inside candidates
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) { testGCNamed(t, batch) })
	}
}

func testGCNamed(t *testing.T, batch int) {
	clk := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	s := openTest(t, &Options{GCInterval: -1, GCBatch: batch, HistoryWindow: 10 * time.Second, HistoryTick: time.Hour, Now: clk.Now})
	age := func() {
		for range 3 {
			clk.Add(6 * time.Second)
			s.Tick()
		}
	}
	gc := func() GCStats {
		t.Helper()
		st := must[GCStats](t)(s.GC(context.Background()))
		ok(t, s.Check()) // counters equal a recount
		return st
	}
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	defer func() { _ = h.Close() }()
	f := must[Attr](t)(h.Create(RootIno, "f", 0o644, 0, 0))
	tl := must[Branch](t)(s.Branch("p", "main")).Timeline
	const blocks = 64
	want := make([][]byte, blocks)
	write := func(from, to, gen int) {
		t.Helper()
		for i := from; i < to; i++ {
			want[i] = page(gen*100 + i)
			must[int](t)(h.WriteAt(f.Ino, want[i], int64(i)*BlockSize))
		}
		ok(t, h.Flush())
	}
	check := func(n int) {
		t.Helper()
		if got := countKeys(t, s, enc.KindBlock, tl, f.Ino); got != n {
			t.Fatalf("%d block versions stored, want %d", got, n)
		}
		for i := range blocks {
			got := make([]byte, BlockSize)
			must[int](t)(h.ReadAt(f.Ino, got, int64(i)*BlockSize))
			if !bytes.Equal(got, want[i]) {
				t.Fatalf("block %d reads wrong", i)
			}
		}
	}
	write(0, blocks, 0)
	age()
	gc() // the full pass after Open

	// Rewrites in place, twice for half of them: every shadowed block
	// version goes by key (the file's attribute versions by a visit).
	write(0, 32, 1)
	write(0, 16, 2)
	age()
	if st := gc(); st.Named != 48 {
		t.Fatalf("pass after 48 rewrites: %+v, want 48 versions deleted by key", st)
	}
	check(blocks)

	// A snapshot between two rewrites: its version stays, parked under
	// the snapshot, and goes by an ordinary visit once the snapshot does.
	write(32, 40, 1)
	must[Snapshot](t)(s.Snapshot("p", "main", "snap", SnapshotOptions{}))
	write(32, 40, 2)
	age()
	if st := gc(); st.Named != 8 {
		t.Fatalf("pass with a snapshot: %+v, want the 8 versions before it deleted by key", st)
	}
	check(blocks + 8)
	ok(t, s.DeleteSnapshot("p", "snap"))
	age()
	if st := gc(); st.Deleted < 8 || st.Named != 0 {
		t.Fatalf("pass after the snapshot went: %+v, want its 8 versions deleted by a visit", st)
	}
	check(blocks)

	// A walking visit deletes named versions before a pass takes them.
	write(40, 48, 1)
	age()
	named := s.cands.takeNamed(tl, 100, true, math.MaxUint64)
	if len(named) != 8 {
		t.Fatalf("named versions of the rewrite: %+v, want 8", named)
	}
	if st := must[GCStats](t)(s.GCFull(context.Background())); st.Deleted < 8 {
		t.Fatalf("full pass: %+v, want the 8 shadowed versions deleted", st)
	}
	s.cands.note(tl, candSet{}, named) // registered after the walk
	if st := gc(); st.Deleted != 0 || st.Candidates != 1 {
		t.Fatalf("pass over the stale named versions: %+v, want it visited and nothing deleted", st)
	}
	check(blocks)
}

// TestGCNamedCutVersion: a rewrite does not name a version a truncation
// cut, which a pass may delete before the rewrite is counted (through an
// iterator the head opened before that pass).
func TestGCNamedCutVersion(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	s := openTest(t, &Options{GCInterval: -1, HistoryWindow: 10 * time.Second, HistoryTick: time.Hour, Now: clk.Now})
	age := func() {
		for range 3 {
			clk.Add(6 * time.Second)
			s.Tick()
		}
	}
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	defer func() { _ = h.Close() }()
	f := must[Attr](t)(h.Create(RootIno, "f", 0o644, 0, 0))
	for i := range 8 {
		must[int](t)(h.WriteAt(f.Ino, page(i), int64(i)*BlockSize))
	}
	ok(t, h.Flush())
	age()
	must[GCStats](t)(s.GC(context.Background()))
	must[Attr](t)(h.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: 2 * BlockSize}))
	must[Attr](t)(h.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: 8 * BlockSize}))
	ok(t, h.Flush())
	age()
	must[int](t)(h.ReadAt(f.Ino, make([]byte, BlockSize), 0)) // the head's pooled iterator
	if st := must[GCStats](t)(s.GC(context.Background())); st.Deleted < 6 {
		t.Fatalf("pass after the truncation: %+v, want the 6 cut versions deleted", st)
	}
	must[int](t)(h.WriteAt(f.Ino, page(100), 5*BlockSize))
	ok(t, h.Flush())
	age()
	st := must[GCStats](t)(s.GC(context.Background()))
	ok(t, s.Check())
	if st.Named != 0 {
		t.Fatalf("pass after the rewrite: %+v, want no version deleted by key", st)
	}
}

// TestGCNamedAcrossRestart: named versions not yet collected when the
// store closes come back after Open as ordinary candidates.
func TestGCNamedAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	opts := &Options{GCInterval: -1, HistoryWindow: 10 * time.Second, HistoryTick: time.Hour, Now: clk.Now}
	age := func(s *Store) {
		for range 3 {
			clk.Add(6 * time.Second)
			s.Tick()
		}
	}
	s := must[*Store](t)(Open(dir, opts))
	defer func() { _ = s.Close() }()
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	f := must[Attr](t)(h.Create(RootIno, "f", 0o644, 0, 0))
	for i := range 16 {
		must[int](t)(h.WriteAt(f.Ino, page(i), int64(i)*BlockSize))
	}
	ok(t, h.Sync())
	age(s)
	must[GCStats](t)(s.GC(context.Background())) // the full pass after Open
	for i := range 16 {
		must[int](t)(h.WriteAt(f.Ino, page(100+i), int64(i)*BlockSize))
	}
	ok(t, h.Close())
	tl := must[Branch](t)(s.Branch("p", "main")).Timeline
	if active, _ := s.cands.count(); active < 16 {
		t.Fatalf("%d candidates before Close, want the 16 named versions among them", active)
	}
	ok(t, s.Close())
	s = must[*Store](t)(Open(dir, opts))
	age(s)
	st := must[GCStats](t)(s.GC(context.Background()))
	ok(t, s.Check())
	if st.Full || st.Deleted < 16 {
		t.Fatalf("first pass after a clean reopen: %+v, want an incremental one deleting the 16 shadowed versions", st)
	}
	if n := countKeys(t, s, enc.KindBlock, tl, f.Ino); n != 16 {
		t.Fatalf("%d block versions left, want 16", n)
	}
}
