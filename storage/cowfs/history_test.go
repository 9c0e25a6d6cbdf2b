package cowfs

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage"
)

// TestTimeTravel forks ephemeral branches at an earlier seq and at an
// earlier time and checks they show exactly what was committed by then;
// a read-only view at that seq is mounted, exported, compared file by file
// with the mount, and plain Postgres starts on the export.
func TestTimeTravel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const tick = 200 * time.Millisecond
	f := newFixture(t, &storage.Options{HistoryTick: tick})
	pw := f.initProject("p")
	h := f.head("p", "main")
	s := startPG(t, f.mount("main", h, MountOptions{}).Dir(), f.dir, pw, nil)
	s.exec(ctx, "CREATE TABLE tt (id int)", "INSERT INTO tt SELECT generate_series(1, 100)")
	time.Sleep(3 * tick)
	t1, seq1 := time.Now(), h.Seq()
	time.Sleep(3 * tick)
	s.exec(ctx, "INSERT INTO tt SELECT generate_series(101, 200)", "DELETE FROM tt WHERE id <= 10")
	if n := s.queryInt(ctx, "SELECT count(*) FROM tt"); n != 190 {
		t.Fatalf("head has %d rows, want 190", n)
	}

	for name, at := range map[string]storage.At{"at-seq": storage.AtSeq(seq1), "at-time": storage.AtTime(t1)} {
		if _, err := f.s.Fork("p", "main", name, at, storage.BranchOptions{ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		m := f.mount(name, f.head("p", name), MountOptions{})
		removePidFile(t, m.Dir())
		b := startPG(t, m.Dir(), f.dir, pw, nil)
		if n := b.queryInt(ctx, "SELECT count(*) FROM tt"); n != 100 {
			t.Errorf("%s: %d rows, want the 100 committed by then", name, n)
		}
		if n := b.queryInt(ctx, "SELECT min(id) FROM tt"); n != 1 {
			t.Errorf("%s: min id %d, want 1", name, n)
		}
	}

	v := f.view("p", "main", storage.AtSeq(seq1))
	m := f.mount("view", v, MountOptions{})
	if !m.ReadOnly() {
		t.Fatal("a view must mount read-only")
	}
	exp := filepath.Join(f.dir, "export-seq1")
	if err := Export(ctx, v, exp); err != nil {
		t.Fatal(err)
	}
	files := 0
	err := filepath.WalkDir(m.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(m.Dir(), p)
		if rel == "postmaster.pid" || d.IsDir() {
			return nil
		}
		want, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(exp, rel))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: export differs from the mounted view", rel)
		}
		files++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compared %d files", files)
	e := startPG(t, exp, f.dir, pw, nil)
	if n := e.queryInt(ctx, "SELECT count(*) FROM tt"); n != 100 {
		t.Errorf("export of the view at seq %d: %d rows, want 100", seq1, n)
	}
}
