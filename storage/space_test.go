package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/internal/tmpfs"
)

// TestDiskFull fills a small tmpfs through one branch's head: its writes
// fail with ErrNoSpace (which is ENOSPC) instead of pebble panicking and
// hanging the store, while another branch still writes within its share of
// the reserve; removals and the deletion of the filling branch work, the
// freed space comes back while the store stays open, writes succeed again,
// and synced data survives a reopen.
func TestDiskFull(t *testing.T) {
	mnt := t.TempDir()
	tmpfs.Mount(t, mnt, "512m")
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
		defer cancel()
	}
	{
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	done := make(chan error, 1)
	go func() { done <- diskFull(ctx, filepath.Join(mnt, "store"), seed) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		select {
		case err := <-done:
			t.Fatal(err)
		case <-time.After(5 * time.Second):
			t.Fatal("store hung on a full disk")
		}
	}
}

func diskFull(ctx context.Context, dir string, seed uint64) error {
	opts := &Options{GCInterval: -1, MinFreeBytes: 64 << 20, SharedReserveBytes: 64 << 20, HeadBufferBytes: 1 << 20, CacheSize: 8 << 20}
	lowLine := uint64(opts.MinFreeBytes + opts.SharedReserveBytes)
	s, err := Open(dir, opts)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	rng := rand.New(rand.NewPCG(seed, 1))
	random := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return p
	}
	if _, _, err := s.CreateProject("p"); err != nil {
		return err
	}
	main, err := s.OpenHead("p", "main")
	if err != nil {
		return err
	}
	a, b := random(1<<20), random(4<<20)
	if err := writeSynced(main, "a", a); err != nil {
		return err
	}
	if _, err := s.Fork("p", "main", "dev", AtHead(), BranchOptions{}); err != nil {
		return err
	}
	dev, err := s.OpenHead("p", "dev")
	if err != nil {
		return err
	}
	f, err := dev.Create(RootIno, "fill", 0o644, 0, 0)
	if err != nil {
		return err
	}
	chunk := random(256 << 10)
	var off int64
	for ; off < 512<<20; off += int64(len(chunk)) {
		if _, err = dev.WriteAt(f.Ino, chunk, off); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("filling the disk: wrote %d bytes, err %v, want ENOSPC", off, err)
	}
	if !s.SpaceLow() {
		return fmt.Errorf("dev got ENOSPC but SpaceLow is false")
	}
	// The other branch still writes: its share of the reserve is untouched.
	if err := writeSynced(main, "c", random(1<<20)); err != nil {
		return fmt.Errorf("another branch on a full disk: %w", err)
	}
	if _, err := dev.WriteAt(f.Ino, chunk, off); !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("dev wrote again after ENOSPC: %v", err)
	}
	// What was accepted is still committed and synced; removals work.
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("sync on a full disk: %w", err)
	}
	if _, err := dev.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: BlockSize}); err != nil {
		return fmt.Errorf("truncate on a full disk: %w", err)
	}
	if err := dev.Unlink(RootIno, "fill"); err != nil {
		return fmt.Errorf("unlink on a full disk: %w", err)
	}
	if err := dev.Close(); err != nil {
		return err
	}
	if err := s.DeleteBranch("p", "dev", DeleteOptions{}); err != nil {
		return fmt.Errorf("delete branch on a full disk: %w", err)
	}
	// No reopen: the store compacts the deleted timeline away by itself.
	// Wait until the room for b (and what pebble writes along with it)
	// is back above the reserve, not merely until one small write fits:
	// the removals of obsolete files land one by one.
	for {
		st, err := s.StatFS()
		if err != nil {
			return err
		}
		// pebble's WAL files are preallocated and recycled: their number
		// grows with memtable rotations up to a bound, not with data.
		if st.AvailBytes+walBytes(dir) >= lowLine+uint64(4*len(b)) && st.AvailBytes >= uint64(opts.MinFreeBytes)+uint64(4*len(b)) {
			break
		}
		select {
		case <-ctx.Done():
			du, _ := exec.Command("du", "-a", dir).Output()
			return fmt.Errorf("space never freed while open (%d available, low line %d)\n%s", st.AvailBytes, lowLine, du)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, err = main.Create(RootIno, "b", 0o644, 0, 0); err != nil {
		return fmt.Errorf("create after freeing space: %w", err)
	}
	if err := writeSynced(main, "b", b); err != nil {
		return fmt.Errorf("write after freeing space: %w", err)
	}
	if err := s.Close(); err != nil {
		return err
	}
	if s, err = Open(dir, opts); err != nil {
		return err
	}
	if err := s.Check(); err != nil {
		return err
	}
	v, err := s.OpenView("p", "main", AtHead())
	if err != nil {
		return err
	}
	defer v.Close()
	for name, want := range map[string][]byte{"a": a, "b": b} {
		e, err := v.Lookup(RootIno, name)
		if err != nil {
			return err
		}
		got := make([]byte, len(want)+1)
		n, _ := v.ReadAt(e.Ino, got, 0)
		if !bytes.Equal(got[:n], want) {
			return fmt.Errorf("%s after reopen: %d bytes, want %d, equal prefix %v", name, n, len(want), bytes.HasPrefix(want, got[:n]))
		}
	}
	return nil
}

// walBytes is the size of pebble's WAL files in dir.
func walBytes(dir string) uint64 {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	var n uint64
	for _, l := range logs {
		if fi, err := os.Stat(l); err == nil {
			n += uint64(fi.Size())
		}
	}
	return n
}

// writeSynced writes p to name (created if needed) and syncs.
func writeSynced(h *Head, name string, p []byte) error {
	e, err := h.Lookup(RootIno, name)
	if errors.Is(err, ErrNotExist) {
		e, err = h.Create(RootIno, name, 0o644, 0, 0)
	}
	if err != nil {
		return err
	}
	if _, err := h.WriteAt(e.Ino, p, 0); err != nil {
		return err
	}
	return h.Sync()
}
