package objstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/storage/objstore/s3test"
)

// TestRestoreInterrupted: a restore cancelled, or whose object store
// hangs, in the middle of its download fails (the hang within
// Config.Stall, on a GET after the first) and leaves the data dir empty;
// one a crash cut short leaves the marker, which CheckRestored reports
// and a second restore replaces.
func TestRestoreInterrupted(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "bkt")
	cfg := Config{Endpoint: srv.Endpoint(), Bucket: "bkt", Prefix: "i", AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, PathStyle: true}
	src := t.TempDir()
	st, err := storage.Open(filepath.Join(src, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, _, err := st.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	u, err := New(ctx, cfg, []Source{{Name: "store", Checkpoint: st.Checkpoint}}, filepath.Join(src, "objstore"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { testHookFile = nil }()
	empty := func(dir string) {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Errorf("%s after a failed restore holds %d entries (%s...)", dir, len(ents), ents[0].Name())
		}
	}

	// Cancelled (restore's SIGINT or SIGTERM) after the first file.
	cctx, cancel := context.WithCancel(ctx)
	testHookFile = func(n int) {
		if n == 1 {
			cancel()
		}
	}
	dir := filepath.Join(t.TempDir(), "d")
	if _, err := Restore(cctx, cfg, dir, RestoreOptions{StateDir: filepath.Join(dir, "objstore")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled restore: %v", err)
	}
	empty(dir)

	// The object store hangs after the first file.
	testHookFile = func(n int) {
		if n == 1 {
			srv.Pause()
		}
	}
	hung := cfg
	hung.Stall = 500 * time.Millisecond
	done := make(chan error, 1)
	go func() {
		_, err := Restore(ctx, hung, dir, RestoreOptions{StateDir: filepath.Join(dir, "objstore")})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStalled) {
			t.Fatalf("restore from a hung object store: %v, want ErrStalled", err)
		}
	case <-time.After(30 * time.Second):
		srv.Continue()
		t.Fatal("restore from a hung object store still running after 30 s")
	}
	srv.Continue()
	testHookFile = nil
	empty(dir)

	// A crash mid-restore: the marker and part of the files.
	if err := os.WriteFile(filepath.Join(dir, RestoringMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "store", "000001.sst"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckRestored(dir); !errors.Is(err, ErrRestoreUnfinished) {
		t.Fatalf("CheckRestored of an interrupted restore: %v", err)
	}
	if _, err := Restore(ctx, cfg, dir, RestoreOptions{StateDir: filepath.Join(dir, "objstore")}); err != nil {
		t.Fatalf("restore into an interrupted restore: %v", err)
	}
	if err := CheckRestored(dir); err != nil {
		t.Fatalf("CheckRestored after a complete restore: %v", err)
	}
	s2, err := storage.Open(filepath.Join(dir, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Project("p"); err != nil {
		t.Errorf("project p after the restore: %v", err)
	}
	if err := s2.Check(); err != nil {
		t.Fatal(err)
	}
	// A data dir with other contents is still refused.
	if _, err := Restore(ctx, cfg, dir, RestoreOptions{}); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore into a complete data dir: %v, want ErrNotEmpty", err)
	}
}
