package objstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/storage/objstore"
	"github.com/offshootdb/offshoot/storage/objstore/s3test"
)

func config(s *s3test.Server, bucket string) objstore.Config {
	return objstore.Config{Endpoint: s.Endpoint(), Bucket: bucket, Prefix: "team/a",
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, PathStyle: true}
}

// writeFile writes a file of n blocks into the store's project root.
func writeFiles(t *testing.T, st *storage.Store, project string, n int) {
	t.Helper()
	if _, _, err := st.CreateProject(project); err != nil {
		t.Fatal(err)
	}
}

func TestUploadRestoreResume(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "bkt")
	data := t.TempDir()
	st, err := storage.Open(filepath.Join(data, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	writeFiles(t, st, "p1", 1)
	// Reopening flushes the recovered WAL into an sstable.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = storage.Open(filepath.Join(data, "store"), nil); err != nil {
		t.Fatal(err)
	}
	src := []objstore.Source{{Name: "store", Checkpoint: st.Checkpoint}}
	cfg := config(srv, "bkt")
	u, err := objstore.New(ctx, cfg, src, filepath.Join(data, "objstore"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if s := u.Sent(); s.Immutable == 0 {
		t.Fatalf("first round uploaded no sstable or blob file: %+v", s)
	}

	// The object store goes away: rounds fail, the store keeps working.
	srv.Stop()
	writeFiles(t, st, "p2", 1)
	if err := u.Sync(ctx); err == nil {
		t.Fatal("Sync succeeded with the object store down")
	}
	if u.Generation() != 1 {
		t.Fatalf("generation %d after a failed round, want 1", u.Generation())
	}
	srv.Resume()
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	_ = u.Close()

	// A restarted uploader resumes, even with its local state lost: no
	// sstable or blob file already in the bucket is uploaded again, and
	// rounds are numbered after the bucket's last one.
	if err := os.RemoveAll(filepath.Join(data, "objstore")); err != nil {
		t.Fatal(err)
	}
	u2, err := objstore.New(ctx, cfg, src, filepath.Join(data, "objstore"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := u2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if u2.Generation() != 3 {
		t.Fatalf("generation %d, want 3", u2.Generation())
	}
	if s := u2.Sent(); s.Immutable != 0 {
		t.Fatalf("restarted uploader sent %d sstables or blob files again", s.Immutable)
	}

	dst := filepath.Join(t.TempDir(), "restored")
	r, err := objstore.Restore(ctx, cfg, dst, objstore.RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Gen != 3 {
		t.Fatalf("restored generation %d, want 3", r.Gen)
	}
	st2, err := storage.Open(filepath.Join(dst, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	for _, p := range []string{"p1", "p2"} {
		if _, err := st2.Project(p); err != nil {
			t.Errorf("project %s after restore: %v", p, err)
		}
	}
	if err := st2.Check(); err != nil {
		t.Fatalf("restored store: %v", err)
	}
	// A second restore into the now non-empty dir is refused.
	if _, err := objstore.Restore(ctx, cfg, dst, objstore.RestoreOptions{}); !errors.Is(err, objstore.ErrNotEmpty) {
		t.Fatalf("restore into a non-empty dir: %v, want ErrNotEmpty", err)
	}
}

func TestBadConfig(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "bkt")
	src := []objstore.Source{{Name: "x", Checkpoint: func(string) error { return nil }}}
	cfg := config(srv, "missing")
	if _, err := objstore.New(ctx, cfg, src, t.TempDir(), nil); !errors.Is(err, objstore.ErrNoBucket) {
		t.Errorf("missing bucket: %v, want ErrNoBucket", err)
	}
	cfg = config(srv, "bkt")
	cfg.Interval = -5 * time.Second
	if _, err := objstore.New(ctx, cfg, src, t.TempDir(), nil); !errors.Is(err, objstore.ErrConfig) {
		t.Errorf("negative interval: %v, want ErrConfig", err)
	}
	cfg = config(srv, "bkt")
	cfg.Endpoint = "http://127.0.0.1:1"
	if _, err := objstore.New(ctx, cfg, src, t.TempDir(), nil); !errors.Is(err, objstore.ErrUnreachable) {
		t.Errorf("unreachable endpoint: %v, want ErrUnreachable", err)
	}
	if _, err := objstore.Restore(ctx, config(srv, "bkt"), t.TempDir(), objstore.RestoreOptions{}); !errors.Is(err, objstore.ErrNoBackup) {
		t.Errorf("restore of an empty prefix: %v, want ErrNoBackup", err)
	}
	for _, u := range []string{"http://bkt/x", "s3://", "bkt"} {
		if _, _, err := objstore.ParseURL(u); !errors.Is(err, objstore.ErrConfig) || !strings.Contains(err.Error(), u) {
			t.Errorf("ParseURL(%q): %v", u, err)
		}
	}
}

// TestIdleRoundsUploadNothing: a round in which nothing was committed
// uploads nothing and writes no generation, however large the WAL; a round
// after one small commit uploads a small amount (not the WAL again), and a
// restore has that commit.
func TestIdleRoundsUploadNothing(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "bkt")
	data := t.TempDir()
	st, err := storage.Open(filepath.Join(data, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, _, err := st.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	h, err := st.OpenHead("p", "main")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f, err := h.Create(storage.RootIno, "data", 0o600, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 6 MiB committed: in the WAL and the memtable, not in an sstable.
	chunk := make([]byte, 1<<20)
	for i := range 6 {
		_, _ = rand.Read(chunk) // not zeros, which the store keeps sparse
		chunk[0] = byte(i)
		if _, err := h.WriteAt(f.Ino, chunk, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	src := []objstore.Source{{Name: "store", Checkpoint: st.Checkpoint, Version: st.Version}}
	cfg := config(srv, "bkt")
	u, err := objstore.New(ctx, cfg, src, filepath.Join(data, "objstore"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	first := u.Sent()
	if first.Bytes < 6<<20 {
		t.Fatalf("first round sent %d bytes, want the 6 MiB written", first.Bytes)
	}
	for i := range 3 {
		if err := u.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if s := u.Sent(); s != first {
			t.Fatalf("idle round %d uploaded %d files, %d bytes", i+1, s.Files-first.Files, s.Bytes-first.Bytes)
		}
		if g := u.Generation(); g != 1 {
			t.Fatalf("idle round %d wrote generation %d", i+1, g)
		}
	}

	// One 8 KiB block committed: the round sends a few small files.
	small := make([]byte, 8<<10)
	_, _ = rand.Read(small)
	small[0] = 0xab
	if _, err := h.WriteAt(f.Ino, small, 7<<20); err != nil {
		t.Fatal(err)
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s := u.Sent()
	if d := s.Bytes - first.Bytes; d == 0 || d > 256<<10 {
		t.Fatalf("round after an 8 KiB commit uploaded %d bytes in %d files, want some and at most 256 KiB", d, s.Files-first.Files)
	}
	if g := u.Generation(); g != 2 {
		t.Fatalf("generation %d after a commit, want 2", g)
	}
	after := u.Sent()
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if s := u.Sent(); s != after || u.Generation() != 2 {
		t.Fatalf("idle round after the commit uploaded %d bytes, generation %d", s.Bytes-after.Bytes, u.Generation())
	}

	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := objstore.Restore(ctx, cfg, dst, objstore.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	st2, err := storage.Open(filepath.Join(dst, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	h2, err := st2.OpenHead("p", "main")
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	a, err := h2.Lookup(storage.RootIno, "data")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	for off, want := range map[int64]byte{0: 0, 5 << 20: 5, 7 << 20: 0xab} {
		if _, err := h2.ReadAt(a.Ino, buf, off); err != nil || buf[0] != want {
			t.Errorf("restored byte at %d: %x (%v), want %x", off, buf[0], err, want)
		}
	}
	if err := st2.Check(); err != nil {
		t.Fatalf("restored store: %v", err)
	}
}
