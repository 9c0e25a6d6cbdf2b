package storage

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

func TestFileBadInput(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	d := must[Attr](t)(h.Mkdir(RootIno, "d", 0o755, 0, 0))
	sub := must[Attr](t)(h.Mkdir(d.Ino, "sub", 0o755, 0, 0))
	f := must[Attr](t)(h.Create(RootIno, "f", 0o644, 0, 0))
	l := must[Attr](t)(h.Symlink(RootIno, "l", "f", 0, 0))
	if got := must[string](t)(h.Readlink(l.Ino)); got != "f" {
		t.Fatalf("readlink %q", got)
	}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"empty name", func() error { _, err := h.Create(RootIno, "", 0o644, 0, 0); return err }(), ErrInvalidFileName},
		{"dot name", func() error { _, err := h.Mkdir(RootIno, "..", 0o755, 0, 0); return err }(), ErrInvalidFileName},
		{"slash name", func() error { _, err := h.Lookup(RootIno, "a/b"); return err }(), ErrInvalidFileName},
		{"long name", func() error { _, err := h.Create(RootIno, strings.Repeat("x", 256), 0o644, 0, 0); return err }(), ErrInvalidFileName},
		{"nul name", h.Rename(RootIno, "f", RootIno, "a\x00"), ErrInvalidFileName},
		{"lookup in file", func() error { _, err := h.Lookup(f.Ino, "x"); return err }(), ErrNotDir},
		{"create in file", func() error { _, err := h.Create(f.Ino, "x", 0o644, 0, 0); return err }(), ErrNotDir},
		{"unknown inode", func() error { _, err := h.GetAttr(999999); return err }(), ErrNotExist},
		{"create in unknown dir", func() error { _, err := h.Create(999999, "x", 0o644, 0, 0); return err }(), ErrNotExist},
		{"read dir", func() error { _, err := h.ReadAt(d.Ino, make([]byte, 1), 0); return err }(), ErrIsDir},
		{"write dir", func() error { _, err := h.WriteAt(d.Ino, []byte("x"), 0); return err }(), ErrIsDir},
		{"negative write offset", func() error { _, err := h.WriteAt(f.Ino, []byte("x"), -1); return err }(), ErrInvalidArgument},
		{"negative read offset", func() error { _, err := h.ReadAt(f.Ino, make([]byte, 1), -1); return err }(), ErrInvalidArgument},
		{"truncate dir", func() error { _, err := h.SetAttr(d.Ino, SetAttrIn{Valid: SetSize}); return err }(), ErrIsDir},
		{"bad mode", func() error { _, err := h.SetAttr(f.Ino, SetAttrIn{Valid: SetMode, Mode: ModeDir}); return err }(), ErrInvalidArgument},
		{"create non-regular", func() error { _, err := h.Create(RootIno, "x", ModeDir|0o755, 0, 0); return err }(), ErrInvalidArgument},
		{"fallocate negative", h.Fallocate(f.Ino, -1, 5), ErrInvalidArgument},
		{"readlink file", func() error { _, err := h.Readlink(f.Ino); return err }(), ErrInvalidArgument},
		{"unlink dir", h.Unlink(RootIno, "d"), ErrIsDir},
		{"rmdir file", h.Rmdir(RootIno, "f"), ErrNotDir},
		{"rmdir non-empty", h.Rmdir(RootIno, "d"), ErrNotEmpty},
		{"unlink missing", h.Unlink(RootIno, "missing"), ErrNotExist},
		{"rename missing", h.Rename(RootIno, "missing", RootIno, "x"), ErrNotExist},
		{"rename dir below itself", h.Rename(RootIno, "d", sub.Ino, "d2"), ErrRenameLoop},
		{"rename dir over file", h.Rename(RootIno, "d", RootIno, "f"), ErrNotDir},
		{"rename file over dir", h.Rename(RootIno, "f", RootIno, "d"), ErrIsDir},
		{"rename dir over non-empty dir", func() error {
			_, _ = h.Mkdir(RootIno, "e", 0o755, 0, 0)
			return h.Rename(RootIno, "e", RootIno, "d")
		}(), ErrNotEmpty},
		{"link dir", func() error { _, err := h.Link(d.Ino, RootIno, "d3"); return err }(), ErrIsDir},
		{"link over existing", func() error { _, err := h.Link(f.Ino, RootIno, "d"); return err }(), ErrExist},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.err, c.want)
		}
	}
	// Reading past the end is io.EOF, a short read too.
	must[int](t)(h.WriteAt(f.Ino, []byte("abc"), 0))
	buf := make([]byte, 10)
	if n, err := h.ReadAt(f.Ino, buf, 0); n != 3 || err != io.EOF {
		t.Errorf("short read: %d %v", n, err)
	}
	if n, err := h.ReadAt(f.Ino, buf, 100); n != 0 || err != io.EOF {
		t.Errorf("read past end: %d %v", n, err)
	}
	// Hard link keeps the data alive across unlink of the first name.
	must[Attr](t)(h.Link(f.Ino, d.Ino, "f2"))
	ok(t, h.Unlink(RootIno, "f"))
	if a := must[Attr](t)(h.Lookup(d.Ino, "f2")); a.Nlink != 1 || a.Size != 3 {
		t.Errorf("after unlink of first link: %+v", a)
	}
	// Moving a directory updates both parents' link counts.
	ok(t, h.Rename(d.Ino, "sub", RootIno, "sub"))
	if a := must[Attr](t)(h.GetAttr(d.Ino)); a.Nlink != 2 {
		t.Errorf("old parent nlink %d", a.Nlink)
	}
	// A view is read-only and closed views refuse reads.
	v := must[*View](t)(s.OpenView("p", "main", AtHead()))
	ok(t, v.Close())
	if _, err := v.GetAttr(RootIno); !errors.Is(err, ErrClosed) {
		t.Errorf("closed view: %v", err)
	}
}

