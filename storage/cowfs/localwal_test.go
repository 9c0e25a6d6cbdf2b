package cowfs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/storage"
)

// recycling makes Postgres reuse old segments under new names, with
// their old WAL in them: compute turns it off (compute/start.go), a
// branch's own settings could turn it on, and the absorber must still find
// where a segment's new WAL ends (a page header naming another position).
var recycling = map[string]string{"wal_recycle": "on", "max_wal_size": "32MB", "min_wal_size": "32MB"}

// TestLocalWAL: Postgres on a mount whose pg_wal is a directory on local
// disk (MountOptions.LocalWAL). The mount shows the symlink and refuses to
// change it; a fork of the running head sees every commit acknowledged
// before it (the fork's flush absorbs the local WAL) and recovers with
// only the store's copy; pgbench's balance invariant holds; a clean
// unmount leaves the store holding all of it and the local directory
// gone, and a second mount copies it out again.
func TestLocalWAL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := newFixture(t, nil)
	pw := f.initProject("p")
	local := filepath.Join(f.dir, "wal-main")
	h := f.head("p", "main")
	m, err := Mount(f.mountDir("main"), h, MountOptions{LocalWAL: local, NoWritebackCache: testNoWriteback})
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(m.Dir(), "pg_wal")
	if target, err := os.Readlink(link); err != nil || target != local {
		t.Fatalf("pg_wal on the mount: %q %v, want a symlink to %s", target, err, local)
	}
	if err := os.Remove(link); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("removing the pg_wal symlink: %v, want EPERM", err)
	}
	if err := os.Rename(link, filepath.Join(m.Dir(), "moved")); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("renaming the pg_wal symlink: %v, want EPERM", err)
	}
	segs, err := filepath.Glob(filepath.Join(local, "0000000*"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("local WAL directory holds no segment: %v %v", segs, err)
	}

	s := startPG(t, m.Dir(), f.dir, pw, recycling)
	s.pgbench(ctx, "-i", "-q", "-s", "2")
	s.exec(ctx, "CHECKPOINT",
		"CREATE TABLE t (id int PRIMARY KEY, v text)",
		"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
	s.pgbench(ctx, "-c", "2", "-j", "2", "-T", "3")
	s.checkPgbenchInvariant(ctx)

	// A fork of the running head: its WAL is what the store absorbed.
	if _, err := f.s.Fork("p", "main", "fork", storage.AtHead(), storage.BranchOptions{}); err != nil {
		t.Fatal(err)
	}
	fm := f.mount("fork", f.head("p", "fork"), MountOptions{})
	if fi, err := os.Lstat(filepath.Join(fm.Dir(), "pg_wal")); err != nil || !fi.IsDir() {
		t.Fatalf("the fork's pg_wal: %v %v, want the store's directory", fi, err)
	}
	removePidFile(t, fm.Dir())
	fk := startPG(t, fm.Dir(), f.dir, pw, recycling)
	if n := fk.queryInt(ctx, "SELECT count(*) FROM t"); n != 20000 {
		t.Fatalf("fork: %d rows of t, want 20000", n)
	}
	fk.checkPgbenchInvariant(ctx)
	fk.amcheck(ctx)
	fk.stop(pg.Fast)
	s.checkPgbenchInvariant(ctx)

	s.pgbench(ctx, "-n", "-c", "2", "-j", "2", "-T", "3") // -n: keep the history the invariant sums
	s.checkPgbenchInvariant(ctx)
	s.stop(pg.Fast)
	uctx, ucancel := context.WithTimeout(ctx, 10*time.Second)
	defer ucancel()
	if err := m.Unmount(uctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(local); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after a clean unmount the local WAL directory is still there: %v", err)
	}

	// The store alone holds the cluster: mounted again (the WAL copied
	// out again), and without the tier, it starts with everything.
	want := int64(20000)
	for _, o := range []MountOptions{{LocalWAL: local}, {}} {
		m := f.mount("main", h, o)
		s := startPG(t, m.Dir(), f.dir, pw, recycling)
		if n := s.queryInt(ctx, "SELECT count(*) FROM t"); n != want {
			t.Fatalf("remounted (local WAL %q): %d rows of t, want %d", o.LocalWAL, n, want)
		}
		s.checkPgbenchInvariant(ctx)
		s.exec(ctx, "INSERT INTO t SELECT max(id) + 1, 'x' FROM t") // committed at the stop's checkpoint
		want++
		s.stop(pg.Fast)
		if err := m.Unmount(uctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLocalWALFillsLostCopy: the copy of pg_wal a mount makes is not
// synced (Postgres' first fdatasync of a segment syncs it), so a crash
// right after the mount can leave the local files as zeros. The next
// mount finds the directory, fills what it lost from the store, and the
// cluster starts with its data.
func TestLocalWALFillsLostCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := newFixture(t, nil)
	pw := f.initProject("p")
	m := f.mount("main", f.head("p", "main"), MountOptions{})
	s := startPG(t, m.Dir(), f.dir, pw, nil)
	s.exec(ctx, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
	s.stop(pg.Fast)
	if err := m.Unmount(ctx); err != nil {
		t.Fatal(err)
	}
	f.close()

	local := filepath.Join(f.dir, "wal-main")
	mnt := f.mountDir("run/data")
	srv := startServer(t, serveSpec{Store: f.storeDir, Project: "p", Branch: "main", Mount: mnt, LocalWAL: local})
	srv.kill()
	zeroed := 0
	err := filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		zeroed++
		if err := os.Truncate(p, 0); err != nil {
			return err
		}
		return os.Truncate(p, fi.Size())
	})
	if err != nil || zeroed == 0 {
		t.Fatalf("zeroing the local copy: %d files, %v", zeroed, err)
	}
	if _, err := CleanStale(filepath.Join(f.dir, "run")); err != nil {
		t.Fatal(err)
	}
	f.open()
	m = f.mount("run/data", f.head("p", "main"), MountOptions{LocalWAL: local})
	s = startPG(t, m.Dir(), f.dir, pw, nil)
	if n := s.queryInt(ctx, "SELECT count(*) FROM t"); n != 1000 {
		t.Fatalf("%d rows after the lost copy was filled, want 1000", n)
	}
}

// TestLocalWALKeptWhenUnabsorbable: when an unmount cannot bring the store
// up to the local WAL (here the directory vanished; in life a full disk
// refuses it), Unmount says so with ErrWALKept, and the head commits
// nothing more until it can: no data without the WAL it needs.
func TestLocalWALKeptWhenUnabsorbable(t *testing.T) {
	f := newFixture(t, nil)
	f.initProject("p")
	h := f.head("p", "main")
	local := filepath.Join(f.dir, "wal-main")
	m, err := Mount(f.mountDir("main"), h, MountOptions{LocalWAL: local})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.Dir(), "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(local); err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(context.Background()); !errors.Is(err, ErrWALKept) {
		t.Fatalf("unmount with its local WAL gone: %v, want ErrWALKept", err)
	}
	if err := h.Sync(); err == nil {
		t.Fatal("the head commits although its local WAL cannot be absorbed")
	}
}

// TestCheckpointRedo: the redo point a mount copies the WAL out from is
// the one pg_controldata reports, and none (all of the WAL) once a
// replication slot exists, since a replica reads from the slot's position.
func TestCheckpointRedo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := newFixture(t, nil)
	pw := f.initProject("p")
	h := f.head("p", "main")
	m := f.mount("main", h, MountOptions{})
	s := startPG(t, m.Dir(), f.dir, pw, nil)
	s.exec(ctx, "CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g", "CHECKPOINT")
	s.stop(pg.Fast)
	out, err := exec.CommandContext(ctx, pg.Bin("pg_controldata"), m.Dir()).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	mm := regexp.MustCompile(`Latest checkpoint's REDO location:\s+([0-9A-F]+)/([0-9A-F]+)`).FindSubmatch(out)
	if mm == nil {
		t.Fatalf("no redo location in\n%s", out)
	}
	hi, _ := strconv.ParseUint(string(mm[1]), 16, 32)
	lo, _ := strconv.ParseUint(string(mm[2]), 16, 32)
	if got, want := checkpointRedo(h), hi<<32|lo; got != want || want == 0 {
		t.Fatalf("checkpointRedo %X, pg_controldata %X", got, want)
	}
	s = startPG(t, m.Dir(), f.dir, pw, nil)
	s.exec(ctx, "SELECT pg_create_physical_replication_slot('replica')")
	s.stop(pg.Fast)
	if got := checkpointRedo(h); got != 0 {
		t.Fatalf("checkpointRedo with a replication slot: %X, want 0", got)
	}
}
