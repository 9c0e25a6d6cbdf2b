package storage

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// Usage counters: each timeline's accounting kept current with every
// commit, so Usage answers without reading the branch's data.
//
// A timeline's counters describe its head state (the newest version of
// every key, read at math.MaxUint64 through its chain):
//
//   - Logical: the sizes of its live files and symlinks (inodes with
//     nlink > 0 that are not directories), each inode once;
//   - Exclusive: keys and values of every version it stores;
//   - Current: keys and values of the block versions of live files it
//     stores itself and the head reads (not holes, not cut by a truncation,
//     below the file size);
//   - Own: the file bytes those blocks cover (8 KiB, the last one capped
//     at the file size).
//
// A detached timeline (its branch deleted or reset away) has no head: GC
// may collect its newest versions, and its Logical, Current and Own stay
// as its last head state left them (the Logical a fork from its last state
// needs); only Exclusive keeps describing what it stores.
//
// They change only with commits: a head batch changes all four (computed
// from the batch and the state before it, see countBatch), a GC batch
// only Exclusive (GC never deletes what the head reads), a fork or reset
// creates a child with its parent's Logical at the branch point, a drop
// deletes them. The record lives in the same pebble batch as the change
// it counts, so after a crash the counters match the recovered prefix.

// counters holds every timeline's counters in memory, mirroring their
// records (enc.CountsKey).
type counters struct {
	mu sync.Mutex // guards m
	m  map[uint64]*tlCounter
}

type tlCounter struct {
	// mu is held across every commit that changes c, so records reach
	// pebble in the order their values were computed.
	mu sync.Mutex
	c  enc.Counts
}

// cdelta is a change of a timeline's counters.
type cdelta struct{ logical, exclusive, current, own int64 }

func (d cdelta) apply(c enc.Counts) enc.Counts {
	c.Logical = uint64(int64(c.Logical) + d.logical)
	c.Exclusive = uint64(int64(c.Exclusive) + d.exclusive)
	c.Current = uint64(int64(c.Current) + d.current)
	c.Own = uint64(int64(c.Own) + d.own)
	return c
}

func (cs *counters) entry(tl uint64) *tlCounter {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = map[uint64]*tlCounter{}
	}
	e := cs.m[tl]
	if e == nil {
		e = &tlCounter{}
		cs.m[tl] = e
	}
	return e
}

// get returns tl's counters as of the last commit that changed them.
func (cs *counters) get(tl uint64) enc.Counts {
	e := cs.entry(tl)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c
}

// commit applies d to tl's counters, stages their new record in b and
// commits b. seq, if not 0, is the seq of a head batch.
func (cs *counters) commit(tl, seq uint64, d cdelta, b *pebble.Batch, o *pebble.WriteOptions) error {
	e := cs.entry(tl)
	e.mu.Lock()
	defer e.mu.Unlock()
	c := d.apply(e.c)
	if seq != 0 {
		c.Seq = seq
	}
	_ = b.Set(enc.CountsKey(tl), enc.AppendCounts(nil, c), nil)
	if err := b.Commit(o); err != nil {
		return err
	}
	e.c = c
	return nil
}

// create stages the record of a new timeline's counters in b and sets
// them; the caller commits b. s.mu held.
func (cs *counters) create(b *pebble.Batch, tl uint64, c enc.Counts) {
	_ = b.Set(enc.CountsKey(tl), enc.AppendCounts(nil, c), nil)
	e := cs.entry(tl)
	e.mu.Lock()
	e.c = c
	e.mu.Unlock()
}

// drop stages the deletion of tl's record in b and forgets tl. s.mu held.
func (cs *counters) drop(b *pebble.Batch, tl uint64) {
	_ = b.Delete(enc.CountsKey(tl), nil)
	cs.mu.Lock()
	delete(cs.m, tl)
	cs.mu.Unlock()
}

