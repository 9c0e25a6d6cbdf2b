package merge

import (
	"bytes"
	"encoding/binary"
)

// Heap page layout (PostgreSQL's bufpage.h and htup_details.h, 8 KiB
// pages, little-endian).
const (
	pageSize       = 8192
	pageHeaderSize = 24 // through pd_prune_xid; line pointers follow
	offLower       = 12
	offUpper       = 14
	lpNormal       = 1
	lpRedirect     = 2
	tupleInfomask  = 20 // t_infomask within a tuple header
	minTupleHeader = 23
	// The hint bits of t_infomask: xmin/xmax committed or invalid (both
	// xmin bits together mean frozen).
	infomaskHints = 0x0100 | 0x0200 | 0x0400 | 0x0800
)

// SameHeapPage reports whether two heap pages hold the same tuples with
// the same header fields but for what Postgres changes on reads and
// vacuums without changing what any snapshot sees: the page LSN,
// checksum, flags (all-visible, full, free lines), prune xid, the hint
// bits of each tuple's infomask, and the unused space between line
// pointers and tuples (PostgreSQL masks the same for its WAL consistency
// checks). A fork's first read of a freshly loaded table sets hint bits
// on every page; without this, every such page would count as changed.
func SameHeapPage(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if len(a) != pageSize || len(b) != pageSize {
		return false
	}
	ma, okA := maskHeapPage(a)
	mb, okB := maskHeapPage(b)
	return okA && okB && bytes.Equal(ma, mb)
}

// maskHeapPage returns a copy of p with the fields SameHeapPage ignores
// zeroed; ok false when p does not look like a heap page.
func maskHeapPage(p []byte) ([]byte, bool) {
	lower := int(binary.LittleEndian.Uint16(p[offLower:]))
	upper := int(binary.LittleEndian.Uint16(p[offUpper:]))
	if lower < pageHeaderSize || upper < lower || upper > pageSize {
		return nil, false
	}
	m := bytes.Clone(p)
	clear(m[0:12])  // pd_lsn, pd_checksum, pd_flags
	clear(m[20:24]) // pd_prune_xid
	clear(m[lower:upper])
	for lp := pageHeaderSize; lp+4 <= lower; lp += 4 {
		v := binary.LittleEndian.Uint32(p[lp:])
		off, flags, n := int(v&0x7fff), (v>>15)&3, int(v>>17)
		if flags != lpNormal || n < minTupleHeader || off+n > pageSize {
			continue
		}
		im := binary.LittleEndian.Uint16(m[off+tupleInfomask:])
		binary.LittleEndian.PutUint16(m[off+tupleInfomask:], im&^infomaskHints)
	}
	return m, true
}

// HeapChanges compares two versions of a heap page the way SameHeapPage
// does, but line pointer by line pointer: it returns the offsets (1-based)
// whose tuples differ, or whole true when the pages cannot be compared
// so (one is missing or is no heap page), in which case every tuple of
// the block must be read.
func HeapChanges(a, b []byte) (offsets []uint16, whole bool) {
	if a == nil || b == nil || len(a) != pageSize || len(b) != pageSize {
		return nil, true
	}
	if SameHeapPage(a, b) {
		return nil, false
	}
	na, okA := linePointers(a)
	nb, okB := linePointers(b)
	if !okA || !okB {
		return nil, true
	}
	for i := 1; i <= max(na, nb); i++ {
		if !sameItem(a, b, i, na, nb) {
			offsets = append(offsets, uint16(i))
		}
	}
	return offsets, false
}

// linePointers returns the number of line pointers of page p.
func linePointers(p []byte) (int, bool) {
	lower := int(binary.LittleEndian.Uint16(p[offLower:]))
	upper := int(binary.LittleEndian.Uint16(p[offUpper:]))
	if lower < pageHeaderSize || upper < lower || upper > pageSize {
		return 0, false
	}
	return (lower - pageHeaderSize) / 4, true
}

// item decodes line pointer i (1-based) of p, zero when p has fewer.
func item(p []byte, i, n int) (off, flags, length int) {
	if i > n {
		return 0, 0, 0
	}
	v := binary.LittleEndian.Uint32(p[pageHeaderSize+4*(i-1):])
	return int(v & 0x7fff), int((v >> 15) & 3), int(v >> 17)
}

// sameItem reports whether line pointer i says the same on both pages:
// both unused or dead, redirects to the same offset, or tuples with the
// same bytes but for the hint bits of their infomask.
func sameItem(a, b []byte, i, na, nb int) bool {
	oa, fa, la := item(a, i, na)
	ob, fb, lb := item(b, i, nb)
	if fa != fb {
		return false
	}
	switch fa {
	case lpNormal:
		if la != lb || la < minTupleHeader || oa+la > pageSize || ob+lb > pageSize {
			return false
		}
		ta, tb := a[oa:oa+la], b[ob:ob+lb]
		if !bytes.Equal(ta[:tupleInfomask], tb[:tupleInfomask]) || !bytes.Equal(ta[tupleInfomask+2:], tb[tupleInfomask+2:]) {
			return false
		}
		ia := binary.LittleEndian.Uint16(ta[tupleInfomask:])
		ib := binary.LittleEndian.Uint16(tb[tupleInfomask:])
		return ia&^infomaskHints == ib&^infomaskHints
	case lpRedirect:
		return oa == ob
	}
	return true
}
