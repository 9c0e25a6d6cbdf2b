// Package tmpfs mounts small tmpfs file systems for tests that need a disk
// that fills up.
package tmpfs

import (
	"os"
	"syscall"
	"testing"
)

// Mount creates dir and mounts a tmpfs of the given size there (a mount
// size option such as "512m"), unmounted when the test ends (cleanups run
// last-registered first: mount before what lives on it). A test not run
// as root is skipped; on root a failing mount fails the test, so that a
// disk-full check never passes by not running.
func Mount(t testing.TB, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Fatalf("mount a %s tmpfs on %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount the tmpfs on %s: %v", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}
