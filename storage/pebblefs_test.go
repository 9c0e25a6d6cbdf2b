package storage

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestWriteBufferFS: tables and blob files get the write buffer, other
// files do not, and a buffered file reads, stats, syncs and closes as the
// file its writes describe, whatever the sizes of the writes.
func TestWriteBufferFS(t *testing.T) {
	dir := t.TempDir()
	fs := writeBufferFS{vfs.Default}
	for name, want := range map[string]bool{"000007.sst": true, "000008.blob": true, "000009.log": false, "MANIFEST-000001": false} {
		f, err := fs.Create(filepath.Join(dir, name), vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := f.(*bufferedFile); ok != want {
			t.Errorf("%s: buffered %v, want %v", name, ok, want)
		}
		f.Close()
	}

	path := filepath.Join(dir, "000010.blob")
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var want []byte
	// Writes below, at and above the buffer's size, and ones that
	// straddle its end.
	for _, n := range []int{1, 4096, 16 << 10, fileWriteBuffer - 3, 10, fileWriteBuffer, 3 * fileWriteBuffer / 2, 7, 100 << 10} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		want = append(want, p...)
		if m, err := f.Write(p); err != nil || m != n {
			t.Fatalf("write %d: %d, %v", n, m, err)
		}
		// The caller may reuse its buffer once Write returns.
		clear(p)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(want)) {
		t.Fatalf("stat: %v, %v; want size %d", fi, err, len(want))
	}
	got := make([]byte, 100)
	if _, err := f.ReadAt(got, int64(len(want)-100)); err != nil || !bytes.Equal(got, want[len(want)-100:]) {
		t.Fatalf("read at the end: %v", err)
	}

	// SyncTo past what the file was handed, and Sync, write the buffer
	// out first.
	tail := []byte("tail")
	if onDisk(t, path) != int64(len(want)) {
		t.Fatalf("the file holds %d bytes before the tail, want %d", onDisk(t, path), len(want))
	}
	for _, c := range []struct {
		name string
		sync func() error
	}{
		{"SyncTo", func() error { _, err := f.SyncTo(int64(len(want))); return err }},
		{"Sync", f.Sync},
	} {
		f.Write(tail)
		want = append(want, tail...)
		if onDisk(t, path) != int64(len(want)-len(tail)) {
			t.Fatalf("before %s, a 4-byte write reached the file at once", c.name)
		}
		if err := c.sync(); err != nil {
			t.Fatal(err)
		}
		if n := onDisk(t, path); n != int64(len(want)) {
			t.Fatalf("after %s the file holds %d bytes, want %d", c.name, n, len(want))
		}
	}

	// Close writes out what is buffered.
	f.Write(tail)
	want = append(want, tail...)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	all, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(all, want) {
		t.Fatalf("file holds %d bytes (%v), not the %d written", len(all), err, len(want))
	}
}

func onDisk(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
