package storage

import (
	"context"
	"reflect"
	"testing"
)

// TestDiffBlocks: the blocks two views differ in are those either side
// wrote since the state they share with other bytes (a fork into its
// parent, siblings, a parent that moved on), plus what a truncation cut;
// a block both wrote alike does not differ; a file created anew on one
// side is not comparable by blocks.
func TestDiffBlocks(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	top := must[Attr](t)(h.Mkdir(RootIno, "base", 0o700, 0, 0))
	dir := must[Attr](t)(h.Mkdir(top.Ino, "1", 0o700, 0, 0))
	f := must[Attr](t)(h.Create(dir.Ino, "16384", 0o600, 0, 0))
	must[int](t)(h.WriteAt(f.Ino, make([]byte, 100*BlockSize), 0))
	must[Branch](t)(s.Fork("p", "main", "a", AtHead(), BranchOptions{}))
	must[Branch](t)(s.Fork("p", "main", "b", AtHead(), BranchOptions{}))
	must[Branch](t)(s.Fork("p", "main", "base", AtForkPoint("a"), BranchOptions{}))
	// main moves on after the forks.
	must[int](t)(h.WriteAt(f.Ino, []byte("m"), 50*BlockSize))
	ok(t, h.Close())

	ha := must[*Head](t)(s.OpenHead("p", "a"))
	for _, blk := range []int64{3, 4, 5, 90} {
		must[int](t)(ha.WriteAt(f.Ino, []byte("a"), blk*BlockSize+7))
	}
	must[int](t)(ha.WriteAt(f.Ino, []byte("same"), 7*BlockSize))
	g := must[Attr](t)(ha.Create(dir.Ino, "16385", 0o600, 0, 0))
	must[int](t)(ha.WriteAt(g.Ino, []byte("new"), 0))
	ok(t, ha.Close())
	// The base writes block 7 as a did: written on both, yet equal.
	hbase := must[*Head](t)(s.OpenHead("p", "base"))
	must[int](t)(hbase.WriteAt(f.Ino, []byte("same"), 7*BlockSize))
	ok(t, hbase.Close())
	hb := must[*Head](t)(s.OpenHead("p", "b"))
	must[int](t)(hb.WriteAt(f.Ino, []byte("b"), 20*BlockSize))
	must[Attr](t)(hb.SetAttr(f.Ino, SetAttrIn{Valid: SetSize, Size: 80 * BlockSize}))
	ok(t, hb.Close())

	view := func(b string) *View {
		v := must[*View](t)(s.OpenView("p", b, AtHead()))
		t.Cleanup(func() { v.Close() })
		return v
	}
	base, a, b, main := view("base"), view("a"), view("b"), view("main")
	for _, tc := range []struct {
		name string
		x, y *View
		want []BlockRange
	}{
		{"fork into its base", base, a, []BlockRange{{3, 6}, {90, 91}}},
		{"the base against itself", base, base, nil},
		{"siblings", a, b, []BlockRange{{3, 6}, {7, 8}, {20, 21}, {80, 100}}},
		{"parent moved on", base, main, []BlockRange{{7, 8}, {50, 51}}},
		{"fork against its moved parent", main, a, []BlockRange{{3, 6}, {7, 8}, {50, 51}, {90, 91}}},
	} {
		got, same, err := s.DiffBlocks(tc.x, tc.y, "base/1/16384", nil)
		ok(t, err)
		if !same || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.name, got, same, tc.want)
		}
	}
	if _, same, err := s.DiffBlocks(base, a, "base/1/16385", nil); err != nil || same {
		t.Errorf("a file only one side has: comparable %v, %v", same, err)
	}
	// A comparison that finds a's writes the same drops them; the tail
	// past the shorter file stays, whatever the comparison says.
	same := func(_ uint64, x, y []byte) bool { return x == nil || y == nil }
	if got, _, _ := s.DiffBlocks(base, a, "base/1/16384", same); got != nil {
		t.Errorf("with a comparison that finds every block the same: %v", got)
	}
	if got, _, _ := s.DiffBlocks(a, b, "base/1/16384", same); !reflect.DeepEqual(got, []BlockRange{{80, 100}}) {
		t.Errorf("siblings with a comparison that finds every block the same: %v", got)
	}
	// GC keeps what the views read; the answer does not change.
	must[GCStats](t)(s.GC(context.Background()))
	if got, _, _ := s.DiffBlocks(base, a, "base/1/16384", nil); !reflect.DeepEqual(got, []BlockRange{{3, 6}, {90, 91}}) {
		t.Errorf("after GC: %v", got)
	}
}
