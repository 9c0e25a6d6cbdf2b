package storage

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// File type bits of Attr.Mode (as in stat(2)).
const (
	ModeType    = 0o170000
	ModeDir     = 0o040000
	ModeRegular = 0o100000
	ModeSymlink = 0o120000
	ModePerm    = 0o7777
)

// Attr are an inode's attributes as GetAttr returns them.
type Attr struct {
	Ino   uint64
	Mode  uint32 // type bits (ModeDir, ModeRegular, ModeSymlink) | permission bits
	Uid   uint32
	Gid   uint32
	Nlink uint32
	Size  uint64
	Atime time.Time
	Mtime time.Time
	Ctime time.Time
}

// IsDir reports whether the inode is a directory.
func (a Attr) IsDir() bool { return a.Mode&ModeType == ModeDir }

func toAttr(ino uint64, a *enc.Attr) Attr {
	return Attr{Ino: ino, Mode: a.Mode, Uid: a.Uid, Gid: a.Gid, Nlink: a.Nlink, Size: a.Size,
		Atime: time.Unix(0, a.Atime), Mtime: time.Unix(0, a.Mtime), Ctime: time.Unix(0, a.Ctime)}
}

// DirEntry is one entry of ReadDir.
type DirEntry struct {
	Name string
	Ino  uint64
	Mode uint32 // type bits only
}

type link struct{ tl, seq uint64 }

// reader reads one (timeline, seq) through its ancestors. It is shared by
// Head (seq = ∞) and View.
type reader struct {
	// wbuf, if set, holds blocks newer than anything in the store (the
	// head's write-back buffer); guarded by the head's lock.
	wbuf *map[bkey][]byte
	// dirty, if set, are the inodes whose cached attributes are newer
	// than the store's (the head's); guarded by the head's lock, which
	// every caller of setCached holds.
	dirty *map[uint64]bool
	s     *Store
	tl    uint64
	chain []link
	cmu   sync.Mutex
	cache map[uint64]*enc.Attr // immutable values; nil value caches "does not exist"
	sets  map[[2]uint64]*blkSet
	iters []pooledIter
	gen   atomic.Uint64 // bumped by the head after each commit; pooled iterators of older generations are stale
}

// pooledIter is an unbounded pebble iterator kept for reuse while its view
// of the store is current (same generation) and young.
type pooledIter struct {
	it   *pebble.Iterator
	gen  uint64
	born time.Time
}

const iterMaxAge = time.Second

// getIter returns a pooled or fresh unbounded iterator; return it with putIter.
func (r *reader) getIter() (pooledIter, error) {
	gen := r.gen.Load()
	r.cmu.Lock()
	for len(r.iters) > 0 {
		p := r.iters[len(r.iters)-1]
		r.iters = r.iters[:len(r.iters)-1]
		if p.gen == gen && time.Since(p.born) < iterMaxAge {
			r.cmu.Unlock()
			return p, nil
		}
		_ = p.it.Close()
	}
	r.cmu.Unlock()
	it, err := r.newIter()
	return pooledIter{it: it, gen: gen, born: time.Now()}, err
}

func (r *reader) putIter(p pooledIter) {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if len(r.iters) < 4 && p.gen == r.gen.Load() && p.it.Error() == nil {
		r.iters = append(r.iters, p)
		return
	}
	_ = p.it.Close()
}

// closeIters closes pooled iterators; the reader may still be used after.
func (r *reader) closeIters() {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	for _, p := range r.iters {
		_ = p.it.Close()
	}
	r.iters = nil
}

// blkSet is the set of blocks of one inode that one level of a read chain
// holds versions of (at or below the level's seq); dense sets are not
// materialized.
type blkSet struct {
	dense bool
	blks  map[uint64]struct{}
}

const maxSparseBlocks = 4096

// levelMayHave reports whether chain level li may hold a version of block
// blk of ino. Levels other than a head's own are immutable at their seq
// (later writes get larger seqs), so their block sets are cached.
func (r *reader) levelMayHave(li int, l link, ino, blk uint64) bool {
	if li == 0 && r.wbuf != nil {
		return true
	}
	k := [2]uint64{uint64(li), ino}
	r.cmu.Lock()
	set := r.sets[k]
	r.cmu.Unlock()
	if set == nil {
		set = r.loadSet(l, ino)
		r.cmu.Lock()
		if r.sets == nil || len(r.sets) > 1<<14 {
			r.sets = map[[2]uint64]*blkSet{}
		}
		r.sets[k] = set
		r.cmu.Unlock()
	}
	if set.dense {
		return true
	}
	_, ok := set.blks[blk]
	return ok
}

