package storage

import (
	"bytes"
	"fmt"
	"math"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// The writable head of a branch: opening and closing it, how its
// mutations are committed (buffered block writes, flushes, one seq per
// batch), and its reads.

// Head is the single writable head of a branch's timeline. Its methods map
// one to one onto FUSE operations on inodes; all are safe for concurrent
// use (writes are serialized, reads run in parallel with each other).
//
// WriteAt is write-back buffered in the head (up to
// Options.HeadBufferBytes): rewrites of a block before the next flush
// replace each other in memory. A flush commits all buffered blocks and
// attribute changes as one atomic pebble batch with one seq; it happens on
// Sync, when the buffer is full, at every history tick, before every other
// mutation (so metadata never overtakes earlier writes), before a fork,
// snapshot or view of the head, and on Close; a head with an Absorber
// (absorb.go) commits what it stages first. Every other mutation is one
// atomic batch with its own seq. Batches are committed in order without
// fsync, so after a crash the store holds a prefix of the mutations in
// order; Sync makes everything so far durable.
//
// Inode numbers are stable across forks: a child reads its parent's inodes
// under the same numbers, and new inodes get store-wide unique numbers.
// RootIno (1) is every timeline's root directory.
type Head struct {
	reader
	mu      sync.RWMutex
	branch  Branch
	batch   *pebble.Batch
	dirty   map[uint64]bool // inodes whose cached attrs are newer than the store's
	orphans map[uint64]bool // inodes with nlink 0 awaiting Forget
	wbuf    map[bkey][]byte // buffered block writes (BlockSize each), newest content
	free    [][]byte        // recycled wbuf blocks
	tickGen uint64          // gen at the previous tick's flush (Store.flushHeads)
	// shadows are the newest stored versions of blocks this head wrote
	// lately (by inode, then block): what countBatch would otherwise seek
	// for when the next write shadows them (Postgres rewrites its current
	// WAL page at every commit). pending holds the current batch's, kept
	// once it commits.
	shadows     map[uint64]map[uint64]shadow
	pending     []pendingShadow
	pendingOver bool // the batch writes too many blocks to record
	// stored are the attributes of inodes this head's batches touched
	// lately as the store holds them now: what countBatch would otherwise
	// read. storedNext holds the current batch's, kept once it commits.
	stored     map[uint64]*enc.Attr
	storedNext []keptAttr
	// shadowedVers are the versions the batch being committed shadows
	// that GC may delete by key (gcnamed.go).
	shadowedVers []shadowed
	lastSeq      uint64
	closed       bool
	absorber     Absorber // see absorb.go
	absorbing    bool     // absorber running: its own flushes do not call it
	buf          []byte
}

// bkey is the key of a buffered block write: inode and block number.
type bkey struct{ ino, blk uint64 }

// OpenHead opens the writable head of a branch. A second concurrent open of
// the same branch is refused with ErrBusy. The caller must Close it.
func (s *Store) OpenHead(project, branch string) (*Head, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, b, err := s.branchLocked(project, branch)
	if err != nil {
		return nil, fmt.Errorf("open head: %w", err)
	}
	if s.heads[b.Timeline] != nil {
		return nil, fmt.Errorf("open head of %q: %w", branch, ErrBusy)
	}
	h := &Head{
		reader: reader{s: s, tl: b.Timeline, chain: s.chainLocked(b.Timeline, math.MaxUint64), cache: map[uint64]*enc.Attr{}},
		branch: copyBranch(b), batch: s.db.NewBatch(), dirty: map[uint64]bool{}, orphans: map[uint64]bool{},
		wbuf:    map[bkey][]byte{},
		lastSeq: s.curSeq(), buf: make([]byte, BlockSize),
	}
	h.reader.wbuf, h.reader.dirty = &h.wbuf, &h.dirty
	if err := h.dropOrphans(); err != nil {
		return nil, fmt.Errorf("open head of %q: %w", branch, err)
	}
	s.heads[b.Timeline] = h
	return h, nil
}

// dropOrphans deletes inodes left without links by an earlier head that
// ended without Forget or Close (a crash): nobody can have them open now.
func (h *Head) dropOrphans() error {
	lo := enc.TimelinePrefix(enc.KindOrphan, h.tl)
	hi := enc.TimelinePrefix(enc.KindOrphan, h.tl+1)
	it, err := h.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	var inos []uint64
	for it.First(); it.Valid(); it.Next() {
		_, ino, err := enc.DecodeOrphanKey(it.Key())
		if err != nil {
			it.Close()
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		inos = append(inos, ino)
	}
	err = it.Error()
	it.Close()
	if err != nil || len(inos) == 0 {
		return err
	}
	return h.mutate(func(seq uint64, b *pebble.Batch) error {
		for _, ino := range inos {
			h.delAttr(b, seq, ino)
		}
		return nil
	})
}

// Branch returns the branch as it was when the head was opened.
func (h *Head) Branch() Branch { return h.branch }

// Timeline is the id of the head's timeline.
func (h *Head) Timeline() uint64 { return h.tl }

// Seq is the seq of the newest flushed state of the head: every flushed
// mutation has a seq at or below it (buffered writes get theirs when
// flushed; see Flush).
func (h *Head) Seq() uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.lastSeq
}

// Close flushes deferred attribute updates, drops unlinked inodes nobody
// forgot yet, syncs, and releases the branch for another writer.
func (h *Head) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	var err error
	if len(h.orphans) > 0 {
		err = h.mutate(func(seq uint64, b *pebble.Batch) error {
			for ino := range h.orphans {
				h.delAttr(b, seq, ino)
			}
			return nil
		})
	}
	if ferr := h.flushLocked(); err == nil {
		err = ferr
	}
	h.closed = true
	h.closeIters()
	h.mu.Unlock()
	if serr := h.s.Sync(); err == nil {
		err = serr
	}
	h.s.mu.Lock()
	if h.s.heads[h.tl] == h {
		delete(h.s.heads, h.tl)
	}
	h.s.mu.Unlock()
	return err
}

