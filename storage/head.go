package storage

import (
	"fmt"
	"math"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/offshootdb/offshoot/storage/internal/enc"
)

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
// snapshot or view of the head, and on Close. Every other mutation is one
// atomic batch with its own seq. Batches are committed in order without
// fsync, so after a crash the store holds a prefix of the mutations in
// order; Sync makes everything so far durable.
//
// Inode numbers are stable across forks: a child reads its parent's inodes
// under the same numbers, and new inodes get store-wide unique numbers.
// RootIno (1) is every timeline's root directory.
type bkey struct{ ino, blk uint64 }

type Head struct {
	reader
	mu      sync.RWMutex
	branch  Branch
	batch   *pebble.Batch
	dirty   map[uint64]bool // inodes whose cached attrs are newer than the store's
	orphans map[uint64]bool // inodes with nlink 0 awaiting Forget
	wbuf    map[bkey][]byte // buffered block writes (BlockSize each), newest content
	free    [][]byte        // recycled wbuf blocks
	lastSeq uint64
	closed  bool
	buf     []byte
}

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
	h.reader.wbuf = &h.wbuf
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
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	h.gen.Add(1)
	h.lastSeq = seq
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
	if (len(h.dirty) == 0 && len(h.wbuf) == 0) || h.closed {
		return nil
	}
	seq, err := h.s.nextSeq()
	if err != nil {
		return err
	}
	b := h.batch
	b.Reset()
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
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	h.gen.Add(1)
	for k, v := range h.wbuf {
		h.free = append(h.free, v)
		delete(h.wbuf, k)
	}
	clear(h.dirty)
	h.lastSeq = seq
	if b.Len() > 4<<20 {
		// Do not keep a huge batch buffer around.
		h.batch = h.s.db.NewBatch()
	}
	return nil
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

func trimZeros(b []byte) []byte {
	i := len(b)
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

// WriteAt writes p at off, extending the file as needed; a gap before off
// reads as zeros. Only the touched blocks are stored (copy-on-write). The
// write is buffered in the head until the next flush (see Head).
func (h *Head) WriteAt(ino uint64, p []byte, off int64) (int, error) {
	if off < 0 || uint64(off)+uint64(len(p)) > math.MaxInt64 {
		return 0, fmt.Errorf("write offset %d: %w", off, ErrInvalidArgument)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return 0, err
	}
	a, err := h.fileAttr(nil, ino)
	if err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	if len(p) == 0 {
		return 0, nil
	}
	grow := 0 // bytes past the end of the file: what counts against the branch's share
	if end := uint64(off) + uint64(len(p)); end > a.Size {
		grow = int(min(end-a.Size, uint64(len(p))))
	}
	if err := h.s.admit(h.tl, len(p), grow); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	var it *pebble.Iterator
	defer func() {
		if it != nil {
			it.Close()
		}
	}()
	var key []byte
	for done := 0; done < len(p); {
		pos := uint64(off) + uint64(done)
		blk, bo := pos/BlockSize, int(pos%BlockSize)
		m := min(BlockSize-bo, len(p)-done)
		k := bkey{ino, blk}
		v, ok := h.wbuf[k]
		if !ok {
			if n := len(h.free); n > 0 {
				v, h.free = h.free[n-1], h.free[:n-1]
			} else {
				v = make([]byte, BlockSize)
			}
			if m < BlockSize {
				if blk*BlockSize < a.Size {
					if it == nil {
						if it, err = h.newIter(); err != nil {
							return 0, fmt.Errorf("write: %w", err)
						}
					}
					if key, err = h.readBlock(it, key, ino, a, blk, v); err != nil {
						h.free = append(h.free, v)
						return 0, fmt.Errorf("write: %w", err)
					}
				} else {
					clear(v)
				}
			}
			h.wbuf[k] = v
		}
		copy(v[bo:], p[done:done+m])
		done += m
	}
	na := *a
	na.Mtime = h.now()
	na.Ctime = na.Mtime
	if end := uint64(off) + uint64(len(p)); end > na.Size {
		na.Size = end
	}
	h.setCached(ino, &na)
	h.dirty[ino] = true
	if len(h.wbuf)*BlockSize >= h.s.opts.HeadBufferBytes {
		if err := h.flushLocked(); err != nil {
			return 0, fmt.Errorf("write: %w", err)
		}
	}
	return len(p), nil
}

// SetAttrIn selects and carries the attributes SetAttr changes.
type SetAttrIn struct {
	Valid uint32 // SetMode | SetUid | ...
	Mode  uint32 // permission bits only; the file type never changes
	Uid   uint32
	Gid   uint32
	Size  uint64
	Atime int64 // unix nanoseconds
	Mtime int64
}

// Bits of SetAttrIn.Valid.
const (
	SetMode = 1 << iota
	SetUid
	SetGid
	SetSize
	SetAtime
	SetMtime
)

// SetAttr changes attributes of ino. Setting the size truncates or extends
// the file: bytes past a shrink never come back (an extension reads zeros).
func (h *Head) SetAttr(ino uint64, in SetAttrIn) (Attr, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return Attr{}, err
	}
	a, err := h.setAttrLocked(ino, in)
	if err != nil {
		return Attr{}, fmt.Errorf("setattr inode %d: %w", ino, err)
	}
	return toAttr(ino, a), nil
}