// loadCounts reads every timeline's counters at Open. A timeline without a
// record (a store written before counters existed) is recounted once and
// its record written.
func (s *Store) loadCounts() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{enc.KindCounts}, UpperBound: []byte{enc.KindCounts + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		tl, err := enc.DecodeCountsKey(it.Key())
		if err == nil && s.cat.timelines[tl] != nil {
			var c enc.Counts
			if c, err = enc.DecodeCounts(it.Value()); err == nil {
				s.counts.entry(tl).c = c
			}
		}
		if err != nil {
			it.Close()
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for tl := range s.cat.timelines {
		if _, ok := s.counts.m[tl]; ok {
			continue
		}
		c, err := s.recount(s.chainLocked(tl, math.MaxUint64))
		if err != nil {
			return fmt.Errorf("recount timeline %d: %w", tl, err)
		}
		c.Seq = s.seq // its head batches are unknown: a fork in its past walks the files
		s.counts.create(b, tl, c)
	}
	if b.Empty() {
		return nil
	}
	return b.Commit(pebble.Sync)
}

// childCountsLocked returns the counters of a new child of tl at seq: its
// parent's Logical there. That is tl's counter when no head batch after seq
// is counted yet; else (a fork in the past) the files at seq are read,
// which costs in proportion to their number, not their size. s.mu held.
func (s *Store) childCountsLocked(tl, seq uint64) (enc.Counts, error) {
	if pc := s.counts.get(tl); pc.Seq <= seq {
		return enc.Counts{Logical: pc.Logical}, nil
	}
	r := &reader{s: s, tl: tl, chain: s.chainLocked(tl, seq), cache: map[uint64]*enc.Attr{}}
	defer r.closeIters()
	var c enc.Counts
	err := r.walkFiles(func(_ uint64, a *enc.Attr) error {
		c.Logical += a.Size
		return nil
	})
	return c, err
}

// live reports whether an inode counts: a file or symlink with links.
func live(a *enc.Attr) bool {
	return a != nil && a.Mode&ModeType != ModeDir && a.Nlink > 0
}

// blockCounts returns what one stored version (seq, key and value
// lengths) of block blk adds to Current and Own when the inode's
// attributes are a and live is live(a).
func blockCounts(a *enc.Attr, live bool, blk, seq uint64, kl, vl int) (cur, own int64) {
	if !live || vl == 0 || blk*BlockSize >= a.Size || a.Shadowed(blk, seq) {
		return 0, 0
	}
	return int64(kl + vl), int64(min(BlockSize, a.Size-blk*BlockSize))
}

// blockWrite is one block version staged in a batch.
type blockWrite struct{ kl, vl int }

// staged is what a batch writes for one inode.
type staged struct {
	attr   []byte // the newest attribute value staged; nil if none
	blocks map[uint64]blockWrite
}

// countBatch returns how batch b, about to be committed by the head at
// seq, changes its timeline's counters. It reads the state before b: one
// attribute read per inode b touches, one prefix seek per block b
// rewrites inside the file's old size, and the stored versions of blocks
// whose counting a size, truncation or link change alters (all of them
// when a file loses its last link). What the head remembers of its own
// recent commits (its shadows and stored attributes) replaces the reads
// it can, and a batch they all cover opens no iterator. h.mu held for
// writing.
func (h *Head) countBatch(seq uint64, b *pebble.Batch) (cdelta, error) {
	var d cdelta
	inos := map[uint64]*staged{}
	get := func(ino uint64) *staged {
		st := inos[ino]
		if st == nil {
			st = &staged{}
			inos[ino] = st
		}
		return st
	}
	dirents := map[string]int{}
	r := b.Reader()
	for {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			return d, err
		}
		if !ok {
			break
		}
		if kind != pebble.InternalKeyKindSet || len(k) == 0 {
			continue
		}
		switch k[0] {
		case enc.KindDirent:
			dirents[string(k)] = len(k) + len(v)
		case enc.KindInode:
			_, ino, _, err := enc.DecodeInodeKey(k)
			if err != nil {
				return d, err
			}
			st := get(ino)
			if st.attr != nil {
				d.exclusive -= int64(len(k) + len(st.attr))
			}
			st.attr = append(make([]byte, 0, len(v)), v...)
			d.exclusive += int64(len(k) + len(v))
		case enc.KindBlock:
			_, ino, blk, _, err := enc.DecodeBlockKey(k)
			if err != nil {
				return d, err
			}
			st := get(ino)
			if st.blocks == nil {
				st.blocks = map[uint64]blockWrite{}
			}
			if w, ok := st.blocks[blk]; ok {
				d.exclusive -= int64(w.kl + w.vl)
			}
			st.blocks[blk] = blockWrite{len(k), len(v)}
			d.exclusive += int64(len(k) + len(v))
		}
	}
	for _, n := range dirents {
		d.exclusive += int64(n)
	}
	if len(inos) == 0 {
		return d, nil
	}
	var p pooledIter
	opened := false
	iter := func() (*pebble.Iterator, error) {
		if !opened {
			var err error
			if p, err = h.getIter(); err != nil {
				return nil, err
			}
			opened = true
		}
		return p.it, nil
	}
	defer func() {
		if opened {
			h.putIter(p)
		}
	}()
	for ino, st := range inos {
		var nw *enc.Attr
		if st.attr != nil {
			a, ok, err := enc.DecodeAttr(st.attr)
			if err != nil {
				return d, err
			}
			if ok && a.Mode&ModeType == ModeDir {
				continue // directories count nothing
			}
			if ok {
				nw = &a
			}
		}
		old, ok := h.stored[ino]
		if !ok {
			it, err := iter()
			if err != nil {
				return d, err
			}
			if old, err = h.storedAttr(it, ino); err != nil {
				return d, err
			}
		}
		if st.attr == nil {
			nw = old
		}
		h.storedNext = append(h.storedNext, keptAttr{ino, nw})
		if err := h.inodeDelta(iter, &d, ino, old, nw, st.blocks, seq); err != nil {
			return d, err
		}
	}
	return d, nil
}

