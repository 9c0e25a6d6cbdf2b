// Package enc encodes and decodes the keys and values the storage package
// keeps in pebble. Every decoder accepts arbitrary bytes and reports malformed
// input with ErrCorrupt; none of them panics.
//
// Key layout (all integers big-endian, seq stored inverted so that the newest
// version of a key sorts first):
//
//	\x00format                          format version (uint32)
//	m<name>                             store counters (uint64)
//	p<id> l<id> b<id> s<id>             project, timeline, branch, snapshot (JSON)
//	t<unixnano>                         seq at a history tick (uint64)
//	D<tl><dir><name>\x00<^seq>          directory entry: child inode + type, or tombstone
//	I<tl><ino><^seq>                    inode attributes, or tombstone
//	B<tl><ino><blk><^seq>               8 KiB block (trailing zeros trimmed)
//	O<tl><ino>                          inode without links awaiting Forget (empty value)
//
// For versioned keys (D, I, B) everything before the 8-byte seq is the
// key's prefix (see Split); prefixes are prefix-free, so plain bytewise order
// sorts by prefix first and newest version first within a prefix.
package enc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt reports bytes that do not decode as the expected key or value.
var ErrCorrupt = errors.New("corrupt record")

// Key kinds: the first byte of every key.
const (
	KindFormat   = 0x00
	KindMeta     = 'm'
	KindProject  = 'p'
	KindTimeline = 'l'
	KindBranch   = 'b'
	KindSnapshot = 's'
	KindTick     = 't'
	KindDirent   = 'D'
	KindInode    = 'I'
	KindBlock    = 'B'
	KindOrphan   = 'O'
	KindCounts   = 'C'
	// KindGCCands records hold the GC candidates while the store is
	// closed: written by a clean close, read and deleted by the next open.
	KindGCCands = 'G'
)

// FormatKey is the key of the on-disk format version.
var FormatKey = []byte("\x00format")

const (
	inodeKeyLen = 1 + 8 + 8 + 8
	blockKeyLen = 1 + 8 + 8 + 8 + 8
	// MaxNameLen is the longest directory entry name.
	MaxNameLen = 255
)

func put64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// U64 encodes v as 8 big-endian bytes.
func U64(v uint64) []byte { return put64(make([]byte, 0, 8), v) }

// DecodeU64 decodes an 8-byte big-endian value.
func DecodeU64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("u64 of %d bytes: %w", len(b), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b), nil
}

// IDKey is the key of a catalog record of the given kind.
func IDKey(kind byte, id uint64) []byte { return put64([]byte{kind}, id) }

// DecodeIDKey decodes a catalog record key.
func DecodeIDKey(k []byte) (kind byte, id uint64, err error) {
	if len(k) != 9 {
		return 0, 0, fmt.Errorf("id key of %d bytes: %w", len(k), ErrCorrupt)
	}
	return k[0], binary.BigEndian.Uint64(k[1:]), nil
}

// MetaKey is the key of a named store counter.
func MetaKey(name string) []byte { return append([]byte{KindMeta}, name...) }

// TickKey is the key of the history tick at unix nanoseconds t.
func TickKey(t int64) []byte { return put64([]byte{KindTick}, uint64(t)) }

// DecodeTickKey decodes a tick key.
func DecodeTickKey(k []byte) (int64, error) {
	if len(k) != 9 || k[0] != KindTick {
		return 0, fmt.Errorf("tick key: %w", ErrCorrupt)
	}
	return int64(binary.BigEndian.Uint64(k[1:])), nil
}

// TimelinePrefix is the first key of kind's records in timeline tl.
func TimelinePrefix(kind byte, tl uint64) []byte { return put64([]byte{kind}, tl) }

// InodeKey is the key of the version at seq of inode ino's attributes in tl.
func InodeKey(b []byte, tl, ino, seq uint64) []byte {
	b = append(b[:0], KindInode)
	return put64(put64(put64(b, tl), ino), ^seq)
}

// DecodeInodeKey decodes an inode key.
func DecodeInodeKey(k []byte) (tl, ino, seq uint64, err error) {
	if len(k) != inodeKeyLen || k[0] != KindInode {
		return 0, 0, 0, fmt.Errorf("inode key: %w", ErrCorrupt)
	}
	be := binary.BigEndian
	return be.Uint64(k[1:]), be.Uint64(k[9:]), ^be.Uint64(k[17:]), nil
}

// OrphanKey is the key recording that inode ino of tl has no links left.
func OrphanKey(tl, ino uint64) []byte { return put64(put64([]byte{KindOrphan}, tl), ino) }

// DecodeOrphanKey decodes an orphan key.
func DecodeOrphanKey(k []byte) (tl, ino uint64, err error) {
	if len(k) != 17 || k[0] != KindOrphan {
		return 0, 0, fmt.Errorf("orphan key: %w", ErrCorrupt)
	}
	return binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint64(k[9:]), nil
}