func (r *reader) loadSet(l link, ino uint64) *blkSet {
	it, err := r.s.db.NewIter(&pebble.IterOptions{LowerBound: enc.BlockPrefix(nil, l.tl, ino), UpperBound: enc.BlockPrefix(nil, l.tl, ino+1)})
	if err != nil {
		return &blkSet{dense: true}
	}
	defer it.Close()
	set := &blkSet{blks: map[uint64]struct{}{}}
	for it.First(); it.Valid(); it.Next() {
		_, _, blk, seq, err := enc.DecodeBlockKey(it.Key())
		if err != nil || len(set.blks) >= maxSparseBlocks {
			return &blkSet{dense: true}
		}
		if seq <= l.seq {
			set.blks[blk] = struct{}{}
		}
	}
	if it.Error() != nil {
		return &blkSet{dense: true}
	}
	return set
}

var maxCached = 1 << 16 // a variable for tests

func (r *reader) newIter() (*pebble.Iterator, error) {
	it, err := r.s.db.NewIter(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return it, nil
}

func (r *reader) cached(ino uint64) (*enc.Attr, bool) {
	r.cmu.Lock()
	a, ok := r.cache[ino]
	r.cmu.Unlock()
	return a, ok
}

func (r *reader) setCached(ino uint64, a *enc.Attr) {
	r.cmu.Lock()
	if len(r.cache) >= maxCached {
		// Start over, but keep what exists nowhere else: a head's
		// attributes not yet flushed (the size a write extended a file
		// to, its times).
		for k := range r.cache {
			if r.dirty == nil || !(*r.dirty)[k] {
				delete(r.cache, k)
			}
		}
	}
	r.cache[ino] = a
	r.cmu.Unlock()
}

// attr returns ino's attributes, ErrNotExist if it has none. it may be nil.
func (r *reader) attr(it *pebble.Iterator, ino uint64) (*enc.Attr, error) {
	if a, ok := r.cached(ino); ok {
		if a == nil {
			return nil, fmt.Errorf("inode %d: %w", ino, ErrNotExist)
		}
		return a, nil
	}
	if it == nil {
		p, err := r.getIter()
		if err != nil {
			return nil, err
		}
		defer r.putIter(p)
		it = p.it
	}
	found, err := r.storedAttr(it, ino)
	if err != nil {
		return nil, err
	}
	r.setCached(ino, found)
	if found == nil {
		return nil, fmt.Errorf("inode %d: %w", ino, ErrNotExist)
	}
	return found, nil
}

// storedAttr reads ino's attributes through the chain, bypassing the
// cache (which a head keeps ahead of the store); nil if it has none.
func (r *reader) storedAttr(it *pebble.Iterator, ino uint64) (*enc.Attr, error) {
	var key []byte
	for _, l := range r.chain {
		key = enc.InodeKey(key, l.tl, ino, l.seq)
		if it.SeekPrefixGE(key) {
			a, ok, err := enc.DecodeAttr(it.Value())
			if err != nil {
				return nil, fmt.Errorf("%w: inode %d: %w", ErrCorrupt, ino, err)
			}
			if !ok {
				return nil, nil
			}
			return &a, nil
		}
		if err := it.Error(); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func checkFileName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > enc.MaxNameLen {
		return fmt.Errorf("%q: %w", name, ErrInvalidFileName)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return fmt.Errorf("%q: %w", name, ErrInvalidFileName)
		}
	}
	return nil
}

// dirent looks up name in directory dir (ok false if absent).
func (r *reader) dirent(it *pebble.Iterator, dir uint64, name string) (enc.Dirent, bool, error) {
	var key []byte
	for _, l := range r.chain {
		key = enc.DirentKey(key, l.tl, dir, name, l.seq)
		if it.SeekPrefixGE(key) {
			d, ok, err := enc.DecodeDirent(it.Value())
			if err != nil {
				return d, false, fmt.Errorf("%w: dirent %d/%q: %w", ErrCorrupt, dir, name, err)
			}
			return d, ok, nil
		}
		if err := it.Error(); err != nil {
			return enc.Dirent{}, false, err
		}
	}
	return enc.Dirent{}, false, nil
}

func (r *reader) dirAttr(it *pebble.Iterator, dir uint64) (*enc.Attr, error) {
	a, err := r.attr(it, dir)
	if err != nil {
		return nil, err
	}
	if a.Mode&ModeType != ModeDir {
		return nil, fmt.Errorf("inode %d: %w", dir, ErrNotDir)
	}
	return a, nil
}

func (r *reader) lookup(dir uint64, name string) (Attr, error) {
	if err := checkFileName(name); err != nil {
		return Attr{}, err
	}
	p, err := r.getIter()
	if err != nil {
		return Attr{}, err
	}
	defer r.putIter(p)
	it := p.it
	if _, err := r.dirAttr(it, dir); err != nil {
		return Attr{}, err
	}
	d, ok, err := r.dirent(it, dir, name)
	if err != nil {
		return Attr{}, err
	}
	if !ok {
		return Attr{}, fmt.Errorf("%q in inode %d: %w", name, dir, ErrNotExist)
	}
	a, err := r.attr(it, d.Ino)
	if err != nil {
		return Attr{}, fmt.Errorf("%w: entry %q points at missing inode %d: %w", ErrCorrupt, name, d.Ino, err)
	}
	return toAttr(d.Ino, a), nil
}

func (r *reader) getAttr(ino uint64) (Attr, error) {
	a, err := r.attr(nil, ino)
	if err != nil {
		return Attr{}, err
	}
	return toAttr(ino, a), nil
}

func (r *reader) readDir(dir uint64) ([]DirEntry, error) {
	it, err := r.newIter()
	if err != nil {
		return nil, err
	}
	defer it.Close()
	if _, err := r.dirAttr(it, dir); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []DirEntry
	var lo, hi []byte
	for _, l := range r.chain {
		lo = enc.DirentPrefix(lo, l.tl, dir)
		hi = enc.DirentPrefix(hi, l.tl, dir+1)
		it.SetBounds(lo, hi)
		for it.First(); it.Valid(); it.Next() {
			_, _, name, seq, err := enc.DecodeDirentKey(it.Key())
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			if seq > l.seq || seen[name] {
				continue
			}
			seen[name] = true
			d, ok, err := enc.DecodeDirent(it.Value())
			if err != nil {
				return nil, fmt.Errorf("%w: dirent %q: %w", ErrCorrupt, name, err)
			}
			if ok {
				out = append(out, DirEntry{Name: name, Ino: d.Ino, Mode: d.Mode & ModeType})
			}
		}
		if err := it.Error(); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// readBlock fills dst (BlockSize bytes) with block blk of inode ino.
func (r *reader) readBlock(it *pebble.Iterator, key []byte, ino uint64, a *enc.Attr, blk uint64, dst []byte) ([]byte, error) {
	if r.wbuf != nil {
		if v, ok := (*r.wbuf)[bkey{ino, blk}]; ok {
			copy(dst, v)
			return key, nil
		}
	}
	for li, l := range r.chain {
		if !r.levelMayHave(li, l, ino, blk) {
			continue
		}
		key = enc.BlockKey(key, l.tl, ino, blk, l.seq)
		if it.SeekPrefixGE(key) {
			v := it.Value()
			_, _, _, seq, err := enc.DecodeBlockKey(it.Key())
			if err != nil || len(v) > BlockSize {
				return key, fmt.Errorf("%w: block %d of inode %d", ErrCorrupt, blk, ino)
			}
			if a.Shadowed(blk, seq) {
				v = nil
			}
			n := copy(dst, v)
			clear(dst[n:])
			return key, nil
		}
		if err := it.Error(); err != nil {
			return key, err
		}
	}
	clear(dst)
	return key, nil
}

func (r *reader) readAt(ino uint64, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read offset %d: %w", off, ErrInvalidArgument)
	}
	pi, err := r.getIter()
	if err != nil {
		return 0, err
	}
	defer r.putIter(pi)
	it := pi.it
	a, err := r.attr(it, ino)
	if err != nil {
		return 0, err
	}
	if a.Mode&ModeType == ModeDir {
		return 0, fmt.Errorf("read inode %d: %w", ino, ErrIsDir)
	}
	if uint64(off) >= a.Size {
		return 0, io.EOF
	}
	n := len(p)
	if rem := a.Size - uint64(off); uint64(n) > rem {
		n = int(rem)
	}
	var key []byte
	var tmp []byte
	for done := 0; done < n; {
		pos := uint64(off) + uint64(done)
		blk, bo := pos/BlockSize, int(pos%BlockSize)
		m := min(BlockSize-bo, n-done)
		if bo == 0 && m == BlockSize {
			key, err = r.readBlock(it, key, ino, a, blk, p[done:done+BlockSize])
		} else {
			if tmp == nil {
				tmp = make([]byte, BlockSize)
			}
			key, err = r.readBlock(it, key, ino, a, blk, tmp)
			copy(p[done:done+m], tmp[bo:])
		}
		if err != nil {
			return done, err
		}
		done += m
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FSStats are statfs-like usage numbers.
type FSStats struct {
	BlockSize  uint32 // BlockSize
	TotalBytes uint64 // size of the file system holding the data directory
	FreeBytes  uint64 // free bytes there
	AvailBytes uint64 // bytes available to unprivileged users there
	UsedBytes  uint64 // bytes the store's pebble files occupy
}

// StatFS returns usage numbers for the data directory.
func (s *Store) StatFS() (FSStats, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return FSStats{}, fmt.Errorf("statfs: %w", err)
	}
	bs := uint64(st.Bsize)
	return FSStats{BlockSize: BlockSize, TotalBytes: st.Blocks * bs, FreeBytes: st.Bfree * bs,
		AvailBytes: st.Bavail * bs, UsedBytes: s.db.Metrics().DiskSpaceUsage()}, nil
}

// View is a read-only file system view of a timeline at a fixed seq. The
// versions it reads are pinned against GC until Close. Methods are safe for
// concurrent use.
type View struct {
	reader
	seq    uint64
	closed atomic.Bool
}

// OpenView opens a read-only view of branch at point at (AtHead is the
// head's state now, fixed from then on). The caller must Close it.
func (s *Store) OpenView(project, branch string, at At) (*View, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b *Branch
	p, err := s.projectLocked(project)
	if err != nil {
		return nil, fmt.Errorf("open view: %w", err)
	}
	if branch != "" || at.kind != atSnapshot {
		if _, b, err = s.branchLocked(project, branch); err != nil {
			return nil, fmt.Errorf("open view: %w", err)
		}
	}
	tl, seq, err := s.resolveLocked(p, b, at)
	if err != nil {
		return nil, fmt.Errorf("open view of %q at %s: %w", branch, at, err)
	}
	s.pinLocked(tl, seq)
	v := &View{reader: reader{s: s, tl: tl, chain: s.chainLocked(tl, seq), cache: map[uint64]*enc.Attr{}}, seq: seq}
	s.views[v] = true
	return v, nil
}

// Close releases the view's pin. If the view's branch was deleted while it
// was open and nothing else reads its timeline, the timeline is dropped.
func (v *View) Close() error {
	if v.closed.Swap(true) {
		return ErrClosed
	}
	v.closeIters()
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.views, v)
	if err := s.unpinLocked(v.tl, v.seq); err != nil {
		return fmt.Errorf("close view: %w", err)
	}
	return nil
}

func (v *View) check() error {
	if v.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Seq is the seq the view reads at.
func (v *View) Seq() uint64 { return v.seq }

// Timeline is the id of the timeline the view reads.
func (v *View) Timeline() uint64 { return v.tl }

// Lookup returns the attributes of entry name in directory parent.
func (v *View) Lookup(parent uint64, name string) (Attr, error) {
	if err := v.check(); err != nil {
		return Attr{}, err
	}
	return v.lookup(parent, name)
}

// GetAttr returns an inode's attributes.
func (v *View) GetAttr(ino uint64) (Attr, error) {
	if err := v.check(); err != nil {
		return Attr{}, err
	}
	return v.getAttr(ino)
}

// ReadDir lists a directory sorted by name (without "." and "..").
func (v *View) ReadDir(ino uint64) ([]DirEntry, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	return v.readDir(ino)
}

// ReadAt reads len(p) bytes at off as io.ReaderAt does: n < len(p) only
// with an error, io.EOF at the end of the file. Holes read as zeros.
func (v *View) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	if err := v.check(); err != nil {
		return 0, err
	}
	return v.readAt(ino, p, off)
}

// Readlink returns a symlink's target.
func (v *View) Readlink(ino uint64) (string, error) {
	if err := v.check(); err != nil {
		return "", err
	}
	return v.readlink(ino)
}

func (r *reader) readlink(ino uint64) (string, error) {
	a, err := r.attr(nil, ino)
	if err != nil {
		return "", err
	}
	if a.Mode&ModeType != ModeSymlink {
		return "", fmt.Errorf("readlink inode %d: %w", ino, ErrInvalidArgument)
	}
	buf := make([]byte, a.Size)
	if _, err := r.readAt(ino, buf, 0); err != nil && err != io.EOF {
		return "", err
	}
	return string(buf), nil
}

// StatFS returns usage numbers (see Store.StatFS).
func (v *View) StatFS() (FSStats, error) { return v.s.StatFS() }
