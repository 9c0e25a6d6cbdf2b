package cowfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"testing"

	"github.com/offshootdb/offshoot/storage"
	"golang.org/x/sys/unix"
)

// mountT mounts files on a fresh directory for the test.
func mountT(t *testing.T, files Files) string {
	t.Helper()
	mnt := t.TempDir()
	m, err := Mount(mnt, files, MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return mnt
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}

// testPOSIX checks the system calls Postgres relies on through a mount of a
// writable file system, and returns the mount point.
func testPOSIX(t *testing.T, files WritableFiles) string {
	mnt := mountT(t, files)
	p := func(names ...string) string { return filepath.Join(append([]string{mnt}, names...)...) }

	// create, write at offsets, read back, size
	f, err := os.OpenFile(p("a"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	block := bytes.Repeat([]byte("x"), 8192)
	if _, err := f.WriteAt(block, 3*8192+100); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("head"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 4*8192+100 || st.Mode().Perm() != 0o640 || !st.Mode().IsRegular() {
		t.Errorf("stat: size %d mode %v", st.Size(), st.Mode())
	}
	got := make([]byte, 4*8192+100)
	if n, err := f.ReadAt(got, 0); err != nil || n != len(got) {
		t.Fatalf("read: %d %v", n, err)
	}
	want := make([]byte, 4*8192+100)
	copy(want, "head")
	copy(want[3*8192+100:], block)
	if !bytes.Equal(got, want) {
		t.Error("read back differs from what was written (holes must read as zeros)")
	}
	// O_EXCL on an existing name
	_, err = os.OpenFile(p("a"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	wantErrno(t, "create existing O_EXCL", err, syscall.EEXIST)

	// truncate down and up, fallocate
	if err := f.Truncate(10); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8192 * 2); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, 8192*2)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:4], []byte("head")) || !bytes.Equal(got[10:], make([]byte, len(got)-10)) {
		t.Error("truncate down then up must leave zeros past the cut")
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 5*8192); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Stat(); st.Size() != 5*8192 {
		t.Errorf("fallocate: size %d, want %d", st.Size(), 5*8192)
	}
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 9*8192); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Stat(); st.Size() != 5*8192 {
		t.Errorf("fallocate KEEP_SIZE changed the size to %d", st.Size())
	}
	f.Close()

	// chmod, chown, utimes
	if err := os.Chmod(p("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p("a"), 101, 104); err != nil {
		t.Fatal(err)
	}
	var sst syscall.Stat_t
	if err := syscall.Stat(p("a"), &sst); err != nil {
		t.Fatal(err)
	}
	if sst.Mode&0o7777 != 0o600 || sst.Uid != 101 || sst.Gid != 104 {
		t.Errorf("after chmod/chown: mode %o uid %d gid %d", sst.Mode, sst.Uid, sst.Gid)
	}
	if err := os.Chown(p("a"), 0, 0); err != nil {
		t.Fatal(err)
	}

	// directories
	if err := os.Mkdir(p("d"), 0o700); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "mkdir existing", os.Mkdir(p("d"), 0o700), syscall.EEXIST)
	if err := os.WriteFile(p("d", "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "rmdir non-empty", syscall.Rmdir(p("d")), syscall.ENOTEMPTY)
	wantErrno(t, "unlink absent", syscall.Unlink(p("nope")), syscall.ENOENT)
	wantErrno(t, "open absent", func() error { _, err := os.Open(p("nope")); return err }(), syscall.ENOENT)
	wantErrno(t, "unlink dir", syscall.Unlink(p("d")), syscall.EISDIR)
	wantErrno(t, "rmdir file", syscall.Rmdir(p("a")), syscall.ENOTDIR)
	wantErrno(t, "file as dir", os.WriteFile(p("a", "x"), nil, 0o600), syscall.ENOTDIR)
	long := string(bytes.Repeat([]byte("n"), 256))
	wantErrno(t, "long name", os.WriteFile(p(long), nil, 0o600), syscall.ENAMETOOLONG)
	if err := os.Link(p("a"), p("hl")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(p("hl"), &sst); err != nil || sst.Nlink != 2 {
		t.Errorf("hard link: nlink %d %v", sst.Nlink, err)
	}
	if err := os.Remove(p("hl")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", p("sl")); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(p("sl")); err != nil || target != "a" {
		t.Errorf("readlink: %q %v", target, err)
	}
	if b, err := os.ReadFile(p("sl")); err != nil || string(b[:4]) != "head" {
		t.Errorf("read through symlink: %v", err)
	}

	// rename: to a new name, over an existing file, NOREPLACE, across dirs
	if err := os.WriteFile(p("w1"), []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("w2"), []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "rename noreplace", unix.Renameat2(unix.AT_FDCWD, p("w1"), unix.AT_FDCWD, p("w2"), unix.RENAME_NOREPLACE), syscall.EEXIST)
	if err := os.Rename(p("w1"), p("w2")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p("w2")); err != nil || string(b) != "one" {
		t.Errorf("after rename over: %q %v", b, err)
	}
	if _, err := os.Stat(p("w1")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("old name after rename: %v", err)
	}
	if err := os.Rename(p("w2"), p("d", "w3")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p("d", "w3"), p("w4")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p("w4")); err != nil || string(b) != "one" {
		t.Errorf("after rename across dirs: %q %v", b, err)
	}
	if err := os.Rename(p("d"), p("d2")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p("d2", "x")); err != nil || string(b) != "x" {
		t.Errorf("file in renamed dir: %q %v", b, err)
	}
	wantErrno(t, "rename dir below itself", os.Rename(p("d2"), p("d2", "sub")), syscall.EINVAL)

	// a big directory lists every entry exactly once
	if err := os.Mkdir(p("big"), 0o755); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 1500 {
		n := fmt.Sprintf("%d_relation_file_with_a_long_name", 16384+i)
		names = append(names, n)
		if err := os.WriteFile(p("big", n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(p("big"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, e := range ents {
		listed = append(listed, e.Name())
	}
	sort.Strings(names)
	sort.Strings(listed)
	if fmt.Sprint(listed) != fmt.Sprint(names) {
		t.Errorf("readdir listed %d entries, want %d", len(listed), len(names))
	}
	// the raw listing starts with "." and ".." (Go's os.ReadDir hides them)
	if got := rawNames(t, p("big")); len(got) != len(names)+2 || got[0] != "." || got[1] != ".." {
		t.Errorf("raw readdir: %d entries starting %q, want . and .. then %d names", len(got), got[:min(len(got), 3)], len(names))
	}
	// the kernel keeps listings (FOPEN_CACHE_DIR): every change through
	// the mount drops them
	has := func(dir, name string) bool { return slices.Contains(rawNames(t, dir), name) }
	for _, c := range []struct {
		what      string
		do        func() error
		dir, name string
		want      bool
	}{
		{"create", func() error { return os.WriteFile(p("big", "new"), nil, 0o600) }, p("big"), "new", true},
		{"rename out, source", func() error { return os.Rename(p("big", "new"), p("d2", "moved")) }, p("big"), "new", false},
		{"rename out, target", func() error { return nil }, p("d2"), "moved", true},
		{"link", func() error { return os.Link(p("d2", "moved"), p("big", "linked")) }, p("big"), "linked", true},
		{"unlink", func() error { return os.Remove(p("d2", "moved")) }, p("d2"), "moved", false},
		{"mkdir", func() error { return os.Mkdir(p("big", "sub"), 0o755) }, p("big"), "sub", true},
		{"rmdir", func() error { return os.Remove(p("big", "sub")) }, p("big"), "sub", false},
		{"symlink", func() error { return os.Symlink("x", p("big", "sym")) }, p("big"), "sym", true},
	} {
		has(c.dir, c.name) // the kernel holds the listing from before the change
		if err := c.do(); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if got := has(c.dir, c.name); got != c.want {
			t.Errorf("%s: %s listed in %s: %v, want %v", c.what, c.name, c.dir, got, c.want)
		}
	}
	for _, n := range []string{"linked", "sym"} {
		if err := os.Remove(p("big", n)); err != nil {
			t.Fatal(err)
		}
	}
	// unlink of an open file: Postgres drops relations other backends
	// still hold open
	if err := os.WriteFile(p("big", names[0]), []byte("still here"), 0o600); err != nil {
		t.Fatal(err)
	}
	of, err := os.Open(p("big", names[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("big", names[0])); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(of); err != nil || string(b) != "still here" {
		t.Errorf("read of an unlinked open file: %q %v", b, err)
	}
	of.Close()
	if err := os.RemoveAll(p("big")); err != nil {
		t.Fatal(err)
	}

	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Blocks == 0 || sfs.Namelen != 255 {
		t.Errorf("statfs: %+v", sfs)
	}
	return mnt
}

// testReadOnly checks that a read-only view refuses every change with EROFS.
func testReadOnly(t *testing.T, files Files) {
	mnt := mountT(t, files)
	p := func(names ...string) string { return filepath.Join(append([]string{mnt}, names...)...) }
	if _, err := os.ReadFile(p("a")); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "create", os.WriteFile(p("new"), nil, 0o600), syscall.EROFS)
	wantErrno(t, "open for write", func() error { _, err := os.OpenFile(p("a"), os.O_WRONLY, 0); return err }(), syscall.EROFS)
	wantErrno(t, "truncate", os.Truncate(p("a"), 0), syscall.EROFS)
	wantErrno(t, "mkdir", os.Mkdir(p("nd"), 0o700), syscall.EROFS)
	wantErrno(t, "unlink", os.Remove(p("a")), syscall.EROFS)
	wantErrno(t, "rename", os.Rename(p("a"), p("b")), syscall.EROFS)
	wantErrno(t, "chmod", os.Chmod(p("a"), 0o644), syscall.EROFS)
}

func TestPOSIX(t *testing.T) {
	f := newFixture(t, nil)
	if _, _, err := f.s.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	testPOSIX(t, f.head("p", "main"))
	testReadOnly(t, f.view("p", "main", storage.AtHead()))
}

// TestSymlinkCached: the kernel keeps a symlink's target once read
// (FUSE_CACHE_SYMLINKS): reading it again, and opening a file through
// it, as Postgres opens every WAL segment through pg_wal with the local
// WAL tier, asks the mount nothing more.
func TestSymlinkCached(t *testing.T) {
	f := newFixture(t, nil)
	if _, _, err := f.s.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	m := f.mount("m", f.head("p", "main"), MountOptions{})
	p := func(names ...string) string { return filepath.Join(append([]string{m.Dir()}, names...)...) }
	if err := os.Mkdir(p("d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("d", "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d", p("sl")); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if target, err := os.Readlink(p("sl")); err != nil || target != "d" {
			t.Fatalf("readlink: %q %v", target, err)
		}
		if b, err := os.ReadFile(p("sl", "x")); err != nil || string(b) != "x" {
			t.Fatalf("read through the symlink: %q %v", b, err)
		}
	}
	if n := m.Stats().Readlinks.Load(); n != 1 {
		t.Fatalf("5 readlinks and 5 opens through a symlink made %d READLINK requests, want 1", n)
	}
}

// rawNames lists a directory with getdents64, "." and ".." included.
func rawNames(t *testing.T, dir string) []string {
	t.Helper()
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	var names []string
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return names
		}
		for off := 0; off < n; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name
			reclen := int(binary.LittleEndian.Uint16(buf[off+16:]))
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			names = append(names, string(name))
			off += reclen
		}
	}
}
