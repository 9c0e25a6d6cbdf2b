package cowfs

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/offshootdb/offshoot/storage"
)

// cacheTimeout is how long the kernel may trust entries, negative entries
// and attributes. Every change to a head goes through its one mount, so the
// kernel's caches can only go stale by our own hand (and the kernel updates
// them on every change it makes); a view never changes.
const cacheTimeout = time.Hour

// rawFS serves one Files as a FUSE file system. Kernel node ids are the
// store's inode numbers, so every request goes straight to the store; the
// only inode state kept is the kernel's lookup count, so that an unlinked
// file still open somewhere is freed (Forget) only once the kernel lets go.
type rawFS struct {
	fuse.RawFileSystem // ENOSYS for everything not implemented below

	files Files
	rw    WritableFiles // nil on a read-only view
	log   *slog.Logger
	owner *Owner // nil: uid and gid as stored

	// mutations counts changes made through this mount; synced is the
	// count the last completed store Sync covered.
	mutations, synced atomic.Uint64

	stats Stats

	// volatile are the root's file names whose fsync does not sync the
	// store (MountOptions.Volatile); volatileIno the inode last created
	// under one of them, 0 for none.
	volatile    []string
	volatileIno atomic.Uint64

	mu      sync.Mutex
	nextFh  uint64
	dirs    map[uint64][]storage.DirEntry // open directory streams by handle
	lookups map[uint64]uint64             // kernel references by inode (heads only)
}

func newRawFS(files Files, log *slog.Logger, owner *Owner) *rawFS {
	fs := &rawFS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		files:         files,
		log:           log,
		owner:         owner,
		dirs:          make(map[uint64][]storage.DirEntry),
		lookups:       make(map[uint64]uint64),
	}
	if rw, ok := files.(WritableFiles); ok {
		fs.rw = rw
	}
	return fs
}

func (fs *rawFS) String() string { return "offshoot" }

// Stats count the requests a mount has served. Fields are read and updated
// atomically.
type Stats struct {
	Lookups, GetAttrs, SetAttrs, Opens, Reads, Writes, Fsyncs, StoreSyncs atomic.Uint64
	ReadBytes, WriteBytes                                                 atomic.Uint64
	VolatileFsyncs                                                        atomic.Uint64 // fsyncs of MountOptions.Volatile files, which sync nothing
	Readlinks                                                             atomic.Uint64
}

// errno maps a store error to the errno the caller of the system call sees.
func (fs *rawFS) errno(op string, err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return fuse.Status(e)
	}
	for _, m := range errnoMap {
		if errors.Is(err, m.err) {
			return fuse.Status(m.errno)
		}
	}
	fs.log.Error("cowfs: "+op, "err", err)
	return fuse.EIO
}

// fillAttr presents a to the kernel: as stored, or, with an Owner, every
// inode owned by it and the root directory private to it (mode 0700).
func (fs *rawFS) fillAttr(out *fuse.Attr, a storage.Attr) {
	out.Ino = a.Ino
	out.Size = a.Size
	out.Blocks = (a.Size + 511) / 512
	out.Mode = a.Mode
	out.Nlink = a.Nlink // 0 for an unlinked file still open
	out.Uid, out.Gid = a.Uid, a.Gid
	if o := fs.owner; o != nil {
		out.Uid, out.Gid = o.UID, o.GID
		if a.Ino == storage.RootIno {
			out.Mode = a.Mode&^0o7777 | 0o700
		}
	}
	out.Blksize = 8192
	setTime := func(t time.Time, sec *uint64, nsec *uint32) {
		if !t.IsZero() {
			*sec, *nsec = uint64(t.Unix()), uint32(t.Nanosecond())
		}
	}
	setTime(a.Mtime, &out.Mtime, &out.Mtimensec)
	setTime(a.Atime, &out.Atime, &out.Atimensec)
	setTime(a.Ctime, &out.Ctime, &out.Ctimensec)
}

// entry fills an entry reply for a, counting the kernel's new reference.
func (fs *rawFS) entry(out *fuse.EntryOut, a storage.Attr) {
	if fs.rw != nil {
		fs.mu.Lock()
		fs.lookups[a.Ino]++
		fs.mu.Unlock()
	}
	out.NodeId = a.Ino
	out.Generation = 1
	fs.fillAttr(&out.Attr, a)
	out.SetEntryTimeout(cacheTimeout)
	out.SetAttrTimeout(cacheTimeout)
}

