package storage

import (
	"math"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// Named versions: what a rewrite in place shadowed, deleted by key.
//
// Counting a head's batch (countBatch) finds, for each block it rewrites
// inside the file, the version the write shadows: from the head's shadow
// cache or one prefix seek, the same lookup counting needs. The batch
// names those versions (key, size, the seq that shadowed them) in its
// timeline's list of named versions, in commit order, and leaves their
// blocks out of its block candidates; a block whose shadowed version is
// unknown (an append past the old size, a version a truncation cut)
// stays a candidate. A pass takes the ripe prefix of the list (shadowed
// before the newest tick or the horizon), decides each version from its
// seq and the seq that shadowed it alone (a truncation could only have
// ended it sooner, so "not needed" stays true) and deletes it by key: no
// seek, no data block read, so a pass costs what the garbage costs, not
// what the store's size makes a seek or a candidate cost. A version still
// needed becomes an ordinary candidate.
//
// Only versions readable at the head before the batch are named: the
// newest of their key and not cut by a truncation, which no pass deletes
// before the batch commits. After the commit a visit that walks the
// store (a full pass, an inode's truncation, an ordinary candidate) may
// delete the same version; such a visit bumps its inode's generation
// when it stages a block deletion, and a named version whose generation
// (read before the batch committed) is no longer current is handed to an
// ordinary candidate instead. A clean Close saves named versions as
// ordinary candidates.

// shadowed is a block version a batch shadows: seq 0 means the timeline
// stores none. by is the batch's seq, gen its inode's generation then.
type shadowed struct {
	ino, blk, seq, by, gen uint64
	size                   int32 // key and value bytes
}

// maxNamed bounds the named versions of all timelines (48 bytes each);
// past it, writes leave their blocks to ordinary candidates.
const maxNamed = 1 << 20

// nameLocked moves what named says of the blocks of candidate set c into
// t's list. cs.mu held.
func (cs *candidates) nameLocked(t *tlCands, c candSet, named []shadowed) {
	for _, v := range named {
		if cs.named >= maxNamed {
			return
		}
		ck := candKey{kind: enc.KindBlock, ino: v.ino, idx: v.blk / candBlocks}
		if cd := c[ck]; cd != nil {
			if cd.mask &^= 1 << (v.blk % candBlocks); cd.mask == 0 {
				delete(c, ck)
			}
		}
		if v.seq != 0 {
			t.named = append(t.named, v)
			cs.named++
		}
	}
}

// forgetLocked forgets tl's candidates. cs.mu held.
func (cs *candidates) forgetLocked(tl uint64) {
	if t := cs.tls[tl]; t != nil {
		cs.named -= len(t.named)
	}
	delete(cs.tls, tl)
}

// takeNamed removes and returns up to n ripe named versions of tl: all of
// a timeline that is not live, else those shadowed at or before bound
// (the list is in commit order: a prefix).
func (cs *candidates) takeNamed(tl uint64, n int, live bool, bound uint64) []shadowed {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	t := cs.tls[tl]
	if t == nil {
		return nil
	}
	i := 0
	for i < len(t.named) && i < n && (!live || t.named[i].by <= bound) {
		i++
	}
	out := t.named[:i:i]
	t.named = t.named[i:]
	if len(t.named) == 0 {
		t.named = nil // let the array go
	}
	cs.named -= i
	return out
}

// gens are the inode generations of named versions: the store-wide clock
// at the last staged deletion of one of the inode's block versions by a
// walking visit (0: none since Open).
type gens struct {
	clock uint64
	of    map[uint64]map[uint64]uint64 // timeline -> inode -> generation
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

// gen returns ino's generation in tl.
func (cs *candidates) gen(tl, ino uint64) uint64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.gens.of[tl][ino]
}

// visitNamed decides named versions. A batch that visits named versions
// makes no walking visit, so it stages each version at most once and
// bumps no generation.
func (c *collector) visitNamed(vs []shadowed) {
	for _, v := range vs {
		ck := candKey{kind: enc.KindBlock, ino: v.ino, idx: v.blk / candBlocks}
		if !c.genOK || c.genIno != v.ino {
			c.genIno, c.genOf, c.genOK = v.ino, c.s.cands.gen(c.tl, v.ino), true
		}
		if v.gen != c.genOf {
			// A walking visit may have deleted it: visit the block so.
			c.res.add(ck, &cand{mask: 1 << (v.blk % candBlocks), blocksFrom: math.MaxUint64, tickDue: v.by, horizonDue: v.by})
			continue
		}
		c.st.Visited++
		if c.plan.needed(v.seq, v.by) {
			c.st.RemainingVersions++
			c.keep(ck, v.blk, v.seq, v.by)
			continue
		}
		c.key = enc.BlockKey(c.key[:0], c.tl, v.ino, v.blk, v.seq)
		_ = c.bt.Delete(c.key, nil) // copies the key
		c.deleted++
		c.bytes += int64(v.size)
		c.named++
	}
}
