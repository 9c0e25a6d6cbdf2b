package storage

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// TestTrimZeros: trailing zeros go, whatever chunk boundary the last
// non-zero byte sits at; nothing else does.
func TestTrimZeros(t *testing.T) {
	for _, last := range []int{-1, 0, 1, 7, 8, 9, 511, 512, 513, 1023, 4096, BlockSize - 513, BlockSize - 1} {
		b := make([]byte, BlockSize)
		b[0] = 0 // a zero before the last non-zero byte stays
		if last >= 0 {
			b[last] = 0xff
		}
		if got, want := len(trimZeros(b)), last+1; got != want {
			t.Errorf("last non-zero byte at %d: trimmed to %d bytes, want %d", last, got, want)
		}
	}
	if got := trimZeros(nil); len(got) != 0 {
		t.Errorf("nil: %d bytes", len(got))
	}
	if got := trimZeros([]byte{1, 0, 0}); len(got) != 1 {
		t.Errorf("short: %d bytes", len(got))
	}
}

// TestGCLargeFlush: a head flush big enough that pebble commits it as a
// large batch (it takes the batch's buffer at the commit) still registers
// its keys as GC candidates: what it shadows is collected by the next
// incremental pass, and a full pass then finds nothing more.
func TestGCLargeFlush(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	s, h, f := headFile(t, &Options{GCInterval: -1, HistoryWindow: 10 * time.Second, HistoryTick: time.Hour, Now: clk.Now}, 0o644)
	must[GCStats](t)(s.GC(context.Background())) // the first pass after Open is a full one
	const n = 3 << 10                            // 24 MiB in one flush: over half the memtable
	write := func(round int) {
		t.Helper()
		p := make([]byte, 64*BlockSize)
		for off := 0; off < n*BlockSize; off += len(p) {
			for i := range p {
				p[i] = byte(round + off/len(p) + i/BlockSize + 1)
			}
			must[int](t)(h.WriteAt(f.Ino, p, int64(off)))
		}
		ok(t, h.Sync())
		clk.Add(time.Second)
		s.Tick()
	}
	write(0)
	write(1)
	for range 3 {
		clk.Add(6 * time.Second)
		s.Tick()
	}
	st := must[GCStats](t)(s.GC(context.Background()))
	if fst := must[GCStats](t)(s.GCFull(context.Background())); fst.Deleted != 0 {
		t.Fatalf("full pass after incremental (deleted %d) deleted %d", st.Deleted, fst.Deleted)
	}
	tl := must[Branch](t)(s.Branch("p", "main")).Timeline
	if got := countKeys(t, s, enc.KindBlock, tl, f.Ino); got != n {
		t.Fatalf("%d block versions kept, want %d", got, n)
	}
	ok(t, h.Close())
}

// TestIdleHeadFreesBuffer: the blocks a head recycles after a flush stay
// for its next writes while it writes, and go once a whole tick passed
// without a commit: an idle head holds no write buffer. Its data is
// untouched.
func TestIdleHeadFreesBuffer(t *testing.T) {
	s, h, f := headFile(t, &Options{GCInterval: -1, HistoryTick: time.Hour}, 0o644)
	p := make([]byte, 256*BlockSize)
	for i := range p {
		p[i] = byte(i/BlockSize + 1)
	}
	recycled := func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.free)
	}
	must[int](t)(h.WriteAt(f.Ino, p, 0))
	ok(t, h.Sync())
	if n := recycled(); n != 256 {
		t.Fatalf("after a flush of 256 blocks the head recycles %d", n)
	}
	s.Tick() // the tick that saw the commit keeps them
	if n := recycled(); n != 256 {
		t.Fatalf("after a tick with a commit the head recycles %d blocks, want 256", n)
	}
	s.Tick() // a whole tick without one
	if n := recycled(); n != 0 {
		t.Fatalf("an idle head keeps %d recycled blocks", n)
	}
	got := make([]byte, len(p))
	must[int](t)(h.ReadAt(f.Ino, got, 0))
	if !bytes.Equal(got, p) {
		t.Fatal("an idle head's data changed")
	}
	must[int](t)(h.WriteAt(f.Ino, p[:BlockSize], 0)) // and it writes again
	ok(t, h.Sync())
	ok(t, h.Close())
}

// TestDirtyAttrsSurviveCacheReset: when a head's attribute cache fills up
// and starts over, it keeps the attributes not yet flushed (here the size
// a write extended a file to); flushed, the file has all its bytes.
func TestDirtyAttrsSurviveCacheReset(t *testing.T) {
	defer func(n int) { maxCached = n }(maxCached)
	maxCached = 4
	s, h, f := headFile(t, &Options{GCInterval: -1}, 0o644)
	var others []Attr
	for i := range 10 {
		others = append(others, must[Attr](t)(h.Create(RootIno, fmt.Sprint("o", i), 0o644, 0, 0)))
	}
	ok(t, h.Sync())
	p := bytes.Repeat([]byte{7}, 3*BlockSize)
	must[int](t)(h.WriteAt(f.Ino, p, 0)) // buffered: the new size is in the cache only
	for range 2 {
		for _, o := range others { // fill the cache past maxCached
			must[Attr](t)(h.GetAttr(o.Ino))
		}
	}
	ok(t, h.Sync())
	ok(t, h.Close())
	h = must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	if a := must[Attr](t)(h.GetAttr(f.Ino)); a.Size != uint64(len(p)) {
		t.Fatalf("size after the flush: %d, want %d", a.Size, len(p))
	}
	got := make([]byte, len(p))
	must[int](t)(h.ReadAt(f.Ino, got, 0))
	if !bytes.Equal(got, p) {
		t.Fatal("content differs")
	}
}

