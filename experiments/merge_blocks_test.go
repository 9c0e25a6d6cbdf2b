package experiments

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// TestMergeSourceWAL: the source's changes that storage does not hold
// yet come from its WAL, whatever kind of record made them (HOT and
// non-HOT updates, updates whose new version lands on another page,
// deletes, single and multi-row inserts into old and new pages, upserts,
// rolled-back subtransactions, an asynchronous commit, vacuum's pruning),
// on top of changes a checkpoint already wrote: the block-level merge
// finds what a full comparison does, and so does its fallback, a
// checkpoint of the source; the merge then leaves nothing between the
// two branches.
func TestMergeSourceWAL(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "main", `CREATE TABLE items (id int PRIMARY KEY, k int, v text) WITH (fillfactor = 100);
CREATE INDEX items_k ON items (k);
INSERT INTO items SELECT i, i, repeat('v', 60) FROM generate_series(1, 3000) i`)
	super(t, s, ctx, "main", "VACUUM items")
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "g", ParentID: "main"}); err != nil {
		t.Fatal(err)
	}
	// Written back by a checkpoint: storage's blocks hold these.
	exec(t, s, ctx, "g", `UPDATE items SET v = 'early' WHERE id % 500 = 1; DELETE FROM items WHERE id = 2`)
	super(t, s, ctx, "g", "CHECKPOINT")
	// Only in the WAL.
	exec(t, s, ctx, "g", `
UPDATE items SET v = 'hot' WHERE id % 97 = 0;              -- same page, same size
UPDATE items SET k = -k WHERE id % 89 = 0;                 -- indexed column: not HOT
UPDATE items SET v = repeat('grown', 40) WHERE id % 83 = 0; -- full pages: the new version moves
UPDATE items SET v = 'twice' WHERE id = 1;
DELETE FROM items WHERE id % 101 = 0;
INSERT INTO items VALUES (5000, 5000, 'single');
INSERT INTO items VALUES (3, 3, 'upsert') ON CONFLICT (id) DO UPDATE SET v = excluded.v;
INSERT INTO items VALUES (7000, 7000, 'gone'); DELETE FROM items WHERE id = 7000`)
	super(t, s, ctx, "g", `COPY items FROM PROGRAM 'seq 6001 6500 | sed "s/.*/&,&,many/"' WITH (FORMAT csv)`) // multi-inserts
	super(t, s, ctx, "g", `BEGIN; SAVEPOINT a; UPDATE items SET v = 'rolled back' WHERE id = 4; ROLLBACK TO a; UPDATE items SET v = 'kept' WHERE id = 5; COMMIT`)
	super(t, s, ctx, "g", "VACUUM items")
	super(t, s, ctx, "g", `SET synchronous_commit = off; UPDATE items SET v = 'async' WHERE id = 6`)

	pre, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if pre.SourceChanges != MergeFromWAL {
		t.Fatalf("preview found the source's changes from %q, want its WAL", pre.SourceChanges)
	}
	full, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main", DryRun: true, FullCompare: true})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(full.Tables)
	if got := fmt.Sprint(pre.Tables); got != want || !strings.Contains(want, "public.items") {
		t.Errorf("from the WAL the merge found\n%s\na full comparison\n%s", got, want)
	}
	if pre.NarrowedByBlocks == 0 {
		t.Error("the WAL preview compared items whole")
	}
	// The fallback: with no WAL allowed, a checkpoint writes g's pages.
	s.mergeWALLimit = 0
	cp, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main", DryRun: true})
	s.mergeWALLimit = defaultMergeWALLimit
	if err != nil {
		t.Fatal(err)
	}
	if cp.SourceChanges != MergeFromCheckpoint || fmt.Sprint(cp.Tables) != want {
		t.Errorf("with a checkpoint (from %q) the merge found\n%s\na full comparison\n%s", cp.SourceChanges, fmt.Sprint(cp.Tables), want)
	}

	if m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main"}); err != nil || m.Status != MergeMerged {
		t.Fatalf("merge: %+v %v", m, err)
	}
	d, err := s.Diff(ctx, DiffRequest{Project: "p", Branch: "g", Against: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Schema.Changed || len(d.Tables) != 0 {
		t.Errorf("after the merge main differs from g: %+v", d.Tables)
	}
}
