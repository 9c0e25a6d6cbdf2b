package cowfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/storage"
)

// testWriteback runs the tests with the FUSE writeback cache on
// (COWFS_TEST_WRITEBACK=1).
var testWriteback = os.Getenv("COWFS_TEST_WRITEBACK") != ""

// fixture is a store in a directory the postgres user can traverse, with
// mount points below it.
type fixture struct {
	t        testing.TB
	dir      string
	storeDir string
	opts     *storage.Options
	s        *storage.Store
}

func newFixture(t testing.TB, opts *storage.Options) *fixture {
	t.Helper()
	dir := pgtest.Dir(t)
	f := &fixture{t: t, dir: dir, storeDir: filepath.Join(dir, "store"), opts: opts}
	f.open()
	return f
}

// open opens the store; it is closed when the test ends.
func (f *fixture) open() {
	f.t.Helper()
	s, err := storage.Open(f.storeDir, f.opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.s = s
	f.t.Cleanup(func() { _ = s.Close() })
}

// head opens a branch head, closed when the test ends.
func (f *fixture) head(project, branch string) *storage.Head {
	f.t.Helper()
	h, err := f.s.OpenHead(project, branch)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = h.Close() })
	return h
}

// view opens a view, closed when the test ends.
func (f *fixture) view(project, branch string, at storage.At) *storage.View {
	f.t.Helper()
	v, err := f.s.OpenView(project, branch, at)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = v.Close() })
	return v
}

// mountDir makes an empty mount point named name in the fixture's dir.
func (f *fixture) mountDir(name string) string {
	f.t.Helper()
	mnt := filepath.Join(f.dir, name)
	if err := os.MkdirAll(filepath.Dir(mnt), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o700); err != nil && !os.IsExist(err) {
		f.t.Fatal(err)
	}
	return mnt
}

// mount serves files at a new mount point named name until the test ends.
func (f *fixture) mount(name string, files Files, o MountOptions) *MountPoint {
	f.t.Helper()
	if testWriteback {
		o.WritebackCache = true
	}
	m, err := Mount(f.mountDir(name), files, o)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Unmount(ctx); err != nil {
			f.t.Error(err)
		}
	})
	return m
}

// initProject creates project with a Postgres cluster on its main branch
// and returns the superuser password.
func (f *fixture) initProject(project string) string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, _, err := f.s.CreateProject(project); err != nil {
		f.t.Fatal(err)
	}
	h, err := f.s.OpenHead(project, "main")
	if err != nil {
		f.t.Fatal(err)
	}
	defer h.Close()
	pw, err := initCluster(ctx, h, f.mountDir("init-"+project), filepath.Join(f.dir, "init-"+project+".log"))
	if err != nil {
		f.t.Fatalf("%v\n%s", err, tail(filepath.Join(f.dir, "init-"+project+".log")))
	}
	return pw
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// removePidFile deletes the postmaster.pid a fork inherits from its running
// parent: the parent's postmaster is alive, so Postgres would refuse to
// start next to it.
func removePidFile(t testing.TB, data string) {
	t.Helper()
	if err := os.Remove(filepath.Join(data, "postmaster.pid")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}