func (h *Head) checkLocked() error {
	if h.closed {
		return ErrClosed
	}
	return nil
}

func (h *Head) now() int64 { return h.s.opts.Now().UnixNano() }

// mutate runs f with a fresh seq and an empty batch and commits the batch
// without fsync. h.mu held for writing.
func (h *Head) mutate(f func(seq uint64, b *pebble.Batch) error) error {
	if err := h.flushLocked(); err != nil {
		return err
	}
	seq, err := h.s.nextSeq()
	if err != nil {
		return err
	}
	b := h.batch
	b.Reset()
	if err := f(seq, b); err != nil {
		return err
	}
	if b.Empty() {
		return nil
	}
	if err := h.commit(seq, b); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	h.gen.Add(1)
	h.lastSeq = seq
	return nil
}

// commit commits batch b of seq without fsync, with the change of the
// timeline's counters it makes, and registers its GC candidates. h.mu
// held for writing.
func (h *Head) commit(seq uint64, b *pebble.Batch) error {
	h.pending, h.pendingOver = h.pending[:0], false
	h.storedNext = h.storedNext[:0]
	h.shadowedVers = h.shadowedVers[:0]
	cands := batchCands(seq, b) // before the commit, which may take b's buffer
	d, err := h.countBatch(seq, b)
	if err == nil {
		err = h.s.counts.commit(h.tl, seq, d, b, pebble.NoSync)
	}
	if err != nil {
		h.shadows, h.stored = nil, nil // what the batch's inodes hold is unknown now
		return err
	}
	h.keepShadows(seq)
	h.keepStored()
	h.s.cands.note(h.tl, cands, h.shadowedVers)
	return nil
}

// putAttr stages a new version of ino's attributes and caches it.
func (h *Head) putAttr(b *pebble.Batch, seq, ino uint64, a *enc.Attr) {
	h.buf = enc.AppendAttr(h.buf[:0], a)
	_ = b.Set(enc.InodeKey(nil, h.tl, ino, seq), h.buf, nil)
	h.setCached(ino, a)
	delete(h.dirty, ino)
}

func (h *Head) delAttr(b *pebble.Batch, seq, ino uint64) {
	_ = b.Set(enc.InodeKey(nil, h.tl, ino, seq), nil, nil)
	_ = b.Delete(enc.OrphanKey(h.tl, ino), nil)
	h.setCached(ino, nil)
	delete(h.dirty, ino)
	delete(h.orphans, ino)
}