func (h *Head) setAttrLocked(ino uint64, in SetAttrIn) (*enc.Attr, error) {
	a, err := h.attr(nil, ino)
	if err != nil {
		return nil, err
	}
	if in.Valid&SetSize != 0 {
		if a.Mode&ModeType == ModeDir {
			return nil, ErrIsDir
		}
		if in.Size > math.MaxInt64 {
			return nil, fmt.Errorf("size %d: %w", in.Size, ErrInvalidArgument)
		}
	}
	if in.Mode&^ModePerm != 0 && in.Valid&SetMode != 0 {
		return nil, fmt.Errorf("mode %o: %w", in.Mode, ErrInvalidArgument)
	}
	na := *a
	err = h.mutate(func(seq uint64, b *pebble.Batch) error {
		now := h.now()
		if in.Valid&SetMode != 0 {
			na.Mode = na.Mode&ModeType | in.Mode
		}
		if in.Valid&SetUid != 0 {
			na.Uid = in.Uid
		}
		if in.Valid&SetGid != 0 {
			na.Gid = in.Gid
		}
		if in.Valid&SetAtime != 0 {
			na.Atime = in.Atime
		}
		if in.Valid&SetMtime != 0 {
			na.Mtime = in.Mtime
		}
		na.Ctime = now
		if in.Valid&SetSize != 0 && in.Size != na.Size {
			if in.Valid&SetMtime == 0 {
				na.Mtime = now
			}
			if in.Size < na.Size {
				if err := h.truncate(b, seq, ino, &na, in.Size); err != nil {
					return err
				}
			}
			na.Size = in.Size
		}
		h.putAttr(b, seq, ino, &na)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &na, nil
}

// truncate stages the removal of everything past size in na (which still
// has the old size): the tail of a partial last block is zeroed, and later
// blocks are cut by a truncation record (or, when na already holds
// MaxTruncs records, by explicit tombstones).
func (h *Head) truncate(b *pebble.Batch, seq, ino uint64, na *enc.Attr, size uint64) error {
	it, err := h.newIter()
	if err != nil {
		return err
	}
	defer it.Close()
	first := (size + BlockSize - 1) / BlockSize // first block wholly past size
	if r := size % BlockSize; r != 0 {
		blk := size / BlockSize
		tmp := h.buf[:BlockSize]
		if _, err := h.readBlock(it, nil, ino, na, blk, tmp); err != nil {
			return err
		}
		clear(tmp[r:])
		_ = b.Set(enc.BlockKey(nil, h.tl, ino, blk, seq), trimZeros(tmp), nil)
	}
	if first*BlockSize >= na.Size {
		return nil
	}
	ts := na.Truncs[:0:0]
	for _, t := range na.Truncs {
		if t.Blk < first {
			ts = append(ts, t)
		}
	}
	if len(ts) < enc.MaxTruncs {
		na.Truncs = append(ts, enc.Trunc{Blk: first, Seq: seq})
		return nil
	}
	// Explicit tombstones for every block at or past first that any
	// timeline of the chain holds a version of.
	blks := map[uint64]bool{}
	var lo, hi []byte
	for _, l := range h.chain {
		lo = enc.BlockKey(lo, l.tl, ino, first, math.MaxUint64)
		hi = enc.BlockPrefix(hi, l.tl, ino+1)
		it.SetBounds(lo, hi)
		for it.First(); it.Valid(); it.Next() {
			_, _, blk, _, err := enc.DecodeBlockKey(it.Key())
			if err != nil {
				return fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			blks[blk] = true
		}
		if err := it.Error(); err != nil {
			return err
		}
	}
	for blk := range blks {
		_ = b.Set(enc.BlockKey(nil, h.tl, ino, blk, seq), nil, nil)
	}
	return nil
}

// Fallocate makes sure the file covers [off, off+length): it extends the
// size if needed (the new range reads as zeros). Space is not reserved.
func (h *Head) Fallocate(ino uint64, off, length int64) error {
	if off < 0 || length <= 0 || off+length < off {
		return fmt.Errorf("fallocate %d+%d: %w", off, length, ErrInvalidArgument)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return err
	}
	a, err := h.fileAttr(nil, ino)
	if err != nil {
		return fmt.Errorf("fallocate: %w", err)
	}
	if uint64(off+length) <= a.Size {
		return nil
	}
	if _, err := h.setAttrLocked(ino, SetAttrIn{Valid: SetSize, Size: uint64(off + length)}); err != nil {
		return fmt.Errorf("fallocate: %w", err)
	}
	return nil
}

// newNode creates an inode of the given mode linked as name in parent.
func (h *Head) newNode(parent uint64, name string, mode, uid, gid uint32, content []byte) (Attr, error) {
	if err := checkFileName(name); err != nil {
		return Attr{}, err
	}
	if mode&ModeType == 0 || mode&^(ModeType|ModePerm) != 0 {
		return Attr{}, fmt.Errorf("mode %o: %w", mode, ErrInvalidArgument)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return Attr{}, err
	}
	it, err := h.newIter()
	if err != nil {
		return Attr{}, err
	}
	defer it.Close()
	pa, err := h.dirAttr(it, parent)
	if err != nil {
		return Attr{}, err
	}
	if _, ok, err := h.dirent(it, parent, name); err != nil {
		return Attr{}, err
	} else if ok {
		return Attr{}, fmt.Errorf("%q: %w", name, ErrExist)
	}
	if err := h.s.admit(h.tl, len(name)+len(content), len(name)+len(content)); err != nil {
		return Attr{}, err
	}
	ino, err := h.s.nextID()
	if err != nil {
		return Attr{}, err
	}
	var na enc.Attr
	err = h.mutate(func(seq uint64, b *pebble.Batch) error {
		now := h.now()
		na = enc.Attr{Mode: mode, Uid: uid, Gid: gid, Nlink: 1, Atime: now, Mtime: now, Ctime: now}
		np := *pa
		np.Mtime, np.Ctime = now, now
		if mode&ModeType == ModeDir {
			na.Nlink = 2
			na.Parent = parent
			np.Nlink++
		}
		if len(content) > 0 {
			na.Size = uint64(len(content))
			_ = b.Set(enc.BlockKey(nil, h.tl, ino, 0, seq), content, nil)
		}
		h.putAttr(b, seq, ino, &na)
		h.putAttr(b, seq, parent, &np)
		_ = b.Set(enc.DirentKey(nil, h.tl, parent, name, seq), enc.AppendDirent(nil, enc.Dirent{Ino: ino, Mode: mode & ModeType}), nil)
		return nil
	})
	if err != nil {
		return Attr{}, err
	}
	return toAttr(ino, &na), nil
}

// Create creates a regular file name in parent with permission bits mode
// (the type bits may be ModeRegular or left zero). ErrExist if name exists.
func (h *Head) Create(parent uint64, name string, mode, uid, gid uint32) (Attr, error) {
	if mode&ModeType == 0 {
		mode |= ModeRegular
	}
	if mode&ModeType != ModeRegular {
		return Attr{}, fmt.Errorf("create %q: mode %o: %w", name, mode, ErrInvalidArgument)
	}
	a, err := h.newNode(parent, name, mode, uid, gid, nil)
	if err != nil {
		return Attr{}, fmt.Errorf("create %q: %w", name, err)
	}
	return a, nil
}

// Mkdir creates a directory name in parent with permission bits mode.
func (h *Head) Mkdir(parent uint64, name string, mode, uid, gid uint32) (Attr, error) {
	a, err := h.newNode(parent, name, mode&ModePerm|ModeDir, uid, gid, nil)
	if err != nil {
		return Attr{}, fmt.Errorf("mkdir %q: %w", name, err)
	}
	return a, nil
}

// Symlink creates a symbolic link name in parent pointing at target.
func (h *Head) Symlink(parent uint64, name, target string, uid, gid uint32) (Attr, error) {
	if target == "" || len(target) > BlockSize {
		return Attr{}, fmt.Errorf("symlink %q: target length %d: %w", name, len(target), ErrInvalidArgument)
	}
	a, err := h.newNode(parent, name, ModeSymlink|0o777, uid, gid, []byte(target))
	if err != nil {
		return Attr{}, fmt.Errorf("symlink %q: %w", name, err)
	}
	return a, nil
}

// Link adds a hard link newName in newParent to the non-directory ino.
func (h *Head) Link(ino, newParent uint64, newName string) (Attr, error) {
	if err := checkFileName(newName); err != nil {
		return Attr{}, fmt.Errorf("link: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return Attr{}, err
	}
	it, err := h.newIter()
	if err != nil {
		return Attr{}, err
	}
	defer it.Close()
	a, err := h.fileAttr(it, ino)
	if err != nil {
		return Attr{}, fmt.Errorf("link: %w", err)
	}
	pa, err := h.dirAttr(it, newParent)
	if err != nil {
		return Attr{}, fmt.Errorf("link: %w", err)
	}
	if _, ok, err := h.dirent(it, newParent, newName); err != nil {
		return Attr{}, err
	} else if ok {
		return Attr{}, fmt.Errorf("link %q: %w", newName, ErrExist)
	}
	if err := h.s.admit(h.tl, len(newName), len(newName)); err != nil {
		return Attr{}, fmt.Errorf("link: %w", err)
	}
	na := *a
	err = h.mutate(func(seq uint64, b *pebble.Batch) error {
		now := h.now()
		na.Nlink++
		na.Ctime = now
		np := *pa
		np.Mtime, np.Ctime = now, now
		h.putAttr(b, seq, ino, &na)
		h.putAttr(b, seq, newParent, &np)
		if h.orphans[ino] {
			delete(h.orphans, ino)
			_ = b.Delete(enc.OrphanKey(h.tl, ino), nil)
		}
		_ = b.Set(enc.DirentKey(nil, h.tl, newParent, newName, seq), enc.AppendDirent(nil, enc.Dirent{Ino: ino, Mode: a.Mode & ModeType}), nil)
		return nil
	})
	if err != nil {
		return Attr{}, fmt.Errorf("link: %w", err)
	}
	return toAttr(ino, &na), nil
}

// dropLink stages the removal of one link to child (attrs ca). A file left
// without links stays readable by inode number until Forget or Close.
func (h *Head) dropLink(b *pebble.Batch, seq, child uint64, ca *enc.Attr, now int64) {
	if ca.Mode&ModeType == ModeDir {
		h.delAttr(b, seq, child)
		return
	}
	nc := *ca
	nc.Nlink--
	nc.Ctime = now
	h.putAttr(b, seq, child, &nc)
	if nc.Nlink == 0 {
		h.orphans[child] = true
		_ = b.Set(enc.OrphanKey(h.tl, child), nil, nil)
	}
}

func (h *Head) isEmptyDir(ino uint64) (bool, error) {
	ents, err := h.readDir(ino)
	return len(ents) == 0, err
}

// Unlink removes the entry name (not a directory) from parent. When the
// file's last link goes, its inode stays readable by number until Forget(ino)
// (the FUSE layer calls it when the kernel forgets the inode) or Close.
func (h *Head) Unlink(parent uint64, name string) error {
	if err := h.remove(parent, name, false); err != nil {
		return fmt.Errorf("unlink %q: %w", name, err)
	}
	return nil
}

// Rmdir removes the empty directory name from parent.
func (h *Head) Rmdir(parent uint64, name string) error {
	if err := h.remove(parent, name, true); err != nil {
		return fmt.Errorf("rmdir %q: %w", name, err)
	}
	return nil
}

func (h *Head) remove(parent uint64, name string, dir bool) error {
	if err := checkFileName(name); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return err
	}
	it, err := h.newIter()
	if err != nil {
		return err
	}
	defer it.Close()
	pa, err := h.dirAttr(it, parent)
	if err != nil {
		return err
	}
	d, ok, err := h.dirent(it, parent, name)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotExist
	}
	ca, err := h.attr(it, d.Ino)
	if err != nil {
		return fmt.Errorf("%w: entry points at missing inode %d", ErrCorrupt, d.Ino)
	}
	isDir := ca.Mode&ModeType == ModeDir
	switch {
	case dir && !isDir:
		return ErrNotDir
	case !dir && isDir:
		return ErrIsDir
	case isDir:
		if empty, err := h.isEmptyDir(d.Ino); err != nil {
			return err
		} else if !empty {
			return ErrNotEmpty
		}
	}
	return h.mutate(func(seq uint64, b *pebble.Batch) error {
		now := h.now()
		np := *pa
		np.Mtime, np.Ctime = now, now
		if isDir {
			np.Nlink--
		}
		h.putAttr(b, seq, parent, &np)
		_ = b.Set(enc.DirentKey(nil, h.tl, parent, name, seq), nil, nil)
		h.dropLink(b, seq, d.Ino, ca, now)
		return nil
	})
}

// Forget drops an inode that has no links left (see Unlink); it is a no-op
// for linked or unknown inodes.
func (h *Head) Forget(ino uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return err
	}
	if !h.orphans[ino] {
		return nil
	}
	return h.mutate(func(seq uint64, b *pebble.Batch) error {
		h.delAttr(b, seq, ino)
		return nil
	})
}

// Rename moves oldName in oldParent to newName in newParent, atomically
// replacing an existing newName (a file by a file, or an empty directory by
// a directory). Data never moves: only directory entries change.
func (h *Head) Rename(oldParent uint64, oldName string, newParent uint64, newName string) error {
	if err := h.rename(oldParent, oldName, newParent, newName); err != nil {
		return fmt.Errorf("rename %q to %q: %w", oldName, newName, err)
	}
	return nil
}

func (h *Head) rename(oldParent uint64, oldName string, newParent uint64, newName string) error {
	if err := checkFileName(oldName); err != nil {
		return err
	}
	if err := checkFileName(newName); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return err
	}
	it, err := h.newIter()
	if err != nil {
		return err
	}
	defer it.Close()
	opa, err := h.dirAttr(it, oldParent)
	if err != nil {
		return err
	}
	npa, err := h.dirAttr(it, newParent)
	if err != nil {
		return err
	}
	src, ok, err := h.dirent(it, oldParent, oldName)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotExist
	}
	sa, err := h.attr(it, src.Ino)
	if err != nil {
		return fmt.Errorf("%w: entry points at missing inode %d", ErrCorrupt, src.Ino)
	}
	srcDir := sa.Mode&ModeType == ModeDir
	dst, dstOK, err := h.dirent(it, newParent, newName)
	if err != nil {
		return err
	}
	if dstOK && dst.Ino == src.Ino {
		return nil // same inode: POSIX says do nothing
	}
	var da *enc.Attr
	if dstOK {
		if da, err = h.attr(it, dst.Ino); err != nil {
			return fmt.Errorf("%w: entry points at missing inode %d", ErrCorrupt, dst.Ino)
		}
		dstDir := da.Mode&ModeType == ModeDir
		switch {
		case srcDir && !dstDir:
			return ErrNotDir
		case !srcDir && dstDir:
			return ErrIsDir
		case dstDir:
			if empty, err := h.isEmptyDir(dst.Ino); err != nil {
				return err
			} else if !empty {
				return ErrNotEmpty
			}
		}
	}
	if srcDir && newParent != oldParent {
		// newParent must not be src or below it.
		for p := newParent; ; {
			if p == src.Ino {
				return ErrRenameLoop
			}
			if p == RootIno {
				break
			}
			pa, err := h.dirAttr(it, p)
			if err != nil {
				return err
			}
			if pa.Parent == p || pa.Parent == 0 {
				break
			}
			p = pa.Parent
		}
	}
	return h.mutate(func(seq uint64, b *pebble.Batch) error {
		now := h.now()
		op := *opa
		op.Mtime, op.Ctime = now, now
		_ = b.Set(enc.DirentKey(nil, h.tl, oldParent, oldName, seq), nil, nil)
		_ = b.Set(enc.DirentKey(nil, h.tl, newParent, newName, seq), enc.AppendDirent(nil, src), nil)
		if dstOK {
			if da.Mode&ModeType == ModeDir {
				npa2 := *npa
				npa2.Nlink--
				npa = &npa2
			}
			h.dropLink(b, seq, dst.Ino, da, now)
		}
		if oldParent == newParent {
			op.Nlink = npa.Nlink
			h.putAttr(b, seq, oldParent, &op)
			return nil
		}
		np := *npa
		np.Mtime, np.Ctime = now, now
		if srcDir {
			op.Nlink--
			np.Nlink++
			ns := *sa
			ns.Parent = newParent
			ns.Ctime = now
			h.putAttr(b, seq, src.Ino, &ns)
		}
		h.putAttr(b, seq, oldParent, &op)
		h.putAttr(b, seq, newParent, &np)
		return nil
	})
}
