package storage

import (
	"cmp"
	"math"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// GC candidates: what an incremental GC pass visits instead of the whole
// store.
//
// Every commit of a head registers the keys it wrote (after the commit):
// a newer version makes the older one collectable once nothing reads it.
// A pass visits the ripe candidates of each timeline: those whose
// shadowing write has been followed by a tick (versions shadowed within
// one tick go then) or has left the history window, or all of a detached
// timeline's. For each version it keeps it records why: a version an
// explicit read point needs (snapshot, child branch point, open view) is
// parked under that point and comes back when the point goes; one the
// window or the newest tick needs comes back when the horizon or the next
// tick passes its shadowing seq; the newest version of a key in a live
// timeline comes back with the next write of that key. A timeline whose
// branch went away (detached, still read by a snapshot or child) is
// visited whole once. Candidates live in memory (no write-path cost for
// them); a clean Close saves them and the next Open loads them
// (gccandsave.go), while the first pass after a crash is a full pass that
// rebuilds them. A rewrite in place names the versions it shadowed
// instead, which a pass deletes by key without a read (gcnamed.go).

// candBlocks is the number of blocks one block candidate covers (one bit each).
const candBlocks = 64

// candKey names one candidate: a run of candBlocks blocks of an inode, an
// inode's attributes, or one directory entry.
type candKey struct {
	kind byte   // enc.KindBlock, enc.KindInode or enc.KindDirent
	ino  uint64 // the inode; the directory for a dirent
	idx  uint64 // blocks: block / candBlocks
	name string // dirents: the entry's name
}

func (a candKey) compare(b candKey) int {
	if c := cmp.Compare(a.kind, b.kind); c != 0 {
		return c
	}
	if c := cmp.Compare(a.ino, b.ino); c != 0 {
		return c
	}
	if c := cmp.Compare(a.idx, b.idx); c != 0 {
		return c
	}
	return cmp.Compare(a.name, b.name)
}

// cand is what to visit under a candKey and when.
type cand struct {
	mask       uint64 // blocks: bit i is block idx*candBlocks+i
	blocksFrom uint64 // inodes: also visit the inode's blocks from this one on (MaxUint64: none)
	tickDue    uint64 // ripe once the newest tick is at or past this seq
	horizonDue uint64 // ripe once the GC horizon is at or past this seq
}

func newCand() *cand {
	return &cand{blocksFrom: math.MaxUint64, tickDue: math.MaxUint64, horizonDue: math.MaxUint64}
}

func (c *cand) merge(o *cand) {
	c.mask |= o.mask
	c.blocksFrom = min(c.blocksFrom, o.blocksFrom)
	c.tickDue = min(c.tickDue, o.tickDue)
	c.horizonDue = min(c.horizonDue, o.horizonDue)
}

type candSet map[candKey]*cand

func (cs candSet) add(k candKey, c *cand) {
	if x := cs[k]; x != nil {
		x.merge(c)
		return
	}
	cp := *c
	cs[k] = &cp
}

// tlCands are one timeline's candidates.
type tlCands struct {
	active candSet            // visited once ripe
	pinned map[uint64]candSet // by the explicit read point that keeps them
	named  []shadowed         // versions a write shadowed, in commit order (gcnamed.go)
	full   bool               // visit the whole timeline at the next pass
}

// candidates are the store's GC candidates. mu is taken after Store.mu and
// Head.mu, never before.
type candidates struct {
	mu       sync.Mutex
	tls      map[uint64]*tlCands
	needFull bool // no candidates yet (after Open): the next pass is full
	gens     gens // of the inodes of named versions
	named    int  // named versions in all timelines
}

func (cs *candidates) tlLocked(tl uint64) *tlCands {
	if cs.tls == nil {
		cs.tls = map[uint64]*tlCands{}
	}
	t := cs.tls[tl]
	if t == nil {
		t = &tlCands{active: candSet{}, pinned: map[uint64]candSet{}}
		cs.tls[tl] = t
	}
	return t
}

// batchCands returns the candidates that batch b of a head, to be
// committed at seq, registers: the versioned keys it writes. It reads b
// before the commit, since pebble takes the buffer of a large batch (over
// half a memtable: a full head buffer) when it commits it.
func batchCands(seq uint64, b *pebble.Batch) candSet {
	r := b.Reader()
	cs := candSet{}
	due := &cand{blocksFrom: math.MaxUint64, tickDue: seq, horizonDue: seq}
	for {
		kind, k, v, ok, err := r.Next()
		if !ok || err != nil {
			return cs
		}
		if kind != pebble.InternalKeyKindSet || len(k) == 0 {
			continue
		}
		switch k[0] {
		case enc.KindBlock:
			_, ino, blk, _, err := enc.DecodeBlockKey(k)
			if err != nil {
				continue
			}
			ck := candKey{kind: enc.KindBlock, ino: ino, idx: blk / candBlocks}
			if x := cs[ck]; x != nil {
				x.mask |= 1 << (blk % candBlocks) // same dues; nothing named yet
				continue
			}
			c := *due
			c.mask = 1 << (blk % candBlocks)
			cs.add(ck, &c)
		case enc.KindInode:
			_, ino, _, err := enc.DecodeInodeKey(k)
			if err != nil {
				continue
			}
			c := *due
			if a, ok, err := enc.DecodeAttr(v); err == nil {
				if !ok {
					c.blocksFrom = 0 // a deletion kills every block
				}
				for _, tr := range a.Truncs {
					if tr.Seq == seq {
						c.blocksFrom = min(c.blocksFrom, tr.Blk) // a truncation now
					}
				}
			}
			cs.add(candKey{kind: enc.KindInode, ino: ino}, &c)
		case enc.KindDirent:
			_, dir, name, _, err := enc.DecodeDirentKey(k)
			if err != nil {
				continue
			}
			cs.add(candKey{kind: enc.KindDirent, ino: dir, name: name}, due)
		}
	}
}

// note registers the candidates of a committed batch of timeline tl (see
// batchCands) and the versions it shadowed that it names (see
// gcnamed.go), which its block candidates then leave out.
func (cs *candidates) note(tl uint64, c candSet, named []shadowed) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	t := cs.tlLocked(tl)
	cs.nameLocked(t, c, named)
	for k, v := range c {
		t.active.add(k, v)
	}
}

