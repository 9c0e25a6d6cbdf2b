package cowfs

import (
	"os"
	"path/filepath"
	"testing"
)

// writeSync writes s at the start of path (creating it) and fsyncs it.
func writeSync(t *testing.T, path, s string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	rewriteSync(t, f, s)
	return f
}

// rewriteSync writes s at the start of the open file f and fsyncs it.
func rewriteSync(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteAt([]byte(s), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestVolatileFsync: the fsync of a volatile file (MountOptions.Volatile)
// syncs nothing, as long as it is that root name's only link; any other
// file's fsync still does, and covers the volatile file's writes too.
func TestVolatileFsync(t *testing.T) {
	f, h := newHead(t)
	m := f.mount("m", h, MountOptions{Volatile: []string{"postmaster.pid"}})
	dir := m.Dir()
	st := m.Stats()
	syncs := func() (store, volatile uint64) { return st.StoreSyncs.Load(), st.VolatileFsyncs.Load() }
	expect := func(what string, s0, v0 uint64, ds, dv uint64) {
		t.Helper()
		if s, v := syncs(); s-s0 != ds || v-v0 != dv {
			t.Fatalf("%s: %d store syncs and %d volatile fsyncs, want %d and %d", what, s-s0, v-v0, ds, dv)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}

	s0, v0 := syncs()
	pid := writeSync(t, filepath.Join(dir, "postmaster.pid"), "1\n")
	expect("root postmaster.pid", s0, v0, 0, 1)

	s0, v0 = syncs()
	writeSync(t, filepath.Join(dir, "other"), "x").Close()
	expect("another file", s0, v0, 1, 0)

	s0, v0 = syncs()
	writeSync(t, filepath.Join(dir, "sub", "postmaster.pid"), "2\n").Close()
	expect("postmaster.pid in a subdirectory", s0, v0, 1, 0)

	// Linked under a second name, it is no longer only the lock file.
	if err := os.Link(filepath.Join(dir, "postmaster.pid"), filepath.Join(dir, "pidlink")); err != nil {
		t.Fatal(err)
	}
	s0, v0 = syncs()
	rewriteSync(t, pid, "3\n")
	expect("a linked postmaster.pid", s0, v0, 1, 0)
	if err := os.Remove(filepath.Join(dir, "pidlink")); err != nil {
		t.Fatal(err)
	}

	// Renamed away, it is an ordinary file.
	if err := os.Rename(filepath.Join(dir, "postmaster.pid"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	s0, v0 = syncs()
	rewriteSync(t, pid, "4\n")
	expect("a renamed postmaster.pid", s0, v0, 1, 0)
	pid.Close()

	// Another file renamed onto the name was not created as the lock file.
	writeSync(t, filepath.Join(dir, "tmp"), "5\n").Close()
	if err := os.Rename(filepath.Join(dir, "tmp"), filepath.Join(dir, "postmaster.pid")); err != nil {
		t.Fatal(err)
	}
	s0, v0 = syncs()
	writeSync(t, filepath.Join(dir, "postmaster.pid"), "6\n").Close()
	expect("a file renamed to postmaster.pid", s0, v0, 1, 0)
}

// TestVolatileFsyncCrash SIGKILLs a server whose postmaster.pid is
// volatile: a later fsync of another file made the lock file's earlier
// writes durable with it; its last write, fsynced after that, may be lost,
// but the store holds one of the two versions, never less.
func TestVolatileFsyncCrash(t *testing.T) {
	f, _ := newHead(t)
	f.close()
	mnt := f.mountDir("crashrun/data")
	c := startServer(t, serveSpec{Store: f.storeDir, Project: "p", Branch: "main", Mount: mnt, Volatile: []string{"postmaster.pid"}})
	pid := writeSync(t, filepath.Join(mnt, "postmaster.pid"), "first\n")
	writeSync(t, filepath.Join(mnt, "data"), "acknowledged").Close()
	rewriteSync(t, pid, "second")
	c.kill()
	pid.Close()
	if _, err := CleanStale(filepath.Dir(mnt)); err != nil {
		t.Fatal(err)
	}

	f.open()
	m := f.mount("crashrun/data", f.head("p", "main"), MountOptions{})
	if b, err := os.ReadFile(filepath.Join(m.Dir(), "data")); err != nil || string(b) != "acknowledged" {
		t.Fatalf("data after the crash: %q %v", b, err)
	}
	b, err := os.ReadFile(filepath.Join(m.Dir(), "postmaster.pid"))
	if err != nil || (string(b) != "first\n" && string(b) != "second") {
		t.Fatalf("postmaster.pid after the crash: %q %v, want the first or the second version", b, err)
	}
	t.Logf("postmaster.pid after the crash: %q", b)
}
