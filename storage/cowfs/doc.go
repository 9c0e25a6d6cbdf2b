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
// maps to one store call. The only per-inode state is the kernel's lookup
// count, so that an unlinked file still open is freed (Head.Forget) only
// when the kernel forgets it. Mounts are direct kernel
// mounts (the process must be root) with allow_other, so the `postgres` OS
// user can use them, and default_permissions, so the kernel checks mode
// bits against the owners the store records.
//
// What Postgres 15 and its tools use is implemented: lookup, getattr,
// setattr (chmod, chown, utimens, truncate), create/open/release, read and
// write at any offset, flush, fsync/fdatasync, fallocate (mode 0 and
// KEEP_SIZE), mkdir, rmdir, unlink, rename (over an existing file, and
// RENAME_NOREPLACE), readdir, statfs, and hard links and symlinks.
// Special files are refused (EPERM) and xattrs are not supported.
//
// # Errors
//
// Store errors become the errno a local file system would give: ENOENT,
// EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, EINVAL, ENAMETOOLONG; EROFS for
// every change to a view; an errno the store passes up is kept; ENOSPC
// when the disk under the store's data directory is down to the reserve
// (see Durability). Anything else is logged and returned as EIO.
//
// # Durability
//
// Every write reaches the store before fsync returns (before write(2)
// returns without the writeback cache), and fsync, fdatasync and directory
// fsync commit the store durably (storage.Head.Sync, one pebble WAL sync
// shared by concurrent callers; skipped when nothing changed through the
// mount since the last one). So an acknowledged Postgres commit survives a
// crash of the offshoot process, and any state the store holds is one
// Postgres recovers from: a fork or view of a running head sees what a
// crash would leave.
//
// One exception, by name: the fsync of a file MountOptions.Volatile names
// (compute names postmaster.pid, a lock file it removes at every mount)
// returns without a store sync; the next fsync of any other file covers
// its writes. A start of Postgres fsyncs postmaster.pid six times.
//
// The store keeps a free-space reserve (storage.Options.MinFreeBytes,
// default 128 MiB) because its engine cannot survive a full disk: below it,
// writes that grow the store fail with storage.ErrNoSpace, which the mount
// returns as ENOSPC; removals keep working, and writes work again once
// space is freed. Above it lies a shared reserve
// (storage.Options.SharedReserveBytes, default 128 MiB) in which each
// branch may extend its files by only an eighth of it, so the branch that
// fills the disk gets ENOSPC alone while the other branches keep running;
// while space is that low the store gives deleted data back promptly.
//
// # Caching
//
// The kernel may trust entries, negative entries and attributes for an
// hour and keeps file pages and directory listings across opens (OPEN
// answers ENOSYS, so opens send no request and keep the cache;
// FOPEN_CACHE_DIR and FOPEN_KEEP_CACHE on directories) and across
// attribute changes (explicit data cache control instead of
// auto-invalidation on mtime changes): all changes to a head come through
// its one mount, so the kernel's caches are only ever changed by the
// kernel itself, and a view never changes. Negative entries matter to
// Postgres, which probes for absent relation forks (_fsm, _vm) all the
// time; cached sizes make its lseek(SEEK_END) calls free. With
// auto-invalidation, pgbench select-only (scale 10, 10 s) re-read 133 MB
// through FUSE at 2,827 tps; without it, 5 reads at 4,459 tps.
//
// The FUSE writeback cache is on by default (MountOptions.NoWritebackCache):
// fsync still sends every dirty page and commits the store. Measured in
// one run (pgbench scale 10, 4 clients, 2 x 10 s interleaved, this 2-core
// machine): initialization 9.5 s with it vs 19.9 s without (native disk
// 3.7 s); TPC-B 0.98x and select-only 1.13x the tps without it.
//
// Postgres on a fresh mount should run with
// recovery_init_sync_method=syncfs: Mount syncs the store when it comes
// up, so the fsync of every file that crash recovery starts with is
// redundant (it cost 370 ms of a 600 ms start of a fork).
//
// # The local WAL tier
//
// With MountOptions.LocalWAL (compute's default, wal_path local) the
// mount shows pg_wal as a symlink to a directory on local disk: Postgres
// writes and fsyncs its WAL there, and the head absorbs it into the
// store's hidden pg_wal before every commit and at every history tick
// (storage.Head.SetAbsorber), so every seq of the store stays a crash
// image. A clean Unmount absorbs, syncs and removes the directory; one a
// crash left is absorbed by the next Mount or by AbsorbLocalWAL. When the
// store refuses an absorb for space, the directory stops taking new WAL
// segments from Postgres. Design, invariants and costs: docs/wal-tier.md.
//
// # Lifecycle
//
// Mount, MountPoint.Unmount (clean, or lazy while something still holds
// the mount), and CleanStale for mounts left by a crashed process.
// Export copies a view to a plain directory. Creating a project's cluster
// (initdb and pgvector on a mount) is compute.InitProject: storage knows
// nothing of Postgres processes.
package cowfs