// BlockKey is the key of the version at seq of block blk of inode ino in tl.
func BlockKey(b []byte, tl, ino, blk, seq uint64) []byte {
	b = append(b[:0], KindBlock)
	return put64(put64(put64(put64(b, tl), ino), blk), ^seq)
}

// BlockPrefix is the prefix of all blocks of inode ino in tl.
func BlockPrefix(b []byte, tl, ino uint64) []byte {
	b = append(b[:0], KindBlock)
	return put64(put64(b, tl), ino)
}

// DecodeBlockKey decodes a block key.
func DecodeBlockKey(k []byte) (tl, ino, blk, seq uint64, err error) {
	if len(k) != blockKeyLen || k[0] != KindBlock {
		return 0, 0, 0, 0, fmt.Errorf("block key: %w", ErrCorrupt)
	}
	be := binary.BigEndian
	return be.Uint64(k[1:]), be.Uint64(k[9:]), be.Uint64(k[17:]), ^be.Uint64(k[25:]), nil
}

// DirentPrefix is the prefix of all entries of directory dir in tl.
func DirentPrefix(b []byte, tl, dir uint64) []byte {
	b = append(b[:0], KindDirent)
	return put64(put64(b, tl), dir)
}

// DirentKey is the key of the version at seq of entry name in directory dir of tl.
func DirentKey(b []byte, tl, dir uint64, name string, seq uint64) []byte {
	b = DirentPrefix(b, tl, dir)
	b = append(b, name...)
	b = append(b, 0)
	return put64(b, ^seq)
}

// DecodeDirentKey decodes a directory entry key.
func DecodeDirentKey(k []byte) (tl, dir uint64, name string, seq uint64, err error) {
	if len(k) < 1+8+8+1+1+8 || k[0] != KindDirent || k[len(k)-9] != 0 {
		return 0, 0, "", 0, fmt.Errorf("dirent key: %w", ErrCorrupt)
	}
	nm := k[17 : len(k)-9]
	if bytes.IndexByte(nm, 0) >= 0 || bytes.IndexByte(nm, '/') >= 0 || len(nm) > MaxNameLen {
		return 0, 0, "", 0, fmt.Errorf("dirent key name: %w", ErrCorrupt)
	}
	be := binary.BigEndian
	return be.Uint64(k[1:]), be.Uint64(k[9:]), string(nm), ^be.Uint64(k[len(k)-8:]), nil
}

// Split returns the length of k's prefix: for versioned keys everything but
// the trailing seq, for all other keys the whole key. It is pebble's
// Comparer.Split and never panics.
func Split(k []byte) int {
	if len(k) == 0 {
		return 0
	}
	switch k[0] {
	case KindInode:
		if len(k) == inodeKeyLen {
			return len(k) - 8
		}
	case KindBlock:
		if len(k) == blockKeyLen {
			return len(k) - 8
		}
	case KindDirent:
		if len(k) >= 1+8+8+1+1+8 && k[len(k)-9] == 0 && bytes.IndexByte(k[17:len(k)-9], 0) < 0 {
			return len(k) - 8
		}
	}
	return len(k)
}

// Attr is the stored form of an inode's attributes.
type Attr struct {
	Mode   uint32 // file type and permission bits (S_IF* | perm)
	Uid    uint32
	Gid    uint32
	Nlink  uint32
	Size   uint64
	Atime  int64 // unix nanoseconds
	Mtime  int64
	Ctime  int64
	Parent uint64 // parent directory (directories only)
	// Truncs records shrinking truncations: a block version with seq < t.Seq
	// of a block >= t.Blk reads as zeros. Blk ascends and Seq ascends.
	Truncs []Trunc
}

// Trunc is one shrinking truncation: blocks from Blk on written before Seq are gone.
type Trunc struct{ Blk, Seq uint64 }

// MaxTruncs bounds len(Attr.Truncs); the storage package writes explicit
// block tombstones rather than grow the list further.
const MaxTruncs = 16

// Shadowed reports whether a version written at seq of block blk is cut by a truncation.
func (a *Attr) Shadowed(blk, seq uint64) bool {
	for i := len(a.Truncs) - 1; i >= 0; i-- {
		t := a.Truncs[i]
		if blk >= t.Blk {
			return seq < t.Seq
		}
	}
	return false
}

const attrVersion = 1

// attrLen is the encoded length of an Attr without truncations.
const attrLen = 1 + 4*4 + 8 + 3*8 + 8 + 1

