package storage

import (
	"bytes"
	"maps"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

func TestUsage(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	f := must[Attr](t)(h.Create(RootIno, "f", 0o644, 0, 0))
	const blocks = 100
	for i := range blocks {
		must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{byte(i + 1)}, BlockSize), int64(i)*BlockSize))
	}
	must[Branch](t)(s.Fork("p", "main", "dev", AtHead(), BranchOptions{}))
	c := must[*Head](t)(s.OpenHead("p", "dev"))
	defer c.Close()
	must[int](t)(c.WriteAt(f.Ino, bytes.Repeat([]byte{9}, BlockSize), 0))
	mu := must[BranchUsage](t)(s.Usage("p", "main"))
	du := must[BranchUsage](t)(s.Usage("p", "dev"))
	if mu.LogicalBytes != blocks*BlockSize || du.LogicalBytes != blocks*BlockSize {
		t.Fatalf("logical %d %d", mu.LogicalBytes, du.LogicalBytes)
	}
	if mu.SharedBytes != 0 || du.SharedBytes != (blocks-1)*BlockSize {
		t.Fatalf("shared main %d dev %d", mu.SharedBytes, du.SharedBytes)
	}
	if mu.ExclusiveBytes < blocks*BlockSize || du.ExclusiveBytes > 2*BlockSize {
		t.Fatalf("exclusive main %d dev %d", mu.ExclusiveBytes, du.ExclusiveBytes)
	}
	// Current and history: main's 100 blocks are current; dev's one
	// block is, and it has no history yet.
	if mu.CurrentBytes < blocks*BlockSize || mu.CurrentBytes+mu.HistoryBytes != mu.ExclusiveBytes ||
		mu.HistoryBytes > blocks*BlockSize/10 {
		t.Fatalf("main: current %d history %d of %d", mu.CurrentBytes, mu.HistoryBytes, mu.ExclusiveBytes)
	}
	if du.CurrentBytes < BlockSize || du.CurrentBytes > 2*BlockSize || du.CurrentBytes+du.HistoryBytes != du.ExclusiveBytes {
		t.Fatalf("dev: current %d history %d of %d", du.CurrentBytes, du.HistoryBytes, du.ExclusiveBytes)
	}
	tu := must[StoreUsage](t)(s.TotalUsage())
	if tu.LogicalBytes != 2*blocks*BlockSize || tu.SavedBytes < (blocks-3)*BlockSize {
		t.Fatalf("total %+v", tu)
	}
	// Rewriting every block of main twice keeps 100 current blocks and
	// moves 200 versions into history (main is inside its history
	// window); truncating the file to half moves 50 more.
	for round := range 2 {
		for i := range blocks {
			must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{byte(i + 10 + round)}, BlockSize), int64(i)*BlockSize))
		}
		ok(t, h.Sync())
	}
	mu = must[BranchUsage](t)(s.Usage("p", "main"))
	if mu.CurrentBytes < blocks*BlockSize || mu.CurrentBytes > blocks*BlockSize*11/10 ||
		mu.HistoryBytes < 2*blocks*BlockSize || mu.CurrentBytes+mu.HistoryBytes != mu.ExclusiveBytes {
		t.Fatalf("main rewritten twice: current %d history %d of %d", mu.CurrentBytes, mu.HistoryBytes, mu.ExclusiveBytes)
	}
	_, err = h.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: blocks / 2 * BlockSize})
	ok(t, err)
	ok(t, h.Sync())
	mu = must[BranchUsage](t)(s.Usage("p", "main"))
	if mu.CurrentBytes < blocks/2*BlockSize || mu.CurrentBytes > blocks/2*BlockSize*11/10 ||
		mu.HistoryBytes < (2*blocks+blocks/2)*BlockSize {
		t.Fatalf("main truncated to half: current %d history %d of %d", mu.CurrentBytes, mu.HistoryBytes, mu.ExclusiveBytes)
	}
}