func (fs *rawFS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if len(name) > maxNameLen {
		return fuse.Status(syscall.ENAMETOOLONG)
	}
	fs.stats.Lookups.Add(1)
	a, err := fs.files.Lookup(h.NodeId, name)
	if err != nil {
		st := fs.errno("lookup", err)
		if st == fuse.ENOENT {
			// A negative entry: the kernel remembers that name is absent
			// until it creates it itself.
			*out = fuse.EntryOut{}
			out.SetEntryTimeout(cacheTimeout)
			return fuse.OK
		}
		return st
	}
	fs.entry(out, a)
	return fuse.OK
}

// Forget drops n of the kernel's references to an inode; when none are
// left, the store may free it if it has no links.
func (fs *rawFS) Forget(ino, n uint64) {
	if fs.rw == nil {
		return
	}
	fs.mu.Lock()
	c := fs.lookups[ino]
	if c <= n {
		delete(fs.lookups, ino)
	} else {
		fs.lookups[ino] = c - n
	}
	fs.mu.Unlock()
	if c <= n {
		if err := fs.rw.Forget(ino); err != nil && !errors.Is(err, storage.ErrClosed) {
			fs.log.Error("cowfs: forget", "ino", ino, "err", err)
		}
	}
}

func (fs *rawFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	fs.stats.GetAttrs.Add(1)
	a, err := fs.files.GetAttr(in.NodeId)
	if err != nil {
		return fs.errno("getattr", err)
	}
	fs.fillAttr(&out.Attr, a)
	out.SetTimeout(cacheTimeout)
	return fuse.OK
}

func (fs *rawFS) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if fs.rw == nil {
		return fuse.EROFS
	}
	fs.stats.SetAttrs.Add(1)
	defer fs.changed()
	var s storage.SetAttrIn
	if m, ok := in.GetMode(); ok {
		s.Valid |= storage.SetMode
		s.Mode = m
	}
	if u, ok := in.GetUID(); ok {
		s.Valid |= storage.SetUid
		s.Uid = u
	}
	if g, ok := in.GetGID(); ok {
		s.Valid |= storage.SetGid
		s.Gid = g
	}
	if sz, ok := in.GetSize(); ok {
		s.Valid |= storage.SetSize
		s.Size = sz
	}
	if t, ok := in.GetMTime(); ok {
		s.Valid |= storage.SetMtime
		s.Mtime = t.UnixNano()
	}
	if t, ok := in.GetATime(); ok {
		s.Valid |= storage.SetAtime
		s.Atime = t.UnixNano()
	}
	a, err := fs.rw.SetAttr(in.NodeId, s)
	if err != nil {
		return fs.errno("setattr", err)
	}
	fs.fillAttr(&out.Attr, a)
	out.SetTimeout(cacheTimeout)
	return fuse.OK
}

func (fs *rawFS) create(dir uint64, name string, mode uint32, c fuse.Caller, out *fuse.EntryOut) fuse.Status {
	if fs.rw == nil {
		return fuse.EROFS
	}
	defer fs.changed()
	if len(name) > maxNameLen {
		return fuse.Status(syscall.ENAMETOOLONG)
	}
	var a storage.Attr
	var err error
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		a, err = fs.rw.Mkdir(dir, name, mode&0o7777, c.Uid, c.Gid)
	} else {
		a, err = fs.rw.Create(dir, name, mode&0o7777, c.Uid, c.Gid)
	}
	if err != nil {
		return fs.errno("create", err)
	}
	if dir == storage.RootIno && slices.Contains(fs.volatile, name) {
		fs.volatileIno.Store(a.Ino)
	}
	fs.entry(out, a)
	return fuse.OK
}

// isVolatile reports whether ino is, right now, the only link of one of the
// root's volatile files (MountOptions.Volatile). The inode Postgres created
// under that name is remembered at create; the store confirms it still is
// that name and nothing else (a rename or link may have moved it).
func (fs *rawFS) isVolatile(ino uint64) bool {
	if ino == 0 || ino != fs.volatileIno.Load() {
		return false
	}
	for _, name := range fs.volatile {
		if a, err := fs.files.Lookup(storage.RootIno, name); err == nil && a.Ino == ino && a.Nlink == 1 {
			return true
		}
	}
	return false
}

func (fs *rawFS) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if st := fs.create(in.NodeId, name, syscall.S_IFREG|in.Mode, in.Caller, &out.EntryOut); !st.Ok() {
		return st
	}
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE
	return fuse.OK
}

func (fs *rawFS) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fuse.EPERM // only regular files and directories
	}
	return fs.create(in.NodeId, name, in.Mode, in.Caller, out)
}

func (fs *rawFS) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return fs.create(in.NodeId, name, syscall.S_IFDIR|in.Mode, in.Caller, out)
}

func (fs *rawFS) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if fs.rw == nil {
		return fuse.EROFS
	}
	defer fs.changed()
	return fs.errno("unlink", fs.rw.Unlink(h.NodeId, name))
}