// AppendAttr appends the encoding of a to b.
func AppendAttr(b []byte, a *Attr) []byte {
	be := binary.BigEndian
	b = append(b, attrVersion)
	b = be.AppendUint32(b, a.Mode)
	b = be.AppendUint32(b, a.Uid)
	b = be.AppendUint32(b, a.Gid)
	b = be.AppendUint32(b, a.Nlink)
	b = be.AppendUint64(b, a.Size)
	b = be.AppendUint64(b, uint64(a.Atime))
	b = be.AppendUint64(b, uint64(a.Mtime))
	b = be.AppendUint64(b, uint64(a.Ctime))
	b = be.AppendUint64(b, a.Parent)
	b = append(b, byte(len(a.Truncs)))
	for _, t := range a.Truncs {
		b = be.AppendUint64(be.AppendUint64(b, t.Blk), t.Seq)
	}
	return b
}

// DecodeAttr decodes an inode value. An empty value is a tombstone: ok is false.
func DecodeAttr(v []byte) (a Attr, ok bool, err error) {
	if len(v) == 0 {
		return a, false, nil
	}
	if len(v) < attrLen || v[0] != attrVersion || len(v) != attrLen+16*int(v[attrLen-1]) || int(v[attrLen-1]) > MaxTruncs {
		return a, false, fmt.Errorf("inode value: %w", ErrCorrupt)
	}
	be := binary.BigEndian
	a.Mode = be.Uint32(v[1:])
	a.Uid = be.Uint32(v[5:])
	a.Gid = be.Uint32(v[9:])
	a.Nlink = be.Uint32(v[13:])
	a.Size = be.Uint64(v[17:])
	a.Atime = int64(be.Uint64(v[25:]))
	a.Mtime = int64(be.Uint64(v[33:]))
	a.Ctime = int64(be.Uint64(v[41:]))
	a.Parent = be.Uint64(v[49:])
	if n := int(v[attrLen-1]); n > 0 {
		a.Truncs = make([]Trunc, n)
		for i := range a.Truncs {
			o := attrLen + 16*i
			a.Truncs[i] = Trunc{Blk: be.Uint64(v[o:]), Seq: be.Uint64(v[o+8:])}
			if i > 0 && (a.Truncs[i].Blk <= a.Truncs[i-1].Blk || a.Truncs[i].Seq <= a.Truncs[i-1].Seq) {
				return Attr{}, false, fmt.Errorf("inode truncations out of order: %w", ErrCorrupt)
			}
		}
	}
	return a, true, nil
}

// Counts is the stored form of a timeline's usage counters (see
// storage/counters.go for their meaning).
type Counts struct {
	Seq       uint64 // seq of the newest head batch counted; 0 if none
	Logical   uint64
	Exclusive uint64
	Current   uint64
	Own       uint64
}

// CountsKey is the key of timeline tl's counters.
func CountsKey(tl uint64) []byte { return TimelinePrefix(KindCounts, tl) }

// GCCandsKey is the key of chunk n of the saved GC candidates; chunk 0
// holds the number of chunks that follow it.
func GCCandsKey(n uint64) []byte { return IDKey(KindGCCands, n) }

// DecodeCountsKey decodes a counters key.
func DecodeCountsKey(k []byte) (tl uint64, err error) {
	if len(k) != 9 || k[0] != KindCounts {
		return 0, fmt.Errorf("counts key: %w", ErrCorrupt)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

// AppendCounts appends the encoding of c to b.
func AppendCounts(b []byte, c Counts) []byte {
	return put64(put64(put64(put64(put64(b, c.Seq), c.Logical), c.Exclusive), c.Current), c.Own)
}

// DecodeCounts decodes a counters value.
func DecodeCounts(v []byte) (Counts, error) {
	if len(v) != 5*8 {
		return Counts{}, fmt.Errorf("counts value: %w", ErrCorrupt)
	}
	be := binary.BigEndian
	return Counts{Seq: be.Uint64(v), Logical: be.Uint64(v[8:]), Exclusive: be.Uint64(v[16:]),
		Current: be.Uint64(v[24:]), Own: be.Uint64(v[32:])}, nil
}

// Dirent is the stored form of a directory entry.
type Dirent struct {
	Ino  uint64
	Mode uint32 // file type bits of the child
}

// AppendDirent appends the encoding of d to b.
func AppendDirent(b []byte, d Dirent) []byte {
	return binary.BigEndian.AppendUint32(put64(b, d.Ino), d.Mode)
}

// DecodeDirent decodes a directory entry value. An empty value is a
// tombstone: ok is false.
func DecodeDirent(v []byte) (d Dirent, ok bool, err error) {
	if len(v) == 0 {
		return d, false, nil
	}
	if len(v) != 12 {
		return d, false, fmt.Errorf("dirent value: %w", ErrCorrupt)
	}
	return Dirent{Ino: binary.BigEndian.Uint64(v), Mode: binary.BigEndian.Uint32(v[8:])}, true, nil
}
