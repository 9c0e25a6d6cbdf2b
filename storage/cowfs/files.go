package cowfs

import "github.com/offshootdb/offshoot/storage"

// Files is what a read-only mount serves: a *storage.View (a branch at a
// fixed seq). Its methods must be safe for concurrent use.
type Files interface {
	Lookup(parent uint64, name string) (storage.Attr, error)
	GetAttr(ino uint64) (storage.Attr, error)
	ReadDir(ino uint64) ([]storage.DirEntry, error)
	ReadAt(ino uint64, p []byte, off int64) (int, error)
	Readlink(ino uint64) (string, error)
	StatFS() (storage.FSStats, error)
}

// WritableFiles is what a read-write mount serves: a *storage.Head. Its
// methods must be safe for concurrent use.
type WritableFiles interface {
	Files
	SetAttr(ino uint64, in storage.SetAttrIn) (storage.Attr, error)
	Create(parent uint64, name string, mode, uid, gid uint32) (storage.Attr, error)
	Mkdir(parent uint64, name string, mode, uid, gid uint32) (storage.Attr, error)
	Symlink(parent uint64, name, target string, uid, gid uint32) (storage.Attr, error)
	Link(ino, newParent uint64, newName string) (storage.Attr, error)
	Unlink(parent uint64, name string) error
	Rmdir(parent uint64, name string) error
	Rename(oldParent uint64, oldName string, newParent uint64, newName string) error
	WriteAt(ino uint64, p []byte, off int64) (int, error)
	Fallocate(ino uint64, off, length int64) error
	// Forget is called when the kernel has dropped its last reference to
	// an inode, so an unlinked file can be freed.
	Forget(ino uint64) error
	Sync() error
}

var (
	_ Files         = (*storage.View)(nil)
	_ WritableFiles = (*storage.Head)(nil)
)
