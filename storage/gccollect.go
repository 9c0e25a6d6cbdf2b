package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// A collector decides, for one GC batch of one timeline, which versions of
// the keys it visits go, stages their deletions, and records why each kept
// version is kept (its candidate for a later pass). Both a full scan of a
// timeline and a visit of candidates use it. s.mu is held while it lives.
type collector struct {
	s    *Store
	tl   uint64
	plan gcPlan
	st   *GCStats
	bt   *pebble.Batch
	it   *pebble.Iterator // the keys being visited
	it2  *pebble.Iterator // an inode's blocks, visited from its attributes
	itf  *pebble.Iterator // reads through the parent (fallback)
	// fallback reads the parent timeline at the branch point: what a key
	// of this timeline reads as where the timeline holds no version of it
	// (nil for a root timeline).
	fallback *reader

	attrIno uint64
	avs     []attrVersion
	avsOK   bool

	// While alsoIno, kept block versions also keep their inode's
	// candidate (its tombstone waits for them).
	alsoIno   bool
	keptCount int
	scanned   uint64 // inode whose blocks this collector visited from block 0 (0: none)

	// A prefix walk stops after the first version older than stopBelow
	// (0: visits all); truncated says it stopped early.
	stopBelow uint64
	truncated bool

	res     candSet
	pinned  map[uint64]candSet
	bytes   int64
	deleted int
	named   int             // of deleted: named versions (gcnamed.go)
	bumped  uint64          // the inode whose generation this batch bumped last (0: none)
	gone    map[string]bool // keys whose deletion is staged
	vs      []ver
	key     []byte // scratch

	// The generation of inode genIno when genOK (named versions).
	genIno, genOf uint64
	genOK         bool
}

// ver is one version of the key being decided.
type ver struct {
	key  []byte
	seq  uint64
	size int
	tomb bool // empty value: a tombstone (for dirents and inodes)
}

// newCollector starts a batch for timeline tl. s.mu held.
func (s *Store) newCollector(tl uint64, st *GCStats) (*collector, error) {
	c := &collector{s: s, tl: tl, plan: s.gcPlanLocked(tl), st: st, bt: s.db.NewBatch(),
		res: candSet{}, pinned: map[uint64]candSet{}, gone: map[string]bool{}}
	var err error
	if c.it, err = s.db.NewIter(nil); err != nil {
		c.bt.Close()
		return nil, err
	}
	if c.it2, err = s.db.NewIter(nil); err != nil {
		c.it.Close()
		c.bt.Close()
		return nil, err
	}
	if t := s.cat.timelines[tl]; t.Parent != 0 {
		c.fallback = &reader{s: s, tl: t.Parent, chain: s.chainLocked(t.Parent, t.ParentSeq), cache: map[uint64]*enc.Attr{}}
	}
	return c, nil
}

// finish commits the batch (unless err), releases the collector and
// records the candidates it kept.
func (c *collector) finish(err error) error {
	for _, it := range []*pebble.Iterator{c.it, c.it2, c.itf} {
		if it != nil {
			_ = it.Close()
		}
	}
	if c.fallback != nil {
		c.fallback.closeIters()
	}
	if err == nil && c.deleted > 0 {
		if err = c.s.counts.commit(c.tl, 0, cdelta{exclusive: -c.bytes}, c.bt, pebble.NoSync); err == nil {
			c.st.Deleted += c.deleted
			c.st.Named += c.named
			c.st.BytesFreed += c.bytes
			c.st.Batches++
		}
	}
	_ = c.bt.Close()
	c.s.cands.putBack(c.tl, c.res, c.pinned)
	return err
}

// scan visits the keys of one kind in [lo, hi). With limit, it stops before
// a new key once Options.GCBatch deletions are staged and returns where to
// go on (nil when done).
func (c *collector) scan(kind byte, lo, hi []byte, limit bool) ([]byte, error) {
	return c.walk(c.it, kind, lo, hi, limit)
}

