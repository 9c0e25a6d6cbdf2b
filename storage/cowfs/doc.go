// Package cowfs serves branches of the copy-on-write store as POSIX
// directories through FUSE, so that an unmodified Postgres runs with its
// PGDATA on a branch.
//
// # Model
//
// A mount serves one storage.Head (a branch head, read-write) or one
// storage.View (a fixed (branch, seq), read-only, mounted MS_RDONLY). The
// kernel's FUSE node ids are the store's inode numbers (the root is inode
// 1), so the file system keeps no inode table of its own: every request
// maps to one store call, and Forget is a no-op. Mounts are direct kernel
// mounts (the process must be root) with allow_other, so the `postgres` OS
// user can use them, and default_permissions, so the kernel checks mode
// bits against the owners the store records.
//
// What Postgres 15 and its tools use is implemented: lookup, getattr,
// setattr (chmod, chown, utimens, truncate), create/open/release, read and
// write at any offset, flush, fsync/fdatasync, fallocate (mode 0 and
// KEEP_SIZE), mkdir, rmdir, unlink, rename (over an existing file, and
// RENAME_NOREPLACE), readdir and statfs. Hard links, special files and
// xattrs are refused (EPERM, ENOTSUP); symlinks are served.
//
// # Errors
//
// Store errors become the errno a local file system would give: ENOENT,
// EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, EINVAL, ENAMETOOLONG; EROFS for
// every change to a view; and an errno the store passes up (ENOSPC or
// EDQUOT when the disk under the store's data directory is full) is kept.
// Anything else is logged and returned as EIO.
//
// # Durability
//
// Every write reaches the store before write(2) returns (or, with the
// writeback cache, before fsync returns), and fsync, fdatasync and
// directory fsync commit the store durably (storage.Head.Sync, one pebble
// WAL sync shared by concurrent callers). So an acknowledged Postgres
// commit survives a crash of the offshoot process, and any state the store
// holds is one Postgres recovers from.
//
// # Caching
//
// The kernel may trust entries, negative entries and attributes for an
// hour and keeps file pages across opens (FOPEN_KEEP_CACHE): all changes
// to a head come through its one mount, so the kernel's caches are only
// ever changed by the kernel itself, and a view never changes. Negative
// entries matter to Postgres, which probes for absent relation forks
// (_fsm, _vm) all the time; cached sizes make its lseek(SEEK_END) calls
// free. See MountOptions.WritebackCache for the writeback cache.
//
// # Lifecycle
//
// Mount, MountPoint.Unmount (clean, or lazy while something still holds
// the mount), and CleanStale for mounts left by a crashed process.
// Export copies a view to a plain directory. Creating a project's cluster
// (initdb and pgvector on a mount) is compute.InitProject: storage knows
// nothing of Postgres processes.
package cowfs