// shadow is the newest stored version of a block: its seq and key and
// value lengths, what counting a write that shadows it needs.
type shadow struct {
	seq    uint64
	kl, vl int32
}

// oldVersion is the newest stored version of a block a batch writes:
// what it counted and its seq and key and value size (seq 0: none).
type oldVersion struct {
	cur, own int64
	seq      uint64
	size     int32
}

type pendingShadow struct {
	ino, blk uint64
	kl, vl   int32
}

// Bounds of Head.shadows: a batch writing more blocks than
// maxPendingShadows records none of them (a bulk write rarely rewrites
// them soon), and the map starts over past maxShadows blocks.
const (
	maxPendingShadows = 256
	maxShadows        = 4096
)

// dropShadows forgets what ino's blocks hold: a change of its size,
// truncations or links changes which versions count, and GC may delete
// versions a truncation cut. h.mu held for writing.
func (h *Head) dropShadows(ino uint64) { delete(h.shadows, ino) }

// stageShadows records the blocks a batch writes for ino, kept as their
// newest versions once it commits (keepShadows). The versions they
// shadow are no longer the newest either way. h.mu held for writing.
func (h *Head) stageShadows(ino uint64, writes map[uint64]blockWrite) {
	m := h.shadows[ino]
	for blk, w := range writes {
		delete(m, blk)
		if !h.pendingOver {
			h.pending = append(h.pending, pendingShadow{ino, blk, int32(w.kl), int32(w.vl)})
		}
	}
	if len(h.pending) > maxPendingShadows {
		h.pending, h.pendingOver = h.pending[:0], true
	}
}

// keepShadows records the staged blocks as committed at seq. h.mu held
// for writing.
func (h *Head) keepShadows(seq uint64) {
	if len(h.pending) == 0 {
		return
	}
	n := 0
	for _, m := range h.shadows {
		n += len(m)
	}
	if h.shadows == nil || n+len(h.pending) > maxShadows {
		h.shadows = map[uint64]map[uint64]shadow{}
	}
	for _, p := range h.pending {
		m := h.shadows[p.ino]
		if m == nil {
			m = map[uint64]shadow{}
			h.shadows[p.ino] = m
		}
		m[p.blk] = shadow{seq: seq, kl: p.kl, vl: p.vl}
	}
	h.pending = h.pending[:0]
}

// keptAttr is an inode's attributes as a batch leaves them (nil: none).
type keptAttr struct {
	ino  uint64
	attr *enc.Attr
}

// maxStored bounds Head.stored: past it the map starts over.
const maxStored = 1024

// keepStored records the attributes the committed batch left, the
// stored state the next batch's counting starts from. An inode left
// without attributes is forgotten rather than remembered as none (GC may
// later drop its tombstone). h.mu held for writing.
func (h *Head) keepStored() {
	if h.stored == nil || len(h.stored)+len(h.storedNext) > maxStored {
		h.stored = map[uint64]*enc.Attr{}
	}
	for _, a := range h.storedNext {
		if a.attr == nil {
			delete(h.stored, a.ino)
		} else {
			h.stored[a.ino] = a.attr
		}
	}
	h.storedNext = h.storedNext[:0]
}

