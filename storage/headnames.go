package storage

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// Names through the head: creating files, directories, symlinks and hard
// links, unlinking and removing them, renaming them, and dropping the
// inodes left without links (Forget).

// newNode creates an inode of the given mode linked as name in parent.
func (h *Head) newNode(parent uint64, name string, mode, uid, gid uint32, content []byte) (Attr, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return Attr{}, err
	}
	return h.newNodeLocked(parent, name, mode, uid, gid, content)
}

// newNodeLocked is newNode with h.mu held for writing.
func (h *Head) newNodeLocked(parent uint64, name string, mode, uid, gid uint32, content []byte) (Attr, error) {
	if err := checkFileName(name); err != nil {
		return Attr{}, err
	}
	if mode&ModeType == 0 || mode&^(ModeType|ModePerm) != 0 {
		return Attr{}, fmt.Errorf("mode %o: %w", mode, ErrInvalidArgument)
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
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return err
	}
	return h.removeLocked(parent, name, dir)
}

// removeLocked is remove with h.mu held for writing.
func (h *Head) removeLocked(parent uint64, name string, dir bool) error {
	if err := checkFileName(name); err != nil {
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
