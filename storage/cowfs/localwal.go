package cowfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"

	"github.com/offshootdb/offshoot/storage"
)

// The local WAL tier (docs/wal-tier.md): with MountOptions.LocalWAL, the
// mount shows PGDATA's pg_wal as a symlink to a directory on local disk,
// so Postgres writes and fsyncs its WAL there at the disk's speed, and the
// head absorbs that directory into the store's own pg_wal (hidden from the
// mount) before every commit and at every history tick (storage.Absorber).
// Postgres fsyncs WAL before it writes the pages it covers, so every seq of
// the store stays a crash image that holds the WAL its data needs.

const (
	walName = "pg_wal"
	// walIno is the virtual symlink's inode number. The store numbers
	// inodes upwards from 1 and never comes near it.
	walIno = 1 << 62
	// smallFile is the size up to which a file of pg_wal is compared
	// whole at each absorb (history files, archive status); larger ones
	// (segments) are written front to back and copied from their last
	// copied page to their first page of zeros.
	smallFile = 64 << 10
	// copyChunk is how much of a store file one read takes when a mount
	// copies pg_wal out.
	copyChunk = 1 << 20
)

// localWAL is one mount's local WAL directory and what the store holds of it.
type localWAL struct {
	head *storage.Head
	dir  string // absolute
	link storage.Attr
	// Store inodes of pg_wal's directories and files by path relative to
	// it ("" is pg_wal itself).
	dirs  map[string]uint64
	files map[string]*walFile
	log   *slog.Logger
	buf   []byte
	full  bool // the store refused an absorb for space: dir is mode 0500
	// redo is where the WAL a mount copies out begins (checkpointRedo);
	// 0 for all of it.
	redo uint64
	// owner, when set, owns the local files; the store's keep storeUID
	// and storeGID.
	owner              *Owner
	storeUID, storeGID uint32
	// watch, when set, lets absorbs that find nothing new skip the walk
	// (walwatch.go); a mount sets it, a recovery absorbs without.
	watch *walWatch
}

// localOwner is who owns a local copy of a store file of uid and gid.
func (w *localWAL) localOwner(uid, gid uint32) (int, int) {
	if w.owner != nil {
		return int(w.owner.UID), int(w.owner.GID)
	}
	return int(uid), int(gid)
}

// storeOwner is who owns in the store a file a local one of uid and gid
// becomes.
func (w *localWAL) storeOwner(uid, gid uint32) (uint32, uint32) {
	if w.owner != nil {
		return w.storeUID, w.storeGID
	}
	return uid, gid
}

type walFile struct {
	ino    uint64
	size   uint64 // the size the store holds
	copied int64  // large files: bytes copied, up to the end of the last non-zero page
	whole  []byte // small files: the content the store holds
	synced bool   // small files: whole is what the store holds
}