func (fs *rawFS) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if fs.rw == nil {
		return fuse.EROFS
	}
	defer fs.changed()
	return fs.errno("rmdir", fs.rw.Rmdir(h.NodeId, name))
}

const (
	renameNoReplace = 1 << 0
	renameExchange  = 1 << 1
)

func (fs *rawFS) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if fs.rw == nil {
		return fuse.EROFS
	}
	defer fs.changed()
	if len(newName) > maxNameLen {
		return fuse.Status(syscall.ENAMETOOLONG)
	}
	switch in.Flags {
	case 0:
	case renameNoReplace:
		// The kernel holds both directories locked across a rename, so
		// the check cannot race with another change through this mount.
		if _, err := fs.files.Lookup(in.Newdir, newName); err == nil {
			return fuse.Status(syscall.EEXIST)
		} else if st := fs.errno("rename", err); st != fuse.ENOENT {
			return st
		}
	default:
		return fuse.EINVAL
	}
	return fs.errno("rename", fs.rw.Rename(in.NodeId, oldName, in.Newdir, newName))
}

func (fs *rawFS) Link(_ <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if fs.rw == nil {
		return fuse.EROFS
	}
	defer fs.changed()
	if len(name) > maxNameLen {
		return fuse.Status(syscall.ENAMETOOLONG)
	}
	a, err := fs.rw.Link(in.Oldnodeid, in.NodeId, name)
	if err != nil {
		return fs.errno("link", err)
	}
	fs.entry(out, a)
	return fuse.OK
}

func (fs *rawFS) Symlink(_ <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	if fs.rw == nil {
		return fuse.EROFS
	}
	defer fs.changed()
	if len(name) > maxNameLen {
		return fuse.Status(syscall.ENAMETOOLONG)
	}
	a, err := fs.rw.Symlink(h.NodeId, name, target, h.Uid, h.Gid)
	if err != nil {
		return fs.errno("symlink", err)
	}
	fs.entry(out, a)
	return fuse.OK
}

func (fs *rawFS) Readlink(_ <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	fs.stats.Readlinks.Add(1)
	target, err := fs.files.Readlink(h.NodeId)
	if err != nil {
		return nil, fs.errno("readlink", err)
	}
	return []byte(target), fuse.OK
}

// Open answers ENOSYS, which tells the kernel (FUSE_NO_OPEN_SUPPORT) that
// opens need no request at all: files are addressed by inode, a handle
// holds nothing, and without OPEN the kernel keeps the page cache across
// opens (FOPEN_KEEP_CACHE; nothing but this mount changes the files, and
// the kernel keeps its cache up to date with what it writes) and sends no
// RELEASE either. Every open of a Postgres start or backend was a round
// trip (BenchmarkStart). A read-only mount is mounted MS_RDONLY, so the
// kernel refuses opens for writing before any request; the check here
// covers the first open, which is the one that reaches this mount.
func (fs *rawFS) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	fs.stats.Opens.Add(1)
	if fs.rw == nil && (in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY || in.Flags&syscall.O_TRUNC != 0) {
		return fuse.EROFS
	}
	return fuse.ENOSYS
}

func (fs *rawFS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	fs.stats.Reads.Add(1)
	n, err := fs.files.ReadAt(in.NodeId, buf[:in.Size], int64(in.Offset))
	fs.stats.ReadBytes.Add(uint64(n))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fs.errno("read", err)
	}
	return fuse.ReadResultData(buf[:n]), fuse.OK
}

func (fs *rawFS) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if fs.rw == nil {
		return 0, fuse.EROFS
	}
	defer fs.changed()
	fs.stats.Writes.Add(1)
	fs.stats.WriteBytes.Add(uint64(len(data)))
	n, err := fs.rw.WriteAt(in.NodeId, data, int64(in.Offset))
	if err != nil {
		return uint32(n), fs.errno("write", err)
	}
	return uint32(n), fuse.OK
}

// Flush answers ENOSYS, so the kernel sends no FLUSH at close(2) from then
// on: a close has nothing to do here (the kernel still writes a file's
// dirty pages back before the close returns, FLUSH or not), and every
// close was a synchronous round trip.
func (fs *rawFS) Flush(<-chan struct{}, *fuse.FlushIn) fuse.Status { return fuse.ENOSYS }

func (fs *rawFS) Release(<-chan struct{}, *fuse.ReleaseIn) {}

// changed records a change made through this mount; handlers defer it,
// so it counts the change once the store has it.
func (fs *rawFS) changed() { fs.mutations.Add(1) }

