package storage

import "github.com/offshootdb/offshoot/storage/internal/enc"

// Exact GC candidates: a block candidate that names the versions its
// writes shadowed, so that a pass deletes them by key without reading
// the store.
//
// Counting a head's batch (countBatch) finds, for each block it rewrites
// inside the file, the version the write shadows: from the head's shadow
// cache or one prefix seek, the same lookup counting needs. The batch's
// block candidates carry those versions (seq, key and value size, the
// shadowing seq) and a mask of the blocks whose shadowed version is known,
// including "none stored in this timeline". A pass decides each named
// version from its seq and the seq that shadowed it alone (with a later
// truncation it could only die sooner, so "not needed" stays true) and
// deletes it by key: no seek, no data block read, so the pass costs what
// the garbage costs, not what the store's size makes a seek cost. A
// version still needed is recorded as an ordinary candidate.
//
// Only versions readable at the head before the batch are named: the
// newest of their key and not cut by a truncation, which no pass deletes
// before the batch commits. After the commit a visit that walks the
// store (a full pass, an inode's truncation, an ordinary candidate) may
// delete the same version; such a visit bumps its inode's generation
// when it stages a block deletion, and a candidate whose generation (read
// before the batch was counted) is no longer current is visited by
// walking, as before. A candidate merged with one that names nothing
// (kept versions, restored from a saved set) is inexact for good.

// shadowed is a block version a batch shadows: seq 0 means the timeline
// stores none. by is the batch's seq.
type shadowed struct {
	ino, blk, seq, by uint64
	size              int32 // key and value bytes
}

// maxExact bounds the versions one candidate names; a block run rewritten
// more often between passes is visited by walking.
const maxExact = 4 * candBlocks

// exactOK reports whether c names every version its writes shadowed.
func (c *cand) exactOK() bool {
	return !c.inexact && c.mask != 0 && c.exactMask == c.mask
}

// mergeExact merges what o names into c (c.mask not yet merged).
func (c *cand) mergeExact(o *cand) {
	if c.inexact || o.inexact || c.exactMask != c.mask || o.exactMask != o.mask ||
		c.gen != o.gen || len(c.exact)+len(o.exact) > maxExact {
		c.inexact, c.exact, c.exactMask = true, nil, 0
		return
	}
	c.exactMask |= o.exactMask
	c.exact = append(c.exact[:len(c.exact):len(c.exact)], o.exact...) // never into o's array
}

// gens are the inode generations of exact candidates: the store-wide
// clock at the last staged deletion of one of the inode's block versions
// by a walking visit (0: none since Open).
type gens struct {
	clock uint64
	of    map[uint64]map[uint64]uint64 // timeline -> inode -> generation
}

// stamp gives the block candidates of a batch about to be counted their
// inode's current generation. h.mu held.
func (cs *candidates) stamp(tl uint64, set candSet) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	m := cs.gens.of[tl]
	for k, c := range set {
		if k.kind == enc.KindBlock {
			c.gen = m[k.ino]
		}
	}
}

// attach adds what a committed batch's writes shadowed to its candidates.
// Blocks whose shadowed version is unknown leave their candidate inexact.
func attach(set candSet, vs []shadowed) {
	for _, v := range vs {
		c := set[candKey{kind: enc.KindBlock, ino: v.ino, idx: v.blk / candBlocks}]
		if c == nil || c.inexact {
			continue
		}
		if len(c.exact) >= maxExact {
			c.inexact, c.exact, c.exactMask = true, nil, 0
			continue
		}
		c.exactMask |= 1 << (v.blk % candBlocks)
		if v.seq != 0 {
			c.exact = append(c.exact, v)
		}
	}
}

// bump records that a walking visit staged the deletion of a version of
// one of ino's blocks in timeline tl.
func (cs *candidates) bump(tl, ino uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.gens.clock++
	if cs.gens.of == nil {
		cs.gens.of = map[uint64]map[uint64]uint64{}
	}
	m := cs.gens.of[tl]
	if m == nil {
		m = map[uint64]uint64{}
		cs.gens.of[tl] = m
	}
	m[ino] = cs.gens.clock
}

// current reports whether generation g of ino in tl is still current.
func (cs *candidates) current(tl, ino, g uint64) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.gens.of[tl][ino] == g
}

// visitExact decides the versions an exact candidate names and reports
// whether it did (false: visit it by walking).
func (c *collector) visitExact(k candKey, cd *cand) bool {
	if k.kind != enc.KindBlock || !cd.exactOK() || !c.s.cands.current(c.tl, k.ino, cd.gen) {
		return false
	}
	ck := candKey{kind: enc.KindBlock, ino: k.ino, idx: k.idx}
	for _, v := range cd.exact {
		c.st.Visited++
		if c.plan.needed(v.seq, v.by) {
			c.st.RemainingVersions++
			c.keep(ck, v.blk, v.seq, v.by)
			continue
		}
		key := enc.BlockKey(nil, c.tl, v.ino, v.blk, v.seq)
		if c.gone[string(key)] {
			continue
		}
		c.gone[string(key)] = true
		_ = c.bt.Delete(key, nil)
		c.deleted++
		c.bytes += int64(v.size)
		c.exact++
	}
	return true
}