// TestUsageCounters pins down what the counters count: each inode once
// however many names it has, nothing for a file unlinked while open,
// sparse ranges as not stored by the branch.
func TestUsageCounters(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	f := must[Attr](t)(h.Create(RootIno, "f", 0o644, 0, 0))
	must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{1}, 2*BlockSize), 0))
	must[Attr](t)(h.Link(f.Ino, RootIno, "g"))
	// A sparse file: one block written at 3 blocks in, ending mid-block.
	sp := must[Attr](t)(h.Create(RootIno, "sparse", 0o644, 0, 0))
	must[int](t)(h.WriteAt(sp.Ino, bytes.Repeat([]byte{2}, 100), 3*BlockSize))
	u := must[BranchUsage](t)(s.Usage("p", "main"))
	if want := uint64(2*BlockSize + 3*BlockSize + 100); u.LogicalBytes != want || u.SharedBytes != 3*BlockSize {
		t.Fatalf("logical %d (want %d), shared %d (want the sparse file's 3 blocks)", u.LogicalBytes, want, u.SharedBytes)
	}
	ok(t, s.Check())
	// Unlinked while open: it no longer counts, though it is still written.
	ok(t, h.Unlink(RootIno, "g"))
	ok(t, h.Unlink(RootIno, "f"))
	must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{3}, BlockSize), 5*BlockSize))
	u = must[BranchUsage](t)(s.Usage("p", "main"))
	if u.LogicalBytes != 3*BlockSize+100 || u.CurrentBytes > 2*BlockSize {
		t.Fatalf("after unlink: %+v", u)
	}
	ok(t, s.Check())
	ok(t, h.Forget(f.Ino))
	ok(t, s.Check())
	// A symlink counts its target; fallocate extends a file sparsely;
	// truncating into the written block cuts it to its remaining bytes.
	must[Attr](t)(h.Symlink(RootIno, "l", "sparse", 0, 0))
	ok(t, h.Fallocate(sp.Ino, 0, 6*BlockSize))
	u = must[BranchUsage](t)(s.Usage("p", "main"))
	if u.LogicalBytes != 6*BlockSize+6 || u.SharedBytes != 5*BlockSize {
		t.Fatalf("after symlink and fallocate: %+v", u)
	}
	must[Attr](t)(h.SetAttr(sp.Ino, SetAttrIn{Valid: SetSize, Size: 3*BlockSize + 10}))
	u = must[BranchUsage](t)(s.Usage("p", "main"))
	if u.LogicalBytes != 3*BlockSize+16 || u.SharedBytes != 3*BlockSize {
		t.Fatalf("after truncate: %+v", u)
	}
	ok(t, s.Check())
}

// TestCountsRebuiltAtOpen: a store without counter records (written before
// they existed) gets them recounted at Open.
func TestCountsRebuiltAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := must[*Store](t)(Open(dir, &Options{GCInterval: -1}))
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	f := must[Attr](t)(h.Create(RootIno, "f", 0o644, 0, 0))
	must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{1}, 5*BlockSize+7), 0))
	ok(t, h.Close())
	must[Branch](t)(s.Fork("p", "main", "dev", AtHead(), BranchOptions{}))
	want := must[BranchUsage](t)(s.Usage("p", "dev"))
	ok(t, s.db.DeleteRange([]byte{enc.KindCounts}, []byte{enc.KindCounts + 1}, pebble.Sync))
	ok(t, s.Close())
	s = must[*Store](t)(Open(dir, &Options{GCInterval: -1}))
	defer s.Close()
	if got := must[BranchUsage](t)(s.Usage("p", "dev")); got != want {
		t.Fatalf("after rebuild %+v, before %+v", got, want)
	}
	ok(t, s.Check())
}

// TestUsageShadows: the counters of a block rewritten again and again
// (Postgres's current WAL page) come from what the head remembers of its
// last flush instead of a seek, and stay equal to a recount through
// rewrites of other lengths, truncation, extension and unlink.
func TestUsageShadows(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	f := must[Attr](t)(h.Create(RootIno, "wal", 0o600, 0, 0))
	must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{1}, 3*BlockSize), 0))
	ok(t, h.Flush())
	remembered := func() map[uint64]shadow {
		h.mu.RLock()
		defer h.mu.RUnlock()
		return maps.Clone(h.shadows[f.Ino])
	}
	if sh := remembered(); len(sh) != 3 || sh[1].seq != h.Seq() || sh[1].vl != BlockSize {
		t.Fatalf("after the first flush the head remembers %+v, want 3 blocks at seq %d", sh, h.Seq())
	}
	// Rewrites with shorter and longer contents (zero tails are trimmed).
	for i := range 20 {
		p := make([]byte, BlockSize)
		copy(p, bytes.Repeat([]byte{byte(i + 2)}, 100+i*300))
		must[int](t)(h.WriteAt(f.Ino, p, BlockSize))
		ok(t, h.Flush())
		if sh := remembered(); sh[1].vl != int32(100+i*300) {
			t.Fatalf("rewrite %d: remembered %+v", i, sh[1])
		}
	}
	ok(t, s.Check())
	// A truncation changes which versions count: forgotten, but for the
	// block it cut in the middle, which it rewrites.
	must[Attr](t)(h.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: BlockSize + 10}))
	if sh := remembered(); len(sh) != 1 || sh[1].vl != 10 || sh[1].seq != h.Seq() {
		t.Fatalf("after truncate the head remembers %+v", sh)
	}
	ok(t, s.Check())
	must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{9}, 2*BlockSize), BlockSize))
	ok(t, h.Flush())
	must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{8}, BlockSize), BlockSize))
	ok(t, h.Flush())
	ok(t, s.Check())
	// Time-only attribute changes keep what the head remembers.
	must[Attr](t)(h.SetAttr(f.Ino, SetAttrIn{Valid: SetMtime, Mtime: 5}))
	if sh := remembered(); len(sh) != 2 {
		t.Fatalf("after a time-only setattr the head remembers %+v", sh)
	}
	must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{7}, BlockSize), 2*BlockSize))
	ok(t, h.Flush())
	ok(t, s.Check())
	ok(t, h.Unlink(RootIno, "wal"))
	must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{6}, BlockSize), 2*BlockSize))
	ok(t, h.Flush())
	ok(t, s.Check())
}
