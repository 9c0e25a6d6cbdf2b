package storage

import "fmt"

// Absorbing: a head that copies in, before each of its commits, what a
// process wrote outside the store that the commit may depend on. The use
// it is built for is a local WAL tier (docs/wal-tier.md): Postgres writes
// its WAL to local disk, and since it fsyncs WAL before it writes the data
// pages the WAL covers, copying that WAL into the store before every
// commit of data keeps every seq of the store a crash image.

// An Absorber stages changes made outside the head into it through tx. The
// head calls it with its lock held before every commit (a flush, which
// every other mutation starts with), at every history tick, and on Close,
// and commits what it staged at seqs before the commit's own. It must
// read only its own sources, never the head except through tx, and be
// quick: the head's readers and writers wait meanwhile. An error fails the
// commit, so nothing is committed that its sources might not cover.
type Absorber func(tx *AbsorbTx) error

// AbsorbTx is the head as an Absorber sees it: the head's operations
// without its locking. Valid only during the call. Changes commit in the
// order they are staged (a create or remove commits the writes staged
// before it, then itself), so every seq in between is a state readers can
// see: an absorber that mirrors a log adds what is new before it removes
// what is gone (TestAbsorbBeforeData finds the reverse).
type AbsorbTx struct{ h *Head }

// SetAbsorber installs a (nil removes it).
func (h *Head) SetAbsorber(a Absorber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.absorber = a
}

// absorbLocked runs the absorber and commits what it staged, while the
// head's own buffered writes and attribute changes wait aside: they go in
// a later batch with a later seq. h.mu held for writing.
func (h *Head) absorbLocked() error {
	wbuf, dirty := h.wbuf, h.dirty
	h.wbuf, h.dirty = map[bkey][]byte{}, map[uint64]bool{}
	h.absorbing = true
	err := h.absorber(&AbsorbTx{h})
	if err == nil {
		err = h.flushLocked()
	}
	h.absorbing = false
	// After an error, what the absorber staged stays buffered with the
	// head's writes (an absorber writes only its own files): it was read
	// from its sources, and committing it later is harmless.
	for k, v := range h.wbuf {
		wbuf[k] = v
	}
	for ino := range h.dirty {
		dirty[ino] = true
	}
	h.wbuf, h.dirty = wbuf, dirty
	if err != nil {
		return fmt.Errorf("absorb: %w", err)
	}
	return nil
}

// Lookup is Head.Lookup.
func (tx *AbsorbTx) Lookup(parent uint64, name string) (Attr, error) {
	return tx.h.lookup(parent, name)
}

// GetAttr is Head.GetAttr.
func (tx *AbsorbTx) GetAttr(ino uint64) (Attr, error) { return tx.h.getAttr(ino) }

// ReadDir is Head.ReadDir.
func (tx *AbsorbTx) ReadDir(ino uint64) ([]DirEntry, error) { return tx.h.readDir(ino) }

// Create is Head.Create.
func (tx *AbsorbTx) Create(parent uint64, name string, mode, uid, gid uint32) (Attr, error) {
	return tx.node("create", parent, name, mode&ModePerm|ModeRegular, uid, gid)
}

// Mkdir is Head.Mkdir.
func (tx *AbsorbTx) Mkdir(parent uint64, name string, mode, uid, gid uint32) (Attr, error) {
	return tx.node("mkdir", parent, name, mode&ModePerm|ModeDir, uid, gid)
}

func (tx *AbsorbTx) node(op string, parent uint64, name string, mode, uid, gid uint32) (Attr, error) {
	a, err := tx.h.newNodeLocked(parent, name, mode, uid, gid, nil)
	if err != nil {
		return Attr{}, fmt.Errorf("%s %q: %w", op, name, err)
	}
	return a, nil
}

// Remove is Head.Unlink (dir false) or Head.Rmdir (dir true).
func (tx *AbsorbTx) Remove(parent uint64, name string, dir bool) error {
	if err := tx.h.removeLocked(parent, name, dir); err != nil {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	return nil
}

// WriteAt is Head.WriteAt.
func (tx *AbsorbTx) WriteAt(ino uint64, p []byte, off int64) (int, error) {
	return tx.h.writeAtLocked(ino, p, off)
}

// Truncate sets a file's size, as Head.SetAttr with SetSize does.
func (tx *AbsorbTx) Truncate(ino, size uint64) error {
	if _, err := tx.h.setAttrLocked(ino, SetAttrIn{Valid: SetSize, Size: size}); err != nil {
		return fmt.Errorf("truncate inode %d: %w", ino, err)
	}
	return nil
}