// openLocalWAL prepares dir as h's local WAL directory: a directory left
// by a mount that did not end cleanly holds WAL the store may not have yet
// and is kept (the first absorb brings the store up to it); otherwise the
// store's pg_wal is copied there. It returns nil when the store has no
// pg_wal (a cluster not yet initialized writes its WAL through the mount).
//
// With owner set (a private mount, MountOptions.Owner), the local files
// are the owner's, as the mount presents them, and what the store takes
// in keeps the uid and gid of its pg_wal.
func openLocalWAL(h *storage.Head, dir string, owner *Owner, log *slog.Logger) (*localWAL, error) {
	pa, err := h.Lookup(storage.RootIno, walName)
	if errors.Is(err, storage.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("local WAL: %w", err)
	}
	if !pa.IsDir() {
		return nil, fmt.Errorf("local WAL: %s in the store is not a directory", walName)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("local WAL: %w", err)
	}
	w := &localWAL{head: h, dir: dir, dirs: map[string]uint64{}, files: map[string]*walFile{}, log: log,
		buf: make([]byte, storage.BlockSize), owner: owner, storeUID: pa.Uid, storeGID: pa.Gid}
	w.link = storage.Attr{Ino: walIno, Mode: storage.ModeSymlink | 0o777, Uid: pa.Uid, Gid: pa.Gid, Nlink: 1,
		Size: uint64(len(dir)), Atime: pa.Atime, Mtime: pa.Mtime, Ctime: pa.Ctime}
	_, statErr := os.Lstat(dir)
	leftover := statErr == nil
	if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
		return nil, fmt.Errorf("local WAL: %w", statErr)
	}
	tmp := ""
	if !leftover {
		tmp = dir + ".tmp"
		if err := os.RemoveAll(tmp); err != nil {
			return nil, fmt.Errorf("local WAL: %w", err)
		}
		w.redo = checkpointRedo(h)
	}
	if err := w.walkStore("", pa, tmp); err != nil {
		if tmp != "" {
			_ = os.RemoveAll(tmp)
		}
		return nil, fmt.Errorf("local WAL: %w", err)
	}
	if leftover {
		log.Warn("cowfs: local WAL left by an unclean stop; the store absorbs it", "dir", dir)
		if err := os.Chmod(dir, 0o700); err != nil { // taken away when the disk was full
			return nil, fmt.Errorf("local WAL: %w", err)
		}
		if err := w.fillHoles(); err != nil {
			return nil, fmt.Errorf("local WAL: %w", err)
		}
		return w, nil
	}
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("local WAL: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("local WAL: %w", err)
	}
	return w, nil
}

