package storage

import (
	"errors"
	"fmt"
	"syscall"
)

// Errors returned by the store. Callers check them with errors.Is; the
// returned errors wrap them with context.
var (
	// ErrClosed is returned by every operation on a closed Store, Head or View.
	ErrClosed = errors.New("storage closed")
	// ErrFormat means the data directory holds an unknown on-disk format version.
	ErrFormat = errors.New("unknown storage format version")
	// ErrCorrupt means a stored record failed to decode or an invariant is broken.
	ErrCorrupt = errors.New("storage corrupt")
	// ErrInvalidName means a project, branch or snapshot name does not match
	// [a-z0-9][a-z0-9._/-]{0,62}.
	ErrInvalidName = errors.New("invalid name (want [a-z0-9][a-z0-9._/-]{0,62})")
	// ErrProjectNotFound means no project has the given name.
	ErrProjectNotFound = errors.New("project not found")
	// ErrProjectExists means a project with the given name already exists.
	ErrProjectExists = errors.New("project already exists")
	// ErrProjectNotEmpty means the project has branches other than main and
	// force was not asked for.
	ErrProjectNotEmpty = errors.New("project has branches other than main")
	// ErrBranchNotFound means no branch has the given name in the project.
	ErrBranchNotFound = errors.New("branch not found")
	// ErrBranchExists means the project already has a branch with the given name.
	ErrBranchExists = errors.New("branch already exists")
	// ErrSnapshotNotFound means no snapshot has the given name in the project.
	ErrSnapshotNotFound = errors.New("snapshot not found")
	// ErrSnapshotExists means the project already has a snapshot with the given name.
	ErrSnapshotExists = errors.New("snapshot already exists")
	// ErrProtected means the branch is protected against delete and reset.
	ErrProtected = errors.New("branch is protected")
	// ErrHasChildren means the branch has child branches and cascade was not asked for.
	ErrHasChildren = errors.New("branch has child branches")
	// ErrNoParent means the operation needs a parent branch and the branch is a root.
	ErrNoParent = errors.New("branch has no parent")
	// ErrBusy means a writable head of the branch is already open.
	ErrBusy = errors.New("branch head is already open for writing")
	// ErrFuture means a seq or time lies after the newest state of the branch.
	ErrFuture = errors.New("seq or time is in the future")
	// ErrBeforeHorizon means a seq or time lies before the retained history
	// (the GC horizon or the creation of the branch).
	ErrBeforeHorizon = errors.New("seq or time is before the retained history")
	// ErrNoSpace means the file system under the store has less free space
	// than Options.MinFreeBytes; errors.Is(err, syscall.ENOSPC) holds too.
	ErrNoSpace = fmt.Errorf("no space left for the store: %w", syscall.ENOSPC)
	// ErrInvalidArgument means an argument is out of range (negative offset, bad mode, ...).
	ErrInvalidArgument = errors.New("invalid argument")

	// ErrNotExist means the inode or directory entry does not exist (ENOENT).
	ErrNotExist = errors.New("no such file or directory")
	// ErrExist means the directory entry already exists (EEXIST).
	ErrExist = errors.New("file exists")
	// ErrNotDir means a directory was expected (ENOTDIR).
	ErrNotDir = errors.New("not a directory")
	// ErrIsDir means a non-directory was expected (EISDIR).
	ErrIsDir = errors.New("is a directory")
	// ErrNotEmpty means the directory is not empty (ENOTEMPTY).
	ErrNotEmpty = errors.New("directory not empty")
	// ErrInvalidFileName means a file name is empty, ".", "..", too long, or
	// contains '/' or NUL (EINVAL / ENAMETOOLONG).
	ErrInvalidFileName = errors.New("invalid file name")
	// ErrRenameLoop means a directory would be moved below itself (EINVAL).
	ErrRenameLoop = errors.New("rename would move a directory below itself")
)