// release makes the candidates parked under read point (tl, seq) ripe: the
// point went away (snapshot deleted, child dropped, view closed).
func (cs *candidates) release(tl, seq uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	t := cs.tls[tl]
	if t == nil || t.pinned[seq] == nil {
		return
	}
	for k, c := range t.pinned[seq] {
		c.tickDue, c.horizonDue = 0, 0
		t.active.add(k, c)
	}
	delete(t.pinned, seq)
}

// markFull makes the next pass visit all of timeline tl (its branch went away).
func (cs *candidates) markFull(tl uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.tlLocked(tl).full = true
}

// drop forgets a dropped timeline's candidates.
func (cs *candidates) drop(tl uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.forgetLocked(tl)
	delete(cs.gens.of, tl)
}

// takeFull reports whether tl is to be visited whole, and if so forgets
// its candidates: the visit records them anew. The mark stays until the
// visit finished (fullDone), so that an interrupted visit is done again.
func (cs *candidates) takeFull(tl uint64, all bool) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	t := cs.tls[tl]
	if !all && (t == nil || !t.full) {
		return false
	}
	cs.forgetLocked(tl)
	cs.tlLocked(tl).full = true
	return true
}

// fullDone clears tl's mark once a whole visit of it finished.
func (cs *candidates) fullDone(tl uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	t := cs.tls[tl]
	switch {
	case t == nil:
	case len(t.active) == 0 && len(t.pinned) == 0 && len(t.named) == 0:
		delete(cs.tls, tl)
	default:
		t.full = false
	}
}

// ripe returns the keys of tl's active candidates a pass should visit, in
// key order (their seeks move forward).
func (cs *candidates) ripe(tl uint64, live bool, lastTick, horizon uint64) []candKey {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	t := cs.tls[tl]
	if t == nil {
		return nil
	}
	var out []candKey
	for k, c := range t.active {
		if !live || c.tickDue <= lastTick || c.horizonDue <= horizon {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, candKey.compare)
	return out
}

// take removes and returns the active candidates ks of tl (nil where gone).
func (cs *candidates) take(tl uint64, ks []candKey, out []*cand) []*cand {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	t := cs.tls[tl]
	for _, k := range ks {
		var c *cand
		if t != nil {
			c = t.active[k]
			delete(t.active, k)
		}
		out = append(out, c)
	}
	return out
}

// putBack merges what a visit kept: res ripens by its dues, pinned waits
// for its read point.
func (cs *candidates) putBack(tl uint64, res candSet, pinned map[uint64]candSet) {
	if len(res) == 0 && len(pinned) == 0 {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	t := cs.tlLocked(tl)
	for k, c := range res {
		t.active.add(k, c)
	}
	for seq, set := range pinned {
		if t.pinned[seq] == nil {
			t.pinned[seq] = candSet{}
		}
		for k, c := range set {
			t.pinned[seq].add(k, c)
		}
	}
}

// count returns the number of active (with named versions) and parked
// candidates (for tests).
func (cs *candidates) count() (active, pinned int) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, t := range cs.tls {
		active += len(t.active) + len(t.named)
		for _, set := range t.pinned {
			pinned += len(set)
		}
	}
	return active, pinned
}
