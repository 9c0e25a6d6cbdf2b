package experiments

import (
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/offshootdb/offshoot/experiments/merge"
)

// TestMergePrefetch: a merge's read-ahead brings exactly the region's
// blocks into the page cache of a branch's fresh mount, through the
// endpoint's lease, before Postgres asks for them.
func TestMergePrefetch(t *testing.T) {
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "main", "CHECKPOINT")
	rel := val(t, s, ctx, "main", "SELECT pg_relation_filepath('big')")
	if n := val(t, s, ctx, "main", "SELECT pg_relation_size('big') / 8192"); len(n) < 3 || (len(n) == 3 && n < "600") {
		t.Fatalf("big has %s blocks, want over 600", n)
	}
	// A stopped endpoint's next start mounts the branch anew: a cold cache.
	if err := s.cfg.Compute.Stop(ctx, "p", "main"); err != nil {
		t.Fatal(err)
	}
	l, err := s.cfg.Compute.Acquire(ctx, "p", "main")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	f, err := os.Open(filepath.Join(l.DataDir(), rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	resident := func(blk int) bool {
		vec := make([]byte, 2) // an 8 KiB block is two 4 KiB pages
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[blk*8192])), 8192, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatal(e)
		}
		return vec[0]&1 == 1 && vec[1]&1 == 1
	}
	want := []int{10, 50, 300, 400, 401, 402, 403}
	control := []int{100, 200, 500}
	for _, b := range append(append([]int{}, want...), control...) {
		if resident(b) {
			t.Fatalf("block %d is cached before the read-ahead: the test cannot tell", b)
		}
	}
	reg := merge.Region{Tuples: [][2]uint64{{10, 1}, {10, 3}, {50, 2}, {300, 1}}, Blocks: [][2]uint64{{400, 404}, {0, 2 * prefetchRun}}}
	p := s.startPrefetch("p", "main", rel, reg)
	if p == nil {
		t.Fatal("no read-ahead started on a running endpoint")
	}
	<-p.done // all asked for
	p.stop()
	deadline := time.Now().Add(10 * time.Second)
	for _, b := range want {
		for !resident(b) {
			if time.Now().After(deadline) {
				t.Fatalf("block %d is not in the page cache 10 s after the read-ahead", b)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Blocks outside the region, and a range long enough for Postgres to
	// read ahead itself, stay unread.
	for _, b := range append(control, prefetchRun) {
		if resident(b) {
			t.Errorf("block %d, outside what was asked for, is cached", b)
		}
	}
	if s.startPrefetch("p", "main", rel, merge.Region{}) != nil {
		t.Error("a read-ahead started for an empty region")
	}
}
