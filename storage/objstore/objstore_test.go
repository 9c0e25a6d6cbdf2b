package objstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