// inodeDelta adds to d the change of inode ino from attributes old to nw
// (nil: none) with blocks written at seq. Blocks neither written nor in
// [lo, hi) count the same under old and nw: both are full blocks below
// both sizes, and the truncations that can cut them are the same (with
// equal sizes and truncations, that is every block: [lo, hi) is empty).
// iter opens the iterator for the lookups the head's shadows do not
// cover.
func (h *Head) inodeDelta(iter func() (*pebble.Iterator, error), d *cdelta, ino uint64, old, nw *enc.Attr, writes map[uint64]blockWrite, seq uint64) error {
	ol, nl := live(old), live(nw)
	if !ol || !nl || old.Size != nw.Size || truncDiff(old, nw) != math.MaxUint64 {
		h.dropShadows(ino)
	}
	defer h.stageShadows(ino, writes) // after the lookups below, which it replaces
	if !ol && !nl {
		return nil
	}
	size := func(a *enc.Attr, live bool) uint64 {
		if !live {
			return 0
		}
		return a.Size
	}
	d.logical += int64(size(nw, nl)) - int64(size(old, ol))
	var lo, hi uint64
	switch {
	case old == nil: // a new inode: nothing stored yet
	case ol != nl:
		lo, hi = 0, max(blocks(size(old, ol)), blocks(size(nw, nl)))
	default:
		if td := truncDiff(old, nw); old.Size != nw.Size || td != math.MaxUint64 {
			lo = min(old.Size/BlockSize, nw.Size/BlockSize, td)
			hi = max(blocks(old.Size), blocks(nw.Size))
		}
	}
	var olds map[uint64]oldVersion // blocks in [lo, hi) written now: their newest stored version
	if lo < hi {
		olds = map[uint64]oldVersion{}
		it, err := iter()
		if err != nil {
			return err
		}
		lower := enc.BlockKey(nil, h.tl, ino, lo, math.MaxUint64)
		upper := enc.BlockKey(nil, h.tl, ino, hi, math.MaxUint64)
		for ok := it.SeekGE(lower); ok && bytes.Compare(it.Key(), upper) < 0; {
			_, _, blk, vseq, err := enc.DecodeBlockKey(it.Key())
			if err != nil {
				return fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			kl, vl := len(it.Key()), valueLen(it)
			oc, oo := blockCounts(old, ol, blk, vseq, kl, vl)
			if _, w := writes[blk]; w {
				olds[blk] = oldVersion{oc, oo, vseq, int32(kl + vl)}
			} else {
				nc, no := blockCounts(nw, nl, blk, vseq, kl, vl)
				d.current += nc - oc
				d.own += no - oo
			}
			ok = nextBlock(it, blk)
		}
		if err := it.Error(); err != nil {
			return err
		}
	}
	var key []byte
	var gen uint64
	genOK := false
	for _, blk := range slices.Sorted(maps.Keys(writes)) { // in key order: seeks move forward
		w := writes[blk]
		var o oldVersion
		known := true // o is the newest stored version (seq 0: none)
		switch {
		case blk >= lo && blk < hi:
			o = olds[blk]
		case ol && blk*BlockSize < old.Size:
			if v, ok := h.shadows[ino][blk]; ok {
				o.seq, o.size = v.seq, v.kl+v.vl
				o.cur, o.own = blockCounts(old, ol, blk, v.seq, int(v.kl), int(v.vl))
				break
			}
			it, err := iter()
			if err != nil {
				return err
			}
			key = enc.BlockKey(key, h.tl, ino, blk, math.MaxUint64)
			if it.SeekPrefixGE(key) {
				_, _, _, vseq, err := enc.DecodeBlockKey(it.Key())
				if err != nil {
					return fmt.Errorf("%w: %w", ErrCorrupt, err)
				}
				kl, vl := len(it.Key()), valueLen(it)
				o = oldVersion{seq: vseq, size: int32(kl + vl)}
				o.cur, o.own = blockCounts(old, ol, blk, vseq, kl, vl)
			} else if err := it.Error(); err != nil {
				return err
			}
		default:
			known = false
		}
		// Name the version this write shadows for GC (gcnamed.go) if no
		// pass can delete it before the batch commits: none, or one the
		// head reads now (inside the file, not cut by a truncation).
		if known && ol && (o.seq == 0 || blk*BlockSize < old.Size && !old.Shadowed(blk, o.seq)) {
			if !genOK { // before the commit: a walking visit after it bumps it
				gen, genOK = h.s.cands.gen(h.tl, ino), true
			}
			h.shadowedVers = append(h.shadowedVers, shadowed{ino: ino, blk: blk, seq: o.seq, by: seq, gen: gen, size: o.size})
		}
		oc, oo := o.cur, o.own
		nc, no := blockCounts(nw, nl, blk, seq, w.kl, w.vl)
		d.current += nc - oc
		d.own += no - oo
	}
	return nil
}

// nextBlock moves it from a version of block blk to the newest version of
// the next block: a few steps, then a seek past blk's older versions.
func nextBlock(it *pebble.Iterator, blk uint64) bool {
	for range 4 {
		if !it.Next() {
			return false
		}
		_, _, b, _, err := enc.DecodeBlockKey(it.Key())
		if err != nil || b != blk {
			return true
		}
	}
	tl, ino, _, _, _ := enc.DecodeBlockKey(it.Key())
	return it.SeekGE(enc.BlockKey(nil, tl, ino, blk+1, math.MaxUint64))
}

// valueLen is the length of it's value, without fetching a value
// separated into a blob file.
func valueLen(it *pebble.Iterator) int {
	lv := it.LazyValue()
	return lv.Len()
}

// blocks is the number of blocks a file of size bytes spans.
func blocks(size uint64) uint64 { return (size + BlockSize - 1) / BlockSize }

// truncDiff returns the lowest block of a truncation that a has and b has
// not, or the reverse; math.MaxUint64 if they have the same.
func truncDiff(a, b *enc.Attr) uint64 {
	lo := uint64(math.MaxUint64)
	for _, x := range [2][2]*enc.Attr{{a, b}, {b, a}} {
		for _, t := range x[0].Truncs {
			found := false
			for _, u := range x[1].Truncs {
				found = found || u == t
			}
			if !found {
				lo = min(lo, t.Blk)
			}
		}
	}
	return lo
}

// recount computes the counters of the timeline at chain[0] from
// scratch, reading its tree at chain's head and every version it stores.
// Tests and Check compare it with the counters; Open uses it for a
// timeline without a record.
func (s *Store) recount(chain []link) (enc.Counts, error) {
	var c enc.Counts
	if len(chain) == 0 {
		return c, errors.New("empty read chain")
	}
	tl := chain[0].tl
	var err error
	if c.Exclusive, err = s.timelineBytes(tl); err != nil {
		return c, err
	}
	r := &reader{s: s, tl: tl, chain: chain, cache: map[uint64]*enc.Attr{}}
	defer r.closeIters()
	it, err := r.newIter()
	if err != nil {
		return c, err
	}
	defer it.Close()
	var key []byte
	err = r.walkFiles(func(ino uint64, a *enc.Attr) error {
		c.Logical += a.Size
		for blk := uint64(0); blk*BlockSize < a.Size; blk++ {
			key = enc.BlockKey(key, tl, ino, blk, chain[0].seq)
			if !it.SeekPrefixGE(key) {
				if err := it.Error(); err != nil {
					return err
				}
				continue
			}
			_, _, _, seq, err := enc.DecodeBlockKey(it.Key())
			if err != nil {
				return fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			cur, own := blockCounts(a, true, blk, seq, len(it.Key()), valueLen(it))
			c.Current += uint64(cur)
			c.Own += uint64(own)
		}
		return nil
	})
	return c, err
}

// walkFiles calls fn once for every live inode of r's tree (hard links
// are visited once).
func (r *reader) walkFiles(fn func(ino uint64, a *enc.Attr) error) error {
	seen := map[uint64]bool{}
	var walk func(dir uint64) error
	walk = func(dir uint64) error {
		ents, err := r.readDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.Mode == ModeDir {
				if err := walk(e.Ino); err != nil {
					return err
				}
				continue
			}
			if seen[e.Ino] {
				continue
			}
			seen[e.Ino] = true
			a, err := r.attr(nil, e.Ino)
			if err != nil {
				return err
			}
			if err := fn(e.Ino, a); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(RootIno)
}

// checkCounts compares every timeline's counters with a recount. Commits
// to a timeline wait while it is recounted.
func (s *Store) checkCounts() error {
	s.mu.Lock()
	chains := map[uint64][]link{}
	detached := map[uint64]bool{}
	for id, t := range s.cat.timelines {
		chains[id] = s.chainLocked(id, math.MaxUint64)
		detached[id] = t.Branch == 0
	}
	s.mu.Unlock()
	for tl, chain := range chains {
		e := s.counts.entry(tl)
		e.mu.Lock()
		got := e.c
		want, err := s.recount(chain)
		e.mu.Unlock()
		s.mu.Lock()
		gone := s.cat.timelines[tl] == nil
		s.mu.Unlock()
		if gone {
			s.counts.mu.Lock()
			delete(s.counts.m, tl) // dropped meanwhile
			s.counts.mu.Unlock()
			continue
		}
		if err != nil {
			return fmt.Errorf("recount timeline %d: %w", tl, err)
		}
		got.Seq, want.Seq = 0, 0
		if detached[tl] {
			// GC collects a detached timeline's head state: only
			// Exclusive still describes what it stores.
			got, want = enc.Counts{Exclusive: got.Exclusive}, enc.Counts{Exclusive: want.Exclusive}
		}
		if got != want {
			return fmt.Errorf("timeline %d: counters %+v, recount %+v", tl, got, want)
		}
	}
	return nil
}
