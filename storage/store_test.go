package storage

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// openTest opens a store in a fresh temp dir and checks its invariants when
// the test ends.
func openTest(t testing.TB, opts *Options) *Store {
	t.Helper()
	if opts == nil {
		opts = &Options{GCInterval: -1}
	}
	s, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// headFile opens a store with opts (openTest), creates project "p" and a
// file "f" with mode in its main head, and returns them.
func headFile(t testing.TB, opts *Options, mode uint32) (*Store, *Head, Attr) {
	t.Helper()
	s := openTest(t, opts)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	return s, h, must[Attr](t)(h.Create(RootIno, "f", mode, 0, 0))
}

func must[T any](t testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type fileReader interface {
	ReadAt(ino uint64, p []byte, off int64) (int, error)
	GetAttr(ino uint64) (Attr, error)
}

func readAll(t testing.TB, r fileReader, ino uint64) []byte {
	t.Helper()
	a, err := r.GetAttr(ino)
	ok(t, err)
	buf := make([]byte, a.Size)
	n, err := r.ReadAt(ino, buf, 0)
	if err != nil && !(err == io.EOF && n == len(buf)) {
		t.Fatalf("read inode %d: %v", ino, err)
	}
	return buf[:n]
}

func TestFileBasics(t *testing.T) {
	s := openTest(t, nil)
	if _, _, err := s.CreateProject("p1"); err != nil {
		t.Fatal(err)
	}
	h := must[*Head](t)(s.OpenHead("p1", "main"))
	defer h.Close()
	if _, err := s.OpenHead("p1", "main"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second head: got %v, want ErrBusy", err)
	}
	root := must[Attr](t)(h.GetAttr(RootIno))
	if !root.IsDir() || root.Nlink != 2 {
		t.Fatalf("root attr %+v", root)
	}
	d := must[Attr](t)(h.Mkdir(RootIno, "base", 0o700, 26, 26))
	f := must[Attr](t)(h.Create(d.Ino, "16384", 0o600, 26, 26))
	if _, err := h.Create(d.Ino, "16384", 0o600, 26, 26); !errors.Is(err, ErrExist) {
		t.Fatalf("create twice: %v", err)
	}
	page := bytes.Repeat([]byte{7}, BlockSize)
	must[int](t)(h.WriteAt(f.Ino, page, 3*BlockSize))
	must[int](t)(h.WriteAt(f.Ino, []byte("hello"), 10))
	got := readAll(t, h, f.Ino)
	want := make([]byte, 4*BlockSize)
	copy(want[10:], "hello")
	copy(want[3*BlockSize:], page)
	if !bytes.Equal(got, want) {
		t.Fatal("read back mismatch")
	}
	// Truncate into the middle of a block, then extend: zeros, not old data.
	must[Attr](t)(h.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: 12}))
	must[Attr](t)(h.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: 4 * BlockSize}))
	got = readAll(t, h, f.Ino)
	want = make([]byte, 4*BlockSize)
	copy(want[10:], "he")
	if !bytes.Equal(got, want) {
		t.Fatalf("truncate+extend resurrected data: %q", got[:16])
	}
	ents := must[[]DirEntry](t)(h.ReadDir(d.Ino))
	if len(ents) != 1 || ents[0].Name != "16384" || ents[0].Ino != f.Ino {
		t.Fatalf("readdir %+v", ents)
	}
	// Rename over an existing file replaces it; the data does not move.
	g := must[Attr](t)(h.Create(d.Ino, "wal.tmp", 0o600, 0, 0))
	must[int](t)(h.WriteAt(g.Ino, []byte("wal"), 0))
	ok(t, h.Rename(d.Ino, "wal.tmp", d.Ino, "16384"))
	a := must[Attr](t)(h.Lookup(d.Ino, "16384"))
	if a.Ino != g.Ino || string(readAll(t, h, a.Ino)) != "wal" {
		t.Fatalf("rename over: %+v", a)
	}
	if _, err := h.Lookup(d.Ino, "wal.tmp"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("old name still there: %v", err)
	}
	if old := must[Attr](t)(h.GetAttr(f.Ino)); old.Nlink != 0 {
		t.Fatalf("replaced inode nlink %d", old.Nlink)
	}
	ok(t, h.Forget(f.Ino))
	if _, err := h.GetAttr(f.Ino); !errors.Is(err, ErrNotExist) {
		t.Fatalf("forgotten inode: %v", err)
	}
	if err := h.Rmdir(RootIno, "base"); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("rmdir non-empty: %v", err)
	}
	ok(t, h.Unlink(d.Ino, "16384"))
	ok(t, h.Rmdir(RootIno, "base"))
	if r := must[Attr](t)(h.GetAttr(RootIno)); r.Nlink != 2 {
		t.Fatalf("root nlink %d", r.Nlink)
	}
	ok(t, h.Sync())
}

func TestForkIsolationAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{GCInterval: -1})
	ok(t, err)
	_, _, err = s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	f := must[Attr](t)(h.Create(RootIno, "f", 0o644, 0, 0))
	must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte("a"), 3*BlockSize), 0))
	must[Branch](t)(s.Fork("p", "main", "dev", AtHead(), BranchOptions{}))
	must[int](t)(h.WriteAt(f.Ino, []byte("MAIN"), 0))
	c := must[*Head](t)(s.OpenHead("p", "dev"))
	// The child sees the parent's inode under the same number.
	ca := must[Attr](t)(c.Lookup(RootIno, "f"))
	if ca.Ino != f.Ino {
		t.Fatalf("child ino %d, parent %d", ca.Ino, f.Ino)
	}
	if got := readAll(t, c, f.Ino); string(got[:4]) != "aaaa" {
		t.Fatalf("child sees parent's later write: %q", got[:4])
	}
	must[int](t)(c.WriteAt(f.Ino, []byte("DEV"), BlockSize))
	must[Attr](t)(c.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: 0}))
	must[Attr](t)(c.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: 2 * BlockSize}))
	if got := readAll(t, c, f.Ino); !bytes.Equal(got, make([]byte, 2*BlockSize)) {
		t.Fatal("child truncate to 0 then extend resurrected parent data")
	}
	if got := readAll(t, h, f.Ino); string(got[:4]) != "MAIN" || got[BlockSize] != 'a' || len(got) != 3*BlockSize {
		t.Fatal("parent changed by child")
	}
	ok(t, h.Close())
	ok(t, c.Close())
	ok(t, s.Close())

	s, err = Open(dir, &Options{GCInterval: -1})
	ok(t, err)
	defer s.Close()
	v := must[*View](t)(s.OpenView("p", "main", AtHead()))
	defer v.Close()
	if got := readAll(t, v, f.Ino); string(got[:4]) != "MAIN" {
		t.Fatalf("after reopen: %q", got[:4])
	}
	ok(t, s.Check())
}