// TestTimesOnlySetAttr: a setattr of times only (what the kernel's
// writeback cache sends) is visible at once and committed with the next
// flush, not by a commit of its own; any other setattr commits at once,
// after the times buffered before it.
func TestTimesOnlySetAttr(t *testing.T) {
	s, h, f := headFile(t, &Options{GCInterval: -1}, 0o644)
	ok(t, h.Sync())
	seq := s.curSeq()
	const mtime, atime = int64(1_700_000_000_000_000_000), int64(1_600_000_000_000_000_000)
	a := must[Attr](t)(h.SetAttr(f.Ino, SetAttrIn{Valid: SetMtime | SetAtime, Mtime: mtime, Atime: atime}))
	if a.Mtime.UnixNano() != mtime || a.Atime.UnixNano() != atime {
		t.Fatalf("setattr returned mtime %v atime %v", a.Mtime, a.Atime)
	}
	if got := s.curSeq(); got != seq {
		t.Fatalf("a times-only setattr committed: seq %d -> %d", seq, got)
	}
	if a := must[Attr](t)(h.GetAttr(f.Ino)); a.Mtime.UnixNano() != mtime {
		t.Fatalf("getattr mtime %v, want %d", a.Mtime, mtime)
	}
	must[Attr](t)(h.SetAttr(f.Ino, SetAttrIn{Valid: SetMode, Mode: 0o600}))
	if got := s.curSeq(); got == seq {
		t.Fatal("a mode change did not commit")
	}
	ok(t, h.Sync())
	ok(t, h.Close())
	h = must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	a = must[Attr](t)(h.GetAttr(f.Ino))
	if a.Mtime.UnixNano() != mtime || a.Atime.UnixNano() != atime || a.Mode&ModePerm != 0o600 {
		t.Fatalf("after reopen: mtime %v atime %v mode %o", a.Mtime, a.Atime, a.Mode)
	}
}

// TestTimesOnlySetAttrAbsorbs: a setattr of times only runs the head's
// absorber, as the flush it no longer makes did (the local WAL tier's
// full-disk guard counts on those runs).
func TestTimesOnlySetAttrAbsorbs(t *testing.T) {
	s, h, f := headFile(t, &Options{GCInterval: -1}, 0o644)
	ok(t, h.Sync())
	runs := 0
	h.SetAbsorber(func(*AbsorbTx) error { runs++; return nil })
	seq := s.curSeq()
	must[Attr](t)(h.SetAttr(f.Ino, SetAttrIn{Valid: SetMtime, Mtime: 1}))
	if runs != 1 {
		t.Fatalf("absorber ran %d times, want 1", runs)
	}
	if got := s.curSeq(); got != seq {
		t.Fatalf("an absorb with nothing to absorb and a times-only setattr committed: seq %d -> %d", seq, got)
	}
}

// TestTruncateSameSize: a truncation to the size a file has is a change
// of its times only: it neither flushes the write buffer nor commits
// (PostgreSQL truncates a dropped relation's empty file at the commit of
// every TRUNCATE). A truncation that changes the size commits, after the
// buffered writes.
func TestTruncateSameSize(t *testing.T) {
	s, h, f := headFile(t, &Options{GCInterval: -1, HistoryTick: time.Hour}, 0o644)
	block := func(c byte) []byte { return bytes.Repeat([]byte{c}, BlockSize) }
	empty := must[Attr](t)(h.Create(RootIno, "empty", 0o600, 0, 0))
	must[int](t)(h.WriteAt(f.Ino, block('a'), 0))
	ok(t, h.Flush())
	must[int](t)(h.WriteAt(f.Ino, block('b'), BlockSize)) // buffered
	seq := h.Seq()
	must[Attr](t)(h.SetAttr(empty.Ino, SetAttrIn{Valid: SetSize | SetMtime, Size: 0, Mtime: time.Now().UnixNano()}))
	if a := must[Attr](t)(h.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: 2 * BlockSize})); a.Size != 2*BlockSize {
		t.Fatalf("size %d after a truncation to its size %d", a.Size, 2*BlockSize)
	}
	if got := h.Seq(); got != seq {
		t.Fatalf("truncations to the sizes files have committed (seq %d -> %d)", seq, got)
	}
	must[Attr](t)(h.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: BlockSize + 10}))
	if got := h.Seq(); got == seq {
		t.Fatal("a truncation that changes the size did not commit")
	}
	ok(t, h.Close())
	h = must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	got := make([]byte, 2*BlockSize)
	n, _ := h.ReadAt(f.Ino, got, 0)
	want := append(block('a'), block('b')[:10]...)
	if !bytes.Equal(got[:n], want) {
		t.Fatalf("after reopen the file holds %d bytes, want %d ('a' block, then 10 bytes of 'b')", n, len(want))
	}
}
