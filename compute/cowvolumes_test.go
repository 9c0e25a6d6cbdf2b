package compute_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/storage"
)

// TestStoreVolumes runs a branch of the copy-on-write store through the
// Manager on a real FUSE mount, forks it in storage while it runs, starts
// the child and checks that writes on either side stay on their side.
func TestStoreVolumes(t *testing.T) { storeVolumesTest(t, false) }

// TestStoreVolumesLocalWAL is TestStoreVolumes with the endpoints' WAL on
// local disk (StoreVolumes.LocalWALDir): the fork of the running branch
// still sees the row committed before it (the fork's flush absorbs the
// local WAL), a running endpoint's directory is there and goes when it
// stops, and Recover removes directories whose branch is gone.
func TestStoreVolumesLocalWAL(t *testing.T) { storeVolumesTest(t, true) }

func storeVolumesTest(t *testing.T, localWAL bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := pgtest.Dir(t)
	st, err := storage.Open(filepath.Join(dir, "store"), &storage.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := st.Check(); err != nil {
			t.Error(err)
		}
		st.Close()
	}()
	if _, _, err := st.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	h, err := st.OpenHead("p", "main")
	if err != nil {
		t.Fatal(err)
	}
	pw, err := compute.InitProject(ctx, h, filepath.Join(dir, "init"), compute.InitOptions{LogFile: filepath.Join(dir, "init.log")})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	vols := compute.StoreVolumes{Store: st, MountDir: filepath.Join(run, "mnt")}
	if localWAL {
		vols.LocalWALDir = filepath.Join(run, "wal")
	}
	m, err := compute.New(compute.Config{Volumes: vols, RunDir: filepath.Join(run, "compute"), Password: pw,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	exec := func(branch, sql string) int {
		t.Helper()
		l, err := m.Acquire(ctx, "p", branch)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		conn, err := pgx.Connect(ctx, l.ConnString("postgres", pw, "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if !strings.HasPrefix(sql, "SELECT") {
			_, err = conn.Exec(ctx, sql)
		} else {
			err = conn.QueryRow(ctx, sql).Scan(&n)
		}
		if err != nil {
			t.Fatalf("%s on %s: %v", sql, branch, err)
		}
		return n
	}
	exec("main", "CREATE TABLE t (id int PRIMARY KEY, v vector(2))")
	exec("main", "INSERT INTO t VALUES (1, '[1,2]')")
	if _, err := st.Fork("p", "main", "child", storage.AtHead(), storage.BranchOptions{}); err != nil {
		t.Fatal(err)
	}
	exec("main", "INSERT INTO t VALUES (2, '[2,3]')")
	exec("child", "INSERT INTO t VALUES (3, '[3,4]')")
	if got := exec("main", "SELECT sum(id) FROM t"); got != 3 {
		t.Errorf("main sum(id) = %d, want 3 (1+2, not the child's 3)", got)
	}
	if got := exec("child", "SELECT sum(id) FROM t"); got != 4 {
		t.Errorf("child sum(id) = %d, want 4 (1 from before the fork + its own 3)", got)
	}
	if s := m.Status("p", "child"); s.State != compute.Running && s.State != compute.Idle {
		t.Errorf("child state %s", s.State)
	}
	// A running branch's head is open: storage refuses to delete it until
	// the endpoint stops and releases the volume.
	if err := st.DeleteBranch("p", "child", storage.DeleteOptions{}); !errors.Is(err, storage.ErrBusy) {
		t.Errorf("delete running branch: %v, want ErrBusy", err)
	}
	if err := m.Stop(ctx, "p", "child"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteBranch("p", "child", storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Acquire(ctx, "p", "child"); !errors.Is(err, compute.ErrBranchNotFound) {
		t.Errorf("acquire deleted branch: %v, want ErrBranchNotFound", err)
	}
	if !localWAL {
		return
	}
	b, err := st.Branch("p", "main")
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(vols.LocalWALDir, "p", strconv.FormatUint(b.Timeline, 10))
	if target, err := os.Readlink(filepath.Join(vols.MountPoint("p", "main"), "pg_wal")); err != nil || target != local {
		t.Fatalf("main's pg_wal: %q %v, want a symlink to %s", target, err, local)
	}
	if err := m.Stop(ctx, "p", "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(local); !os.IsNotExist(err) {
		t.Fatalf("main's local WAL directory after its endpoint stopped: %v", err)
	}
	if got := exec("main", "SELECT sum(id) FROM t"); got != 3 {
		t.Errorf("main sum(id) = %d after a restart from the store, want 3", got)
	}
	if err := m.Stop(ctx, "p", "main"); err != nil { // Recover runs before anything is mounted
		t.Fatal(err)
	}
	// What a crash could leave for branches that are gone: Recover
	// removes it.
	gone := []string{filepath.Join(vols.LocalWALDir, "p", "999999"), filepath.Join(vols.LocalWALDir, "p", "1.tmp"),
		filepath.Join(vols.LocalWALDir, "nosuchproject", "1")}
	for _, d := range gone {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := vols.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range gone {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("%s after Recover: %v", d, err)
		}
	}
}