// walkStore records the store's pg_wal tree below rel (a directory with
// attributes a) and, when to is set, copies it there.
func (w *localWAL) walkStore(rel string, a storage.Attr, to string) error {
	w.dirs[rel] = a.Ino
	local := filepath.Join(to, rel)
	if to != "" {
		if err := os.Mkdir(local, os.FileMode(a.Mode&storage.ModePerm)); err != nil {
			return err
		}
		uid, gid := w.localOwner(a.Uid, a.Gid)
		if err := os.Lchown(local, uid, gid); err != nil {
			return err
		}
	}
	ents, err := w.head.ReadDir(a.Ino)
	if err != nil {
		return err
	}
	for _, e := range ents {
		ca, err := w.head.GetAttr(e.Ino)
		if err != nil {
			return err
		}
		crel := path.Join(rel, e.Name)
		switch ca.Mode & storage.ModeType {
		case storage.ModeDir:
			if err := w.walkStore(crel, ca, to); err != nil {
				return err
			}
		case storage.ModeRegular:
			f := &walFile{ino: ca.Ino, size: ca.Size}
			w.files[crel] = f
			if to != "" {
				if err := w.copyOut(f, ca, filepath.Join(to, crel)); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("%s/%s: %w", walName, crel, ErrFileType)
		}
	}
	if to != "" {
		return syncDir(local)
	}
	return nil
}

// copyOut writes the store's file f to a new local file p, leaving zero
// blocks as holes, and records what was copied.
func (w *localWAL) copyOut(f *walFile, a storage.Attr, p string) error {
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, os.FileMode(a.Mode&storage.ModePerm))
	if err != nil {
		return err
	}
	defer out.Close()
	var whole []byte
	chunk := make([]byte, copyChunk)
	from := int64(0)
	if base, ok := segmentStart(path.Base(p), a.Size); ok && w.redo != 0 {
		// WAL before the redo point of the cluster's last checkpoint is
		// read by nobody (no replication slot holds it): left as zeros
		// here, and as it is in the store (an absorb never writes a page
		// of zeros), but for a segment's first page, whose long header
		// Postgres checks whenever it reads in a segment. A segment wholly
		// before it is all zeros here.
		switch {
		case base+a.Size <= w.redo:
			from, f.copied = int64(a.Size), int64(a.Size)
		case base < w.redo:
			from = int64(w.redo-base) / storage.BlockSize * storage.BlockSize
		}
	}
	if from > 0 && from < int64(a.Size) {
		n, err := w.head.ReadAt(a.Ino, chunk[:storage.BlockSize], 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if _, err := out.WriteAt(chunk[:n], 0); err != nil {
			return err
		}
	}
	for coff := from / copyChunk * copyChunk; coff < int64(a.Size); coff += copyChunk {
		cn, err := w.head.ReadAt(a.Ino, chunk, coff)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		for i := 0; i < cn; i += storage.BlockSize {
			blk, off := chunk[i:min(i+storage.BlockSize, cn)], coff+int64(i)
			if a.Size <= smallFile {
				whole = append(whole, blk...)
			}
			if isZero(blk) || off < from {
				continue
			}
			if _, err := out.WriteAt(blk, off); err != nil {
				return err
			}
			f.copied = off + int64(len(blk))
		}
	}
	if err := out.Truncate(int64(a.Size)); err != nil {
		return err
	}
	if err := out.Chown(w.localOwner(a.Uid, a.Gid)); err != nil {
		return err
	}
	if a.Size <= smallFile {
		f.whole, f.synced = whole, true
	}
	// Not synced here: Postgres' first fdatasync of a segment makes the
	// whole file durable, and a crash before that leaves pages of zeros
	// that the next mount fills from the store (fillHoles).
	return nil
}

// fillHoles gives the local files of a directory a crash left back what
// it may have lost of the copy out of the store: every page of zeros there
// that the store holds non-zero. (A copy is not synced, and a page of
// zeros is one Postgres never wrote: it writes no WAL page of zeros, and
// a segment's name is used once.) Files the store holds that are not
// there were removed by Postgres and stay removed.
func (w *localWAL) fillHoles() error {
	chunk, local := make([]byte, copyChunk), make([]byte, copyChunk)
	for rel, f := range w.files {
		p := filepath.Join(w.dir, filepath.FromSlash(rel))
		out, err := os.OpenFile(p, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = w.fillFile(out, f, chunk, local)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

func (w *localWAL) fillFile(out *os.File, f *walFile, chunk, local []byte) error {
	filled := false
	for coff := int64(0); coff < int64(f.size); coff += copyChunk {
		cn, err := w.head.ReadAt(f.ino, chunk, coff)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		ln, err := out.ReadAt(local[:cn], coff)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		clear(local[ln:cn])
		for i := 0; i < cn; i += storage.BlockSize {
			end := min(i+storage.BlockSize, cn)
			if isZero(local[i:end]) && !isZero(chunk[i:end]) {
				if _, err := out.WriteAt(chunk[i:end], coff+int64(i)); err != nil {
					return err
				}
				filled = true
			}
		}
	}
	if filled {
		w.log.Warn("cowfs: local WAL: restored pages a crash lost from the store's copy", "file", out.Name())
		return out.Sync()
	}
	return nil
}

// absorb is the head's Absorber. When the store refuses it for space
// (the branch used its share of the reserve while the disk is low), the
// local directory stops taking new files from Postgres (mode 0500: its
// next WAL segment cannot be created, so that branch stops instead of
// taking the last free space from every branch), until an absorb
// succeeds again.
func (w *localWAL) absorb(tx *storage.AbsorbTx) error {
	if w.watch != nil && !w.watch.changed() {
		return nil
	}
	err := w.absorbTree(tx)
	if err == nil && w.watch != nil {
		w.watch.absorbed()
	}
	switch {
	case errors.Is(err, syscall.ENOSPC) && !w.full:
		if cerr := os.Chmod(w.dir, 0o500); cerr != nil {
			return errors.Join(err, cerr)
		}
		w.full = true
		w.log.Warn("cowfs: local WAL: the store refused it for space; no new WAL segments for this branch", "dir", w.dir)
	case err == nil && w.full:
		if cerr := os.Chmod(w.dir, 0o700); cerr != nil {
			return cerr
		}
		w.full = false
		w.log.Info("cowfs: local WAL: the store takes it again", "dir", w.dir)
	}
	return err
}

// absorbTree stages what changed in the local directory since the last
// absorb. New directories and files first, then contents, removals last,
// so that every seq in between still holds every segment a crash image
// needs.
func (w *localWAL) absorbTree(tx *storage.AbsorbTx) error {
	seenDirs, seenFiles := map[string]bool{"": true}, map[string]bool{}
	err := filepath.WalkDir(w.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != w.dir {
				return nil // removed while listed: the next absorb removes it
			}
			return err
		}
		rel, err := filepath.Rel(w.dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		st, _ := info.Sys().(*syscall.Stat_t)
		uid, gid := uint32(0), uint32(0)
		if st != nil {
			uid, gid = st.Uid, st.Gid
		}
		uid, gid = w.storeOwner(uid, gid)
		parent, ok := w.dirs[dirOf(rel)]
		if !ok {
			return fmt.Errorf("%s: parent not absorbed", rel)
		}
		switch {
		case d.IsDir():
			seenDirs[rel] = true
			if w.watch != nil {
				if err := w.watch.add(p); err != nil {
					return err
				}
			}
			if _, ok := w.dirs[rel]; !ok {
				a, err := tx.Mkdir(parent, d.Name(), uint32(info.Mode().Perm()), uid, gid)
				if err != nil {
					return err
				}
				w.dirs[rel] = a.Ino
			}
		case d.Type().IsRegular():
			seenFiles[rel] = true
			f, ok := w.files[rel]
			if !ok {
				a, err := tx.Create(parent, d.Name(), uint32(info.Mode().Perm()), uid, gid)
				if err != nil {
					return err
				}
				f = &walFile{ino: a.Ino}
				w.files[rel] = f
			}
			if err := w.absorbFile(tx, f, p, uint64(info.Size())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s/%s: %w", walName, rel, err)
			}
		default:
			w.log.Warn("cowfs: local WAL: not a file or directory, left out of the store", "path", p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("local WAL %s: %w", w.dir, err)
	}
	for rel := range w.files {
		if !seenFiles[rel] {
			if err := tx.Remove(w.dirs[dirOf(rel)], path.Base(rel), false); err != nil && !errors.Is(err, storage.ErrNotExist) {
				return fmt.Errorf("local WAL: remove %s: %w", rel, err)
			}
			delete(w.files, rel)
		}
	}
	var gone []string
	for rel := range w.dirs {
		if !seenDirs[rel] {
			gone = append(gone, rel)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(gone))) // children before parents
	for _, rel := range gone {
		if err := tx.Remove(w.dirs[dirOf(rel)], path.Base(rel), true); err != nil && !errors.Is(err, storage.ErrNotExist) {
			return fmt.Errorf("local WAL: remove %s: %w", rel, err)
		}
		delete(w.dirs, rel)
	}
	return nil
}

// dirOf is the directory of rel, "" for pg_wal itself.
func dirOf(rel string) string {
	if d := path.Dir(rel); d != "." {
		return d
	}
	return ""
}

// absorbFile stages the changes of one local file p of size size.
func (w *localWAL) absorbFile(tx *storage.AbsorbTx, f *walFile, p string, size uint64) error {
	in, err := os.Open(p)
	if err != nil {
		return err
	}
	defer in.Close()
	if size <= smallFile {
		data := make([]byte, size)
		n, err := io.ReadFull(in, data)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return err
		}
		data = data[:n]
		if f.synced && bytes.Equal(data, f.whole) && f.size == uint64(n) {
			return nil
		}
		if len(data) > 0 {
			if _, err := tx.WriteAt(f.ino, data, 0); err != nil {
				return err
			}
		}
		if f.size != uint64(n) || !f.synced {
			if err := tx.Truncate(f.ino, uint64(n)); err != nil {
				return err
			}
		}
		f.whole, f.size, f.synced = data, uint64(n), true
		return nil
	}
	// From the page copied last, again (Postgres rewrites its current WAL
	// page, whole, as it fills it), to the end of what was written: the
	// first page of zeros (a new segment is zero-filled) or, in a segment,
	// the first page whose header names another position (a recycled
	// segment still holds old WAL), as Postgres finds the end of its WAL.
	base, isSeg := segmentStart(path.Base(p), size)
	for off := max(f.copied-1, 0) / storage.BlockSize * storage.BlockSize; off < int64(size); off += storage.BlockSize {
		n, err := in.ReadAt(w.buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		blk := w.buf[:n]
		if isZero(blk) || isSeg && (n < 16 || binary.LittleEndian.Uint64(blk[8:16]) != base+uint64(off)) {
			if off >= f.copied {
				break
			}
			continue
		}
		if _, err := tx.WriteAt(f.ino, blk, off); err != nil {
			return err
		}
		f.copied = off + int64(n)
	}
	if f.size != size {
		if err := tx.Truncate(f.ino, size); err != nil {
			return err
		}
		f.size = size
	}
	return nil
}

// checkpointRedo returns the redo point of the last checkpoint that the
// store's global/pg_control records (PostgreSQL 15's ControlFileData:
// checkPointCopy.redo, 40 bytes in), or 0 when the WAL before it may still
// be read: a replication slot exists (a replica reads from the slot's
// position), or pg_control cannot be read as expected.
func checkpointRedo(h *storage.Head) uint64 {
	if d, err := h.Lookup(storage.RootIno, "pg_replslot"); err == nil {
		if ents, err := h.ReadDir(d.Ino); err != nil || len(ents) > 0 {
			return 0
		}
	}
	g, err := h.Lookup(storage.RootIno, "global")
	if err != nil {
		return 0
	}
	c, err := h.Lookup(g.Ino, "pg_control")
	if err != nil {
		return 0
	}
	var b [48]byte
	if n, err := h.ReadAt(c.Ino, b[:], 0); n != len(b) || err != nil && !errors.Is(err, io.EOF) {
		return 0
	}
	if binary.LittleEndian.Uint32(b[8:12]) != 1300 { // pg_control_version of PostgreSQL 15
		return 0
	}
	return binary.LittleEndian.Uint64(b[40:48])
}

// segmentStart returns the WAL position of a segment file's first byte,
// from its name (timeline, log and segment number in 24 hex digits,
// optionally followed by a suffix such as .partial) and its size (the
// segment size, a power of two), and whether name is a segment's.
func segmentStart(name string, size uint64) (uint64, bool) {
	if len(name) < 24 || size < 1<<20 || size&(size-1) != 0 {
		return 0, false
	}
	log, err1 := strconv.ParseUint(name[8:16], 16, 32)
	seg, err2 := strconv.ParseUint(name[16:24], 16, 32)
	if _, err := strconv.ParseUint(name[:8], 16, 32); err != nil || err1 != nil || err2 != nil {
		return 0, false
	}
	return log<<32 + seg*size, true
}

// AbsorbLocalWAL brings head h up to a local WAL directory that a mount
// with MountOptions.LocalWAL left when it did not end cleanly (a crash),
// syncs, and removes the directory: from then on the store alone holds
// the branch, as after a clean unmount. A missing dir is not an error.
func AbsorbLocalWAL(h *storage.Head, dir string, log *slog.Logger) error {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	w, err := openLocalWAL(h, dir, nil, log)
	if err != nil {
		return err
	}
	if w == nil {
		return fmt.Errorf("local WAL %s: the branch has no %s to absorb it into", dir, walName)
	}
	h.SetAbsorber(w.absorb)
	return w.close()
}

// startWatch watches the local directory and its subdirectories for the
// absorbs of a mount (walWatch). Without inotify (its limits reached) every
// absorb walks the directory, as before.
func (w *localWAL) startWatch() {
	dirs := []string{w.dir}
	for rel := range w.dirs {
		if rel != "" {
			dirs = append(dirs, filepath.Join(w.dir, filepath.FromSlash(rel)))
		}
	}
	ww, err := newWALWatch(dirs...)
	if err != nil {
		w.log.Warn("cowfs: local WAL: every absorb walks the directory", "dir", w.dir, "err", err)
		return
	}
	w.watch = ww
}

// close ends the tier at a clean unmount: a last absorb with a sync, then
// the local directory goes (the store holds all of it).
func (w *localWAL) close() error {
	if err := w.head.Sync(); err != nil {
		// The absorber stays: the head commits nothing more that the store's
		// WAL might not cover.
		return fmt.Errorf("%w: %w", ErrWALKept, err)
	}
	w.head.SetAbsorber(nil)
	if w.watch != nil {
		w.watch.close()
		w.watch = nil
	}
	if err := os.RemoveAll(w.dir); err != nil {
		return fmt.Errorf("local WAL: %w", err)
	}
	return nil
}

func isZero(b []byte) bool {
	for len(b) >= len(zeroPage) {
		if !bytes.Equal(b[:len(zeroPage)], zeroPage[:]) {
			return false
		}
		b = b[len(zeroPage):]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

var zeroPage [512]byte

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// walFiles is a head with pg_wal in its root replaced by the symlink to
// the local WAL directory. The store's own pg_wal is not reachable
// through it, and the symlink cannot be changed.
type walFiles struct {
	WritableFiles
	w *localWAL
}

var errWALLink = fmt.Errorf("%s is the local WAL directory's symlink: %w", walName, syscall.EPERM)

func (f *walFiles) isLink(parent uint64, name string) bool {
	return parent == storage.RootIno && name == walName
}

func (f *walFiles) Lookup(parent uint64, name string) (storage.Attr, error) {
	if f.isLink(parent, name) {
		return f.w.link, nil
	}
	return f.WritableFiles.Lookup(parent, name)
}

func (f *walFiles) GetAttr(ino uint64) (storage.Attr, error) {
	if ino == walIno {
		return f.w.link, nil
	}
	return f.WritableFiles.GetAttr(ino)
}

func (f *walFiles) Readlink(ino uint64) (string, error) {
	if ino == walIno {
		return f.w.dir, nil
	}
	return f.WritableFiles.Readlink(ino)
}

func (f *walFiles) ReadDir(ino uint64) ([]storage.DirEntry, error) {
	ents, err := f.WritableFiles.ReadDir(ino)
	if err != nil || ino != storage.RootIno {
		return ents, err
	}
	for i := range ents {
		if ents[i].Name == walName {
			ents[i] = storage.DirEntry{Name: walName, Ino: walIno, Mode: storage.ModeSymlink}
		}
	}
	return ents, nil
}

func (f *walFiles) SetAttr(ino uint64, in storage.SetAttrIn) (storage.Attr, error) {
	if ino == walIno {
		return storage.Attr{}, errWALLink
	}
	return f.WritableFiles.SetAttr(ino, in)
}

func (f *walFiles) Create(parent uint64, name string, mode, uid, gid uint32) (storage.Attr, error) {
	if f.isLink(parent, name) {
		return storage.Attr{}, errWALLink
	}
	return f.WritableFiles.Create(parent, name, mode, uid, gid)
}

func (f *walFiles) Mkdir(parent uint64, name string, mode, uid, gid uint32) (storage.Attr, error) {
	if f.isLink(parent, name) {
		return storage.Attr{}, errWALLink
	}
	return f.WritableFiles.Mkdir(parent, name, mode, uid, gid)
}

func (f *walFiles) Symlink(parent uint64, name, target string, uid, gid uint32) (storage.Attr, error) {
	if f.isLink(parent, name) {
		return storage.Attr{}, errWALLink
	}
	return f.WritableFiles.Symlink(parent, name, target, uid, gid)
}

func (f *walFiles) Link(ino, newParent uint64, newName string) (storage.Attr, error) {
	if ino == walIno || f.isLink(newParent, newName) {
		return storage.Attr{}, errWALLink
	}
	return f.WritableFiles.Link(ino, newParent, newName)
}

func (f *walFiles) Unlink(parent uint64, name string) error {
	if f.isLink(parent, name) {
		return errWALLink
	}
	return f.WritableFiles.Unlink(parent, name)
}

func (f *walFiles) Rmdir(parent uint64, name string) error {
	if f.isLink(parent, name) {
		return errWALLink
	}
	return f.WritableFiles.Rmdir(parent, name)
}

func (f *walFiles) Rename(oldParent uint64, oldName string, newParent uint64, newName string) error {
	if f.isLink(oldParent, oldName) || f.isLink(newParent, newName) {
		return errWALLink
	}
	return f.WritableFiles.Rename(oldParent, oldName, newParent, newName)
}

func (f *walFiles) Forget(ino uint64) error {
	if ino == walIno {
		return nil
	}
	return f.WritableFiles.Forget(ino)
}