// flushLocked commits buffered block writes and attribute changes as one
// batch with one seq (without fsync). h.mu held for writing.
func (h *Head) flushLocked() error {
	if h.closed {
		return nil
	}
	if h.absorber != nil && !h.absorbing {
		if err := h.absorbLocked(); err != nil {
			return err
		}
	}
	if len(h.dirty) == 0 && len(h.wbuf) == 0 {
		return nil
	}
	seq, err := h.s.nextSeq()
	if err != nil {
		return err
	}
	b := h.batch
	if n := flushBatchSize(len(h.wbuf), len(h.dirty)); n > smallFlush {
		// A batch grows by doubling and copying what it holds: sized
		// up front, the buffered blocks are copied into it once.
		b = h.s.db.NewBatchWithSize(n)
		defer b.Close()
	} else {
		b.Reset()
	}
	var key []byte
	for k, v := range h.wbuf {
		key = enc.BlockKey(key, h.tl, k.ino, k.blk, seq)
		_ = b.Set(key, trimZeros(v), nil)
	}
	for ino := range h.dirty {
		if a, ok := h.cached(ino); ok && a != nil {
			h.buf = enc.AppendAttr(h.buf[:0], a)
			_ = b.Set(enc.InodeKey(key, h.tl, ino, seq), h.buf, nil)
		}
	}
	if err := h.commit(seq, b); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	h.gen.Add(1)
	for k, v := range h.wbuf {
		h.free = append(h.free, v)
		delete(h.wbuf, k)
	}
	clear(h.dirty)
	h.lastSeq = seq
	return nil
}

// smallFlush is the largest flush batch that reuses the head's batch; a
// larger one gets a batch of its own, sized up front and released after
// the commit (pebble keeps at most 1 MiB of a reused batch's buffer).
const smallFlush = 1 << 20

// flushBatchSize bounds the batch a flush of blocks buffered blocks and
// attrs attribute records takes: each record is a kind byte, two varint
// lengths (at most 5 bytes each), a key of at most 33 bytes and a value
// (a block of at most BlockSize bytes, attributes of at most 512), plus
// the batch header and the counters record.
func flushBatchSize(blocks, attrs int) int {
	return blocks*(BlockSize+44) + attrs*(512+44) + 256
}

// Flush commits buffered writes without fsync, giving them a seq.
func (h *Head) Flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return err
	}
	return h.flushLocked()
}

// Sync makes every mutation of this head (and of every other head) so far
// durable. Concurrent Syncs share one fsync.
func (h *Head) Sync() error {
	h.mu.Lock()
	err := h.checkLocked()
	if err == nil {
		err = h.flushLocked()
	}
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return h.s.Sync()
}

// Lookup returns the attributes of entry name in directory parent.
func (h *Head) Lookup(parent uint64, name string) (Attr, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if err := h.checkLocked(); err != nil {
		return Attr{}, err
	}
	return h.lookup(parent, name)
}

// GetAttr returns an inode's attributes.
func (h *Head) GetAttr(ino uint64) (Attr, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if err := h.checkLocked(); err != nil {
		return Attr{}, err
	}
	return h.getAttr(ino)
}

// ReadDir lists a directory sorted by name (without "." and "..").
func (h *Head) ReadDir(ino uint64) ([]DirEntry, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if err := h.checkLocked(); err != nil {
		return nil, err
	}
	return h.readDir(ino)
}

// ReadAt reads len(p) bytes at off as io.ReaderAt does: n < len(p) only
// with an error, io.EOF at the end of the file. Holes read as zeros.
func (h *Head) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if err := h.checkLocked(); err != nil {
		return 0, err
	}
	return h.readAt(ino, p, off)
}

// Readlink returns a symlink's target.
func (h *Head) Readlink(ino uint64) (string, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if err := h.checkLocked(); err != nil {
		return "", err
	}
	return h.readlink(ino)
}

// StatFS returns usage numbers (see Store.StatFS).
func (h *Head) StatFS() (FSStats, error) { return h.s.StatFS() }

// zeroChunk is compared with a block's tail in trimZeros.
var zeroChunk [512]byte

// trimZeros returns b without its trailing zero bytes. Whole 512-byte
// chunks are compared first (bytes.Equal runs vectorized): a block of a
// zero-filled WAL segment then costs 16 comparisons, not 1024 steps.
func trimZeros(b []byte) []byte {
	i := len(b)
	for i >= len(zeroChunk) && bytes.Equal(b[i-len(zeroChunk):i], zeroChunk[:]) {
		i -= len(zeroChunk)
	}
	for i >= 8 && b[i-1]|b[i-2]|b[i-3]|b[i-4]|b[i-5]|b[i-6]|b[i-7]|b[i-8] == 0 {
		i -= 8
	}
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return b[:i]
}

// fileAttr returns ino's attrs if it is a regular file or symlink.
func (h *Head) fileAttr(it *pebble.Iterator, ino uint64) (*enc.Attr, error) {
	a, err := h.attr(it, ino)
	if err != nil {
		return nil, err
	}
	if a.Mode&ModeType == ModeDir {
		return nil, fmt.Errorf("inode %d: %w", ino, ErrIsDir)
	}
	return a, nil
}
