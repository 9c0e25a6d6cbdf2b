package storage

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestCheckClosed: Check on a closed store returns ErrClosed, no panic.
func TestCheckClosed(t *testing.T) {
	s, err := Open(t.TempDir(), &Options{GCInterval: -1})
	ok(t, err)
	ok(t, s.Close())
	if err := s.Check(); !errors.Is(err, ErrClosed) {
		t.Fatalf("check on closed store: %v", err)
	}
}

// forkWithData forks dev from main and writes blocks*8K to a file on dev;
// it returns the stored bytes before and after the dev writes.
func forkWithData(t *testing.T, s *Store, blocks int) (before, after uint64) {
	t.Helper()
	must[Branch](t)(s.Fork("p", "main", "dev", AtHead(), BranchOptions{}))
	before = must[StoreUsage](t)(s.TotalUsage()).StoredBytes
	h := must[*Head](t)(s.OpenHead("p", "dev"))
	f := must[Attr](t)(h.Create(RootIno, "big", 0o644, 0, 0))
	for i := range blocks {
		must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{byte(i + 1)}, BlockSize), int64(i)*BlockSize))
	}
	ok(t, h.Close())
	after = must[StoreUsage](t)(s.TotalUsage()).StoredBytes
	if after < before+uint64(blocks)*BlockSize {
		t.Fatalf("stored %d -> %d after writing %d blocks", before, after, blocks)
	}
	return before, after
}

func timelineCount(s *Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cat.timelines)
}

// TestDeleteBranchWithOpenView: a branch deleted while a view of it is
// open stays readable through the view, and its timeline is freed once
// the view closes; Check is clean throughout.
func TestDeleteBranchWithOpenView(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	const blocks = 64
	before, _ := forkWithData(t, s, blocks)
	v := must[*View](t)(s.OpenView("p", "dev", AtHead()))
	ok(t, s.DeleteBranch("p", "dev", DeleteOptions{}))
	ok(t, s.Check())
	e := must[Attr](t)(v.Lookup(RootIno, "big"))
	if got := readAll(t, v, e.Ino); len(got) != blocks*BlockSize || got[len(got)-1] != blocks {
		t.Fatalf("view read after delete: %d bytes", len(got))
	}
	ok(t, v.Close())
	ok(t, s.Check())
	must[GCStats](t)(s.GC(context.Background()))
	ok(t, s.Check())
	if n := timelineCount(s); n != 1 {
		t.Errorf("%d timelines left, want 1", n)
	}
	if got := must[StoreUsage](t)(s.TotalUsage()).StoredBytes; got > before {
		t.Errorf("stored bytes %d after delete, %d before the branch's writes", got, before)
	}
}