// TestOrphansAfterCrash: an unlinked inode that was never forgotten (the
// head ended without Close) is dropped when the next head opens.
func TestOrphansAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{GCInterval: -1})
	ok(t, err)
	_, _, err = s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	f := must[Attr](t)(h.Create(RootIno, "f", 0o600, 0, 0))
	must[int](t)(h.WriteAt(f.Ino, []byte("data"), 0))
	ok(t, h.Unlink(RootIno, "f"))
	if a := must[Attr](t)(h.GetAttr(f.Ino)); a.Nlink != 0 || a.Size != 4 {
		t.Fatalf("unlinked inode before forget: %+v", a)
	}
	ok(t, h.Sync())
	// Simulate a crash of the head: it never runs Close.
	h.mu.Lock()
	h.closed = true
	h.closeIters()
	h.mu.Unlock()
	s.mu.Lock()
	delete(s.heads, h.tl)
	s.mu.Unlock()
	ok(t, s.Close())

	s, err = Open(dir, &Options{GCInterval: -1})
	ok(t, err)
	defer s.Close()
	h = must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	if _, err := h.GetAttr(f.Ino); !errors.Is(err, ErrNotExist) {
		t.Fatalf("orphan survived reopen: %v", err)
	}
	ok(t, s.Check())
}

// TestManyTruncations drives an inode past MaxTruncs truncation records
// (the store then writes explicit tombstones) in a child of a parent with
// data, and compares with the expected bytes after every step.
func TestManyTruncations(t *testing.T) {
	s, h, f := headFile(t, nil, 0o600)
	want := make([]byte, 40*BlockSize)
	for i := range want {
		want[i] = byte(i%251) + 1
	}
	must[int](t)(h.WriteAt(f.Ino, want, 0))
	ok(t, h.Close())
	must[Branch](t)(s.Fork("p", "main", "dev", AtHead(), BranchOptions{}))
	c := must[*Head](t)(s.OpenHead("p", "dev"))
	defer c.Close()
	for i := range 24 {
		size := (i+1)*BlockSize - 10 // growing sizes: each adds a record
		must[Attr](t)(c.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: uint64(size)}))
		want = want[:size]
		// Extend again and write a little past the old end.
		must[Attr](t)(c.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: 40 * BlockSize}))
		want = append(want, make([]byte, 40*BlockSize-size)...)
		off := size + 100
		must[int](t)(c.WriteAt(f.Ino, []byte{0xEE, byte(i)}, int64(off)))
		want[off], want[off+1] = 0xEE, byte(i)
		// Data near the end, written after every truncation record so far:
		// the next truncation must cut it (by record or by tombstone).
		must[int](t)(c.WriteAt(f.Ino, []byte{0xDD, byte(i)}, int64(38*BlockSize+2*i)))
		want[38*BlockSize+2*i], want[38*BlockSize+2*i+1] = 0xDD, byte(i)
		if got := readAll(t, c, f.Ino); !bytes.Equal(got, want) {
			t.Fatalf("step %d: content differs at %d", i, firstDiff(got, want))
		}
	}
	a, err := c.attr(nil, f.Ino)
	ok(t, err)
	if len(a.Truncs) != enc.MaxTruncs {
		t.Fatalf("%d truncation records, want the list full (fallback used)", len(a.Truncs))
	}
	ok(t, c.Close())
	if got := readFile(t, s, "dev", AtHead(), "f"); !bytes.Equal([]byte(got), want) {
		t.Fatal("content differs after reopen of the head")
	}
}
