package enc

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	a := Attr{Mode: 0o100644, Uid: 26, Gid: 26, Nlink: 1, Size: 1 << 40, Atime: -5, Mtime: 7, Ctime: 9, Parent: 3,
		Truncs: []Trunc{{1, 10}, {5, 20}}}
	got, ok, err := DecodeAttr(AppendAttr(nil, &a))
	if err != nil || !ok || !reflect.DeepEqual(got, a) {
		t.Fatalf("attr round trip: %+v %v %v", got, ok, err)
	}
	if _, ok, err := DecodeAttr(nil); ok || err != nil {
		t.Fatal("empty attr is a tombstone")
	}
	d := Dirent{Ino: 42, Mode: 0o040000}
	if got, ok, err := DecodeDirent(AppendDirent(nil, d)); err != nil || !ok || got != d {
		t.Fatalf("dirent round trip: %+v", got)
	}
	k := DirentKey(nil, 3, 4, "pg_wal", 99)
	if tl, dir, name, seq, err := DecodeDirentKey(k); err != nil || tl != 3 || dir != 4 || name != "pg_wal" || seq != 99 {
		t.Fatalf("dirent key: %d %d %q %d %v", tl, dir, name, seq, err)
	}
	if Split(k) != len(k)-8 || !bytes.HasPrefix(k, DirentPrefix(nil, 3, 4)) {
		t.Fatal("dirent split")
	}
	k = BlockKey(nil, 1, 2, 3, 4)
	if tl, ino, blk, seq, err := DecodeBlockKey(k); err != nil || tl != 1 || ino != 2 || blk != 3 || seq != 4 {
		t.Fatal("block key")
	}
	// Newer versions sort first.
	if bytes.Compare(BlockKey(nil, 1, 2, 3, 5), BlockKey(nil, 1, 2, 3, 4)) >= 0 {
		t.Fatal("newest version must sort first")
	}
	if bytes.Compare(DirentKey(nil, 1, 1, "a", 1), DirentKey(nil, 1, 1, "ab", 9)) >= 0 {
		t.Fatal("dirent keys must sort by name first")
	}
	a.Truncs = []Trunc{{5, 10}, {1, 20}}
	if _, _, err := DecodeAttr(AppendAttr(nil, &a)); !errors.Is(err, ErrCorrupt) {
		t.Fatal("unordered truncations must be corrupt")
	}
}

func FuzzDecodeAttr(f *testing.F) {
	f.Add(AppendAttr(nil, &Attr{Mode: 0o40755, Nlink: 2}))
	f.Add(AppendAttr(nil, &Attr{Size: 9, Truncs: []Trunc{{1, 2}}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		a, ok, err := DecodeAttr(v)
		if err != nil || !ok {
			return
		}
		if again := AppendAttr(nil, &a); !bytes.Equal(again, v) {
			t.Fatalf("re-encoding differs: %x vs %x", again, v)
		}
	})
}

func FuzzDecodeDirent(f *testing.F) {
	f.Add(AppendDirent(nil, Dirent{Ino: 1, Mode: 0o40000}))
	f.Fuzz(func(t *testing.T, v []byte) {
		d, ok, err := DecodeDirent(v)
		if err == nil && ok && !bytes.Equal(AppendDirent(nil, d), v) {
			t.Fatal("re-encoding differs")
		}
	})
}

func FuzzDecodeKey(f *testing.F) {
	f.Add(DirentKey(nil, 1, 2, "x", 3))
	f.Add(InodeKey(nil, 1, 2, 3))
	f.Add(BlockKey(nil, 1, 2, 3, 4))
	f.Add(TickKey(5))
	f.Add(IDKey(KindBranch, 7))
	f.Fuzz(func(t *testing.T, k []byte) {
		n := Split(k)
		if n < 0 || n > len(k) {
			t.Fatalf("split %d of %d", n, len(k))
		}
		if tl, dir, name, seq, err := DecodeDirentKey(k); err == nil {
			if !bytes.Equal(DirentKey(nil, tl, dir, name, seq), k) || n != len(k)-8 {
				t.Fatal("dirent key does not round trip")
			}
		}
		if tl, ino, seq, err := DecodeInodeKey(k); err == nil {
			if !bytes.Equal(InodeKey(nil, tl, ino, seq), k) || n != len(k)-8 {
				t.Fatal("inode key does not round trip")
			}
		}
		if tl, ino, blk, seq, err := DecodeBlockKey(k); err == nil {
			if !bytes.Equal(BlockKey(nil, tl, ino, blk, seq), k) || n != len(k)-8 {
				t.Fatal("block key does not round trip")
			}
		}
		if tl, ino, err := DecodeOrphanKey(k); err == nil && !bytes.Equal(OrphanKey(tl, ino), k) {
			t.Fatal("orphan key does not round trip")
		}
		if ts, err := DecodeTickKey(k); err == nil && !bytes.Equal(TickKey(ts), k) {
			t.Fatal("tick key does not round trip")
		}
		if kind, id, err := DecodeIDKey(k); err == nil && !bytes.Equal(IDKey(kind, id), k) {
			t.Fatal("id key does not round trip")
		}
		_, _ = DecodeU64(k)
	})
}