// Fsync and fdatasync (of files and directories) make everything written
// through this mount durable: the store commits in one pebble sync shared
// by concurrent callers. When nothing was changed through the mount since
// the last sync there is nothing to do (Postgres fsyncs every file of
// PGDATA when it starts after a crash; Mount syncs once up front).
func (fs *rawFS) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if fs.rw == nil {
		return fuse.OK
	}
	fs.stats.Fsyncs.Add(1)
	if fs.isVolatile(in.NodeId) {
		fs.stats.VolatileFsyncs.Add(1)
		return fuse.OK
	}
	m := fs.mutations.Load()
	if fs.synced.Load() >= m {
		return fuse.OK
	}
	fs.stats.StoreSyncs.Add(1)
	if err := fs.rw.Sync(); err != nil {
		return fs.errno("fsync", err)
	}
	for {
		s := fs.synced.Load()
		if s >= m || fs.synced.CompareAndSwap(s, m) {
			return fuse.OK
		}
	}
}

func (fs *rawFS) FsyncDir(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fs.Fsync(c, in) }

const fallocKeepSize = 0x01

func (fs *rawFS) Fallocate(_ <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	if fs.rw == nil {
		return fuse.EROFS
	}
	defer fs.changed()
	switch in.Mode {
	case 0:
		return fs.errno("fallocate", fs.rw.Fallocate(in.NodeId, int64(in.Offset), int64(in.Length)))
	case fallocKeepSize:
		return fuse.OK // blocks are allocated when written
	default:
		return fuse.Status(syscall.EOPNOTSUPP)
	}
}

// OpenDir only names the open directory: its listing is taken at the
// first READDIR, which the kernel sends only when it has no listing of its
// own. FOPEN_CACHE_DIR and FOPEN_KEEP_CACHE let it keep the listing across
// opens; every change of the directory through this mount (the only
// writer) bumps the directory's version in the kernel, which drops it.
// Postgres lists every database directory at each start (temporary and
// unlogged relation files), about 30 requests of a wake before.
func (fs *rawFS) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	fs.mu.Lock()
	fs.nextFh++
	out.Fh = fs.nextFh
	fs.dirs[out.Fh] = nil
	fs.mu.Unlock()
	out.OpenFlags = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	return fuse.OK
}

// ReadDir serves the listing of the open directory, taken at its first
// READDIR, from the entry after in.Offset (offsets are 1-based entry
// indexes).
func (fs *rawFS) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	fs.mu.Lock()
	ents, ok := fs.dirs[in.Fh]
	fs.mu.Unlock()
	if !ok {
		return fuse.EBADF
	}
	if ents == nil {
		var err error
		if ents, err = fs.listDir(in.NodeId); err != nil {
			return fs.errno("readdir", err)
		}
		fs.mu.Lock()
		fs.dirs[in.Fh] = ents
		fs.mu.Unlock()
	}
	for i := int(in.Offset); i < len(ents); i++ {
		e := ents[i]
		if !out.AddDirEntry(fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode, Off: uint64(i + 1)}) {
			break
		}
	}
	return fuse.OK
}

// listDir is the listing of directory ino as readdir(3) shows it: "." and
// ".." first, as POSIX lists them (pg_ls_dir with include_dot_dirs relies
// on it). The kernel resolves ".." itself; its inode number here is the
// directory's own, as the store keeps no parent links.
func (fs *rawFS) listDir(ino uint64) ([]storage.DirEntry, error) {
	ents, err := fs.files.ReadDir(ino)
	if err != nil {
		return nil, err
	}
	dots := []storage.DirEntry{{Name: ".", Ino: ino, Mode: syscall.S_IFDIR}, {Name: "..", Ino: ino, Mode: syscall.S_IFDIR}}
	return append(dots, ents...), nil
}

func (fs *rawFS) ReleaseDir(in *fuse.ReleaseIn) {
	fs.mu.Lock()
	delete(fs.dirs, in.Fh)
	fs.mu.Unlock()
}

// StatFs reports the space of the file system under the store's data
// directory: what all branches share.
func (fs *rawFS) StatFs(_ <-chan struct{}, _ *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	st, err := fs.files.StatFS()
	if err != nil {
		return fs.errno("statfs", err)
	}
	bs := uint64(st.BlockSize)
	if bs == 0 {
		bs = storage.BlockSize
	}
	out.Bsize, out.Frsize = uint32(bs), uint32(bs)
	out.Blocks, out.Bfree, out.Bavail = st.TotalBytes/bs, st.FreeBytes/bs, st.AvailBytes/bs
	out.Files, out.Ffree = 1<<32, 1<<32 // inodes are not a limited resource
	out.NameLen = maxNameLen
	return fuse.OK
}
