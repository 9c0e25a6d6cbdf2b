package cowfs

import (
	"errors"
	"syscall"

	"github.com/offshootdb/offshoot/storage"
)

// Errors returned by this package.
var (
	// ErrMounted means the mount point already holds a live mount.
	ErrMounted = errors.New("already mounted")
	// ErrForeignMount means the mount point holds a mount that is not offshoot's.
	ErrForeignMount = errors.New("mount point holds a foreign mount")
	// ErrBadMountInfo means /proc/self/mountinfo could not be parsed.
	ErrBadMountInfo = errors.New("malformed mountinfo")
	// ErrNotEmpty means an export target directory is not empty.
	ErrNotEmpty = errors.New("directory not empty")
	// ErrFileType means a file is neither a directory, a regular file nor a symlink.
	ErrFileType = errors.New("unsupported file type")
	// ErrWALKept means an unmount could not bring the store up to its
	// local WAL directory (a full disk): the mount is gone, the directory
	// stays for the next Mount of the head or AbsorbLocalWAL, and the head
	// refuses to commit until then (its Close fails alike).
	ErrWALKept = errors.New("local WAL kept for the next mount")
)

// maxNameLen is the longest file name (NAME_MAX).
const maxNameLen = 255

// errnoMap maps store errors to errno values, first match wins. Errors
// that wrap a syscall.Errno (ENOSPC from a full disk) keep it.
var errnoMap = []struct {
	err   error
	errno syscall.Errno
}{
	{storage.ErrNotExist, syscall.ENOENT},
	{storage.ErrExist, syscall.EEXIST},
	{storage.ErrNotDir, syscall.ENOTDIR},
	{storage.ErrIsDir, syscall.EISDIR},
	{storage.ErrNotEmpty, syscall.ENOTEMPTY},
	{storage.ErrInvalidFileName, syscall.EINVAL},
	{storage.ErrRenameLoop, syscall.EINVAL},
	{storage.ErrInvalidArgument, syscall.EINVAL},
	{storage.ErrClosed, syscall.EIO},
}