// walk visits the keys in [lo, hi), or with hi nil the versions of the one
// key lo is the newest possible version of (a prefix seek, which the bloom
// filters speed up: what candidate visits do).
func (c *collector) walk(it *pebble.Iterator, kind byte, lo, hi []byte, limit bool) ([]byte, error) {
	var prefix []byte
	vs := c.vs[:0]
	defer func() { c.vs = vs[:0] }()
	var valid bool
	if hi == nil {
		valid = it.SeekPrefixGE(lo)
	} else {
		it.SetBounds(lo, hi)
		valid = it.First()
	}
	for ; valid; valid = it.Next() {
		k := it.Key()
		n := enc.Split(k)
		if n == len(k) {
			return nil, fmt.Errorf("%w: unversioned key %x in versioned keyspace", ErrCorrupt, k)
		}
		if !bytes.Equal(k[:n], prefix) {
			if len(vs) > 0 {
				if err := c.group(kind, vs); err != nil {
					return nil, err
				}
				vs = vs[:0]
			}
			if limit && c.bt.Count() >= uint32(c.s.opts.GCBatch) {
				return slices.Clone(k), nil
			}
			prefix = append(prefix[:0], k[:n]...)
		}
		lv := it.LazyValue()
		seq := ^uint64(0) ^ beUint64(k[n:])
		vs = append(vs, ver{key: slices.Clone(k), seq: seq, size: lv.Len(), tomb: lv.Len() == 0})
		if hi == nil && seq < c.stopBelow {
			c.truncated = it.Next() // older versions left unvisited
			break
		}
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if len(vs) > 0 {
		err := c.group(kind, vs)
		c.truncated = false
		if err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// visit visits one candidate. One that is ripe only because a tick passed
// its writes (not the horizon, not a released read point) needs only the
// versions from its oldest unticked write on and the one each shadowed:
// older ones were decided before and wait for the horizon (which the
// candidate is put back for), so a key rewritten every tick does not cost
// its whole history window at every pass.
func (c *collector) visit(k candKey, cd *cand) error {
	c.stopBelow = 0
	if c.plan.live && cd.horizonDue > c.plan.horizon && cd.tickDue <= c.plan.lastTick {
		c.stopBelow = cd.tickDue
		back := &cand{mask: cd.mask, blocksFrom: math.MaxUint64, tickDue: math.MaxUint64, horizonDue: cd.horizonDue}
		c.res.add(k, back)
	}
	defer func() { c.stopBelow = 0 }()
	switch k.kind {
	case enc.KindBlock:
		for i := uint64(0); i < candBlocks; i++ {
			if cd.mask&(1<<i) == 0 {
				continue
			}
			blk := k.idx*candBlocks + i
			lo := enc.BlockKey(nil, c.tl, k.ino, blk, math.MaxUint64)
			if _, err := c.scan(enc.KindBlock, lo, nil, false); err != nil {
				return err
			}
		}
	case enc.KindInode:
		lo := enc.InodeKey(nil, c.tl, k.ino, math.MaxUint64)
		if _, err := c.scan(enc.KindInode, lo, nil, false); err != nil {
			return err
		}
		if cd.blocksFrom != math.MaxUint64 && c.scanned != k.ino {
			if _, err := c.scanBlocks(k.ino, cd.blocksFrom, false); err != nil {
				return err
			}
		}
	case enc.KindDirent:
		lo := enc.DirentKey(nil, c.tl, k.ino, k.name, math.MaxUint64)
		if _, err := c.scan(enc.KindDirent, lo, nil, false); err != nil {
			return err
		}
	}
	return nil
}

// scanBlocks visits ino's blocks from block from on and returns how many
// versions it kept.
func (c *collector) scanBlocks(ino, from uint64, alsoIno bool) (int, error) {
	c.alsoIno, c.keptCount = alsoIno, 0
	defer func() { c.alsoIno = false }()
	lo := enc.BlockKey(nil, c.tl, ino, from, math.MaxUint64)
	hi := enc.BlockPrefix(nil, c.tl, ino+1)
	if from == 0 {
		c.scanned = ino
	}
	// walk reuses c.vs, which the caller may be using: give it its own.
	saved := c.vs
	c.vs = nil
	_, err := c.walk(c.it2, enc.KindBlock, lo, hi, false)
	c.vs = saved
	return c.keptCount, err
}

func (c *collector) loadAttrs(ino uint64) error {
	if c.avsOK && c.attrIno == ino {
		return nil
	}
	avs, err := c.s.attrVersions(c.tl, ino)
	if err != nil {
		return err
	}
	c.avs, c.attrIno, c.avsOK = avs, ino, true
	return nil
}

// group decides the versions of one key, newest first.
func (c *collector) group(kind byte, vs []ver) error {
	var ck candKey
	var blk uint64
	switch kind {
	case enc.KindBlock:
		_, ino, b, _, err := enc.DecodeBlockKey(vs[0].key)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		blk = b
		ck = candKey{kind: kind, ino: ino, idx: blk / candBlocks}
		if err := c.loadAttrs(ino); err != nil {
			return err
		}
	case enc.KindInode:
		_, ino, _, err := enc.DecodeInodeKey(vs[0].key)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		ck = candKey{kind: kind, ino: ino}
	case enc.KindDirent:
		_, dir, name, _, err := enc.DecodeDirentKey(vs[0].key)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		ck = candKey{kind: kind, ino: dir, name: name}
	}
	c.st.Visited += len(vs)
	ubs := make([]uint64, len(vs))
	keep := make([]bool, len(vs))
	newest, older := -1, false // the newest kept version; whether an older one is kept
	for i := range vs {
		ub := uint64(math.MaxUint64)
		if i > 0 {
			ub = vs[i-1].seq
		}
		if kind == enc.KindBlock {
			ub = min(ub, death(c.avs, blk, vs[i].seq))
		}
		ubs[i] = ub
		if c.plan.needed(vs[i].seq, ub) {
			keep[i] = true
			if newest < 0 {
				newest = i
			} else {
				older = true
			}
		}
	}
	// A kept tombstone with nothing older kept goes once the timeline's
	// parent reads the key as absent too: every read through it then
	// still finds nothing.
	if kind != enc.KindBlock && newest >= 0 && vs[newest].tomb && !older && !c.truncated {
		dead, err := c.tombstoneDead(ck)
		if err != nil {
			return err
		}
		keep[newest] = !dead
	}
	for i, v := range vs {
		if keep[i] {
			c.st.RemainingVersions++
			c.keptCount++
			c.keep(ck, blk, v.seq, ubs[i])
			continue
		}
		if c.gone[string(v.key)] {
			continue // staged already by another visit in this batch
		}
		c.gone[string(v.key)] = true
		if kind == enc.KindBlock && c.bumped != ck.ino {
			c.s.cands.bump(c.tl, ck.ino) // a named version of ck.ino may be v
			c.bumped, c.genOK = ck.ino, false
		}
		_ = c.bt.Delete(v.key, nil)
		c.deleted++
		c.bytes += int64(len(v.key) + v.size)
	}
	return nil
}

// tombstoneDead reports whether the tombstone of ck, the only version of
// its key the timeline keeps, can go: the parent reads the key as absent
// and, for an inode, the timeline keeps no version of its blocks.
func (c *collector) tombstoneDead(ck candKey) (bool, error) {
	if c.fallback != nil {
		if c.itf == nil {
			it, err := c.s.db.NewIter(nil)
			if err != nil {
				return false, err
			}
			c.itf = it
		}
		switch ck.kind {
		case enc.KindDirent:
			_, ok, err := c.fallback.dirent(c.itf, ck.ino, ck.name)
			if err != nil || ok {
				return false, err
			}
		case enc.KindInode:
			_, err := c.fallback.attr(c.itf, ck.ino)
			if err == nil {
				return false, nil
			}
			if !errors.Is(err, ErrNotExist) {
				return false, err
			}
		}
	}
	if ck.kind == enc.KindInode {
		kept, err := c.scanBlocks(ck.ino, 0, true)
		return kept == 0 && err == nil, err
	}
	return true, nil
}

// keep records why the version at v, visible until ub, stays: the
// candidate comes back when that reason goes.
func (c *collector) keep(ck candKey, blk, v, ub uint64) {
	if ub == math.MaxUint64 && c.plan.live {
		return // the newest version: the next write of the key brings it back
	}
	cd := newCand()
	if ck.kind == enc.KindBlock {
		cd.mask = 1 << (blk % candBlocks)
	}
	ino := candKey{kind: enc.KindInode, ino: ck.ino}
	if r, ok := pointIn(c.plan.points, v, ub); ok {
		if c.pinned[r] == nil {
			c.pinned[r] = candSet{}
		}
		c.pinned[r].add(ck, cd)
		if c.alsoIno {
			c.pinned[r].add(ino, newCand())
		}
		return
	}
	if !c.plan.live {
		return // unreachable: a detached timeline keeps only what points read
	}
	if ub-1 > c.plan.lastTick {
		cd.tickDue = ub
	}
	cd.horizonDue = ub
	c.res.add(ck, cd)
	if c.alsoIno {
		ic := *cd
		ic.mask = 0
		c.res.add(ino, &ic)
	}
}
