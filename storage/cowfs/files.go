package cowfs

import "time"

// RootIno is the inode number of a timeline's root directory.
const RootIno = 1

// Attr are the attributes of one inode.
type Attr struct {
	Ino   uint64
	Mode  uint32 // file type bits (S_IFDIR, S_IFREG) and permissions
	Size  uint64
	Nlink uint32
	UID   uint32
	GID   uint32
	Mtime time.Time
	Ctime time.Time
}

// Entry is one directory entry.
type Entry struct {
	Name string
	Ino  uint64
	Mode uint32 // file type bits only are meaningful
}

// SetAttr says which attributes SetAttr changes: nil fields are kept.
type SetAttr struct {
	Mode  *uint32 // permission bits
	UID   *uint32
	GID   *uint32
	Size  *uint64
	Mtime *time.Time
}

// Files is the read side of an inode file system.
type Files interface {
	Lookup(dir uint64, name string) (Attr, error)
	GetAttr(ino uint64) (Attr, error)
	ReadDir(dir uint64) ([]Entry, error)
	ReadAt(ino uint64, p []byte, off int64) (int, error)
}

// WritableFiles is a read-write inode file system.
type WritableFiles interface {
	Files
	SetAttr(ino uint64, s SetAttr) (Attr, error)
	Create(dir uint64, name string, mode, uid, gid uint32) (Attr, error)
	Mkdir(dir uint64, name string, mode, uid, gid uint32) (Attr, error)
	Unlink(dir uint64, name string) error
	Rmdir(dir uint64, name string) error
	Rename(dir uint64, name string, newDir uint64, newName string) error
	WriteAt(ino uint64, p []byte, off int64) (int, error)
	Fallocate(ino uint64, off, length int64) error
	Sync() error
}
